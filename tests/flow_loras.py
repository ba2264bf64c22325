"""FLUX.1 and SD3 LoRA files in the official Hyper-SD key layout, and where each layer must land.

The official Hyper-FLUX.1-dev and Hyper-SD3 LoRAs are diffusers/PEFT files: ``transformer.<module>.lora_A.weight``
(down, ``[rank, in]``) and ``.lora_B.weight`` (up, ``[out, rank]``), no alpha (scale 1), with diffusers'
module names. :func:`flux_targets` / :func:`sd3_targets` list every linear layer of the diffusers
``FluxTransformer2DModel`` / ``SD3Transformer2DModel`` (the issue's list for FLUX: context_embedder,
x_embedder, norm_out.linear, proj_out, time_text_embed.{timestep,guidance,text}_embedder.linear_{1,2},
double-block attention / feed-forward / norm layers, single-block attention, proj_mlp, proj_out, norm.linear)
with the ComfyUI weight it patches and the rows it occupies there, written by hand from the two
architectures (BFL's ``flux/model.py`` and SD3's MMDiT as ComfyUI implements them), NOT from ComfyUI's key
map, so the tests check ComfyUI's and the pack's mapping against an independent table:

* q, k, v are row blocks ``[0, H)``, ``[H, 2H)``, ``[2H, 3H)`` of the fused ``qkv`` (FLUX double blocks:
  ``img_attn.qkv`` / ``txt_attn.qkv``; SD3: ``x_block.attn.qkv`` / ``context_block.attn.qkv``);
* a FLUX single block's q, k, v and ``proj_mlp`` are rows ``[0, H)``, ``[H, 2H)``, ``[2H, 3H)`` and
  ``[3H, 7H)`` of ``linear1``;
* diffusers' ``AdaLayerNormContinuous`` (FLUX ``norm_out.linear``, the last SD3 block's
  ``norm1_context.linear``) emits (scale, shift); ComfyUI's ``adaLN_modulation`` emits (shift, scale), so
  the LoRA's first H output rows land on rows ``[H, 2H)`` and the next H on ``[0, H)``.

:func:`expected_weight` gives ``W + strength · up @ down`` placed that way, in float64.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

DM = "diffusion_model."


@dataclass(frozen=True)
class Target:
    module: str  # diffusers module path (the LoRA key without "transformer." and ".lora_A.weight")
    weight: str  # the ComfyUI weight it patches (model.model state-dict key)
    out: int  # LoRA output rows
    inp: int  # LoRA input features
    row: int = 0  # first row of the weight the output lands on
    swap: bool = False  # (scale, shift) -> (shift, scale): the halves trade places


def _lin(module, weight, out, inp, row=0, swap=False):
    return Target(module, f"{DM}{weight}.weight", out, inp, row, swap)


def flux_targets(hidden, depth, single, context=4096, vec=768, mlp_ratio=4.0, in_channels=64, guidance=True):
    """Every linear layer of diffusers' FluxTransformer2DModel for a FLUX of this size."""
    h, mlp = hidden, int(hidden * mlp_ratio)
    out = [
        _lin("x_embedder", "img_in", h, in_channels),
        _lin("context_embedder", "txt_in", h, context),
        _lin("time_text_embed.timestep_embedder.linear_1", "time_in.in_layer", h, 256),
        _lin("time_text_embed.timestep_embedder.linear_2", "time_in.out_layer", h, h),
        _lin("time_text_embed.text_embedder.linear_1", "vector_in.in_layer", h, vec),
        _lin("time_text_embed.text_embedder.linear_2", "vector_in.out_layer", h, h),
        _lin("norm_out.linear", "final_layer.adaLN_modulation.1", 2 * h, h, swap=True),
        _lin("proj_out", "final_layer.linear", in_channels, h),
    ]
    if guidance:
        out += [_lin("time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer", h, 256),
                _lin("time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer", h, h)]
    for i in range(depth):
        d, b = f"transformer_blocks.{i}", f"double_blocks.{i}"
        for j, (img, txt) in enumerate((("to_q", "add_q_proj"), ("to_k", "add_k_proj"), ("to_v", "add_v_proj"))):
            out += [_lin(f"{d}.attn.{img}", f"{b}.img_attn.qkv", h, h, row=j * h),
                    _lin(f"{d}.attn.{txt}", f"{b}.txt_attn.qkv", h, h, row=j * h)]
        out += [_lin(f"{d}.attn.to_out.0", f"{b}.img_attn.proj", h, h),
                _lin(f"{d}.attn.to_add_out", f"{b}.txt_attn.proj", h, h),
                _lin(f"{d}.ff.net.0.proj", f"{b}.img_mlp.0", mlp, h),
                _lin(f"{d}.ff.net.2", f"{b}.img_mlp.2", h, mlp),
                _lin(f"{d}.ff_context.net.0.proj", f"{b}.txt_mlp.0", mlp, h),
                _lin(f"{d}.ff_context.net.2", f"{b}.txt_mlp.2", h, mlp),
                _lin(f"{d}.norm1.linear", f"{b}.img_mod.lin", 6 * h, h),
                _lin(f"{d}.norm1_context.linear", f"{b}.txt_mod.lin", 6 * h, h)]
    for i in range(single):
        d, b = f"single_transformer_blocks.{i}", f"single_blocks.{i}"
        out += [_lin(f"{d}.attn.to_q", f"{b}.linear1", h, h, row=0),
                _lin(f"{d}.attn.to_k", f"{b}.linear1", h, h, row=h),
                _lin(f"{d}.attn.to_v", f"{b}.linear1", h, h, row=2 * h),
                _lin(f"{d}.proj_mlp", f"{b}.linear1", mlp, h, row=3 * h),
                _lin(f"{d}.proj_out", f"{b}.linear2", h, h + mlp),
                _lin(f"{d}.norm.linear", f"{b}.modulation.lin", 3 * h, h)]
    return tuple(out)


