"""The Hyper-SD LoRA Loader on FLUX.1-dev and SD3, ComfyUI's real model classes, in-process.

* Models: ``comfy.supported_models.Flux`` (FLUX.1-dev layout: guidance embedding, 2 double and 2 single
  blocks, width 256 = 2 heads of 128) and ``SD3`` (MMDiT depth 2, width 128), built from their unet configs
  with ``model_config_from_unet_config`` and filled with seeded random float32 weights.
* LoRAs: the official files' PEFT layout (``transformer.<diffusers module>.lora_A/lora_B.weight``) for every
  linear layer of diffusers' FluxTransformer2DModel / SD3Transformer2DModel blocks (tests/flow_loras.py).
  After the loader (recipe strength 0.125), every patched weight, as ComfyUI computes it for sampling, equals
  ``W + 0.125 · up @ down`` on the rows the hand-written table says (a slice of a fused qkv, proj_mlp inside
  linear1, norm_out's scale/shift swap), within float32 rounding, and no other weight changes.
* The fit check covers fused-slice targets: a file for another width, or with a layer the model lacks, is
  refused with the layer named.
* Family messages name the model actually loaded: FLUX.1-schnell, SD3.5 Large / Medium, SSD-1B, Segmind Vega
  (model-config objects of ComfyUI's own classes; no weights).
"""
from types import SimpleNamespace

import pytest
import torch

import flow_loras
import flow_models
import loras as sd_loras

CPU = torch.device("cpu")
F32 = torch.finfo(torch.float32).eps
FLUX_NARROW = dict(hidden=256, depth=2, single=2, context=64, vec=32)  # 2 heads of 128


def flux_narrow():
    """ComfyUI's own unet_config (this host's detection) of a narrow FLUX.1-dev."""
    return flow_models.flux_unet_config(**FLUX_NARROW)


@pytest.fixture(scope="module")
def pack(comfy_host):
    from hypersd_pack.nodes import lora
    return lora


def random_model(unet_config, seed=0):
    """A ModelPatcher around ComfyUI's own model class for ``unet_config``, seeded random float32 weights."""
    import comfy.model_patcher
    config = flow_models.model_config(unet_config)
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in model.diffusion_model.state_dict().items():
            noise = torch.randn(value.shape, generator=gen) * 0.02
            value.copy_(noise + 1.0 if value.ndim == 1 and key.endswith((".scale", "norm.weight")) else noise)
    return comfy.model_patcher.ModelPatcher(model, load_device=CPU, offload_device=CPU)


@pytest.fixture(scope="module")
def flux(comfy_host):
    return random_model(flux_narrow())


@pytest.fixture(scope="module")
def sd3(comfy_host):
    return random_model(flow_models.sd3_config(depth=2))


