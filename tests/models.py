"""Random-weight, correctly shaped SD1.5 / SDXL model files for the tests.

No model weights can be downloaded on the test machines, so the tests use files that have the exact key
layout, shapes and dtypes of real checkpoints but seeded random values.  Real ComfyUI detects them as
``SD15`` / ``SDXL`` and runs them: the outputs are noise, but finite noise.

Public API (every function returns a :class:`pathlib.Path` to a ``.safetensors`` file):

``sd15_checkpoint()``
    Full SD1.5 checkpoint (UNet + CLIP-L + VAE) in the ComfyUI/ldm key layout, fp16, ~2.1 GB.
``sdxl_checkpoint()``
    Full SDXL checkpoint (UNet + CLIP-L + CLIP-G + VAE) in the ComfyUI/sgm key layout, fp16, ~6.9 GB.
``sdxl_unet_diffusers()``
    A random SDXL UNet in diffusers' own key layout (from diffusers' ``UNet2DConditionModel``) and fp32,
    like the official ``Hyper-SDXL-1step-Unet.safetensors``; ~10.3 GB.
``sdxl_unet_comfy_checkpoint()``
    Stand-in for the official ``Hyper-SDXL-1step-Unet-Comfyui.fp16.safetensors`` (a full ComfyUI SDXL
    checkpoint): the same file as ``sdxl_checkpoint()``.

Files are cached in ``$HYPERSD_TEST_CACHE`` (default ``~/.cache/hypersd-pack-tests``) and reused when
present; they are written to a temporary file and ``os.replace``-d into place, under a per-file lock, so
an interrupted or concurrent build never leaves a partial file behind.  The file names carry the seed
and :data:`GENERATOR_VERSION`; bump the latter whenever the generated values or layout change.

How the layouts are obtained: ComfyUI itself (imported at run time, never copied) is asked for them.
The UNet config of the original model (the ldm/sgm yaml values) goes through
``comfy.model_detection.convert_config`` and ``model_config_from_unet_config``; the UNet, the text
encoder(s) of the model config's ``clip_target()`` and the VAE (``comfy.ldm.models.autoencoder.
AutoencoderKL``) are instantiated on the ``meta`` device (names and shapes, no memory), and
``BaseModel.state_dict_for_saving`` (``saved_state_dict``) gives the checkpoint key layout, exactly what
ComfyUI's own CheckpointSave writes.  The layout is checked with ``comfy.model_detection.
model_config_from_unet`` before anything is written.  Each tensor is then generated on its own and
streamed into a safetensors file written by :func:`_write_safetensors` (the format is a JSON header plus
raw little-endian bytes), so peak memory is one tensor, not the whole model.

Values: every tensor is drawn from its own ``torch.Generator`` seeded from ``(seed, key name)``, so the
values are deterministic and independent of key order.  Weights and biases ~ N(0, 0.02); 1-D ``*.weight``
tensors (all of them are GroupNorm/LayerNorm scales in these models) ~ 1 + N(0, 0.02);
``*.position_ids`` = ``arange``; ``*.logit_scale`` = ln(100).  With this scale the UNet predicts O(1),
finite noise at every step and the VAE decodes to finite values.

The ComfyUI modules are imported lazily: ComfyUI must be importable (its folder on ``sys.path``).  If
``comfy.model_management`` has not been imported yet and CUDA is unavailable, ``comfy.cli_args.args.cpu``
is set first, as ``main.py --cpu`` would, since ComfyUI otherwise fails to import on CPU-only torch.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import struct
import sys
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

__all__ = [
    "DEFAULT_SEED",
    "GENERATOR_VERSION",
    "cache_dir",
    "import_comfy",
    "sd15_checkpoint",
    "sdxl_checkpoint",
    "sdxl_unet_diffusers",
    "sdxl_unet_comfy_checkpoint",
    "checkpoint_layout",
    "path_of",
    "random_tensor",
    "read_safetensors_header",
    "meta_state_dict",
    "main",
]

DEFAULT_SEED = 0
#: Part of every cache file name; bump it when the generated layout or values change.
GENERATOR_VERSION = 1

WEIGHT_STD = 0.02
UNET_PREFIX = "model.diffusion_model."

#: UNet hyper-parameters of the original models, as in their ldm/sgm yaml configs (v1-inference.yaml,
#: sd_xl_base.yaml), plus the keys that ComfyUI's detection adds; ``convert_config`` expands them.
_UNET_CONFIGS = {
    "SD15": {
        "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
        "adm_in_channels": None, "in_channels": 4, "out_channels": 4, "model_channels": 320,
        "num_res_blocks": 2, "channel_mult": [1, 2, 4, 4], "attention_resolutions": [4, 2, 1],
        "transformer_depth": 1, "context_dim": 768, "use_linear_in_transformer": False,
        "use_temporal_resblock": False, "use_temporal_attention": False,
    },
    "SDXL": {
        "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
        "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4, "out_channels": 4,
        "model_channels": 320, "num_res_blocks": 2, "channel_mult": [1, 2, 4],
        "attention_resolutions": [4, 2], "transformer_depth": [1, 2, 10], "context_dim": 2048,
        "use_linear_in_transformer": True, "use_temporal_resblock": False,
        "use_temporal_attention": False,
    },
}

#: The SD1.x/SDXL VAE (both use the same AutoencoderKL architecture; only the weights differ).
_VAE_DDCONFIG = {
    "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
    "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0,
}
_VAE_EMBED_DIM = 4

# (shape, torch dtype) per key; values are produced later, tensor by tensor.
Layout = Dict[str, Tuple[Tuple[int, ...], "object"]]


# --------------------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------------------

def cache_dir() -> Path:
    """The cache folder: ``$HYPERSD_TEST_CACHE`` or ``~/.cache/hypersd-pack-tests`` (created)."""
    path = Path(os.environ.get("HYPERSD_TEST_CACHE") or Path.home() / ".cache" / "hypersd-pack-tests")
    path = path.expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _locked(path: Path):
    """Hold an exclusive lock on ``<path>.lock`` (serialises concurrent builds of the same file)."""
    lock_path = path.with_name(".{}.lock".format(path.name))
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cached(path: Path, build: Callable[[Path], None]) -> Path:
    """Return ``path``; if it does not exist, ``build(tmp)`` then atomically rename ``tmp`` to it."""
    if path.exists():
        return path
    with _locked(path):
        if path.exists():  # built by a concurrent process while we waited
            return path
        tmp = path.with_name(".{}.{}.tmp".format(path.name, os.getpid()))
        try:
            build(tmp)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return path


# --------------------------------------------------------------------------------------------------
# safetensors streaming I/O
# --------------------------------------------------------------------------------------------------

def _st_dtype_names():
    import torch
    return {
        torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64",
        torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
        torch.uint8: "U8", torch.bool: "BOOL",
    }


def _write_safetensors(path: Path, layout: Layout, make: Callable[[str], "object"],
                       metadata: Optional[Dict[str, str]] = None) -> None:
    """Write a safetensors file whose tensors are produced one at a time by ``make(name)``.

    ``layout`` gives every tensor's shape and dtype up front (the header precedes the data); ``make``
    must return a tensor of exactly that shape and dtype (or a ``bytes`` object of the right length).
    Only one tensor is in memory at a time.  Tensors are stored in sorted key order.
    """
    import torch
    names = _st_dtype_names()
    header = {}
    offset = 0
    order = sorted(layout)
    for key in order:
        shape, dtype = layout[key]
        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        header[key] = {"dtype": names[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned, as safetensors itself does
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for key in order:
            begin, end = header[key]["data_offsets"]
            value = make(key)
            if isinstance(value, (bytes, bytearray, memoryview)):
                data = value
            else:
                shape, dtype = layout[key]
                if tuple(value.shape) != tuple(shape) or value.dtype != dtype:
                    raise ValueError("{}: made {} {}, layout says {} {}".format(
                        key, tuple(value.shape), value.dtype, tuple(shape), dtype))
                data = memoryview(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
            if len(data) != end - begin:
                raise ValueError("{}: {} bytes, expected {}".format(key, len(data), end - begin))
            fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def read_safetensors_header(path) -> Tuple[dict, int]:
    """Return ``(header, data_start)`` of a safetensors file without reading its tensors.

    ``header`` maps key -> ``{"dtype", "shape", "data_offsets"}`` (plus ``"__metadata__"`` if present);
    a tensor's bytes are at ``data_start + data_offsets[0] .. data_start + data_offsets[1]``.
    """
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    return header, 8 + size


def meta_state_dict(header: dict) -> dict:
    """Meta-device tensors with the header's shapes/dtypes: enough for ComfyUI's model detection."""
    import torch
    by_name = {v: k for k, v in _st_dtype_names().items()}
    return {k: torch.empty(v["shape"], dtype=by_name[v["dtype"]], device="meta")
            for k, v in header.items() if k != "__metadata__"}


# --------------------------------------------------------------------------------------------------
# ComfyUI: layouts
# --------------------------------------------------------------------------------------------------

def import_comfy():
    """Import the ComfyUI modules used here (forcing CPU mode first when CUDA is unavailable)."""
    import torch
    if "comfy.model_management" not in sys.modules and not torch.cuda.is_available():
        import comfy.cli_args
        comfy.cli_args.args.cpu = True
    import comfy.model_detection
    import comfy.ldm.models.autoencoder
    import comfy.utils
    return comfy


def saved_state_dict(model, clip_sd, vae_sd):
    """``model.state_dict_for_saving`` with the text encoder's and VAE's state dicts, on any ComfyUI: since 0.2x
    it takes the UNet's state dict first (``unet_state_dict``), before it read the model's own."""
    import inspect
    params = list(inspect.signature(model.state_dict_for_saving).parameters)
    if params and params[0] == "unet_state_dict":
        return model.state_dict_for_saving(model.diffusion_model.state_dict(), clip_sd, vae_sd)
    return model.state_dict_for_saving(clip_sd, vae_sd)


def checkpoint_layout(arch: str) -> Layout:
    """Key -> (shape, dtype) of a full ``arch`` ("SD15" or "SDXL") checkpoint as ComfyUI saves it.

    Floating-point tensors are given as fp16.  Raises if ComfyUI does not detect the layout as ``arch``.
    """
    import torch
    comfy = import_comfy()
    unet_config = comfy.model_detection.convert_config(_UNET_CONFIGS[arch])
    model_config = comfy.model_detection.model_config_from_unet_config(unet_config)
    if model_config is None or type(model_config).__name__ != arch:
        raise RuntimeError("ComfyUI maps the {} UNet config to {!r}".format(arch, type(model_config).__name__))
    with torch.device("meta"):
        model = model_config.get_model({})
        clip = model_config.clip_target().clip(device="meta")
        vae = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=dict(_VAE_DDCONFIG), embed_dim=_VAE_EMBED_DIM)
    sd = saved_state_dict(model, clip.state_dict(), vae.state_dict())

    detected = comfy.model_detection.model_config_from_unet(
        {k: v.to("meta") for k, v in sd.items()}, comfy.model_detection.unet_prefix_from_state_dict(sd))
    if detected is None or type(detected).__name__ != arch:
        raise RuntimeError("ComfyUI detects the generated {} layout as {!r}".format(arch, type(detected).__name__))

    layout = {}
    for key, value in sd.items():
        dtype = torch.float16 if value.dtype.is_floating_point else value.dtype
        layout[key] = (tuple(value.shape), dtype)
    return layout


def _tensor_seed(seed: int, key: str) -> int:
    digest = hashlib.blake2b("{}:{}".format(seed, key).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def random_tensor(key: str, shape, dtype, seed: int = DEFAULT_SEED):
    """The value of tensor ``key`` in the generated files (deterministic in ``seed`` and ``key``)."""
    import torch
    shape = tuple(shape)
    if key.endswith("position_ids"):
        return torch.arange(shape[-1], dtype=dtype).expand(shape).contiguous()
    if key.endswith("logit_scale"):
        return torch.full(shape, math.log(100.0), dtype=dtype)
    if not dtype.is_floating_point:
        raise ValueError("no rule for non-float tensor {} ({})".format(key, dtype))
    gen = torch.Generator().manual_seed(_tensor_seed(seed, key))
    value = torch.randn(shape, generator=gen, dtype=torch.float32)
    value.mul_(WEIGHT_STD)
    if len(shape) == 1 and key.endswith(".weight"):  # GroupNorm / LayerNorm scale
        value.add_(1.0)
    return value.to(dtype)


def _build_checkpoint(arch: str, seed: int, out: Path) -> None:
    layout = checkpoint_layout(arch)
    metadata = {"format": "pt", "hypersd_test_model": arch, "seed": seed,
                "generator_version": GENERATOR_VERSION, "weight_std": WEIGHT_STD}
    _write_safetensors(out, layout, lambda key: random_tensor(key, *layout[key], seed=seed), metadata)


# --------------------------------------------------------------------------------------------------
# public builders
# --------------------------------------------------------------------------------------------------

def _checkpoint_path(arch: str, seed: int) -> Path:
    return cache_dir() / "{}-random-s{}-v{}.safetensors".format(arch.lower(), seed, GENERATOR_VERSION)


def _checkpoint(arch: str, seed: int) -> Path:
    path = _checkpoint_path(arch, seed)
    return _cached(path, lambda tmp: _build_checkpoint(arch, seed, tmp))


def path_of(which: str, seed: int = DEFAULT_SEED) -> Path:
    """Where ``which`` ("sd15", "sdxl" or "sdxl-unet") is cached, whether or not it is built yet.

    Lets a test use a file only if an earlier (manual) run already built it, e.g.
    ``if not path_of("sdxl").exists(): pytest.skip(...)``.
    """
    if which == "sd15":
        return _checkpoint_path("SD15", seed)
    if which == "sdxl":
        return _checkpoint_path("SDXL", seed)
    if which == "sdxl-unet":
        return _unet_diffusers_path(seed)
    raise ValueError("unknown model file {!r}".format(which))


def sd15_checkpoint(seed: int = DEFAULT_SEED) -> Path:
    """A full random SD1.5 checkpoint (UNet + CLIP-L + VAE, fp16, ~2.1 GB) that ComfyUI detects as SD15.

    Keys: ``model.diffusion_model.*``, ``cond_stage_model.transformer.text_model.*`` and
    ``first_stage_model.*`` (ComfyUI's CheckpointSave layout; no ``position_ids``, no EMA/scheduler
    buffers).  Built in ~15 s on first use (2 CPU cores), then cached.
    """
    return _checkpoint("SD15", seed)


def sdxl_checkpoint(seed: int = DEFAULT_SEED) -> Path:
    """A full random SDXL checkpoint (UNet + CLIP-L + CLIP-G + VAE, fp16, ~6.9 GB), detected as SDXL.

    Keys: ``model.diffusion_model.*``, ``conditioner.embedders.0.transformer.text_model.*`` (CLIP-L),
    ``conditioner.embedders.1.model.*`` (CLIP-G, open_clip layout with fused ``in_proj_weight``,
    ``text_projection`` and ``logit_scale``) and ``first_stage_model.*``.  Streamed to disk tensor by
    tensor (peak RSS ~0.75 GB), in ~30 s on first use (2 CPU cores), then cached.
    """
    return _checkpoint("SDXL", seed)


def sdxl_unet_comfy_checkpoint(seed: int = DEFAULT_SEED) -> Path:
    """Stand-in for ``Hyper-SDXL-1step-Unet-Comfyui.fp16.safetensors``: that official file is a full
    ComfyUI SDXL checkpoint, so this is simply :func:`sdxl_checkpoint`."""
    return sdxl_checkpoint(seed)


# diffusers' SDXL base UNet2DConditionModel config (stabilityai/stable-diffusion-xl-base-1.0, unet/config.json)
SDXL_UNET_DIFFUSERS = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(320, 640, 1280), transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048,
    attention_head_dim=(5, 10, 20), use_linear_projection=True, addition_embed_type="text_time",
    addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816, norm_num_groups=32)


def _build_sdxl_unet_diffusers(seed: int, out: Path) -> None:
    """Key names and shapes from diffusers' own ``UNet2DConditionModel`` (on the meta device), fp32 values."""
    import torch
    from diffusers import UNet2DConditionModel
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SDXL_UNET_DIFFUSERS)
    layout = {k: (tuple(v.shape), torch.float32) for k, v in unet.state_dict().items()}
    metadata = {"format": "pt", "hypersd_test_model": "SDXL-unet-diffusers", "seed": seed,
                "generator_version": GENERATOR_VERSION, "weight_std": WEIGHT_STD}
    _write_safetensors(out, layout, lambda key: random_tensor(key, *layout[key], seed=seed), metadata)


