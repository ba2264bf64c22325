"""Reduced-size, random-weight FLUX.1 and SD3 model files that real ComfyUI detects and runs.

Like :mod:`models` (SD1.5/SDXL), every layout comes from ComfyUI's own classes (imported at run time,
never copied): a UNet config goes through ``comfy.model_detection.model_config_from_unet_config`` to a
``comfy.supported_models`` class, the model (and text encoders / VAE) is instantiated on the ``meta``
device for names and shapes, the layout is re-detected with ``model_config_from_unet`` before anything is
written, and seeded random tensors are streamed to disk one at a time (``models._write_safetensors``).

What is reduced, and why it is still detected as the real thing
---------------------------------------------------------------
* **FLUX.1-dev** (``flux_dev_unet``): ComfyUI's FLUX detection (``detect_unet_config``) fixes
  hidden size 3072, 24 heads, T5 context 4096 and counts the double/single blocks from the keys; dev vs
  schnell is the presence of ``guidance_in``. So the file keeps the real width and has **1 double block
  and 1 single block** (FLUX.1-dev: 19 + 38): 546 M parameters, bf16 like the official
  ``flux1-dev.safetensors`` (bare keys, ``img_in.weight`` ...), 1.1 GB. Detected as ``Flux`` (dev).
  ``flux_schnell_unet`` is the same without ``guidance_in`` (detected as ``FluxSchnell``).
* **SD3** (``sd3_checkpoint``): MMDiT depth 2 (hidden 128 = 64 x depth, as ComfyUI derives it), with the
  SD3-medium adm (2048) and context (4096) widths, in the layout of the official
  ``sd3_medium_incl_clips.safetensors`` checkpoint: full-size random CLIP-L and CLIP-G (their detection
  needs every layer), no T5 (ComfyUI then feeds zeros for the T5 part, as for that official file) and the
  16-channel VAE. 1.8 GB fp16. Detected as ``SD3``.
* **Text encoders for FLUX's DualCLIPLoader** (``clip_l``, ``t5xxl_reduced``): a full-size random CLIP-L
  (``text_model.*``, 246 MB) and a reduced T5-XXL: ComfyUI's own ``T5`` class with d_model 4096 (FLUX's
  ``txt_in`` needs it) and vocabulary 32128 but 2 layers, 2 heads of 16 and d_ff 64 (139 M parameters,
  mostly the embedding). ComfyUI builds T5-XXL from a fixed json config (4.7 B parameters), so the test
  server loads :mod:`stubs.hypersd_test_reduced_t5`, a test-only custom node that passes the shapes read
  from the file as ComfyUI's ``t5xxl_model_config`` model option. Everything else of the shipped graph
  (DualCLIPLoader type ``flux``, its tokenizers, FluxClipModel) is unchanged.
* **VAE** (``flux_vae``): the real 16-channel FLUX/SD3 autoencoder layout of ``ae.safetensors`` (no
  quant convs), full size (84 M parameters), fp16.

Values: ``models.random_tensor`` (N(0, 0.02), norm scales 1 + N(0, 0.02)), and RMSNorm ``*.scale``
vectors 1 + N(0, 0.02) too. Files are cached in ``models.cache_dir()`` with :data:`VERSION` in the name.
"""
from __future__ import annotations

import sys
from pathlib import Path

import models

VERSION = 1
FLUX_DEPTH, FLUX_SINGLE = 1, 1
SD3_DEPTH = 2
T5_REDUCED = {"num_layers": 2, "num_heads": 2, "d_kv": 16, "d_ff": 64}  # d_model 4096, vocab 32128 kept

def flux_unet_config(guidance=True, hidden=3072, depth=FLUX_DEPTH, single=FLUX_SINGLE, context=4096, vec=768,
                     flux2=False):
    """The unet_config ComfyUI's own detection (``detect_unet_config``) gives a FLUX file of these sizes, read from
    a skeleton of the keys detection looks at (meta tensors): each host's own config keys (0.33's FluxParams
    needs txt_ids_dims, ...). ``flux2``: a FLUX.2 layout (None on a host that does not know FLUX.2)."""
    import torch
    comfy = models.import_comfy()
    ps, channels = (1, 128) if flux2 else (2, 16)
    shapes = {"img_in.weight": (hidden, channels * ps * ps), "txt_in.weight": (hidden, context),
              "double_blocks.0.img_attn.norm.key_norm.scale": (128,)}
    if vec:
        shapes["vector_in.in_layer.weight"] = (hidden, vec)
    if guidance:
        shapes["guidance_in.in_layer.weight"] = (hidden, 256)
    if flux2:
        shapes["double_stream_modulation_img.lin.weight"] = (6 * hidden, hidden)
    shapes.update({f"double_blocks.{i}.img_mod.lin.weight": (1,) for i in range(depth)})
    shapes.update({f"single_blocks.{i}.linear1.weight": (1,) for i in range(single)})
    skeleton = {k: torch.empty(v, device="meta") for k, v in shapes.items()}
    config = comfy.model_detection.detect_unet_config(skeleton, "")
    if flux2 and (config or {}).get("image_model") != "flux2":
        return None
    # Older hosts' detection fixes the width (3072) instead of reading it: the sizes are set as asked.
    return dict(config, hidden_size=hidden, num_heads=hidden // sum(config["axes_dim"]), context_in_dim=context,
                vec_in_dim=vec or None)


