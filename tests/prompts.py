"""API-format prompts for the server tests (the format ``POST /prompt`` takes)."""

POSITIVE = "a lighthouse at dusk"


def _text_to_image(nodes, model_ref, clip_ref, vae_ref, sampler_nodes, size, prefix):
    nodes.update({
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": POSITIVE, "clip": clip_ref}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": clip_ref}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
    })
    nodes.update(sampler_nodes)
    nodes["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": vae_ref}}
    nodes["save"] = {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": prefix}}
    return nodes


def custom_sampler_nodes(model_ref, steps=4, eta=0.3, seed=1, denoise=1.0, start=999, cfg=1.0,
                         latent_ref=("latent", 0), sigmas_ref=None):
    """HyperSDScheduler + HyperSDTCDSampler wired into core SamplerCustom (node ids 'sched', 'tcd', 'sample')."""
    return {
        "sched": {"class_type": "HyperSDScheduler",
                  "inputs": {"model": model_ref, "steps": steps, "denoise": denoise, "start_timestep": start}},
        "tcd": {"class_type": "HyperSDTCDSampler", "inputs": {"eta": eta}},
        "sample": {"class_type": "SamplerCustom", "inputs": {
            "model": model_ref, "add_noise": True, "noise_seed": seed, "cfg": cfg,
            "positive": ["pos", 0], "negative": ["neg", 0], "sampler": ["tcd", 0],
            "sigmas": list(sigmas_ref or ("sched", 0)), "latent_image": list(latent_ref)}},
    }


def sampler_custom_prompt(ckpt, steps=4, eta=0.3, seed=1, size=256, prefix="hypersd", **kw):
    nodes = {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}}
    return _text_to_image(nodes, ["ckpt", 0], ["ckpt", 1], ["ckpt", 2],
                          custom_sampler_nodes(["ckpt", 0], steps=steps, eta=eta, seed=seed, **kw), size, prefix)


def ksampler_prompt(ckpt, sampler="tcd", scheduler="trailing", steps=4, seed=1, size=256, cfg=1.0,
                    prefix="ksampler"):
    nodes = {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}}
    ks = {"sample": {"class_type": "KSampler", "inputs": {
        "model": ["ckpt", 0], "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler,
        "scheduler": scheduler, "positive": ["pos", 0], "negative": ["neg", 0],
        "latent_image": ["latent", 0], "denoise": 1.0}}}
    return _text_to_image(nodes, ["ckpt", 0], ["ckpt", 1], ["ckpt", 2], ks, size, prefix)


def node_errors(body):
    """Flatten a 400 answer of POST /prompt into one string (error messages and details)."""
    parts = [str(body.get("error", {}).get("message", "")), str(body.get("error", {}).get("details", ""))]
    for node_id, err in (body.get("node_errors") or {}).items():
        for e in err.get("errors", []):
            parts.append(f"{node_id}/{err.get('class_type')}: {e.get('message')}: {e.get('details')}")
    return "\n".join(parts)
