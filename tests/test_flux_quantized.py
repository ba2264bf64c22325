"""FLUX.1-dev loaded as fp8 (UNETLoader weight_dtype fp8_e4m3fn) and as GGUF (city96/ComfyUI-GGUF, Q8_0):
the Hyper-FLUX LoRA at the recipe's 0.125 is accepted by the Hyper-SD LoRA Loader, and the patched model samples
finite latents that match the unquantized path within the quantization's tolerance.

Model: tests/flow_models.py's reduced FLUX.1-dev file (1 double + 1 single block, full width, bf16), loaded by
ComfyUI as float32 (reference), as fp8 e4m3fn, and, quantized to Q8_0 with the ``gguf`` package, through
ComfyUI-GGUF's own UnetLoaderGGUF node (its source is unpacked from ../shared/upstream at test time; skipped
with a message when ``gguf`` or the snapshot is absent). Sampling: ComfyUI's ``sample_custom`` with the pack's
TCD sampler at eta 0 (the FLUX recipe), 3 steps, a 64² latent, random text conditioning and guidance 3.5.

Tolerance, from the formats rather than picked: the relative weight error of the quantization itself,
``e_w = ||Q(W) − W|| / ||W||`` over the model (about 2^-4 for fp8 e4m3, 2^-9 for Q8_0), bounds how far a
layer's output moves; through a few transformer blocks and steps the latent's relative error must stay within
``8 · e_w``; and it must be less than half its distance to the unpatched reference (the LoRA took effect).
"""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import flow_loras
import flow_models
import loras

REPO = Path(__file__).resolve().parents[1]
# the project's shared folder beside the checkout (../shared), or beside a worktree's parent; $HYPERSD_SHARED wins
SHARED = next((p for p in [Path(os.environ.get("HYPERSD_SHARED", REPO.parent / "shared")), REPO.parents[1] / "shared"]
               if (p / "upstream").is_dir()), REPO.parent / "shared")
UPSTREAM, UNPACK = SHARED / "upstream", SHARED / "tools" / "unpack-upstream"
LABEL, FILE = "FLUX.1-dev · 8 steps", "Hyper-FLUX.1-dev-8steps-lora.safetensors"


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.fixture(scope="module")
def env(comfy_host, tmp_path_factory):
    import folder_paths
    tmp = tmp_path_factory.mktemp("flux-quant")
    (tmp / "loras").mkdir()
    targets = flow_loras.flux_targets(3072, flow_models.FLUX_DEPTH, flow_models.FLUX_SINGLE)
    loras.write(tmp / "loras" / FILE, flow_loras.make_lora(targets, std=0.1))
    folder_paths.folder_names_and_paths["loras"] = ([str(tmp / "loras")], set(folder_paths.supported_pt_extensions))
    gen = torch.Generator().manual_seed(5)
    ctx, pooled = torch.randn(1, 16, 4096, generator=gen), torch.randn(1, 768, generator=gen)
    from hypersd_pack.nodes import lora, sampling
    return SimpleNamespace(tmp=tmp, lora=lora, sampling=sampling, cond=[[ctx, {"pooled_output": pooled,
                                                                               "guidance": 3.5}]])


def sample(env, model, seed=1):
    import comfy.sample
    latent = torch.zeros(1, 16, 8, 8)
    noise = comfy.sample.prepare_noise(latent, seed)
    sampler = env.sampling.HyperSDTCDSampler().get_sampler(0.0)[0]
    mu, n = 1.15, torch.linspace(1, 1 / 3, 3, dtype=torch.float64)
    sigmas = torch.cat([torch.exp(torch.tensor(mu)) / (torch.exp(torch.tensor(mu)) + (1 / n - 1)), torch.zeros(1)])
    with torch.inference_mode():  # as ComfyUI's executor runs every node
        out = comfy.sample.sample_custom(model, noise, 1.0, sampler, sigmas.float(), env.cond, env.cond, latent,
                                         seed=seed, disable_pbar=True)
    assert torch.isfinite(out).all() and out.std() > 0
    return out


def with_lora(env, model):
    patched, _, steps, cfg, eta = env.lora.HyperSDLoraLoader().load(model, LABEL, -1.0, "never")
    assert (steps, cfg, eta) == (8, 1.0, 0.0) and patched.patches
    strengths = {p[0] for patches in patched.patches.values() for p in patches}
    assert strengths == {0.125}  # the recipe's strength, on every patched weight
    return patched


