"""Hyper-SD One-Step UNet Loader: both official one-step SDXL files, wired for one step at t=800.

``Hyper-SDXL-1step-Unet-Comfyui.fp16.safetensors`` is a ComfyUI SDXL checkpoint and
``Hyper-SDXL-1step-Unet.safetensors`` a bare UNet with diffusers key names. The file's header is checked
first (keys and shapes only: nothing is read into memory), then ComfyUI's own loaders load it
(``load_checkpoint_guess_config`` / ``load_diffusion_model``, memory-mapped like CheckpointLoaderSimple and
UNETLoader).
"""
import logging

import comfy.samplers
import comfy.sd
import folder_paths

from ..core import catalog
from . import categories, files
from .modelfiles import ModelFileError, header, model_family
from .sampling import hyper_sd_sigmas, sample_lcm_unit_start

log = logging.getLogger("HyperSD")

NO_BASE = "none"
SDXL_ADM, SDXL_CONTEXT = 2816, 2048


def classify_sdxl(shapes, path):
    """('checkpoint' | 'diffusers-unet', has_clip, has_vae) for an SDXL UNet file, else ModelFileError
    saying what the file is instead."""
    def shape(key):
        return shapes.get(key, ())

    ck = "model.diffusion_model."
    if shape(ck + "label_emb.0.0.weight")[1:] == (SDXL_ADM,) and \
            shape(ck + "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight")[1:] == (SDXL_CONTEXT,):
        has_clip = any(k.startswith("conditioner.embedders.1.") for k in shapes)
        has_vae = any(k.startswith("first_stage_model.") for k in shapes)
        return "checkpoint", has_clip, has_vae
    if shape("add_embedding.linear_1.weight")[1:] == (SDXL_ADM,) and \
            shape("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight")[1:] == (SDXL_CONTEXT,):
        return "diffusers-unet", False, False
    raise ModelFileError(f"[Hyper-SD] {path} is not an SDXL UNet: it looks like {describe(shapes)}. Use one of "
                         f"the official one-step files: " + ", ".join(f.filename for f in catalog.UNETS))


def describe(shapes):
    keys = list(shapes)
    if any("lora" in k for k in keys):
        return "a LoRA"
    ctx = shapes.get("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight") or \
        shapes.get("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight")
    if ctx and ctx[1:] == (768,):
        return "an SD1.5 model (text context 768)"
    if ctx and ctx[1:] == (1024,):
        return "an SD2 model (text context 1024)"
    return f"an unknown model ({len(keys)} tensors, e.g. {', '.join(keys[:3])})"


class HyperSDUNetLoader:
    DESCRIPTION = ("Loads Hyper-SD's one-step SDXL UNet (either official file; found on disk or downloaded) "
                   "and outputs the recipe's SAMPLER and SIGMAS: one step at t=800, equal to diffusers' "
                   "LCMScheduler(timesteps=[800]). Wire MODEL, SAMPLER and SIGMAS into SamplerCustom with cfg 1.")
    CATEGORY = categories.core_category("loaders")
    RETURN_TYPES = ("MODEL", "CLIP", "VAE", "SAMPLER", "SIGMAS")
    OUTPUT_TOOLTIPS = (
        "The one-step SDXL UNet.",
        "The text encoders: from the ComfyUI file itself, or from base_checkpoint for the bare diffusers UNet.",
        "The VAE: from the ComfyUI file itself, or from base_checkpoint for the bare diffusers UNet.",
        "The recipe's sampler: the x0 prediction from diffusers' unit-variance start noise (not TCD's output).",
        "One step: sigma(start_timestep) then 0 (sigma(800), 0 by default).",
    )
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "unet": ([f.label for f in catalog.UNETS], {
                "tooltip": "The official one-step file: the ComfyUI checkpoint (fp16, 6.9 GB, with CLIP and VAE) "
                           "or the diffusers UNet (fp32, 10.3 GB, needs base_checkpoint for CLIP and VAE)."}),
            "download": (files.POLICIES, {"default": files.POLICY_IF_MISSING, "tooltip": files.POLICY_TOOLTIP}),
            "base_checkpoint": ([NO_BASE] + folder_paths.get_filename_list("checkpoints"), {
                "default": NO_BASE,
                "tooltip": "An SDXL base checkpoint to take CLIP and VAE from when the UNet file has none "
                           "(the diffusers file); only its text encoders and VAE are loaded."}),
            "start_timestep": ("INT", {"default": 800, "min": 1, "max": 999,
                                       "tooltip": "The timestep of the single step: 800 is the recipe. For img2img "
                                                  "lower values keep more of the input image."}),
        }}

    def load(self, unet, download, base_checkpoint, start_timestep):
        entry = catalog.lookup(unet)
        path = files.locate(entry, download, also=("checkpoints", "diffusion_models"))
        kind, has_clip, has_vae = classify_sdxl(header(path), path)
        if kind == "checkpoint":
            model, clip, vae = comfy.sd.load_checkpoint_guess_config(
                path, output_vae=has_vae, output_clip=has_clip,
                embedding_directory=folder_paths.get_folder_paths("embeddings"))[:3]
        else:
            model, clip, vae = comfy.sd.load_diffusion_model(path), None, None
        if model_family(model) != catalog.SDXL:
            raise ModelFileError(f"[Hyper-SD] {path} loaded as {model_family(model)}, not SDXL")
        if clip is None or vae is None:
            clip, vae = self._from_base(base_checkpoint, path, clip, vae)
        sigmas = hyper_sd_sigmas(model.get_model_object("model_sampling"), 1, 1.0, start_timestep)
        return (model, clip, vae, comfy.samplers.KSAMPLER(sample_lcm_unit_start), sigmas)

    @staticmethod
    def _from_base(base_checkpoint, path, clip, vae):
        missing = " and ".join(n for n, v in (("CLIP", clip), ("VAE", vae)) if v is None)
        if base_checkpoint == NO_BASE:
            raise ModelFileError(
                f"[Hyper-SD] {path} is a bare UNet: it has no {missing}. Choose an SDXL base checkpoint "
                f"(e.g. sd_xl_base_1.0.safetensors) in base_checkpoint, or use "
                f"{catalog.UNETS[0].filename}, which includes them.")
        base_path = folder_paths.get_full_path_or_raise("checkpoints", base_checkpoint)
        kind, has_clip, has_vae = classify_sdxl(header(base_path), base_path)
        if kind != "checkpoint" or not (has_clip and has_vae):
            raise ModelFileError(f"[Hyper-SD] base_checkpoint {base_path} has no {missing}: choose a full SDXL "
                                 f"checkpoint")
        _, base_clip, base_vae, _ = comfy.sd.load_checkpoint_guess_config(
            base_path, output_vae=True, output_clip=True, output_model=False,
            embedding_directory=folder_paths.get_folder_paths("embeddings"))
        return clip or base_clip, vae or base_vae


NODE_CLASS_MAPPINGS = {"HyperSDUNetLoader": HyperSDUNetLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"HyperSDUNetLoader": "Hyper-SD One-Step UNet Loader"}
