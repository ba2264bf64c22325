"""Hyper-SD LoRA Loader: the official file by its label, its recipe as outputs, and a fit check.

Loading is ComfyUI's own (``comfy.utils.load_torch_file`` + ``comfy.sd.load_lora_for_models``); this node
only (1) finds or downloads the file, (2) refuses a file that does not fit the model, by family and by
keys/shapes, instead of ComfyUI's silent "lora key not loaded", and (3) respells PEFT/diffusers keys that
core would drop (see lora_keys.py).
"""
import logging
import math
import os
import weakref

import comfy.lora
import comfy.lora_convert
import comfy.sd
import comfy.utils

from ..core import catalog, download as downloads, lora_keys
from . import categories, files
from .modelfiles import ModelFileError, describe, family_hint, model_family, read_safetensors  # noqa: F401

log = logging.getLogger("HyperSD")


class LoraMismatchError(ValueError):
    """The LoRA does not fit the model (wrong family, foreign keys or shapes)."""


def _few(keys, n=5):
    keys = list(keys)
    return ", ".join(keys[:n]) + (f" ... ({len(keys)} in all)" if len(keys) > n else "")


_UP_TO_DOWN = {  # the up/down tensor pair of one LoRA layer, in every spelling lora_keys knows
    ".lora_up.weight": ".lora_down.weight", ".lora_B.weight": ".lora_A.weight",
    ".lora_B.default.weight": ".lora_A.default.weight", ".lora_B": ".lora_A",
    ".lora.up.weight": ".lora.down.weight", "_lora.up.weight": "_lora.down.weight",
    ".lora_linear_layer.up.weight": ".lora_linear_layer.down.weight",
}


def _weight_shape(target, model, clip):
    root = model.model if target.startswith("diffusion_model.") else getattr(clip, "cond_stage_model", None)
    try:
        return tuple(comfy.utils.get_attr(root, target).shape)
    except AttributeError:
        return None


def _target(value):
    """(weight name, (dim, offset, size) or None) of a key-map value: a name, or ComfyUI's tuple for a slice of
    a fused weight (FLUX/SD3 q/k/v in qkv, proj_mlp in linear1) or a reordered one (norm_out's scale/shift)."""
    if isinstance(value, str):
        return value, None
    return value[0], (value[1] if len(value) > 1 else None)


def _shape_mismatches(lora, key_map, model, clip):
    """Layers whose up @ down would not fit the weight, or the slice of a fused weight, they map to, and layers
    mapped to a weight the model does not have (ComfyUI would only log either)."""
    bad = []
    for key, up in lora.items():
        base, suffix = lora_keys.split(key)
        down = lora.get(base + _UP_TO_DOWN.get(suffix, "\0"))
        if down is None or base not in key_map:
            continue
        name, offset = _target(key_map[base])
        weight = _weight_shape(name, model, clip)
        if weight is None:
            bad.append(f"{base} (maps to {name}, which this model does not have)")
            continue
        if offset is not None:
            dim, start, size = offset
            if start + size > weight[dim]:
                bad.append(f"{base} (slice {start}:{start + size} of {name} {weight})")
                continue
            weight = weight[:dim] + (size,) + weight[dim + 1:]
        if up.shape[0] != weight[0] or math.prod(down.shape[1:]) != math.prod(weight[1:]):
            where = name if offset is None else f"{name}[{offset[1]}:{offset[1] + offset[2]}]"
            bad.append(f"{base} ({tuple(up.shape)} @ {tuple(down.shape)} vs {where} {weight})")
    return bad


_KEY_MAPS = weakref.WeakKeyDictionary()  # module -> its LoRA key map (fixed for a loaded model)


def _key_map(module, build):
    """ComfyUI's LoRA key map of a diffusion model or text encoder, built once per loaded module."""
    key_map = _KEY_MAPS.get(module)
    if key_map is None:
        key_map = _KEY_MAPS[module] = build(module, {})
    return key_map


