"""ComfyUI glue for the Hyper-SD pack: the node classes and what touches ComfyUI (model folders, progress,
model classes). The pure parts they use live in ``core/`` (catalog, downloads, LoRA keys) and
``samplers/`` (the math); both import without ComfyUI.
"""