def sd3_targets(depth, context=4096, adm=2048):
    """Every linear layer in diffusers' SD3Transformer2DModel.transformer_blocks (the Hyper-SD3 files' layers)
    for an MMDiT of ``depth`` blocks (width 64·depth); the last block is context_pre_only."""
    h = 64 * depth
    out = []
    for i in range(depth):
        d, b = f"transformer_blocks.{i}", f"joint_blocks.{i}"
        last = i == depth - 1
        for j, (img, txt) in enumerate((("to_q", "add_q_proj"), ("to_k", "add_k_proj"), ("to_v", "add_v_proj"))):
            out += [_lin(f"{d}.attn.{img}", f"{b}.x_block.attn.qkv", h, h, row=j * h),
                    _lin(f"{d}.attn.{txt}", f"{b}.context_block.attn.qkv", h, h, row=j * h)]
        out += [_lin(f"{d}.attn.to_out.0", f"{b}.x_block.attn.proj", h, h),
                _lin(f"{d}.ff.net.0.proj", f"{b}.x_block.mlp.fc1", 4 * h, h),
                _lin(f"{d}.ff.net.2", f"{b}.x_block.mlp.fc2", h, 4 * h),
                _lin(f"{d}.norm1.linear", f"{b}.x_block.adaLN_modulation.1", 6 * h, h)]
        if last:  # AdaLayerNormContinuous: (scale, shift)
            out.append(_lin(f"{d}.norm1_context.linear", f"{b}.context_block.adaLN_modulation.1", 2 * h, h, swap=True))
        else:
            out += [_lin(f"{d}.attn.to_add_out", f"{b}.context_block.attn.proj", h, h),
                    _lin(f"{d}.ff_context.net.0.proj", f"{b}.context_block.mlp.fc1", 4 * h, h),
                    _lin(f"{d}.ff_context.net.2", f"{b}.context_block.mlp.fc2", h, 4 * h),
                    _lin(f"{d}.norm1_context.linear", f"{b}.context_block.adaLN_modulation.1", 6 * h, h)]
    return tuple(out)


def _randn(shape, seed, key, std):
    import torch
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))
    return (torch.randn(shape, generator=gen) * std).to(torch.float16)


def make_lora(targets, seed=0, rank=4, std=0.05, prefix="transformer."):
    """{key: fp16 tensor}: ``<prefix><module>.lora_A.weight`` [rank, in] and ``.lora_B.weight`` [out, rank]."""
    tensors = {}
    for t in targets:
        a, b = f"{prefix}{t.module}.lora_A.weight", f"{prefix}{t.module}.lora_B.weight"
        tensors[a] = _randn((rank, t.inp), seed, a, std)
        tensors[b] = _randn((t.out, rank), seed, b, std)
    return tensors


def delta(target, tensors, strength, prefix="transformer."):
    """strength · up @ down in float64, rows in ComfyUI's order (halves swapped for a scale/shift layer)."""
    import torch
    up = tensors[f"{prefix}{target.module}.lora_B.weight"].double()
    down = tensors[f"{prefix}{target.module}.lora_A.weight"].double()
    d = strength * (up @ down)
    if target.swap:
        half = d.shape[0] // 2
        d = torch.cat([d[half:], d[:half]])
    return d


def expected_weights(targets, tensors, originals, strength, prefix="transformer."):
    """{weight: exact float64 patched value}: every target's delta added on its rows of the original."""
    out = {}
    for t in targets:
        w = out.setdefault(t.weight, originals[t.weight].double().clone())
        w[t.row:t.row + t.out] += delta(t, tensors, strength, prefix)
    return out


def rows_touched(targets) -> dict:
    """{weight: set of row ranges} (to check every row of a fused weight is covered exactly once)."""
    out = {}
    for t in targets:
        out.setdefault(t.weight, []).append((t.row, t.row + t.out))
    return out


__all__ = ["Target", "flux_targets", "sd3_targets", "make_lora", "delta", "expected_weights", "rows_touched"]
