"""Sanity checks for the random-weight test models of ``tests/models.py``.

The SD1.5 checkpoint is built on first use (~15 s, 2.1 GB in the cache) and loaded with real ComfyUI.
The SDXL files are never built here (~1 min and 12 GB of disk): their checks run only when an earlier
``python tests/models.py sdxl sdxl-unet`` left them in the cache, and then read only file headers and a
few tensors.
"""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models  # noqa: E402


def _require_comfyui():
    """Put ComfyUI on ``sys.path`` and import it (CPU), or skip with a message naming COMFYUI_PATH."""
    path = Path(os.environ.get("COMFYUI_PATH") or Path.home() / "comfy" / "ComfyUI").expanduser()
    if not (path / "main.py").is_file():
        pytest.skip(f"needs a real ComfyUI: none at COMFYUI_PATH={path} (set COMFYUI_PATH to a ComfyUI "
                    f"checkout, see ../shared/HOST.md)")
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    return models.import_comfy()


@pytest.fixture(scope="module")
def sd15_loaded():
    """(path, model_patcher, clip, vae) of the random SD1.5 checkpoint, loaded by real ComfyUI."""
    _require_comfyui()
    import comfy.sd
    path = models.sd15_checkpoint()
    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(path))
    return path, model, clip, vae


def test_random_values_are_deterministic():
    torch = pytest.importorskip("torch")
    key = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight"
    a = models.random_tensor(key, (320, 320, 3, 3), torch.float16, seed=0)
    assert torch.equal(a, models.random_tensor(key, (320, 320, 3, 3), torch.float16, seed=0))
    assert not torch.equal(a, models.random_tensor(key, (320, 320, 3, 3), torch.float16, seed=1))
    assert 0.015 < a.float().std().item() < 0.025
    norm = models.random_tensor("model.diffusion_model.out.0.weight", (320,), torch.float16)
    assert abs(norm.float().mean().item() - 1.0) < 0.01


def test_sd15_checkpoint_is_detected_as_sd15(sd15_loaded):
    path, model, clip, vae = sd15_loaded
    assert path == models.path_of("sd15") and path.is_file()
    assert type(model.model.model_config).__name__ == "SD15"
    assert clip is not None and vae is not None
    header, _ = models.read_safetensors_header(path)
    assert header["__metadata__"]["hypersd_test_model"] == "SD15"
    prefixes = {k.split(".")[0] for k in header if k != "__metadata__"}
    assert prefixes == {"model", "cond_stage_model", "first_stage_model"}
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"F16"}


def test_sd15_checkpoint_is_cached(sd15_loaded):
    path = sd15_loaded[0]
    mtime = path.stat().st_mtime_ns
    assert models.sd15_checkpoint() == path
    assert path.stat().st_mtime_ns == mtime


def test_sd15_outputs_are_finite(sd15_loaded):
    import torch
    _, model, clip, vae = sd15_loaded
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a photo of a cat"))[0][0]
    assert cond.shape == (1, 77, 768) and torch.isfinite(cond).all()
    noise = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    for sigma in (14.6, 0.03):
        with torch.no_grad():
            x0 = model.model.apply_model(noise * sigma, torch.tensor([sigma]), c_crossattn=cond)
        eps = (noise * sigma - x0) / sigma
        assert torch.isfinite(eps).all()
        assert 0.05 < eps.std().item() < 10.0
    image = vae.decode(noise[:, :, :8, :8])
    assert image.shape == (1, 64, 64, 3) and torch.isfinite(image).all()


def test_sdxl_files():
    """Header-level checks of the SDXL files (built here when the cache lacks them: the UNet-loader tests
    need them anyway, so a fresh machine runs this test too)."""
    _require_comfyui()
    ckpt, unet = models.sdxl_checkpoint(), models.sdxl_unet_diffusers()
    import comfy.model_detection
    ck_header, _ = models.read_safetensors_header(ckpt)
    un_header, _ = models.read_safetensors_header(unet)
    ck_meta = models.meta_state_dict(ck_header)
    un_meta = models.meta_state_dict(un_header)
    assert type(comfy.model_detection.model_config_from_unet(ck_meta, "model.diffusion_model.")).__name__ == "SDXL"
    assert type(comfy.model_detection.model_config_from_diffusers_unet(un_meta)).__name__ == "SDXL"
    assert len(un_meta) == sum(k.startswith("model.diffusion_model.") for k in ck_meta) == 1680

    assert {entry["dtype"] for key, entry in un_header.items() if key != "__metadata__"} == {"F32"}
