"""Hyper-SD for ComfyUI: LoRA loader with the official recipes, TCD sampler, trailing scheduler,
one-step SDXL UNet loader, and stand-ins for two other packs' nodes (ByteDance's
HyperSDXL1StepUnetScheduler, ComfyUI-TCD's TCDModelSamplingDiscrete) when those packs are absent.

ComfyUI imports this folder under its own name: relative imports only. Importing does no I/O beyond
reading the pack's own files (no huggingface_hub, no network). ``web/docs/<node id>.md`` are the nodes'
help pages, which the frontend shows in its node help panel.
"""
import logging

from .nodes import compat, lora, sampling, unet

log = logging.getLogger("HyperSD")

WEB_DIRECTORY = "./web"

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
for _module in (sampling, lora, unet):
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

# Stand-ins only for ids no pack loaded earlier has; a pack loaded later replaces them (logged at start-up).
_compat_classes, _compat_names = compat.mappings()
NODE_CLASS_MAPPINGS.update(_compat_classes)
NODE_DISPLAY_NAME_MAPPINGS.update(_compat_names)
compat.check_replaced_at_startup(list(_compat_classes))

sampling.register_ksampler_names()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