def _unet_diffusers_path(seed: int) -> Path:
    return cache_dir() / "sdxl-unet-diffusers-fp32-random-s{}-v{}.safetensors".format(seed, GENERATOR_VERSION)


def sdxl_unet_diffusers(seed: int = DEFAULT_SEED) -> Path:
    """A random SDXL UNet in diffusers' own layout and dtype, like ``Hyper-SDXL-1step-Unet.safetensors``.

    The key names and shapes are taken from diffusers' ``UNet2DConditionModel`` with the SDXL base config
    (``conv_in.weight``, ``add_embedding.linear_1.weight``,
    ``down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight`` ...), never from ComfyUI's key
    map, and the values are fp32 as in the official file (~10.3 GB), so a test that loads it with the pack
    and with diffusers checks ComfyUI's conversion against diffusers itself. Streamed tensor by tensor.
    """
    return _cached(_unet_diffusers_path(seed), lambda tmp: _build_sdxl_unet_diffusers(seed, tmp))


# --------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------

_BUILDERS = {
    "sd15": sd15_checkpoint,
    "sdxl": sdxl_checkpoint,
    "sdxl-unet": sdxl_unet_diffusers,
}


def main(argv=None) -> int:
    """``python tests/models.py sd15|sdxl|sdxl-unet ...``: build (or find) the files, print their paths.

    ComfyUI is located through ``$COMFYUI_PATH`` (default ``~/comfy/ComfyUI``) and put on ``sys.path``.
    """
    import argparse
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("which", nargs="+", choices=sorted(_BUILDERS))
    args = parser.parse_args(argv)
    comfy_path = os.environ.get("COMFYUI_PATH") or os.path.expanduser("~/comfy/ComfyUI")
    if comfy_path not in sys.path:
        sys.path.insert(0, comfy_path)
    for which in args.which:
        print(_BUILDERS[which]())
    return 0


if __name__ == "__main__":
    sys.exit(main())
