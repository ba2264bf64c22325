"""What both loaders share: the model family of a loaded ComfyUI model and safe reading of model files."""
import comfy.supported_models
import comfy.utils
from safetensors import safe_open

from ..core import catalog


class ModelFileError(ValueError):
    """A model file that cannot be read (truncated, not safetensors, pickle)."""


_FAMILIES = (
    (comfy.supported_models.SDXL, catalog.SDXL),
    (comfy.supported_models.SD15, catalog.SD15),
    (comfy.supported_models.SD3, catalog.SD3),
    (comfy.supported_models.Flux, catalog.FLUX),
)


def model_family(model):
    """'SD1.5', 'SDXL', 'SD3', 'FLUX.1-dev' from ComfyUI's model config class, else that class's name."""
    config = model.model.model_config
    for cls, family in _FAMILIES:
        if isinstance(config, cls):
            return family
    return type(config).__name__


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
