"""LoRA key spellings: which keys of a file ComfyUI will apply, and renames for the ones it would drop.

Pure Python (no ComfyUI import): works on key names and the key map ComfyUI builds
(``comfy.lora.model_lora_keys_unet`` / ``model_lora_keys_clip``: LoRA base name -> model weight).

ComfyUI 0.3.64 maps diffusers-named UNet attention layers only in the old attention-processor spelling
(``unet.<block>.attn1.processor.to_q``, ``to_out`` without ``.0``) and knows no ``base_model.model.``
prefix for SD1.5/SDXL, so PEFT / newer diffusers files (``unet.<block>.attn1.to_q.lora_A.weight``) lose
every attention layer, with only a "lora key not loaded" log line. ``normalize`` renames such keys to a
spelling ComfyUI applies; ``unmatched`` lists what would still be dropped, so the loader can refuse it.
"""
import re

# Suffixes of the tensors that make up one LoRA layer, in every spelling ComfyUI's adapters read.
_SUFFIXES = (
    ".lora_up.weight", ".lora_down.weight", ".lora_mid.weight",
    ".lora_B.weight", ".lora_A.weight", ".lora_B.default.weight", ".lora_A.default.weight",
    ".lora.up.weight", ".lora.down.weight",
    "_lora.up.weight", "_lora.down.weight", ".lora_linear_layer.up.weight", ".lora_linear_layer.down.weight",
    ".lora_B", ".lora_A",
    ".alpha", ".dora_scale", ".diff", ".diff_b", ".set_weight", ".w_norm", ".b_norm",
)
_PREFIXES = ("base_model.model.unet.", "base_model.model.", "unet.base_model.model.", "unet.")
_ATTN = re.compile(r"\.(to_q|to_k|to_v|to_out)(\.0)?$")
TEXT_ENCODER_PREFIXES = ("lora_te", "text_encoder", "text_encoders.", "te1.", "te2.", "lora_prior_te")


def split(key):
    """(base, suffix) of a LoRA tensor key; suffix '' when the key has no LoRA suffix."""
    for suffix in _SUFFIXES:
        if key.endswith(suffix):
            return key[:-len(suffix)], suffix
    return key, ""


def _candidates(base):
    """Spellings ComfyUI's key map may know for a diffusers/PEFT base name, most literal first."""
    names = [base]
    stripped = base
    for prefix in _PREFIXES:
        if stripped.startswith(prefix):
            stripped = stripped[len(prefix):]
            break
    for name in (stripped, "unet." + stripped):
        names.append(name)
        if _ATTN.search(name):
            names.append(_ATTN.sub(lambda m: ".processor." + m.group(1), name))
    return names


def normalize(keys, key_map):
    """{old key: new key} for the keys whose base ComfyUI does not know but a respelling it does."""
    renames = {}
    for key in keys:
        base, suffix = split(key)
        if not suffix or base in key_map:
            continue
        for name in _candidates(base)[1:]:
            if name in key_map:
                renames[key] = name + suffix
                break
    return renames


def unmatched(keys, key_map):
    """Keys whose layer is not in the key map (ComfyUI would drop them)."""
    return sorted(k for k in keys if split(k)[0] not in key_map)


def is_text_encoder_key(key):
    return key.startswith(TEXT_ENCODER_PREFIXES)