@pytest.fixture(scope="module")
def reference(env):
    import comfy.sd
    import comfy.model_management
    model = comfy.sd.load_diffusion_model(str(flow_models.flux_dev_unet()))
    assert type(model.model.model_config).__name__ == "Flux"
    out = SimpleNamespace(base=sample(env, model), lora=sample(env, with_lora(env, model)),
                          other_seed=sample(env, model, seed=2),
                          weights={k: v.detach().float().clone() for k, v in model.model.state_dict().items()
                                   if k.startswith("diffusion_model.") and v.ndim == 2})
    comfy.model_management.unload_all_models()
    return out


def weight_error(model, reference, dequantize=None):
    """The quantization's relative weight error over every 2-D weight (dequantized as the model computes)."""
    import comfy.utils
    num = den = 0.0
    for key, w in reference.weights.items():
        q = comfy.utils.get_attr(model.model, key)  # the parameter itself (a GGUF one keeps its quant type)
        q = dequantize(q, torch.float32) if dequantize is not None else q.float()
        num += (q.double() - w.double()).pow(2).sum().item()
        den += w.double().pow(2).sum().item()
    return (num / den) ** 0.5


def check_quantized(env, model, reference, expected_weight_error, dequantize=None):
    err_w = weight_error(model, reference, dequantize)
    assert err_w < expected_weight_error, err_w
    lora = sample(env, with_lora(env, model))
    err = rel(lora, reference.lora)
    assert err < 8 * err_w, (err, err_w)
    # the LoRA is applied on the quantized weights: the result is the patched reference's, not the plain model's
    off = rel(lora, reference.base)
    assert err < 0.5 * off, (err, off)
    print(f"\n{type(model).__name__}: weight error {err_w:.4f}, latent error vs unquantized {err:.4f}, "
          f"vs unpatched {off:.4f}, LoRA effect {rel(reference.lora, reference.base):.4f}")
    return err, err_w


def test_fp8_e4m3fn_flux_with_the_hyper_lora(env, reference):
    import comfy.sd
    import comfy.model_management
    model = comfy.sd.load_diffusion_model(str(flow_models.flux_dev_unet()),
                                          model_options={"dtype": torch.float8_e4m3fn})  # UNETLoader fp8_e4m3fn
    assert model.model.get_dtype() == torch.float8_e4m3fn
    check_quantized(env, model, reference, 2 ** -3)
    comfy.model_management.unload_all_models()


def comfyui_gguf(tmp):
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("needs the 'gguf' package (pip install -r requirements-test.txt) to quantize FLUX for ComfyUI-GGUF")
    if not list(UPSTREAM.glob("ComfyUI-GGUF-*.tar.gz")) or not UNPACK.exists() or shutil.which("tar") is None:
        pytest.skip(f"needs the ComfyUI-GGUF source snapshot in {UPSTREAM} (unpacked with {UNPACK})")
    folder = Path(subprocess.run([str(UNPACK), "ComfyUI-GGUF", str(tmp / "custom_nodes")], check=True,
                                 capture_output=True, text=True).stdout.strip())
    spec = importlib.util.spec_from_file_location("ComfyUI_GGUF_under_test", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_gguf_q8_flux_with_the_hyper_lora(env, reference):
    import comfy.model_management
    import folder_paths
    gguf_nodes = comfyui_gguf(env.tmp)
    path = flow_models.flux_dev_gguf("Q8_0")
    for key in ("unet_gguf", "unet", "diffusion_models"):
        paths, exts = folder_paths.folder_names_and_paths.get(key, ([], set()))
        folder_paths.folder_names_and_paths[key] = ([str(path.parent)] + list(paths), set(exts) | {".gguf"})
    loader = gguf_nodes.NODE_CLASS_MAPPINGS["UnetLoaderGGUF"]()
    assert path.name in loader.INPUT_TYPES()["required"]["unet_name"][0]
    model = loader.load_unet(path.name)[0]
    assert type(model.model.model_config).__name__ == "Flux"
    dequant = sys.modules[gguf_nodes.__name__ + ".dequant"].dequantize_tensor
    check_quantized(env, model, reference, 2 ** -7, dequant)
    comfy.model_management.unload_all_models()
