"""The headless runner's ``--start`` (workflows/run.py) on any host: ``--cpu`` when torch finds no GPU,
``--comfy-arg`` passed through, messages that name the ComfyUI's real model folders, no hidden variable.

The end-to-end tests run the README's main-job command (``run.py WORKFLOW --prompt … --seed 7 --size N
--start``) on the SD1.5 2-step workflow with the random SD1.5 checkpoint (tests/models.py) and a random
LoRA under the official names, at 256². ComfyUI is $COMFYUI_PATH (skipped without one); the test models
come in through ``--comfy-arg=--extra-model-paths-config=…`` and the images go to a temporary
``--output-directory``, so nothing is written into ComfyUI's own folders.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from host import import_comfy, require_comfyui

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "workflows" / "run.py"
WORKFLOW = REPO / "workflows" / "hyper-sd15-2step-lora.json"
CKPT = "v1-5-pruned-emaonly-fp16.safetensors"
LORA = "Hyper-SD15-2steps-lora.safetensors"
from hypersd_pack.workflows.runner import cli, client, errors, launcher  # noqa: E402


# ------------------------------------------------------------------------------------- no server needed


def test_cpu_only_when_torch_finds_no_accelerator(tmp_path):
    comfy = Path("/opt/ComfyUI")
    cpu = launcher.server_command(comfy, 8190, tmp_path, (), accel=[], python="py")
    gpu = launcher.server_command(comfy, 8190, tmp_path, (), accel=["CUDA"], python="py")
    assert cpu[:2] == ["py", "/opt/ComfyUI/main.py"] and "--cpu" in cpu
    assert "--cpu" not in gpu
    for chosen in (["--directml"], ["--cpu"], ["--cuda-device=1"], ["--default-device", "2"]):
        cmd = launcher.server_command(comfy, 8190, tmp_path, chosen, accel=[], python="py")
        assert cmd.count("--cpu") == (1 if chosen == ["--cpu"] else 0), cmd


def test_comfy_args_are_passed_on_after_the_runners(tmp_path):
    cmd = launcher.server_command(Path("/c"), 8190, tmp_path, ["--lowvram", "--preview-method", "auto"],
                                accel=["CUDA"], python="py")
    assert cmd[-3:] == ["--lowvram", "--preview-method", "auto"]
    assert cmd[cmd.index("--port") + 1] == "8190" and "--base-directory" not in cmd
    moved = launcher.server_command(Path("/c"), 8190, tmp_path, ["--temp-directory=/x"], accel=[], python="py")
    assert moved.count("--temp-directory") == 0 and moved[-1] == "--temp-directory=/x"


def test_accelerator_probe_matches_torch_here():
    import torch
    found = launcher.accelerators(sys.executable)
    assert ("CUDA" in found or "ROCm" in found) == torch.cuda.is_available(), found
    mps = getattr(torch.backends, "mps", None)
    assert ("MPS" in found) == bool(mps is not None and mps.is_available()), found


def test_unusable_comfy_python_is_a_clear_error(tmp_path):
    with pytest.raises(errors.RunError, match="COMFYUI_PYTHON"):
        launcher.accelerators(str(tmp_path / "no-python"))


def test_no_hidden_environment_variable():
    assert "HYPERSD_CPU" not in RUN.read_text()
    assert "HYPERSD_CPU" not in (REPO / "README.md").read_text()


def test_comfy_arg_needs_start(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([str(WORKFLOW), "--comfy-arg=--lowvram"])
    assert exc.value.code == 2 and "--comfy-arg needs --start" in capsys.readouterr().err


def test_missing_model_hint_names_the_servers_folder():
    body = {"node_errors": {"1": {"class_type": "CheckpointLoaderSimple", "errors": [{
        "message": "Value not in list", "details": f"ckpt_name: '{CKPT}' not in []",
        "extra_info": {"input_name": "ckpt_name", "received_value": CKPT}}]}}}
    wf = {"models": [{"name": CKPT, "url": "https://example/x", "directory": "checkpoints"}]}
    folders = {"checkpoints": ["/srv/comfy/models/checkpoints", "/mnt/shared/checkpoints"]}
    msg = client.validation_message(body, wf, folders=folders)
    assert f"missing model {CKPT}: put it in /srv/comfy/models/checkpoints (download: https://example/x)" in msg
    assert "models/checkpoints" in client.validation_message(body, wf)


# ------------------------------------------------------------------------------------ with --start


@pytest.fixture(scope="module")
def test_models(tmp_path_factory):
    """A folder with the random SD1.5 checkpoint and LoRA under the workflow's names, and two yaml files
    for ComfyUI: with both models, and with the checkpoint only."""
    require_comfyui()
    import_comfy()
    import loras
    import models
    root = tmp_path_factory.mktemp("runner-models")
    for sub in ("checkpoints", "loras", "ckpt-only/checkpoints"):
        (root / sub).mkdir(parents=True)
    for folder in (root / "checkpoints", root / "ckpt-only" / "checkpoints"):
        (folder / CKPT).symlink_to(models.sd15_checkpoint())
    loras.write(root / "loras" / LORA, loras.make_lora(loras.SD15_UNET, "kohya", seed=2, std=0.01))
    (root / "both.yaml").write_text(f"hypersd_test:\n  base_path: {root}\n  checkpoints: checkpoints\n"
                                    f"  loras: loras\n")
    (root / "ckpt-only.yaml").write_text(f"hypersd_test:\n  base_path: {root / 'ckpt-only'}\n"
                                         f"  checkpoints: checkpoints\n")
    return root


def run_start(yaml, out, *extra):
    """The README's main-job command with --start (only the models and outputs redirected)."""
    cmd = [sys.executable, str(RUN), str(WORKFLOW), "--prompt", "a red fox in snow", "--seed", "7", "--size", "256",
           "--start", f"--comfy-arg=--extra-model-paths-config={yaml}", f"--comfy-arg=--output-directory={out}",
           "--out", str(out / "saved"), *extra]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("HYPERSD_CPU", None)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=env, cwd=str(REPO))


