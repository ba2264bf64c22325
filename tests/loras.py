"""LoRA files for the tests: hand-picked layers of SD1.5 and SDXL, written in every key spelling.

Each :class:`Layer` pairs a module's *diffusers* path (what kohya's ``lora_unet_down_blocks_…`` keys,
diffusers and PEFT files name) with the ComfyUI weight it must patch (the ldm/sgm path, as in
``model.model.state_dict()`` / ``clip.cond_stage_model.state_dict()``) and that weight's shape. The pairs
are written out by hand from the two architectures, not derived from ComfyUI's key maps, so the tests
check ComfyUI's (and the pack's) key mapping against an independent table. The layers cover every kind
of weight a Hyper-SD LoRA touches: self/cross-attention q/k/v/out, transformer proj_in/proj_out (1x1
conv in SD1.5, linear in SDXL), feed-forward, resnet convs (3x3), shortcuts (1x1), time-embedding
projections, down/up-samplers, conv_in/conv_out, SDXL's add_embedding, and CLIP attention/MLP layers.

Spellings (:data:`SPELLINGS`), for a layer at diffusers path ``P`` (``.`` -> ``_`` in kohya names):

========================  =====================================================  ==============================
spelling                  UNet keys                                              text-encoder keys
========================  =====================================================  ==============================
``kohya``                 ``lora_unet_<P>.lora_down/lora_up.weight`` + ``.alpha``  ``lora_te[1|2]_<P>…`` + alpha
``kohya-ldm``             ``lora_unet_<ldm path>…`` (kohya's SDXL/sgm naming)      as ``kohya``
``diffusers``             ``unet.<P>.lora.down/up.weight``                         ``text_encoder[_2].<P>.lora.…``
``diffusers-2023``        ``unet.<…>.attnN.processor.to_q_lora.down.weight`` for   ``text_encoder.<P>.lora_linear_
                          attention, ``unet.<P>.lora.down.weight`` otherwise       layer.down/up.weight``
``peft``                  ``<P>.lora_A/lora_B.weight``                             (none: a bare UNet adapter)
``peft-unet``             ``unet.<P>.lora_A/lora_B.weight``                        ``text_encoder[_2].<P>.lora_A…``
``peft-base-model``       ``base_model.model.<P>.lora_A/lora_B.weight``            (none: a bare UNet adapter)
========================  =====================================================  ==============================

Tensor shapes follow the trainers: a linear ``[out, in]`` gets ``down [r, in]``, ``up [out, r]``; a conv
``[out, in, k, k]`` gets ``down [r, in, k, k]``, ``up [out, r, 1, 1]``. Values are fp16 (as the official
files), drawn from per-key seeded generators, so a file is reproducible from ``(layers, spelling, seed)``.

:func:`make_lora` returns the tensors and the :class:`Part` list; ``Part.delta(strength)`` is the change
the LoRA must make to its weight, ``strength · (alpha/rank) · up @ down`` computed in float64 from the
file's own tensors (scale 1 when the file carries no alpha, as ComfyUI and diffusers read such files).
"""
from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["Layer", "Part", "Lora", "SPELLINGS", "SD15_UNET", "SD15_CLIP", "SD15_LAYERS", "SDXL_UNET",
           "SDXL_CLIP", "SDXL_LAYERS", "make_lora", "write", "write_truncated", "write_pickle",
           "write_torch_zip", "write_html", "to_bytes"]

UNET = "diffusion_model."


@dataclass(frozen=True)
class Layer:
    kind: str  # attention, projection, feed-forward, resnet, sampler, embedding, clip
    path: str  # diffusers module path (UNet) or transformers path (CLIP: text_model.encoder.layers…)
    target: str  # the ComfyUI weight the layer patches (model.model / cond_stage_model state-dict key)
    shape: Tuple[int, ...]
    encoder: int = 0  # 0 UNet, 1 first text encoder (CLIP-L), 2 second text encoder (CLIP-G, SDXL)

    @property
    def text(self) -> bool:
        return self.encoder > 0

    @property
    def ldm_path(self) -> str:
        assert self.target.startswith(UNET) and self.target.endswith(".weight"), self.target
        return self.target[len(UNET):-len(".weight")]


