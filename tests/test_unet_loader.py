"""The one-step SDXL UNet loader: both official layouts, the recipe's output against diffusers, and the
errors for files that are not an SDXL UNet. Skipped with a message naming COMFYUI_PATH without a host.

The SDXL runs happen in subprocesses (tests/sdxl_onestep.py), one at a time: an SDXL UNet is ~10 GB in
fp32 on the CPU and this machine has 24 GB.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from host import execution_error, import_comfy
from pixels import real_image

HERE = Path(__file__).resolve().parent
CKPT_LABEL = "SDXL · one-step UNet (ComfyUI checkpoint, fp16)"
DIFFUSERS_LABEL = "SDXL · one-step UNet (diffusers, fp32)"
CKPT_NAME = "Hyper-SDXL-1step-Unet-Comfyui.fp16.safetensors"
UNET_NAME = "Hyper-SDXL-1step-Unet.safetensors"


@pytest.fixture(scope="module")
def sdxl_files(comfy_host):
    import models
    return models.sdxl_checkpoint(), models.sdxl_unet_diffusers()


def run_script(*args):
    proc = subprocess.run([sys.executable, str(HERE / "sdxl_onestep.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def relative_error(x, ref):
    return ((x - ref) / ref.abs().clamp(min=1.0)).abs().max().item()


def test_comfyui_file_gives_diffusers_one_step_result(sdxl_files, tmp_path, servers_stopped):
    """The ComfyUI checkpoint through the node = diffusers' LCM at t=800 on the same weights, which diffusers
    reads with its own single-file converter (not ComfyUI's key map)."""
    ckpt, _ = sdxl_files
    (tmp_path / "ck").mkdir()
    (tmp_path / "un").mkdir()
    (tmp_path / "ck" / CKPT_NAME).symlink_to(ckpt)
    run_script("diffusers-ldm", ckpt, tmp_path / "ref.pt")
    run_script("comfy", CKPT_LABEL, tmp_path / "ck", tmp_path / "un", "none", tmp_path / "a.pt")
    ref, a = torch.load(tmp_path / "ref.pt"), torch.load(tmp_path / "a.pt")
    assert a["calls"] == 1  # one model call
    assert len(a["sigmas"]) == 2 and a["sigmas"][-1] == 0
    assert torch.isfinite(a["x"]).all() and a["x"].std() > 1e-3
    assert relative_error(a["x"], ref) <= 1e-4
    # ComfyUI's own start (z * sigma0 below sigma_max) is measurably off the recipe at t=800.
    core_err = ((a["core_lcm"] - ref).abs().max() / ref.abs().max()).item()
    assert core_err > 1e-3, core_err


def test_diffusers_file_gives_diffusers_one_step_result(sdxl_files, tmp_path, servers_stopped):
    """The fp32 diffusers-layout UNet (key names from diffusers' own model) through the node, with CLIP and
    VAE from a base checkpoint = diffusers loading the same file natively."""
    ckpt, unet = sdxl_files
    (tmp_path / "ck").mkdir()
    (tmp_path / "un").mkdir()
    (tmp_path / "ck" / "sdxl-base.safetensors").symlink_to(ckpt)
    (tmp_path / "un" / UNET_NAME).symlink_to(unet)
    run_script("diffusers", unet, tmp_path / "ref.pt")
    run_script("comfy", DIFFUSERS_LABEL, tmp_path / "ck", tmp_path / "un", "sdxl-base.safetensors", tmp_path / "b.pt")
    ref, b = torch.load(tmp_path / "ref.pt"), torch.load(tmp_path / "b.pt")
    assert b["calls"] == 1
    assert torch.isfinite(b["x"]).all() and b["x"].std() > 1e-3
    assert relative_error(b["x"], ref) <= 1e-4


@pytest.fixture
def servers_stopped():
    """Stop the servers this session runs, and free this process's models, for an SDXL run in a subprocess
    (an fp32 SDXL UNet alone is ~10 GB; this machine has 24 GB); the servers start again afterwards."""
    import gc
    import host
    paused = list(host.RUNNING)
    for server in paused:
        server.stop()
    mm = sys.modules.get("comfy.model_management")
    if mm is not None:
        mm.unload_all_models()
        mm.soft_empty_cache()
    gc.collect()
    yield
    for server in paused:
        server.start()


@pytest.fixture
def comfy_server_freed(request):
    """Unload the session server's models first, if one runs (an SDXL load needs the memory)."""
    import host
    for server in host.RUNNING:
        server.post("/free", {"unload_models": True, "free_memory": True})
    yield


@pytest.fixture(scope="module")
def unet_node(comfy_host):
    return comfy_host.nodes.unet


def _folders(monkeypatch, tmp_path):
    import folder_paths
    exts = folder_paths.supported_pt_extensions
    dirs = {}
    for name in ("checkpoints", "diffusion_models", "embeddings"):
        dirs[name] = tmp_path / name
        dirs[name].mkdir()
        monkeypatch.setitem(folder_paths.folder_names_and_paths, name, ([str(dirs[name])], exts))
    return dirs


def test_sd15_file_under_the_official_name_is_refused(unet_node, monkeypatch, tmp_path):
    import models
    dirs = _folders(monkeypatch, tmp_path)
    (dirs["checkpoints"] / CKPT_NAME).symlink_to(models.sd15_checkpoint())
    with pytest.raises(unet_node.ModelFileError, match="is not an SDXL UNet: it looks like an SD1.5 model") as e:
        unet_node.HyperSDUNetLoader().load(CKPT_LABEL, "never", "none", 800)
    assert CKPT_NAME in str(e.value)


def test_lora_truncated_and_pickle_files_are_refused(unet_node, monkeypatch, tmp_path):
    from safetensors.torch import save_file
    dirs = _folders(monkeypatch, tmp_path)
    target = dirs["diffusion_models"] / UNET_NAME
    save_file({"lora_unet_conv_in.lora_down.weight": torch.zeros(4, 4)}, str(target))
    with pytest.raises(unet_node.ModelFileError, match="it looks like a LoRA"):
        unet_node.HyperSDUNetLoader().load(DIFFUSERS_LABEL, "never", "none", 800)
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(unet_node.ModelFileError, match="cannot read .*truncated"):
        unet_node.HyperSDUNetLoader().load(DIFFUSERS_LABEL, "never", "none", 800)
    torch.save({"conv_in.weight": torch.zeros(2)}, str(target))  # a pickle under a .safetensors name
    with pytest.raises(unet_node.ModelFileError, match="cannot read"):
        unet_node.HyperSDUNetLoader().load(DIFFUSERS_LABEL, "never", "none", 800)


def test_bare_unet_without_base_says_what_is_missing(unet_node, sdxl_files, monkeypatch, tmp_path):
    dirs = _folders(monkeypatch, tmp_path)
    (dirs["diffusion_models"] / UNET_NAME).symlink_to(sdxl_files[1])
    header = unet_node.header(str(dirs["diffusion_models"] / UNET_NAME))
    assert unet_node.classify_sdxl(header, "x") == ("diffusers-unet", False, False)
    with pytest.raises(unet_node.ModelFileError, match="bare UNet: it has no CLIP and VAE. Choose an SDXL base"):
        unet_node.HyperSDUNetLoader()._from_base("none", UNET_NAME, None, None)


def test_missing_file_names_file_and_folders(unet_node, monkeypatch, tmp_path):
    dirs = _folders(monkeypatch, tmp_path)
    from hypersd_pack.core import download
    with pytest.raises(download.DownloadError) as e:
        unet_node.HyperSDUNetLoader().load(DIFFUSERS_LABEL, "never", "none", 800)
    msg = str(e.value)
    assert UNET_NAME in msg and str(dirs["diffusion_models"]) in msg and str(dirs["checkpoints"]) in msg
    assert "https://huggingface.co/ByteDance/Hyper-SD/resolve/main/" + UNET_NAME in msg


def test_server_one_step_sdxl_prompt_and_bad_files(comfy_server, sdxl_files, comfy_server_freed, tmp_path):
    import_comfy()
    import models
    ck_dir = comfy_server.models_dir("checkpoints")
    comfy_server.add_model("checkpoints", sdxl_files[0], CKPT_NAME)
    prompt = {
        "unet": {"class_type": "HyperSDUNetLoader", "inputs": {"unet": CKPT_LABEL, "download": "never",
                                                               "base_checkpoint": "none", "start_timestep": 800}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["unet", 1]}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": 256, "height": 256, "batch_size": 1}},
        "sample": {"class_type": "SamplerCustom", "inputs": {
            "model": ["unet", 0], "add_noise": True, "noise_seed": 1, "cfg": 1.0, "positive": ["pos", 0],
            "negative": ["pos", 0], "sampler": ["unet", 3], "sigmas": ["unet", 4], "latent_image": ["latent", 0]}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["unet", 2]}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": "onestep"}},
    }
    try:
        entry = comfy_server.run_ok(prompt, timeout=900)
        (png,) = comfy_server.output_images(entry)
        real_image(png, 256)
        comfy_server.post("/free", {"unload_models": True, "free_memory": True})
        comfy_server.add_model("checkpoints", models.sd15_checkpoint(), CKPT_NAME)  # wrong family, official name
        entry = comfy_server.run(prompt)
        msg = execution_error(entry)
        assert "ModelFileError" in msg and "SD1.5" in msg and CKPT_NAME in msg, msg
        bad = tmp_path / "truncated.safetensors"
        bad.write_bytes(Path(models.sd15_checkpoint()).read_bytes()[:1 << 20])
        comfy_server.add_model("checkpoints", bad, CKPT_NAME)
        msg = execution_error(comfy_server.run(prompt))
        assert "cannot read" in msg and CKPT_NAME in msg, msg
        assert comfy_server.alive()
    finally:
        (ck_dir / CKPT_NAME).unlink(missing_ok=True)
        comfy_server.post("/free", {"unload_models": True, "free_memory": True})
    assert not [p for p in os.listdir(ck_dir) if p.endswith(".partial")]