def test_readme_main_job_starts_comfyui_on_this_host(test_models, tmp_path):
    import torch
    proc = run_start(test_models / "both.yaml", tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    started = [line for line in proc.stdout.splitlines() if line.startswith("starting ComfyUI")]
    assert started and ("--cpu" in started[0]) == (not torch.cuda.is_available()), started
    assert "--extra-model-paths-config=" in started[0] and "--base-directory" not in started[0]
    images = [Path(line) for line in proc.stdout.splitlines() if line.endswith(".png")]
    assert len(images) == 1 and images[0].parent == tmp_path / "saved"
    from PIL import Image
    with Image.open(images[0]) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.float64)
    assert pixels.shape == (256, 256, 3) and np.isfinite(pixels).all() and pixels.std() > 0
    assert list(tmp_path.glob("hyper-sd_*.png")), "ComfyUI saved into the --comfy-arg output directory"


def test_missing_lora_message_names_comfyuis_real_loras_folder(test_models, tmp_path):
    comfy = require_comfyui()
    proc = run_start(test_models / "ckpt-only.yaml", tmp_path)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    err = proc.stderr
    assert LORA in err and "offline" in err.lower(), err
    assert str(comfy / "models" / "loras") in err, err
    assert "hypersd-run-" not in err.split("ComfyUI's log:")[0], err


def test_python_without_torch_is_a_clear_error(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(errors.RunError, match="cannot import torch .ModuleNotFoundError: No module named 'torch'."):
        launcher.accelerators(str(fake))


def test_pack_already_in_custom_nodes_is_not_added_twice(tmp_path, monkeypatch):
    monkeypatch.setattr(launcher.tempfile, "tempdir", str(tmp_path))
    comfy = tmp_path / "ComfyUI"
    (comfy / "custom_nodes").mkdir(parents=True)
    assert not launcher.pack_installed_in(comfy)
    workdir = launcher.prepare_workdir(comfy)
    assert (workdir / "custom_nodes" / "ComfyUI-HyperSD").resolve() == REPO
    assert "custom_nodes" in (workdir / "hypersd-pack.yaml").read_text()
    (comfy / "custom_nodes" / "ComfyUI-HyperSD").symlink_to(REPO)
    assert launcher.pack_installed_in(comfy)
    workdir = launcher.prepare_workdir(comfy)
    assert not (workdir / "hypersd-pack.yaml").exists()
    assert "--extra-model-paths-config" not in launcher.server_command(comfy, 1, workdir, (), [], "py")