def _u(kind, path, ldm, shape):
    return Layer(kind, path, f"{UNET}{ldm}.weight", tuple(shape))


def _t(path, shape, encoder=1, clip="clip_l"):
    return Layer("clip", path, f"{clip}.transformer.{path}.weight", tuple(shape), encoder)


# SD1.5: input_blocks 1,2 / 4,5 / 7,8 = down_blocks 0/1/2 (resnet .0, attention .1), 3/6/9 = downsamplers,
# 10,11 = down_blocks.3; output_blocks 0-2 = up_blocks.0 (no attention, upsampler at 2.1), 3-5 / 6-8 / 9-11
# = up_blocks 1/2/3 (resnet .0, attention .1, upsampler .2); resnet in_layers.2 = conv1, out_layers.3 =
# conv2, emb_layers.1 = time_emb_proj, skip_connection = conv_shortcut.
SD15_UNET = (
    _u("resnet", "conv_in", "input_blocks.0.0", (320, 4, 3, 3)),
    _u("embedding", "time_embedding.linear_1", "time_embed.0", (1280, 320)),
    _u("resnet", "down_blocks.0.resnets.0.conv1", "input_blocks.1.0.in_layers.2", (320, 320, 3, 3)),
    _u("resnet", "down_blocks.0.resnets.0.time_emb_proj", "input_blocks.1.0.emb_layers.1", (320, 1280)),
    _u("projection", "down_blocks.0.attentions.0.proj_in", "input_blocks.1.1.proj_in", (320, 320, 1, 1)),
    _u("attention", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
       "input_blocks.1.1.transformer_blocks.0.attn1.to_q", (320, 320)),
    _u("attention", "down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k",
       "input_blocks.2.1.transformer_blocks.0.attn2.to_k", (320, 768)),
    _u("sampler", "down_blocks.0.downsamplers.0.conv", "input_blocks.3.0.op", (320, 320, 3, 3)),
    _u("resnet", "down_blocks.1.resnets.0.conv_shortcut", "input_blocks.4.0.skip_connection", (640, 320, 1, 1)),
    _u("feed-forward", "down_blocks.1.attentions.1.transformer_blocks.0.ff.net.0.proj",
       "input_blocks.5.1.transformer_blocks.0.ff.net.0.proj", (5120, 640)),
    _u("attention", "down_blocks.2.attentions.0.transformer_blocks.0.attn1.to_out.0",
       "input_blocks.7.1.transformer_blocks.0.attn1.to_out.0", (1280, 1280)),
    _u("attention", "mid_block.attentions.0.transformer_blocks.0.attn2.to_v",
       "middle_block.1.transformer_blocks.0.attn2.to_v", (1280, 768)),
    _u("resnet", "mid_block.resnets.1.conv2", "middle_block.2.out_layers.3", (1280, 1280, 3, 3)),
    _u("sampler", "up_blocks.0.upsamplers.0.conv", "output_blocks.2.1.conv", (1280, 1280, 3, 3)),
    _u("attention", "up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_out.0",
       "output_blocks.5.1.transformer_blocks.0.attn2.to_out.0", (1280, 1280)),
    _u("feed-forward", "up_blocks.2.attentions.0.transformer_blocks.0.ff.net.2",
       "output_blocks.6.1.transformer_blocks.0.ff.net.2", (640, 2560)),
    _u("resnet", "up_blocks.3.resnets.2.conv_shortcut", "output_blocks.11.0.skip_connection", (320, 640, 1, 1)),
    _u("projection", "up_blocks.3.attentions.2.proj_out", "output_blocks.11.1.proj_out", (320, 320, 1, 1)),
    _u("attention", "up_blocks.3.attentions.2.transformer_blocks.0.attn1.to_v",
       "output_blocks.11.1.transformer_blocks.0.attn1.to_v", (320, 320)),
    _u("resnet", "conv_out", "out.2", (4, 320, 3, 3)),
)