def prepare_lora(lora, model, clip, path, family):
    """Respell the keys core would drop, then refuse anything that would still not be applied."""
    key_map = dict(_key_map(model.model, comfy.lora.model_lora_keys_unet))
    if clip is not None:
        key_map.update(_key_map(clip.cond_stage_model, comfy.lora.model_lora_keys_clip))
    lora = comfy.lora_convert.convert_lora(lora)
    renames = lora_keys.normalize(lora.keys(), key_map)
    if renames:
        log.info("[Hyper-SD] %s: respelled %d PEFT/diffusers keys that ComfyUI would drop", path, len(renames))
        lora = {renames.get(k, k): v for k, v in lora.items()}
    missing = lora_keys.unmatched(lora.keys(), key_map)
    if clip is None:
        text_keys = [k for k in missing if lora_keys.is_text_encoder_key(k)]
        if text_keys:
            log.warning("[Hyper-SD] %s has %d text-encoder keys; connect 'clip' to apply them", path, len(text_keys))
            missing = [k for k in missing if k not in set(text_keys)]
            lora = {k: v for k, v in lora.items() if k not in set(text_keys)}
    if missing:
        raise LoraMismatchError(
            f"[Hyper-SD] {path} does not fit this {family} model: {len(missing)} of its {len(lora)} keys match "
            f"no layer ({_few(missing)}). It is not a {family} LoRA, or the file is damaged: choose the "
            f"Hyper-SD file for {family}, or re-download it.")
    bad = _shape_mismatches(lora, key_map, model, clip)
    if bad:
        raise LoraMismatchError(f"[Hyper-SD] {path} does not fit this {family} model: layer shapes differ "
                                f"({_few(bad, 3)}). Choose the Hyper-SD file for {family}.")
    return lora


# The loader's choices are a public interface: workflows save the label (widgets_values), API prompts the
# label or the official file name. Never rename a label; tests/test_lora_loader.py pins the list.
LORA_LABELS = [f.label for f in catalog.LORAS]
STRENGTH_MAX = 4.0
STRENGTH_RECIPE, STRENGTH_CUSTOM = "recipe", "custom"
# Appended after 'download': workflows saved before it existed (3 widgets: label, strength -1, download)
# load with its default 'recipe', which is what their -1 meant.
STRENGTH_FROM = [STRENGTH_RECIPE, STRENGTH_CUSTOM]
# Each label's recipe, sent with the 'lora' input's options (object_info): web/js/hypersd.js shows the recipe's
# strength in the strength widget while strength_from is 'recipe'.
RECIPES = {f.label: {"file": f.filename, "family": f.family, "strength": f.strength, "steps": f.steps, "cfg": f.cfg,
                     "eta": f.eta, "spacing": f.spacing} for f in catalog.LORAS}


def _strength_from(strength, strength_from):
    """``strength_from`` None is an API prompt written before the choice existed: -1 then meant the recipe."""
    if strength_from is None:
        return STRENGTH_RECIPE if strength == -1.0 else STRENGTH_CUSTOM
    return strength_from


def resolve_strength(entry, strength, strength_from):
    """The strength to apply: the recipe's, or the custom value as given (negative values included)."""
    strength_from = _strength_from(strength, strength_from)
    if strength_from == STRENGTH_CUSTOM:
        return float(strength)
    if strength_from != STRENGTH_RECIPE:
        raise ValueError(f"[Hyper-SD] strength_from={strength_from!r}: choose 'recipe' or 'custom'")
    if strength not in (-1.0, 1.0, entry.strength):
        log.warning("[Hyper-SD] strength %g is ignored: strength_from is 'recipe' (%g for %s); set strength_from "
                    "to 'custom' to apply %g", strength, entry.strength, entry.filename, strength)
    return entry.strength


def _family_message(entry, family, model):
    head = f"[Hyper-SD] '{entry.label}' ({entry.filename}) is a {entry.family} LoRA but the model is "
    hint = family_hint(family, model)
    if hint is not None:
        return f"{head}{describe(model)}: {hint}."
    return f"{head}{family}: choose a Hyper-SD LoRA for {family}, or load a {entry.family} checkpoint."


def locate_with_origin(entry, policy):
    """(path, 'found' or 'downloaded'): the file on disk, else fetched by files.locate (one walk on a hit)."""
    found = downloads.find_local(entry.filename, files.model_folders(entry.folder))
    if found is not None:
        return found, "found"
    return files.locate(entry, policy), "downloaded"


def file_layers(keys):
    """(diffusion model layers, text-encoder layers) of a LoRA file: its up/down pairs, by key."""
    unet = text = 0
    for key in keys:
        if lora_keys.split(key)[1] in _UP_TO_DOWN:
            if lora_keys.is_text_encoder_key(key):
                text += 1
            else:
                unet += 1
    return unet, text


