"""``--download`` (workflows/runner/models.py): the model files a workflow lists that the server lacks, fetched
into the server's own folders through the pack's downloader (core/download.py), against a stand-in hub
(tests/fakehub.py, HF_ENDPOINT) and a stand-in ComfyUI (tests/fakecomfy.py) -- and, end to end, from a bare
ComfyUI (a fresh base directory with empty model folders) to an image in one command.
"""
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakecomfy import FakeComfy
from fakehub import FakeHub
from hypersd_pack.workflows.runner import cli, client, models
from hypersd_pack.workflows.runner.errors import RunError

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "workflows" / "run.py"
INFO = json.loads((REPO / "tests" / "data" / "object_info.json").read_text())
WORKFLOW = REPO / "workflows" / "hyper-sd15-1step-unified-tcd.json"
CKPT, CKPT_REPO = "v1-5-pruned-emaonly-fp16.safetensors", "Comfy-Org/stable-diffusion-v1-5-archive"
LORA = "Hyper-SD15-1step-lora.safetensors"
SIZE = 3 * 1024 * 1024 + 4321
TOKEN = "hf_fakeTokenForTests"


@pytest.fixture(scope="module")
def payloads():
    rng = random.Random(77)
    return {CKPT: rng.randbytes(SIZE), LORA: rng.randbytes(SIZE // 3)}


@pytest.fixture
def hub(payloads, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_IMPLICIT_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with FakeHub({LORA: payloads[LORA]}, repos={CKPT_REPO: {CKPT: payloads[CKPT]}}) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
        yield fake


@pytest.fixture
def comfy(tmp_path):
    """A stand-in ComfyUI whose model folders are real folders here: two for checkpoints (the first gets
    the downloads), one for LoRAs."""
    folders = {"checkpoints": [tmp_path / "models" / "checkpoints", tmp_path / "extra" / "checkpoints"],
               "loras": [tmp_path / "models" / "loras"], "vae": [tmp_path / "models" / "vae"]}
    for paths in folders.values():
        for p in paths:
            p.mkdir(parents=True)
    with FakeComfy(object_info=INFO, folders=folders,
                   images=[{"filename": "x.png", "subfolder": "", "type": "output"}]) as fake:
        fake.dirs = folders
        yield fake


def workflow():
    return json.loads(WORKFLOW.read_text())


def fetch(comfy, wf=None, replaced=(), lines=None):
    server = client.Server(comfy.url)
    log = (lines if lines is not None else []).append
    return models.fetch_missing(server, wf or workflow(), client.model_folders(server), replaced, log)


# ---------------------------------------------------------------------------------------------- the list


def test_listed_models_as_the_frontend_collects_them():
    def m(name, directory="checkpoints", url="https://huggingface.co/o/r/resolve/main/x.safetensors"):
        return {"name": name, "directory": directory, "url": url}

    wf = {"models": [m("top.safetensors"), m("sel.safetensors")],
          "nodes": [{"id": 1, "mode": 0, "widgets_values": ["sel.safetensors"],
                     "properties": {"models": [m("sel.safetensors"), m("unselected.safetensors")]}},
                    {"id": 2, "mode": 4, "widgets_values": ["bypassed.safetensors"],
                     "properties": {"models": [m("bypassed.safetensors")]}},
                    {"id": 3, "mode": 2, "widgets_values": {"a": "muted.safetensors"},
                     "properties": {"models": [m("muted.safetensors")]}}],
          "definitions": {"subgraphs": [{"nodes": [{"id": 9, "widgets_values": {"vae_name": "inner.safetensors"},
                                                    "properties": {"models": [m("inner.safetensors", "vae")]}}]}]}}
    assert [(e["name"], e["directory"]) for e in models.listed_models(wf)] == [
        ("sel.safetensors", "checkpoints"), ("inner.safetensors", "vae"), ("top.safetensors", "checkpoints")]
    with pytest.raises(RunError, match="an entry without a name and a directory"):
        models.listed_models({"models": [{"name": "x.safetensors", "url": "u"}]})


# ---------------------------------------------------------------------------------------------- fetching


def test_fetches_what_the_server_lacks_into_its_first_folder(hub, comfy, payloads):
    (comfy.dirs["loras"][0] / "sub").mkdir()
    (comfy.dirs["loras"][0] / LORA).write_bytes(b"already there")  # listed by the server: not fetched
    lines = []
    paths = fetch(comfy, lines=lines)

    target = comfy.dirs["checkpoints"][0] / CKPT
    assert paths == [str(target)] and target.read_bytes() == payloads[CKPT]
    assert sorted(p.name for p in target.parent.iterdir()) == [CKPT]  # no partial, no lock file left
    assert not any(LORA in r.path for r in hub.requests)
    assert [r.body_bytes for r in hub.body_requests()] == [SIZE]
    assert f"{CKPT}: {SIZE / 1e6:,.1f} MB" in lines and f"  {CKPT}: {SIZE / 1e6:,.1f} of {SIZE / 1e6:,.1f} MB (100 %)" \
        in lines, lines
    hub.reset_log()
    assert fetch(comfy, lines=lines) == [] and hub.requests == []  # the second run finds it on the server
    assert lines[-1] == "model files: every file the workflow lists is on the server"


def test_a_file_replaced_with_model_old_new_is_not_fetched(hub, comfy):
    fetch(comfy, replaced=[CKPT])
    assert [r.path.rsplit("/", 1)[-1] for r in hub.requests if r.role == "hub"] == [LORA]
    assert not (comfy.dirs["checkpoints"][0] / CKPT).exists()


@pytest.mark.parametrize("entry, needles", [
    ({"name": "mine.safetensors", "directory": "vae"}, ["mine.safetensors", "no download URL", "models/vae"]),
    ({"name": "x.safetensors", "directory": "upscale_models", "url": "https://huggingface.co/o/r/resolve/main/x.sft"},
     ["'upscale_models', a folder this ComfyUI does not have", "checkpoints, loras, vae"]),
    ({"name": "x.safetensors", "directory": "vae", "url": "https://evil.example/o/r/resolve/main/x.safetensors"},
     ["x.safetensors: refused to download", "not an https://huggingface.co URL", "by hand into"]),
    ({"name": "../x.safetensors", "directory": "vae", "url": "https://huggingface.co/o/r/resolve/main/x.safetensors"},
     ["refused to download the file name '../x.safetensors'"]),
    ({"name": "x.ckpt", "directory": "vae", "url": "https://huggingface.co/o/r/resolve/main/x.ckpt"},
     ["x.ckpt", "refused"]),
])
def test_entries_that_cannot_be_fetched_are_named_before_any_transfer(hub, comfy, entry, needles):
    wf = workflow()
    wf["models"].append(entry)
    with pytest.raises(RunError) as info:
        fetch(comfy, wf)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))
    assert "\n" not in str(info.value) and hub.body_requests() == []


def test_a_server_on_another_machine_is_refused(hub, tmp_path):
    with FakeComfy(object_info=INFO, folders={"checkpoints": [tmp_path / "nowhere" / "checkpoints"],
                                              "loras": [tmp_path / "nowhere" / "loras"]}) as remote:
        remote.listing = lambda folder: []
        with pytest.raises(RunError, match="none of them is a folder on this machine"):
            fetch(remote)
    assert hub.requests == []


def test_a_gated_repo_gives_one_line_naming_the_token_and_the_license_page(hub, comfy, monkeypatch):
    import huggingface_hub

    hub.gated[CKPT_REPO] = "hf_accepted"
    monkeypatch.delenv("HF_TOKEN")
    if huggingface_hub.get_token() is not None:
        pytest.skip("this machine has a saved Hugging Face login: 'no token' cannot be shown")
    with pytest.raises(RunError) as info:
        fetch(comfy)
    line = str(info.value)
    assert "\n" not in line and line.startswith(f"cannot download {CKPT}: {CKPT_REPO} needs a Hugging Face token")
    for needle in ("HTTP 401, gated", f"https://huggingface.co/{CKPT_REPO}", "HF_TOKEN", "`hf auth login`"):
        assert needle in line, needle
    monkeypatch.setenv("HF_TOKEN", "hf_other")
    with pytest.raises(RunError, match=r"refused the token \(HF_TOKEN or your `hf auth login`\).*HTTP 403.*"
                                       rf"https://huggingface.co/{CKPT_REPO}"):
        fetch(comfy)


# ---------------------------------------------------------------------------------------------- resume


def test_cut_at_60_percent_the_next_run_fetches_only_the_rest(hub, comfy, payloads, tmp_path, capsys):
    cut = SIZE * 6 // 10
    hub.cut_after = cut
    args = [str(WORKFLOW), "--server", comfy.url, "--download", "--out", str(tmp_path / "out")]

    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot download {CKPT} into {comfy.dirs['checkpoints'][0]}: the transfer failed")
    assert "\n" not in err and "kept in" in err and "resumes" in err
    (partial,) = comfy.dirs["checkpoints"][0].glob(f".{CKPT}.*.partial")
    have = partial.stat().st_size
    assert 0 < have <= cut and partial.read_bytes() == payloads[CKPT][:have]
    assert comfy.prompts == []  # nothing queued without the checkpoint

    hub.reset_log()
    assert cli.main(args) == 0, capsys.readouterr()
    ckpt_gets = [r for r in hub.body_requests() if r.range]
    assert [(r.range, r.status, r.body_bytes) for r in ckpt_gets] == [(f"bytes={have}-", 206, SIZE - have)]
    assert sum(r.body_bytes for r in hub.body_requests()) == SIZE - have + len(payloads[LORA])
    assert (comfy.dirs["checkpoints"][0] / CKPT).read_bytes() == payloads[CKPT]
    assert len(comfy.prompts) == 1


def test_ctrl_c_keeps_the_partial_and_exits_130(hub, comfy, payloads, tmp_path, capsys, monkeypatch):
    real = models.Progress.__call__

    def interrupted(self, done, total):
        real(self, done, total)
        if done >= 2 * 1024 * 1024:
            raise KeyboardInterrupt

    monkeypatch.setattr(models.Progress, "__call__", interrupted)
    args = [str(WORKFLOW), "--server", comfy.url, "--download", "--out", str(tmp_path / "out")]
    assert cli.main(args) == 130
    assert "interrupted" in capsys.readouterr().err
    (partial,) = comfy.dirs["checkpoints"][0].glob(f".{CKPT}.*.partial")
    have = partial.stat().st_size
    assert have >= 2 * 1024 * 1024 and partial.read_bytes() == payloads[CKPT][:have]
    assert not list(comfy.dirs["checkpoints"][0].glob("*.lock"))
    monkeypatch.setattr(models.Progress, "__call__", real)
    hub.reset_log()
    assert cli.main(args) == 0
    assert [r.body_bytes for r in hub.body_requests() if r.range] == [SIZE - have]


# ---------------------------------------------------------------------------------------------- one command


def test_one_command_from_a_bare_comfyui_to_an_image(tmp_path):
    """The README's first command on ComfyUI at $COMFYUI_PATH with a fresh base directory (empty model
    folders): the runner starts it, downloads the random SD1.5 checkpoint (tests/models.py) and a random
    Hyper-SD15 LoRA from the stand-in hub into the server's folders, and saves a 64x64 image."""
    from host import import_comfy, require_comfyui
    require_comfyui()
    import_comfy()
    import loras
    import models as test_models
    from PIL import Image

    ckpt = test_models.sd15_checkpoint()
    lora = loras.write(tmp_path / "lora.safetensors", loras.make_lora(loras.SD15_UNET, "kohya", seed=2, std=0.01))
    base, out = tmp_path / "base", tmp_path / "out"
    for sub in ("models/checkpoints", "models/loras", "models/vae", "models/diffusion_models",
                "models/text_encoders", "custom_nodes"):  # ComfyUI wants base/custom_nodes to exist
        (base / sub).mkdir(parents=True)
    with FakeHub({LORA: lora.read_bytes()}, repos={CKPT_REPO: {CKPT: ckpt}}) as fake:
        env = dict(os.environ, HF_ENDPOINT=fake.endpoint, HF_HUB_OFFLINE="0", PYTHONUNBUFFERED="1")
        env.pop("HF_TOKEN", None)
        cmd = [sys.executable, str(RUN), str(WORKFLOW), "--start", "--download", "--prompt", "a lighthouse",
               "--seed", "7", "--size", "64", f"--comfy-arg=--base-directory={base}", "--out", str(out)]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=env, cwd=str(REPO))
        seconds = time.time() - t0
        sent = {r.path.rsplit("/", 1)[-1]: r.body_bytes for r in fake.body_requests()}
        ckpt_sha = fake.sha256(fake.repos[CKPT_REPO][CKPT])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"one command, bare ComfyUI to image: {seconds:.1f} s")  # the figure the README quotes (-s shows it)
    saved = base / "models" / "checkpoints" / CKPT
    assert sorted(os.listdir(saved.parent)) == [CKPT] and os.listdir(base / "models" / "loras") == [LORA]
    assert saved.stat().st_size == ckpt.stat().st_size and sha256_file(saved) == ckpt_sha
    assert (base / "models" / "loras" / LORA).read_bytes() == lora.read_bytes()
    assert sorted(sent.values()) == sorted([ckpt.stat().st_size, lora.stat().st_size])  # each file once
    assert "downloading 2 model file(s) the server lacks" in proc.stdout
    images = [Path(line) for line in proc.stdout.splitlines() if line.endswith(".png")]
    assert len(images) == 1 and images[0].parent == out
    with Image.open(images[0]) as im:
        assert im.size == (64, 64)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()
