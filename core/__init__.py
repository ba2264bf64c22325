"""The pack's pure core: no ComfyUI import, no torch import; testable anywhere.

``catalog`` (the official files and their recipes), ``download`` (find on disk, download from the hub),
``lora_keys`` (LoRA key spellings). The ComfyUI glue lives in ``nodes/``, the sampling math in ``samplers/``.
"""
