"""What both loaders share: the model family of a loaded ComfyUI model and safe reading of model files."""
import comfy.supported_models
import comfy.utils
from safetensors import safe_open

from ..core import catalog


class ModelFileError(ValueError):
    """A model file that cannot be read (truncated, not safetensors, pickle)."""


def _host_class(name):
    """A model-config class of ``comfy.supported_models``, or None on a host that does not have it."""
    return getattr(comfy.supported_models, name, None)


#: Models ComfyUI loads with a subclass of a Hyper-SD family's class (SSD-1B, Vega and KOALA are SDXL
#: subclasses; schnell, Fill and FLUX.2 Flux subclasses), most specific first, by their usual names.
_NAMED = (("SSD1B", "SSD-1B"), ("Segmind_Vega", "Segmind Vega"), ("KOALA_700M", "KOALA-700M"),
          ("KOALA_1B", "KOALA-1B"), ("SDXLRefiner", "SDXL Refiner"), ("FluxSchnell", "FLUX.1-schnell"),
          ("FluxInpaint", "FLUX.1 Fill"), ("Flux2", "FLUX.2"))
#: The Hyper-SD families: exactly these classes. A subclass a newer host adds is another model (0.33's Flux2
#: subclasses Flux), refused until it is named here or in _NAMED.
_FAMILY_CLASSES = (("SD15", catalog.SD15), ("SDXL", catalog.SDXL), ("SD3", catalog.SD3), ("Flux", catalog.FLUX))

_SDXL_DISTILLED = ("an SDXL distillation with fewer transformer blocks, which ComfyUI runs with SDXL's classes; "
                   "the Hyper-SDXL LoRAs were trained on SDXL base 1.0's full layout, so part of each file has no "
                   "layer to patch in it and no official Hyper-SD file fits it. Load SDXL base 1.0 (or a full "
                   "SDXL fine-tune) to use the SDXL files")
_SD35 = ("the Hyper-SD3 files are LoRAs for SD3 Medium (MMDiT depth 24, width 1536) and their layer shapes "
         "differ on {name} ({detail}). Load SD3 Medium (sd3_medium_incl_clips_t5xxlfp8.safetensors) to use them")

#: What to say about a model no official file fits, by the name model_family gives it.
HINTS = {
    "SSD-1B": _SDXL_DISTILLED, "Segmind Vega": _SDXL_DISTILLED, "KOALA-700M": _SDXL_DISTILLED,
    "KOALA-1B": _SDXL_DISTILLED,
    "SDXL Refiner": "the refiner is not a base model; load SDXL base 1.0 for the SDXL files",
    "FLUX.1-schnell": ("FLUX.1-schnell has no guidance embedding, which the Hyper-FLUX files patch: they are "
                       "LoRAs for FLUX.1-dev (flux1-dev.safetensors); schnell itself already runs in 1-4 steps"),
    "FLUX.1 Fill": ("FLUX.1 Fill-dev's input layer takes the mask and image channels, so the Hyper-FLUX files (LoRAs "
                    "for FLUX.1-dev, flux1-dev.safetensors) do not fit it"),
    "FLUX.2": ("FLUX.2 is a new architecture (ComfyUI's Flux2 class), not FLUX.1: no official Hyper-SD file is for "
               "it (the Hyper-FLUX files are LoRAs for FLUX.1-dev, flux1-dev.safetensors), and its schedule is its own "
               "(core's Flux2Scheduler)"),
    "SD3.5 Large": _SD35, "SD3.5 Medium": _SD35, "SD3.5": _SD35,
}


def _sd3_variant(unet_config):
    """'SD3' (SD3 Medium layout) or the SD3.5 model ComfyUI loads with the same SD3 class."""
    depth = unet_config.get("depth", 0)
    if unet_config.get("x_block_self_attn_layers"):
        return "SD3.5 Medium"
    if unet_config.get("qk_norm") is not None:
        return "SD3.5 Large" if depth >= 38 else "SD3.5"
    return catalog.SD3


def model_family(model):
    """The loaded model by ComfyUI's model config: 'SD1.5', 'SDXL', 'SD3', 'FLUX.1-dev' (the catalog's
    families) or another name ('FLUX.2', 'FLUX.1-schnell', 'SD3.5 Large', 'SSD-1B' ...; for a class this
    module does not know, ComfyUI's class name)."""
    config = model.model.model_config
    for name, family in _NAMED:
        cls = _host_class(name)
        if cls is not None and isinstance(config, cls):
            return family
    for name, family in _FAMILY_CLASSES:
        if type(config) is _host_class(name):
            return _sd3_variant(config.unet_config) if family == catalog.SD3 else family
    return type(config).__name__


def describe(model):
    """A short description of the loaded model for messages: its name and, for transformers, its size."""
    family = model_family(model)
    config = model.model.model_config.unet_config
    if "depth" in config and "hidden_size" in config:  # FLUX
        return f"{family} ({config['depth']} double + {config.get('depth_single_blocks', 0)} single blocks)"
    if "depth" in config:  # MMDiT
        return f"{family} (MMDiT depth {config['depth']}, width {64 * config['depth']})"
    return family


def family_hint(family, model):
    """The fix for a model no official file fits (None when the family has its own files)."""
    hint = HINTS.get(family)
    if hint is None:
        if family in catalog.FAMILIES:
            return None
        return (f"no official Hyper-SD file is for this model (ComfyUI's "
                f"{type(model.model.model_config).__name__} class); the files are for "
                f"{', '.join(catalog.FAMILIES)}")
    return hint.format(name=family, detail=describe(model))


def read_safetensors(path):
    """ComfyUI's own loader, with a typed error naming the file when it is not a readable safetensors."""
    if not str(path).lower().endswith(".safetensors"):
        raise ModelFileError(f"[Hyper-SD] {path} is not a .safetensors file; only official .safetensors files "
                             f"are loaded (never pickles)")
    try:
        return comfy.utils.load_torch_file(str(path), safe_load=True)
    except Exception as e:  # safetensors raises its own error types; re-raise one naming the file
        raise ModelFileError(
            f"[Hyper-SD] cannot read {path}: {type(e).__name__}: {e}. The file is truncated or not a "
            f"safetensors file; delete it and download it again (download policy 'if missing').") from e


def header(path):
    """{key: shape} of a safetensors file, from its header only; ModelFileError naming the file otherwise."""
    if not str(path).lower().endswith(".safetensors"):
        raise ModelFileError(f"[Hyper-SD] {path} is not a .safetensors file (pickles are never loaded)")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors' own error types
        raise ModelFileError(f"[Hyper-SD] cannot read {path}: {type(e).__name__}: {e}. The file is truncated or "
                             f"not a safetensors file; delete it and download it again.") from e