def sd3_config(depth=SD3_DEPTH, qk_norm=None, x_block_self_attn_layers=()):
    """The unet_config ``detect_unet_config`` gives for an SD3-family MMDiT of ``depth`` blocks."""
    config = {"in_channels": 16, "patch_size": 2, "out_channels": 16, "depth": depth, "input_size": None,
              "adm_in_channels": 2048,
              "context_embedder_config": {"target": "torch.nn.Linear",
                                          "params": {"in_features": 4096, "out_features": 64 * depth}},
              "num_patches": 36864, "pos_embed_max_size": 192, "pos_embed_scaling_factor": None,
              "x_block_self_attn_layers": list(x_block_self_attn_layers)}
    if qk_norm:
        config["qk_norm"] = qk_norm
    return config


def _value(key, shape, dtype, seed):
    value = models.random_tensor(key, shape, dtype, seed=seed)
    if len(shape) == 1 and key.endswith(".scale"):  # RMSNorm scales (FLUX q/k norms)
        value = (value.float() + 1.0).to(dtype)
    return value


def _write(out, layout, metadata, seed):
    models._write_safetensors(out, layout, lambda key: _value(key, *layout[key], seed=seed),
                              {"format": "pt", "generator_version": VERSION, "seed": seed, **metadata})


def model_config(unet_config):
    """ComfyUI's model config (a ``comfy.supported_models`` instance) for a unet_config."""
    comfy = models.import_comfy()
    config = comfy.model_detection.model_config_from_unet_config(dict(unet_config))
    if config is None:
        raise RuntimeError(f"ComfyUI has no model class for {unet_config}")
    return config


def meta_model(unet_config):
    """(model config, BaseModel on the meta device): real ComfyUI classes, names and shapes, no weights."""
    import torch
    config = model_config(unet_config)
    with torch.device("meta"):
        return config, config.get_model({})


def _detected(state_dict, prefix):
    comfy = models.import_comfy()
    meta = {k: v.to("meta") for k, v in state_dict.items()}
    return type(comfy.model_detection.model_config_from_unet(meta, prefix)).__name__


def _floats(state_dict, dtype, skip=()):
    return {k: (tuple(v.shape), dtype if v.dtype.is_floating_point else v.dtype)
            for k, v in state_dict.items() if not any(s in k for s in skip)}


# ------------------------------------------------------------------------------------------ FLUX


def flux_layout(guidance=True):
    import torch
    _, model = meta_model(flux_unet_config(guidance=guidance))
    prefix = "diffusion_model."
    # flux1-dev.safetensors names its q/k RMSNorm scales '*_norm.scale'; ComfyUI >= 0.14 calls the parameters
    # '*_norm.weight' and renames on load. Written as the real file has them, so one file serves every host.
    sd = {_file_key(k[len(prefix):]): v for k, v in model.state_dict().items() if k.startswith(prefix)}
    expected = "Flux" if guidance else "FluxSchnell"
    if _detected(sd, "") != expected:
        raise RuntimeError(f"ComfyUI detects the reduced FLUX layout as {_detected(sd, '')}, not {expected}")
    return _floats(sd, torch.bfloat16)


def _file_key(key):
    return key[:-len(".weight")] + ".scale" if key.endswith(("query_norm.weight", "key_norm.weight")) else key


def _flux(name, guidance, seed):
    path = models.cache_dir() / f"{name}-reduced-s{seed}-v{VERSION}.safetensors"
    return models._cached(path, lambda tmp: _write(tmp, flux_layout(guidance), {"hypersd_test_model": name}, seed))


def flux_dev_unet(seed=0):
    """Bare FLUX.1-dev diffusion model (1 double + 1 single block, full width, bf16), like flux1-dev."""
    return _flux("flux1-dev", True, seed)


def flux_schnell_unet(seed=0):
    """The same without the guidance embedding: ComfyUI detects FLUX.1-schnell."""
    return _flux("flux1-schnell", False, seed)


# ------------------------------------------------------------------------------------------ VAE and text encoders


def vae_state_dict_meta():
    import torch
    comfy = models.import_comfy()
    with torch.device("meta"):
        vae = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=dict(models._VAE_DDCONFIG, z_channels=16),
                                                         embed_dim=16)
    return vae.state_dict()


def flux_vae(seed=0):
    """The 16-channel FLUX/SD3 autoencoder in the key layout of ``ae.safetensors`` (fp16)."""
    import torch
    layout = _floats(vae_state_dict_meta(), torch.float16, skip=("quant_conv.",))
    path = models.cache_dir() / f"ae-16ch-s{seed}-v{VERSION}.safetensors"
    return models._cached(path, lambda tmp: _write(tmp, layout, {"hypersd_test_model": "vae-16ch"}, seed))


