"""Hyper-SD for ComfyUI: LoRA loader with the official recipes, TCD sampler, trailing scheduler,
one-step SDXL UNet loader.

ComfyUI imports this folder under its own name: relative imports only. Importing does no I/O beyond
reading the pack's own files (no huggingface_hub, no network).
"""
import logging

from .nodes import lora, sampling, unet

log = logging.getLogger("HyperSD")

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
for _module in (sampling, lora, unet):
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

sampling.register_ksampler_names()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