SD15_CLIP = (
    _t("text_model.encoder.layers.0.self_attn.q_proj", (768, 768)),
    _t("text_model.encoder.layers.0.self_attn.k_proj", (768, 768)),
    _t("text_model.encoder.layers.5.self_attn.v_proj", (768, 768)),
    _t("text_model.encoder.layers.11.self_attn.out_proj", (768, 768)),
    _t("text_model.encoder.layers.3.mlp.fc1", (3072, 768)),
    _t("text_model.encoder.layers.11.mlp.fc2", (768, 3072)),
)

SD15_LAYERS = SD15_UNET + SD15_CLIP

# SDXL (sgm layout): input_blocks 1,2 = down_blocks.0 (no attention), 4,5 = down_blocks.1 (2 transformer
# blocks), 7,8 = down_blocks.2 (10); output_blocks 0-2 = up_blocks.0 (10, upsampler at 2.2), 3-5 =
# up_blocks.1 (2), 6-8 = up_blocks.2 (no attention); label_emb.0.0 = add_embedding.linear_1; linear proj_in.
SDXL_UNET = (
    _u("resnet", "down_blocks.0.resnets.1.conv2", "input_blocks.2.0.out_layers.3", (320, 320, 3, 3)),
    _u("projection", "down_blocks.1.attentions.0.proj_in", "input_blocks.4.1.proj_in", (640, 640)),
    _u("attention", "down_blocks.1.attentions.0.transformer_blocks.1.attn1.to_q",
       "input_blocks.4.1.transformer_blocks.1.attn1.to_q", (640, 640)),
    _u("attention", "down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_k",
       "input_blocks.8.1.transformer_blocks.9.attn2.to_k", (1280, 2048)),
    _u("feed-forward", "mid_block.attentions.0.transformer_blocks.5.ff.net.0.proj",
       "middle_block.1.transformer_blocks.5.ff.net.0.proj", (10240, 1280)),
    _u("attention", "up_blocks.0.attentions.2.transformer_blocks.3.attn1.to_out.0",
       "output_blocks.2.1.transformer_blocks.3.attn1.to_out.0", (1280, 1280)),
    _u("sampler", "up_blocks.0.upsamplers.0.conv", "output_blocks.2.2.conv", (1280, 1280, 3, 3)),
    _u("resnet", "up_blocks.1.resnets.0.conv_shortcut", "output_blocks.3.0.skip_connection", (640, 1920, 1, 1)),
    _u("projection", "up_blocks.1.attentions.2.proj_out", "output_blocks.5.1.proj_out", (640, 640)),
    _u("resnet", "up_blocks.2.resnets.2.time_emb_proj", "output_blocks.8.0.emb_layers.1", (320, 1280)),
    _u("embedding", "add_embedding.linear_1", "label_emb.0.0", (1280, 2816)),
)

SDXL_CLIP = (
    _t("text_model.encoder.layers.0.self_attn.q_proj", (768, 768)),
    _t("text_model.encoder.layers.3.mlp.fc1", (3072, 768)),
    _t("text_model.encoder.layers.0.self_attn.q_proj", (1280, 1280), encoder=2, clip="clip_g"),
    _t("text_model.encoder.layers.31.self_attn.out_proj", (1280, 1280), encoder=2, clip="clip_g"),
)

SDXL_LAYERS = SDXL_UNET + SDXL_CLIP

SPELLINGS = ("kohya", "kohya-ldm", "diffusers", "diffusers-2023", "peft", "peft-unet", "peft-base-model")
_WITH_TEXT = {"kohya", "kohya-ldm", "diffusers", "diffusers-2023", "peft-unet"}
_PEFT_PREFIX = {"peft": "", "peft-unet": "unet.", "peft-base-model": "base_model.model."}