def clip_l(seed=0):
    """A full-size random CLIP-L text encoder file (``text_model.*``, fp16), like ``clip_l.safetensors``."""
    import torch
    models.import_comfy()
    import comfy.sd1_clip
    with torch.device("meta"):
        clip = comfy.sd1_clip.SDClipModel(device="meta", return_projected_pooled=False)
    layout = _floats(clip.transformer.state_dict(), torch.float16)
    path = models.cache_dir() / f"clip_l-s{seed}-v{VERSION}.safetensors"
    return models._cached(path, lambda tmp: _write(tmp, layout, {"hypersd_test_model": "clip_l"}, seed))


def t5xxl_reduced(seed=0):
    """ComfyUI's T5 class at d_model 4096 with :data:`T5_REDUCED` (``encoder.*``, ``shared.weight``; fp16)."""
    import torch
    models.import_comfy()
    import comfy.text_encoders.sd3_clip
    with torch.device("meta"):
        t5 = comfy.text_encoders.sd3_clip.T5XXLModel(device="meta",
                                                     model_options={"t5xxl_model_config": dict(T5_REDUCED)})
    layout = _floats(t5.transformer.state_dict(), torch.float16)
    path = models.cache_dir() / f"t5xxl-reduced-s{seed}-v{VERSION}.safetensors"
    return models._cached(path, lambda tmp: _write(tmp, layout, {"hypersd_test_model": "t5xxl-reduced"}, seed))


# ------------------------------------------------------------------------------------------ SD3


def sd3_layout():
    import torch
    models.import_comfy()
    import comfy.text_encoders.sd3_clip
    config, model = meta_model(sd3_config())
    with torch.device("meta"):
        clip = comfy.text_encoders.sd3_clip.sd3_clip(clip_l=True, clip_g=True, t5=False)(device="meta")
    sd = models.saved_state_dict(model, clip.state_dict(), vae_state_dict_meta())
    sd = {k: v for k, v in sd.items() if "quant_conv." not in k}
    if _detected(sd, "model.diffusion_model.") != "SD3":
        raise RuntimeError(f"ComfyUI detects the reduced SD3 layout as {_detected(sd, 'model.diffusion_model.')}")
    return _floats(sd, torch.float16)


def sd3_checkpoint(seed=0):
    """SD3 checkpoint (MMDiT depth 2 + CLIP-L + CLIP-G + 16-channel VAE, fp16), sd3_medium_incl_clips layout."""
    path = models.cache_dir() / f"sd3-depth{SD3_DEPTH}-incl-clips-s{seed}-v{VERSION}.safetensors"
    return models._cached(path, lambda tmp: _write(tmp, sd3_layout(), {"hypersd_test_model": "sd3"}, seed))


# ------------------------------------------------------------------------------------------ GGUF


def flux_dev_gguf(qtype="Q8_0", seed=0):
    """:func:`flux_dev_unet` quantized to a GGUF file that city96/ComfyUI-GGUF loads (``gguf`` from PyPI).

    ComfyUI-GGUF's conventions (its tools/convert.py, not copied): architecture ``flux``, ComfyUI's bare key
    names, the quantization version and file type in the header; 1-D tensors and tensors of at most 1024
    elements stay F32, the others are quantized to ``qtype`` (Q8_0 or F16) by ``gguf.quants.quantize``.
    """
    path = models.cache_dir() / f"flux1-dev-reduced-{qtype}-s{seed}-v{VERSION}.gguf"
    return models._cached(path, lambda tmp: _write_gguf(flux_dev_unet(seed), tmp, qtype))


def _write_gguf(source, out, qtype):
    import gguf
    import torch
    from safetensors import safe_open
    quant = getattr(gguf.GGMLQuantizationType, qtype)
    file_type = {"Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "F16": gguf.LlamaFileType.MOSTLY_F16}[qtype]
    writer = gguf.GGUFWriter(path=None, arch="flux")
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_file_type(file_type)
    with safe_open(str(source), framework="pt") as f:
        for key in sorted(f.keys()):
            data = f.get_tensor(key).to(torch.float32).numpy()
            kind = gguf.GGMLQuantizationType.F32 if data.ndim == 1 or data.size <= 1024 else quant
            writer.add_tensor(key, gguf.quants.quantize(data, kind), raw_dtype=kind)
    writer.write_header_to_file(path=str(out))
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


BUILDERS = {"flux-dev-gguf": flux_dev_gguf, "flux-dev": flux_dev_unet, "flux-schnell": flux_schnell_unet, "vae": flux_vae, "clip_l": clip_l,
            "t5xxl": t5xxl_reduced, "sd3": sd3_checkpoint}


def main(argv=None):
    """``python tests/flow_models.py flux-dev sd3 ...``: build (or find) the files and print their paths."""
    import argparse
    import os
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("which", nargs="+", choices=sorted(BUILDERS))
    args = parser.parse_args(argv)
    comfy_path = os.environ.get("COMFYUI_PATH") or os.path.expanduser("~/comfy/ComfyUI")
    if comfy_path not in sys.path:
        sys.path.insert(0, comfy_path)
    for which in args.which:
        print(BUILDERS[which]())
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
