"""ComfyUI glue for the Hyper-SD pack.

Modules that import ComfyUI (``sampling``, ``lora``, ``unet``) are imported by the pack's ``__init__``;
``catalog`` and ``download`` import without ComfyUI.
"""