def patches_added(before, after):
    """Patches ``after`` (a patched clone) holds beyond ``before``'s: one per LoRA layer the ModelPatcher really
    took (a slice of a fused weight counts once each; keys the model's state dict lacks are never added)."""
    if before is None or after is None:
        return 0
    old = before.patches
    return sum(max(0, len(v) - len(old.get(k, ()))) for k, v in after.patches.items())


def summary(entry, path, origin, strength, strength_from, family, layers, applied, clip_connected):
    """What the loader did, for the node's ``ui`` output (shown on the node by web/js/hypersd.js)."""
    recipe = strength_from != STRENGTH_CUSTOM
    data = {
        "file": entry.filename, "path": str(path), "origin": origin, "folder": os.path.dirname(os.fspath(path)),
        "strength": strength, "strength_from": STRENGTH_RECIPE if recipe else STRENGTH_CUSTOM,
        "recipe_strength": entry.strength, "family": family,
        "model_layers": [applied[0], layers[0]], "text_encoder_layers": [applied[1], layers[1]],
        "clip_connected": clip_connected, "part": "transformer" if family in (catalog.SD3, catalog.FLUX) else "UNet",
        "recipe": {"steps": entry.steps, "cfg": entry.cfg, "eta": entry.eta, "spacing": entry.spacing},
    }
    data["text"] = summary_text(data)
    return data


def summary_text(d):
    where = "found in" if d["origin"] == "found" else "downloaded into"
    if d["strength_from"] == STRENGTH_RECIPE:
        strength = f"strength {d['strength']:g} (the recipe's)"
    else:
        same = " = the recipe's" if d["strength"] == d["recipe_strength"] else f"; the recipe's is {d['recipe_strength']:g}"
        strength = f"strength {d['strength']:g} (custom{same})"
    done, total = d["model_layers"]
    lines = [d["file"], f"{where} {d['folder']}", strength, f"{d['part']}: {done} of {total} layers patched"]
    done, total = d["text_encoder_layers"]
    if total:
        lines.append(f"text encoder: {done} of {total} layers patched" if d["clip_connected"] else
                     f"text encoder: {total} layers not applied (no clip connected)")
    r = d["recipe"]
    lines.append(f"recipe out: {r['steps']} steps, cfg {r['cfg']:g}, eta {r['eta']:g}, spacing {r['spacing']}")
    return "\n".join(lines)


STRENGTH_TOOLTIP = (
    "LoRA strength, applied when strength_from is 'custom' (negative values invert the LoRA); with 'recipe' it "
    "shows the recipe's strength. The SD3 and FLUX files are applied at 0.125, the small scale the model card "
    "gives for them (1.0 would add 8 times that change). On fine-tuned SDXL checkpoints try 'custom' 0.7 to 0.8 "
    "when images look burnt or over-smoothed.")