@pytest.fixture
def lora_dir(comfy_host, tmp_path, monkeypatch):
    import folder_paths
    folder = tmp_path / "loras"
    folder.mkdir()
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "loras",
                        ([str(folder)], set(folder_paths.supported_pt_extensions)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return folder


def flux_table(config=None):
    config = config or flux_narrow()
    return flow_loras.flux_targets(config["hidden_size"], config["depth"], config["depth_single_blocks"],
                                   context=config["context_in_dim"], vec=config["vec_in_dim"])


def read_patched(patcher):
    """The diffusion model's weights as ComfyUI computes them for sampling (load_models_gpu), copied."""
    import comfy.model_management
    comfy.model_management.load_models_gpu([patcher], force_full_load=True)
    try:
        return {k: v.detach().clone() for k, v in patcher.model.state_dict().items()
                if k.startswith("diffusion_model.")}
    finally:
        comfy.model_management.unload_all_models()


def assert_patched(pack, model, targets, label, filename, lora_dir, strength=0.125):
    tensors = flow_loras.make_lora(targets)
    sd_loras.write(lora_dir / filename, tensors)
    originals = {k: v.detach().clone() for k, v in model.model.state_dict().items() if k.startswith("diffusion_model.")}
    patched, *_ = pack.HyperSDLoraLoader().load(model, label, -1.0, "never")
    assert patched.patches and model.patches == {}
    got = read_patched(patched)
    expected = flow_loras.expected_weights(targets, tensors, originals, strength)
    for key, exact in expected.items():
        spread = originals[key].double().abs()
        for t in (t for t in targets if t.weight == key):
            up = tensors[f"transformer.{t.module}.lora_B.weight"].double().abs()
            down = tensors[f"transformer.{t.module}.lora_A.weight"].double().abs()
            block = strength * (up @ down)
            if t.swap:
                block = torch.cat([block[t.out // 2:], block[:t.out // 2]])
            spread[t.row:t.row + t.out] += block
        bound = 2 * F32 * exact.abs() + 16 * F32 * spread
        err = (got[key].double() - exact).abs()
        assert (err <= bound).all(), f"{key}: max error {err.max().item():.3g}, bound {bound.max().item():.3g}"
        change = (exact - originals[key].double()).abs()
        assert change.min() > 0 and change.max() > 100 * bound.max(), key
    for key, value in got.items():
        if key not in expected:
            assert torch.equal(value, originals[key]), f"{key} changed but no LoRA layer targets it"
    after = read_patched(model)  # the base model is untouched afterwards
    assert all(torch.equal(after[k], originals[k]) for k in expected)
    return expected


def test_flux_table_covers_the_fused_weights_exactly(flux):
    """The hand-written table: its weights exist with its shapes, and the q/k/v (+ proj_mlp) slices tile each
    fused weight (qkv: 3H rows, linear1: 7H rows) with no gap or overlap."""
    sd = flux.model.state_dict()
    for weight, ranges in flow_loras.rows_touched(flux_table()).items():
        rows = sorted(ranges)
        assert rows[0][0] == 0 and rows[-1][1] == sd[weight].shape[0], (weight, rows)
        assert all(a[1] == b[0] for a, b in zip(rows, rows[1:])), (weight, rows)
    for t in flux_table():
        assert sd[t.weight].shape[1] == t.inp, t


def test_flux_lora_every_official_layer_applied(pack, flux, lora_dir):
    targets = flux_table()
    expected = assert_patched(pack, flux, targets, "FLUX.1-dev · 8 steps",
                              "Hyper-FLUX.1-dev-8steps-lora.safetensors", lora_dir)
    modules = {t.module for t in targets}
    for name in ("context_embedder", "x_embedder", "norm_out.linear", "proj_out",
                 "time_text_embed.guidance_embedder.linear_2", "single_transformer_blocks.1.proj_mlp",
                 "single_transformer_blocks.1.norm.linear", "transformer_blocks.1.ff_context.net.2",
                 "transformer_blocks.1.attn.add_v_proj", "transformer_blocks.0.norm1_context.linear"):
        assert name in modules
    assert "diffusion_model.single_blocks.1.linear1.weight" in expected


def test_sd3_lora_every_official_layer_applied(pack, sd3, lora_dir):
    targets = flow_loras.sd3_targets(2)
    sd = sd3.model.state_dict()
    for t in targets:
        assert sd[t.weight].shape[1] == t.inp and sd[t.weight].shape[0] >= t.row + t.out, t
    assert_patched(pack, sd3, targets, "SD3 · 4 steps CFG", "Hyper-SD3-4steps-CFG-lora.safetensors", lora_dir)


def test_fit_check_covers_fused_slices(pack, flux, lora_dir):
    """A q projection one row too wide for its slice of img_attn.qkv is refused, naming the layer and slice."""
    targets = list(flux_table())
    bad = next(i for i, t in enumerate(targets) if t.module == "transformer_blocks.1.attn.to_k")
    targets[bad] = flow_loras.Target(targets[bad].module, targets[bad].weight, 264, 256, 256)
    sd_loras.write(lora_dir / "Hyper-FLUX.1-dev-8steps-lora.safetensors", flow_loras.make_lora(targets))
    with pytest.raises(pack.LoraMismatchError) as info:
        pack.HyperSDLoraLoader().load(flux, "FLUX.1-dev · 8 steps", -1.0, "never")
    msg = str(info.value)
    assert "transformer.transformer_blocks.1.attn.to_k" in msg and "img_attn.qkv.weight[256:512]" in msg
    assert "(264, 4) @ (4, 256)" in msg


def test_fit_check_refuses_another_width_and_missing_layers(pack, sd3, lora_dir):
    """An SD3 file for width 192 on width 128: every fused slice differs; its block-1 context layers map to
    weights the last (context_pre_only) block lacks."""
    targets = [t for t in flow_loras.sd3_targets(3) if t.module.startswith(("transformer_blocks.0.",
                                                                           "transformer_blocks.1."))]
    sd_loras.write(lora_dir / "Hyper-SD3-8steps-CFG-lora.safetensors", flow_loras.make_lora(targets))
    with pytest.raises(pack.LoraMismatchError) as info:
        pack.HyperSDLoraLoader().load(sd3, "SD3 · 8 steps CFG", -1.0, "never")
    msg = str(info.value)
    assert "layer shapes differ" in msg and "qkv.weight[" in msg and "(28 in all)" in msg


def test_fit_check_names_a_layer_the_model_lacks(pack, sd3, lora_dir):
    targets = [t for t in flow_loras.sd3_targets(3) if t.module == "transformer_blocks.1.attn.to_add_out"]
    targets = [flow_loras.Target(t.module, t.weight, 128, 128) for t in targets]
    sd_loras.write(lora_dir / "Hyper-SD3-8steps-CFG-lora.safetensors", flow_loras.make_lora(targets))
    with pytest.raises(pack.LoraMismatchError) as info:
        pack.HyperSDLoraLoader().load(sd3, "SD3 · 8 steps CFG", -1.0, "never")
    assert "joint_blocks.1.context_block.attn.proj.weight, which this model does not have" in str(info.value)


# ------------------------------------------------------------------------------------------ family messages


def config_only(unet_config):
    """A stand-in MODEL carrying only ComfyUI's model config object (what the family check reads)."""
    return SimpleNamespace(model=SimpleNamespace(model_config=flow_models.model_config(unet_config)))


def sdxl_config(transformer_depth):
    import comfy.model_detection
    import models
    return comfy.model_detection.convert_config(dict(models._UNET_CONFIGS["SDXL"], transformer_depth=transformer_depth))


SD35_LARGE = flow_models.sd3_config(depth=38, qk_norm="rms")
SD35_MEDIUM = flow_models.sd3_config(depth=24, qk_norm="rms", x_block_self_attn_layers=range(13))


@pytest.mark.parametrize("config,label,says", [
    ("flux-schnell", "FLUX.1-dev · 8 steps",
     ["model is FLUX.1-schnell", "no guidance embedding", "FLUX.1-dev (flux1-dev.safetensors)"]),
    (SD35_LARGE, "SD3 · 4 steps CFG", ["model is SD3.5 Large (MMDiT depth 38, width 2432)", "for SD3 Medium",
                                       "shapes differ", "sd3_medium_incl_clips_t5xxlfp8"]),
    (SD35_MEDIUM, "SD3 · 8 steps CFG", ["model is SD3.5 Medium (MMDiT depth 24, width 1536)", "for SD3 Medium"]),
    ("ssd1b", "SDXL · 4 steps", ["model is SSD-1B", "SDXL distillation with fewer transformer blocks",
                                 "Load SDXL base 1.0"]),
    ("vega", "SDXL · 8 steps", ["model is Segmind Vega", "no official Hyper-SD file fits it"]),
], ids=["flux-schnell", "sd3.5-large", "sd3.5-medium", "ssd-1b", "vega"])
def test_family_message_names_the_loaded_model(pack, config, label, says, lora_dir):
    if config == "flux-schnell":
        config = flow_models.flux_unet_config(guidance=False)
    elif config == "ssd1b":
        config = sdxl_config([0, 2, 4])
    elif config == "vega":
        config = sdxl_config([0, 1, 2])
    with pytest.raises(pack.LoraMismatchError) as info:
        pack.HyperSDLoraLoader().load(config_only(config), label, -1.0, "never")
    for text in says:
        assert text in str(info.value), str(info.value)
    assert "choose a Hyper-SD LoRA for" not in str(info.value)


def test_family_names(comfy_host):
    from hypersd_pack.nodes import modelfiles
    assert modelfiles.model_family(config_only(flow_models.flux_unet_config())) == "FLUX.1-dev"
    assert modelfiles.model_family(config_only(flow_models.sd3_config(depth=24))) == "SD3"
    assert modelfiles.model_family(config_only(sdxl_config([1, 2, 10]))) == "SDXL"
    assert type(config_only(sdxl_config([0, 2, 4])).model.model_config).__name__ == "SSD1B"
    assert type(config_only(sdxl_config([0, 1, 2])).model.model_config).__name__ == "Segmind_Vega"