def _names(layer: Layer, spelling: str, sdxl: bool) -> Optional[Tuple[str, str, str]]:
    """(down key, up key, alpha key) of ``layer`` in ``spelling``; None when the spelling has no such key."""
    if spelling not in SPELLINGS:
        raise ValueError(f"unknown spelling {spelling!r}; choose one of {SPELLINGS}")
    if layer.text and spelling not in _WITH_TEXT:
        return None
    if spelling in ("kohya", "kohya-ldm"):
        if layer.text:
            prefix = {1: "lora_te1_" if sdxl else "lora_te_", 2: "lora_te2_"}[layer.encoder]
            base = prefix + layer.path.replace(".", "_")
        else:
            base = "lora_unet_" + (layer.ldm_path if spelling == "kohya-ldm" else layer.path).replace(".", "_")
        return base + ".lora_down.weight", base + ".lora_up.weight", base + ".alpha"
    if layer.text:
        head = {1: "text_encoder.", 2: "text_encoder_2."}[layer.encoder]
    else:
        head = _PEFT_PREFIX.get(spelling, "unet.")
    base = head + layer.path
    if spelling.startswith("peft"):
        return base + ".lora_A.weight", base + ".lora_B.weight", base + ".alpha"
    if spelling == "diffusers-2023":
        if layer.text:
            return (base + ".lora_linear_layer.down.weight", base + ".lora_linear_layer.up.weight",
                    base + ".alpha")
        for proj in (".to_q", ".to_k", ".to_v", ".to_out.0"):
            if layer.kind == "attention" and base.endswith(proj):
                old = base[:-len(proj)] + ".processor" + proj.replace(".0", "") + "_lora"
                return old + ".down.weight", old + ".up.weight", old + ".alpha"
    return base + ".lora.down.weight", base + ".lora.up.weight", base + ".alpha"


def _seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest(), "little") >> 1


def _randn(shape, seed, name, std):
    import torch
    gen = torch.Generator().manual_seed(_seed(seed, name))
    return (torch.randn(tuple(shape), generator=gen, dtype=torch.float32) * std).to(torch.float16)


@dataclass
class Part:
    """One LoRA layer of a file: the weight it patches and the file's own tensors for it."""
    layer: Layer
    down_key: str
    up_key: str
    down: "object"  # torch.Tensor, fp16, as stored in the file
    up: "object"
    alpha: Optional[float]  # None when the file has no alpha for this layer

    @property
    def target(self) -> str:
        return self.layer.target

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def scale(self) -> float:
        return 1.0 if self.alpha is None else self.alpha / self.rank

    def delta(self, strength: float = 1.0):
        """strength · (alpha/rank) · up @ down in float64, shaped like the patched weight."""
        import torch
        up = self.up.to(torch.float64).reshape(self.up.shape[0], self.rank)
        down = self.down.to(torch.float64).reshape(self.rank, -1)
        return (strength * self.scale) * (up @ down).reshape(self.layer.shape)

    def delta_abs_bound(self, strength: float = 1.0):
        """Elementwise bound of |delta| terms (|s·scale|·|up| @ |down|): the scale of rounding errors."""
        import torch
        up = self.up.to(torch.float64).abs().reshape(self.up.shape[0], self.rank)
        down = self.down.to(torch.float64).abs().reshape(self.rank, -1)
        return abs(strength * self.scale) * (up @ down).reshape(self.layer.shape)


@dataclass
class Lora:
    tensors: Dict[str, "object"]
    parts: List[Part]
    spelling: str

    @property
    def targets(self) -> List[str]:
        return [p.target for p in self.parts]

    def unet_parts(self) -> List[Part]:
        return [p for p in self.parts if not p.layer.text]

    def text_parts(self) -> List[Part]:
        return [p for p in self.parts if p.layer.text]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())