class HyperSDLoraLoader:
    DESCRIPTION = ("Loads an official Hyper-SD LoRA by name, finding it in your loras folders or downloading "
                   "it from ByteDance/Hyper-SD, checks that it fits the model, and outputs the file's recipe "
                   "(steps, cfg, eta) to wire into the Hyper-SD Scheduler and TCD Sampler. After a run the node "
                   "shows the file and where it came from, the strength applied, the layers patched out of the "
                   "file's and the recipe.")
    CATEGORY = categories.core_category("loaders")
    RETURN_TYPES = ("MODEL", "CLIP", "INT", "FLOAT", "FLOAT")
    RETURN_NAMES = ("MODEL", "CLIP", "steps", "cfg", "eta")
    OUTPUT_TOOLTIPS = (
        "The model with the Hyper-SD LoRA applied.",
        "The CLIP with the LoRA's text-encoder layers applied (unchanged when the file has none; None when "
        "no clip was connected).",
        "The recipe's step count: wire into the Hyper-SD Scheduler's steps.",
        "The recipe's cfg: 1.0 (no negative prompt) except for the CFG LoRAs (5 for SD1.5/SDXL, 3/5/7 for "
        "SD3); wire into SamplerCustom's or KSampler's cfg.",
        "The recipe's TCD eta: 1.0 for the unified 1-step LoRAs, 0 (DDIM trailing / Euler) otherwise; wire "
        "into the Hyper-SD TCD Sampler's eta.",
    )
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The base model: SD1.5, SDXL, SD3 medium or FLUX.1-dev, matching "
                                               "the LoRA."}),
                "lora": (LORA_LABELS, {
                    "default": "SDXL · 4 steps",
                    "tooltip": "The official Hyper-SD LoRA (file name in the README). Unified = one file for "
                               "1-8 steps with the TCD sampler; CFG = keeps negative prompts (cfg 5-8). API "
                               "prompts may also give the official file name, e.g. "
                               "Hyper-SDXL-4steps-lora.safetensors.",
                    "hypersd_recipes": RECIPES}),
                "strength": ("FLOAT", {"default": 1.0, "min": -STRENGTH_MAX, "max": STRENGTH_MAX, "step": 0.005,
                                       "tooltip": STRENGTH_TOOLTIP}),
                "download": (files.POLICIES, {"default": files.POLICY_IF_MISSING, "tooltip": files.POLICY_TOOLTIP}),
            },
            "optional": {
                "clip": ("CLIP", {"tooltip": "Optional: the text encoder, patched too when the file has "
                                             "text-encoder layers."}),
                "strength_from": (STRENGTH_FROM, {
                    "default": STRENGTH_RECIPE,
                    "tooltip": "'recipe' = the file's own strength: 1.0, or 0.125 for the SD3 and FLUX LoRAs "
                               "(the strength widget then shows it; typing another value switches to 'custom'); "
                               "'custom' = the strength widget's value. API prompts without it: strength -1 = "
                               "recipe, any other value = custom."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, lora=None):
        """Accept a label or an official LoRA file name (API prompts, ComfyUI-Manager's model list). A linked
        value is not known at validation (lora None): load() refuses a wrong one with the same list."""
        if lora is None or lora in catalog.BY_LABEL or lora in catalog.BY_FILENAME:
            entry = catalog.BY_LABEL.get(lora) or catalog.BY_FILENAME.get(lora)
            if entry is None or entry.folder == "loras":
                return True
        return (f"[Hyper-SD] '{lora}' is not an official Hyper-SD LoRA: give one of the labels "
                f"({', '.join(LORA_LABELS)}) or one of the file names "
                f"({', '.join(f.filename for f in catalog.LORAS)})")

    def apply(self, model, lora, strength, download, clip=None, strength_from=None):
        """The node's function: ``load``, plus what it did, shown on the node (its ``ui`` output)."""
        result, info = self._load(model, lora, strength, download, clip, strength_from)
        return {"ui": {"hypersd_lora": [info]}, "result": result}

    def load(self, model, lora, strength, download, clip=None, strength_from=None):
        """(MODEL, CLIP, steps, cfg, eta): the loader as a function."""
        return self._load(model, lora, strength, download, clip, strength_from)[0]

    def _load(self, model, lora, strength, download, clip, strength_from):
        entry = catalog.BY_LABEL.get(lora) or catalog.BY_FILENAME.get(lora)
        if entry is None or entry.folder != "loras":
            raise KeyError(self.VALIDATE_INPUTS(lora))
        family = model_family(model)
        if family != entry.family:
            raise LoraMismatchError(_family_message(entry, family, model))
        applied_strength = resolve_strength(entry, strength, strength_from)
        path, origin = locate_with_origin(entry, download)
        raw = read_safetensors(path)
        lora_sd = prepare_lora(raw, model, clip, path, family)
        model_out, clip_out = comfy.sd.load_lora_for_models(model, clip, lora_sd, applied_strength, applied_strength)
        applied = (patches_added(model, model_out),
                   patches_added(getattr(clip, "patcher", None), getattr(clip_out, "patcher", None)))
        info = summary(entry, path, origin, applied_strength, _strength_from(strength, strength_from), family,
                       file_layers(raw), applied, clip is not None)
        log.info("[Hyper-SD] applied %s at strength %g (recipe: %d steps, cfg %g, eta %g): %s %d of %d layers, "
                 "text encoder %d of %d", entry.filename, applied_strength, entry.steps, entry.cfg, entry.eta,
                 info["part"], *info["model_layers"], *info["text_encoder_layers"])
        return (model_out, clip_out if clip is not None else None, entry.steps, entry.cfg, entry.eta), info


NODE_CLASS_MAPPINGS = {"HyperSDLoraLoader": HyperSDLoraLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"HyperSDLoraLoader": "Hyper-SD LoRA Loader"}
