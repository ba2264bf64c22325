"""The Hyper-SD LoRA Loader in a real ComfyUI server (tests/host.py), on the random SD1.5 checkpoint.

A small kohya-spelled test LoRA (tests/loras.py) is written into the server's loras folder under the
official file names; prompts wire the loader's recipe outputs (steps, cfg, eta) into the Hyper-SD
Scheduler, the TCD sampler and core SamplerCustom. The server runs with HF_HUB_OFFLINE=1 (the fixture's
default), so nothing is downloaded. Prompts are 1-4 steps at 256x256 (CPU).

ComfyUI caches node outputs by their inputs (not their ids), so the prompts that compare images vary an
input that does not change the result (the download policy, with the file present) to make every
loader and sampler really run again.
"""
import numpy as np
import pytest

import loras
from host import import_comfy
from pixels import real_image

# Main host only: on 0.3.64 the loader's application is checked in-process on its own classes (test_lora_loader.py)
# and its server path by test_server_sampling.py, test_server_compat.py and test_bad_inputs.py.

LABEL_4 = "SD1.5 · 4 steps"
NAME_4 = "Hyper-SD15-4steps-lora.safetensors"
LABEL_1 = "SD1.5 · 1 step (unified, TCD)"
NAME_1 = "Hyper-SD15-1step-lora.safetensors"
MISSING_LABEL, MISSING_NAME = "SD1.5 · 8 steps", "Hyper-SD15-8steps-lora.safetensors"


@pytest.fixture(scope="module")
def sd15(comfy_server):
    import_comfy()
    import models
    return comfy_server.add_model("checkpoints", models.sd15_checkpoint(), "random-sd15.safetensors")


@pytest.fixture(scope="module")
def lora_files(comfy_server):
    """The test LoRA (every SD1.5 layer kind incl. CLIP, kohya spelling) under two official names."""
    folder = comfy_server.models_dir("loras")
    lora = loras.make_lora(loras.SD15_LAYERS, "kohya", seed=21)
    paths = [loras.write(folder / name, lora) for name in (NAME_4, NAME_1)]
    missing = folder / MISSING_NAME
    if missing.exists():
        missing.unlink()
    yield paths
    for path in paths:
        path.unlink(missing_ok=True)


def strength_inputs(strength):
    """The loader's strength inputs: the recipe's (None) or a custom value."""
    if strength is None:
        return {"strength": 1.0, "strength_from": "recipe"}
    return {"strength": strength, "strength_from": "custom"}


def lora_branch(nodes, tag, label, strength, download, seed=1, size=256, prefix="hypersd-lora"):
    """CheckpointLoader 'ckpt' -> HyperSDLoraLoader -> Scheduler(steps) / TCD(eta) -> SamplerCustom(cfg)
    -> VAEDecode -> SaveImage, every recipe value wired from the loader's outputs."""
    lo = f"lora{tag}"
    nodes.update({
        lo: {"class_type": "HyperSDLoraLoader", "inputs": {
            "model": ["ckpt", 0], "clip": ["ckpt", 1], "lora": label, "download": download,
            **strength_inputs(strength)}},
        f"pos{tag}": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk", "clip": [lo, 1]}},
        f"neg{tag}": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": [lo, 1]}},
        f"latent{tag}": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        f"sched{tag}": {"class_type": "HyperSDScheduler", "inputs": {
            "model": [lo, 0], "steps": [lo, 2], "denoise": 1.0, "start_timestep": 999}},
        f"tcd{tag}": {"class_type": "HyperSDTCDSampler", "inputs": {"eta": [lo, 4]}},
        f"sample{tag}": {"class_type": "SamplerCustom", "inputs": {
            "model": [lo, 0], "add_noise": True, "noise_seed": seed, "cfg": [lo, 3],
            "positive": [f"pos{tag}", 0], "negative": [f"neg{tag}", 0], "sampler": [f"tcd{tag}", 0],
            "sigmas": [f"sched{tag}", 0], "latent_image": [f"latent{tag}", 0]}},
        f"decode{tag}": {"class_type": "VAEDecode", "inputs": {"samples": [f"sample{tag}", 0], "vae": ["ckpt", 2]}},
        f"save{tag}": {"class_type": "SaveImage", "inputs": {"images": [f"decode{tag}", 0],
                                                             "filename_prefix": f"{prefix}{tag}"}},
    })
    return f"save{tag}"


def prompt(ckpt, branches):
    """branches: [(tag, label, strength, download), ...] sharing one checkpoint loader."""
    nodes = {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}}
    saves = [lora_branch(nodes, tag, label, strength, download) for tag, label, strength, download in branches]
    return nodes, saves


def images(server, entry, saves):
    from PIL import Image
    out = []
    for save in saves:
        (img,) = entry["outputs"][save]["images"]
        path = server.base / "output" / img.get("subfolder", "") / img["filename"]
        with Image.open(path) as im:
            out.append(np.asarray(im.convert("RGB"), dtype=np.int16))
    return out


def test_loader_is_listed_with_labels_and_tooltips(comfy_server):
    node = comfy_server.object_info()["HyperSDLoraLoader"]
    assert node["display_name"] == "Hyper-SD LoRA Loader" and node["description"]
    required = node["input"]["required"]
    assert LABEL_4 in required["lora"][0] and LABEL_1 in required["lora"][0]
    assert required["strength"][1]["default"] == 1.0 and required["strength"][1]["min"] <= -1.0
    optional = node["input"]["optional"]
    assert optional["strength_from"][0] == ["recipe", "custom"]
    assert optional["strength_from"][1]["default"] == "recipe"
    assert required["download"][0] == ["if missing", "never"]
    assert node["output"] == ["MODEL", "CLIP", "INT", "FLOAT", "FLOAT"]
    assert all(node["output_tooltips"])
    assert all(spec[1].get("tooltip") for spec in required.values())