def make_lora(layers: Sequence[Layer], spelling: str, *, seed: int = 0, rank=None, alpha="auto",
              std: float = 0.1, sdxl: Optional[bool] = None) -> Lora:
    """The tensors of a LoRA over ``layers`` in ``spelling``.

    ``rank``: an int, or None to cycle 4, 8, 2 over the layers (every file mixes ranks). ``alpha``:
    "auto" = kohya spellings store ``.alpha`` (rank-dependent, never equal to the rank, so alpha/rank
    matters), the others store none; True/False forces it on/off; a number stores that alpha everywhere.
    Layers the spelling cannot express (text encoders in a bare-UNet PEFT file) are left out.
    """
    import torch
    if sdxl is None:
        sdxl = any(layer.encoder == 2 for layer in layers) or any("label_emb" in layer.target for layer in layers)
    ranks = (4, 8, 2)
    tensors, parts = {}, []
    for i, layer in enumerate(layers):
        names = _names(layer, spelling, sdxl)
        if names is None:
            continue
        down_key, up_key, alpha_key = names
        r = rank if rank is not None else ranks[i % len(ranks)]
        out_dim, in_dims = layer.shape[0], tuple(layer.shape[1:])
        conv = len(layer.shape) == 4
        down = _randn((r,) + in_dims, seed, down_key, std)
        up = _randn((out_dim, r) + ((1, 1) if conv else ()), seed, up_key, std)
        if alpha == "auto":
            value = (r / 2 + 0.5) if spelling.startswith("kohya") else None
        elif alpha is True:
            value = r / 2 + 0.5
        elif alpha is False or alpha is None:
            value = None
        else:
            value = float(alpha)
        tensors[down_key], tensors[up_key] = down, up
        if value is not None:
            tensors[alpha_key] = torch.tensor(value, dtype=torch.float16)
            value = float(tensors[alpha_key].item())  # the value as stored (fp16)
        parts.append(Part(layer, down_key, up_key, down, up, value))
    return Lora(tensors, parts, spelling)


# ------------------------------------------------------------------------------------------- writers


def write(path, lora_or_tensors, metadata=None) -> Path:
    """Save as safetensors (atomically: written next to ``path`` under a hidden name, then renamed)."""
    from safetensors.torch import save_file
    tensors = lora_or_tensors.tensors if isinstance(lora_or_tensors, Lora) else lora_or_tensors
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def to_bytes(lora_or_tensors, metadata=None) -> bytes:
    from safetensors.torch import save
    tensors = lora_or_tensors.tensors if isinstance(lora_or_tensors, Lora) else lora_or_tensors
    return save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)


def write_truncated(path, lora_or_tensors, fraction: float = 0.6) -> Path:
    """A valid safetensors file cut after ``fraction`` of its bytes (an interrupted copy)."""
    data = to_bytes(lora_or_tensors)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:max(16, int(len(data) * fraction))])
    return path


class _Tripwire:
    """Unpickling this creates ``marker``: proof that a loader executed the pickle."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_pickle(path, marker) -> Path:
    """A plain pickle (a renamed .ckpt/.pt) whose unpickling would create ``marker``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"state_dict": _Tripwire(marker)}, protocol=2))
    return path


def write_torch_zip(path, lora_or_tensors) -> Path:
    """A ``torch.save`` zip file (what a renamed ``.pt``/``.ckpt`` LoRA looks like)."""
    import torch
    tensors = lora_or_tensors.tensors if isinstance(lora_or_tensors, Lora) else lora_or_tensors
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(tensors), str(path))
    return path


def write_html(path) -> Path:
    """What a failed download often leaves: the hub's HTML error page under the model's name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("<!DOCTYPE html><html><head><title>Hugging Face - 401</title></head>"
                    "<body>Access to model ByteDance/Hyper-SD is restricted.</body></html>\n")
    return path
