"""One-step SDXL runs for test_unet_loader.py, each in its own process (an SDXL UNet is ~10 GB in fp32 on
the CPU, so the reference and each ComfyUI load run one at a time and give their memory back on exit).

    python sdxl_onestep.py diffusers <diffusers-unet.safetensors> <out.pt>
    python sdxl_onestep.py diffusers-ldm <ComfyUI/ldm checkpoint.safetensors> <out.pt>
    python sdxl_onestep.py comfy <label> <checkpoints dir> <diffusion_models dir> <base ckpt name|none> <out.pt>

Both use the same inputs (``inputs()``): unit noise z (1x4x32x32), text context (1x77x2048), pooled text
(1x1280), size 256 and no crop.
"""
import sys

import torch

SIZE = 256


def inputs():
    g = torch.Generator().manual_seed(1234)
    z = torch.randn(1, 4, SIZE // 8, SIZE // 8, generator=g)
    context = torch.randn(1, 77, 2048, generator=g)
    pooled = torch.randn(1, 1280, generator=g)
    return z, context, pooled


def diffusers_reference(path, out, layout="diffusers"):
    """diffusers' recipe for the file: LCMScheduler, timesteps=[800], guidance 0, from unit noise.

    The weights are loaded by diffusers itself: a diffusers-layout file as is (strict), a ComfyUI/ldm
    checkpoint through diffusers' own single-file converter (``convert_ldm_unet_checkpoint``), so neither
    reference depends on ComfyUI's key map."""
    from diffusers import LCMScheduler, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
    from safetensors import safe_open
    from models import SDXL_UNET_DIFFUSERS
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SDXL_UNET_DIFFUSERS)
    with safe_open(path, framework="pt") as f:
        keys = [k for k in f.keys() if layout == "diffusers" or k.startswith("model.diffusion_model.")]
        sd = {k: f.get_tensor(k).float() for k in keys}
    if layout == "ldm":
        sd = convert_ldm_unet_checkpoint(sd, dict(unet.config))
    unet.load_state_dict(sd, assign=True, strict=True)
    del sd
    unet.eval()
    sch = LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    sch.set_timesteps(timesteps=[800])
    z, context, pooled = inputs()
    time_ids = torch.tensor([[SIZE, SIZE, 0, 0, SIZE, SIZE]], dtype=torch.float32)
    with torch.no_grad():
        t = sch.timesteps[0]
        eps = unet(z, t, encoder_hidden_states=context,
                   added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
        x = sch.step(eps, t, z).prev_sample
    torch.save(x, out)


def comfy_onestep(label, ckpt_dir, unet_dir, base, out):
    """The pack's node in an in-process ComfyUI: load, then SamplerCustom's path with the node's outputs."""
    import conftest  # noqa: F401  (registers the hypersd_pack package; this script's folder is sys.path[0])
    from host import import_comfy
    pack = import_comfy()
    import comfy.sample
    import comfy.samplers
    import folder_paths
    exts = folder_paths.supported_pt_extensions
    folder_paths.folder_names_and_paths["checkpoints"] = ([ckpt_dir], exts)
    folder_paths.folder_names_and_paths["diffusion_models"] = ([unet_dir], exts)
    model, clip, vae, sampler, sigmas = pack.nodes.unet.HyperSDUNetLoader().load(label, "never", base, 800)
    assert clip is not None and vae is not None
    z, context, pooled = inputs()
    cond = [[context, {"pooled_output": pooled, "width": SIZE, "height": SIZE, "crop_w": 0, "crop_h": 0,
                       "target_width": SIZE, "target_height": SIZE}]]
    calls = []
    unet = model.model.diffusion_model
    unet.register_forward_hook(lambda *a: calls.append(1))
    latent = comfy.sample.sample_custom(model, z, 1.0, sampler, sigmas, cond, cond, torch.zeros_like(z), seed=0,
                                        disable_pbar=True)
    ours_calls = len(calls)
    core = comfy.sample.sample_custom(model, z, 1.0, comfy.samplers.sampler_object("lcm"), sigmas, cond, cond,
                                      torch.zeros_like(z), seed=0, disable_pbar=True)
    torch.save({"x": model.model.process_latent_in(latent), "calls": ours_calls,
                "core_lcm": model.model.process_latent_in(core),
                "sigmas": sigmas, "dtype": str(next(unet.parameters()).dtype)}, out)


if __name__ == "__main__":
    if sys.argv[1] == "diffusers":
        diffusers_reference(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "diffusers-ldm":
        diffusers_reference(sys.argv[2], sys.argv[3], layout="ldm")
    else:
        comfy_onestep(*sys.argv[2:7])