def core_lora_prompt(ckpt, name, strength, steps, cfg, eta, prefix):
    """The same graph with ComfyUI's own LoraLoader and explicit recipe values: the reference path."""
    nodes = {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}}
    lora_branch(nodes, "", LABEL_4, 1.0, "never", prefix=prefix)
    nodes["lora"] = {"class_type": "LoraLoader", "inputs": {
        "model": ["ckpt", 0], "clip": ["ckpt", 1], "lora_name": name, "strength_model": strength,
        "strength_clip": strength}}
    nodes["sched"]["inputs"]["steps"] = steps
    nodes["tcd"]["inputs"]["eta"] = eta
    nodes["sample"]["inputs"]["cfg"] = cfg
    return nodes


@pytest.mark.parametrize("strength,expected", [(None, 1.0), (0.5, 0.5)], ids=["recipe", "0.5"])
def test_recipe_graph_equals_core_lora_loader(comfy_server, sd15, lora_files, strength, expected):
    """'SD1.5 · 4 steps' with steps, cfg and eta wired from the loader = core LoraLoader at the same
    strength with the recipe typed in (4 steps, cfg 1, eta 0): the same image, pixel for pixel."""
    nodes, (save,) = prompt(sd15, [("", LABEL_4, strength, "never")])
    entry = comfy_server.run_ok(nodes)
    (img,) = images(comfy_server, entry, [save])
    real_image(img, 256)
    log = comfy_server.log()
    assert f"applied {NAME_4} at strength {expected:g} (recipe: 4 steps, cfg 1, eta 0)" in log
    assert "lora key not loaded" not in log
    core = core_lora_prompt(sd15, NAME_4, expected, steps=4, cfg=1.0, eta=0.0, prefix=f"core-{strength}")
    (ref,) = images(comfy_server, comfy_server.run_ok(core), ["save"])
    assert np.array_equal(img, ref)
    assert comfy_server.alive()


def test_strengths_and_two_loaders_in_one_graph_do_not_leak(comfy_server, sd15, lora_files):
    """Prompt 1 at strength 1.0, prompt 2 at 0.5 (the 0.5 model stays loaded), then one graph with two
    loaders (1.0 and 0.5) from the same checkpoint: each branch gives exactly its single-prompt image."""
    def applied():  # how often the loader really ran at each strength (not served from the cache)
        log = comfy_server.log()
        return [log.count(f"applied {NAME_1} at strength {s} ") for s in ("1", "0.5")]

    before = applied()
    nodes, (save,) = prompt(sd15, [("", LABEL_1, 1.0, "never")])
    (full,) = images(comfy_server, comfy_server.run_ok(nodes), [save])
    nodes, (save,) = prompt(sd15, [("", LABEL_1, 0.5, "never")])
    (half,) = images(comfy_server, comfy_server.run_ok(nodes), [save])
    real_image(full)
    assert np.abs(full - half).max() > 0, "the LoRA strength should change the image"

    nodes, saves = prompt(sd15, [("_a", LABEL_1, 1.0, "if missing"), ("_b", LABEL_1, 0.5, "if missing")])
    both = images(comfy_server, comfy_server.run_ok(nodes), saves)

    assert [a - b for a, b in zip(applied(), before)] == [2, 2]  # both branches ran again
    assert np.array_equal(both[0], full)
    assert np.array_equal(both[1], half)
    assert comfy_server.alive()


def test_file_name_old_recipe_value_and_negative_strength(comfy_server, sd15, lora_files):
    """Through the server's validation: the official file name as the value (API prompts, ComfyUI-Manager's
    model list), strength -1 with strength_from at its default (a workflow saved before strength_from
    existed) = the recipe's 1.0, and a negative custom strength applied as given."""
    log_before = comfy_server.log()
    nodes, saves = prompt(sd15, [("", NAME_4, None, "never"), ("_neg", LABEL_1, -0.5, "never")])
    nodes["lora"]["inputs"]["strength"] = -1.0
    pictures = images(comfy_server, comfy_server.run_ok(nodes), saves)
    log = comfy_server.log()[len(log_before):]
    assert f"applied {NAME_4} at strength 1 (recipe: 4 steps" in log, log[-2000:]
    assert f"applied {NAME_1} at strength -0.5 (recipe" in log, log[-2000:]
    for img in pictures:
        real_image(img, 256)


def test_unknown_lora_value_is_refused_by_validation(comfy_server, sd15):
    nodes, _ = prompt(sd15, [("", "Hyper-SD15-4steps-lora", None, "never")])
    status, body = comfy_server.post("/prompt", {"prompt": nodes})
    assert status == 400, body
    (error,) = body["node_errors"]["lora"]["errors"]
    assert error["type"] == "custom_validation_failed", error
    assert "'Hyper-SD15-4steps-lora' is not an official Hyper-SD LoRA" in error["details"]
    assert "Hyper-SD15-4steps-lora.safetensors" in error["details"] and LABEL_4 in error["details"]
    assert comfy_server.alive()
