"""The pack installed the way ComfyUI-Manager installs it, into a ComfyUI whose environment has only
ComfyUI's own requirements: it starts without import errors, lists its nodes and its workflow templates.

The environment is a venv built once and cached under ``~/.cache/hypersd-pack-tests/manager-venv``
(``$HYPERSD_CACHE`` overrides the parent folder): ``torch==2.13.0`` (the CPU build available here),
``torchvision==0.28.0`` without dependencies, ComfyUI's ``requirements.txt`` without its torch lines (torch
and torchvision held by constraints), ``requests``, then ``../shared/tools/patch_torchvision_cpu.py`` (see
../shared/HOST.md). It is rebuilt when ComfyUI's requirements.txt changes (its sha256 is in the stamp) or
when a previous run left it different from the pristine ``pip freeze``.

The pack's files (what git would commit: ``git ls-files``, untracked non-ignored files included) are
COPIED to ``custom_nodes/ComfyUI-HyperSD`` of a temporary base directory, each non-comment line of its
requirements.txt is installed with its own ``pip install <line>`` as ComfyUI-Manager does (after a
``--dry-run`` that refuses a line which would replace torch, torchvision or torchaudio: that would pull GBs
of CUDA packages), and ComfyUI is started with the venv's python. Skipped with a message naming
COMFYUI_PATH when there is no ComfyUI, and with a message when the torchvision patch script is absent.
No model is loaded.
"""
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host import PACK_FOLDER, ComfyServer, require_comfyui

REPO = Path(__file__).resolve().parents[1]
PACK_NODES = {"HyperSDLoraLoader", "HyperSDTCDSampler", "HyperSDScheduler", "HyperSDUNetLoader"}
TORCH = {"torch": "2.13.0", "torchvision": "0.28.0"}
TORCH_FAMILY = ("torch", "torchvision", "torchaudio")
RECIPE = "v1: torch==2.13.0; --no-deps torchvision==0.28.0; comfy reqs -torch* + requests; patch torchvision"
IGNORED = {".git", ".venv", "artifacts", "__pycache__", "node_modules", ".pytest_cache"}


def cache_root():
    return Path(os.environ.get("HYPERSD_CACHE") or Path.home() / ".cache" / "hypersd-pack-tests").expanduser()


def patch_script(comfy):
    """../shared/tools/patch_torchvision_cpu.py, looked up next to the repository or the ComfyUI host."""
    candidates = [os.environ.get("HYPERSD_TORCHVISION_PATCH"), REPO.parent / "shared", REPO.parents[1] / "shared",
                  comfy.parent.parent / "shared", comfy.parent / "shared", Path("/work/shared")]
    for cand in candidates:
        if not cand:
            continue
        cand = Path(cand)
        path = cand if cand.suffix == ".py" else cand / "tools" / "patch_torchvision_cpu.py"
        if path.is_file():
            return path
    pytest.skip("needs ../shared/tools/patch_torchvision_cpu.py (torchvision 0.28.0 does not import next to a "
                "CPU torch without it; see ../shared/HOST.md) or HYPERSD_TORCHVISION_PATCH")


def run(cmd, timeout=1800, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def freeze(python):
    return sorted(run([python, "-m", "pip", "freeze", "--all", "--disable-pip-version-check"], timeout=120)
                  .splitlines())


def torch_versions(python):
    out = run([python, "-c", "import json, importlib.metadata as m, torch\n"
                             "print(json.dumps({'torch': torch.__version__, "
                             "'torchvision': m.version('torchvision')}))"], timeout=300)
    return json.loads(out.strip().splitlines()[-1])


@contextlib.contextmanager
def locked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def manager_venv(comfy, patch):
    """The cached venv with only ComfyUI's requirements (built or rebuilt as needed): (python, stamp)."""
    venv = cache_root() / "manager-venv"
    python = venv / "bin" / "python"
    stamp_path = venv / "hypersd-stamp.json"
    req = (comfy / "requirements.txt").read_bytes()
    want = {"recipe": RECIPE, "comfy_requirements_sha256": hashlib.sha256(req).hexdigest(),
            "base_python": sys.version.split()[0]}
    stamp = json.loads(stamp_path.read_text()) if stamp_path.is_file() else {}
    if python.is_file() and {k: stamp.get(k) for k in want} == want and freeze(python) == stamp.get("freeze"):
        return python, stamp
    shutil.rmtree(venv, ignore_errors=True)
    t0 = time.time()
    run([sys.executable, "-m", "venv", venv])
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    constraints = venv / "constraints.txt"
    constraints.write_text("".join(f"{k}=={v}\n" for k, v in TORCH.items()))
    run(pip + [f"torch=={TORCH['torch']}"])
    run(pip + ["--no-deps", f"torchvision=={TORCH['torchvision']}"])
    lines = [line for line in req.decode().splitlines()
             if not re.match(r"^\s*(torch|torchvision|torchaudio)\s*([<>=!~;#].*)?$", line)]
    comfy_req = venv / "comfy-requirements.txt"
    comfy_req.write_text("\n".join(lines) + "\n")
    run(pip + ["-c", constraints, "-r", comfy_req, "requests"])
    run([python, patch])
    stamp = dict(want, freeze=freeze(python), build_seconds=round(time.time() - t0, 1))
    stamp_path.write_text(json.dumps(stamp, indent=1))
    return python, stamp


def pack_files():
    """The pack's files as a git checkout of it would have them (tracked plus untracked non-ignored)."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True).stdout.decode()
        files = [f for f in out.split("\0") if f and (REPO / f).is_file()]
        if files:
            return files
    except (OSError, subprocess.CalledProcessError):
        pass
    return [str(p.relative_to(REPO)) for p in REPO.rglob("*")
            if p.is_file() and not IGNORED.intersection(p.relative_to(REPO).parts) and p.suffix != ".pyc"]


def requirement_lines(path):
    """What ComfyUI-Manager passes to `pip install`, one at a time: each stripped line of requirements.txt
    that is neither empty nor a comment."""
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")]


@pytest.fixture(scope="module")
def installed(tmp_path_factory, monkeypatch_module):
    comfy = require_comfyui()
    patch = patch_script(comfy)
    with locked(cache_root() / "manager-venv.lock"):
        python, stamp = manager_venv(comfy, patch)
        base = tmp_path_factory.mktemp("comfy-manager")
        dest = base / "custom_nodes" / PACK_FOLDER
        for rel in pack_files():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, target)
        before = freeze(python)
        pip_log = []
        try:
            for line in requirement_lines(dest / "requirements.txt"):
                report = base / "pip-report.json"
                run([python, "-m", "pip", "install", "--dry-run", "--quiet",
                     "--disable-pip-version-check", "--report", report, line], timeout=600)
                would = {i["metadata"]["name"].lower(): i["metadata"]["version"]
                         for i in json.loads(report.read_text())["install"]}
                replaced = {k: v for k, v in would.items() if k in TORCH_FAMILY and TORCH.get(k) != v.split("+")[0]}
                assert not replaced, f"`pip install {line}` would replace {replaced} (GBs of CUDA packages)"
                pip_log.append(run([python, "-m", "pip", "install", "--disable-pip-version-check", line],
                                   timeout=1200))
            if (dest / "install.py").is_file():  # ComfyUI-Manager runs it after the requirements
                run([python, "install.py"], cwd=dest, timeout=600)
            after = freeze(python)
            versions = torch_versions(python)
            monkeypatch_module.setenv("COMFYUI_PYTHON", str(python))
            server = ComfyServer(base)
            try:
                server.start(timeout=240)
                info = server.object_info()
                templates = server.get("/workflow_templates")
                log = server.log()
            finally:
                server.stop()
        finally:
            if freeze(python) != stamp["freeze"]:  # the next run starts again from ComfyUI's requirements only
                (python.parent.parent / "hypersd-stamp.json").unlink(missing_ok=True)
    return {"dest": dest, "log": log, "info": info, "templates": templates, "before": before, "after": after,
            "versions": versions, "pip_log": pip_log, "stamp": stamp}


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_copied_not_linked(installed):
    dest = installed["dest"]
    assert not dest.is_symlink() and (dest / "__init__.py").is_file()
    assert (dest / "requirements.txt").is_file() and list((dest / "workflows").glob("*.json"))


def test_starts_without_import_errors(installed):
    log = installed["log"]
    bad = [line for line in log.splitlines()
           if ("IMPORT FAILED" in line or "Cannot import" in line) and PACK_FOLDER in line]
    assert not bad, "\n".join(bad) + "\n" + log[-4000:]
    loaded = [line for line in log.splitlines() if "seconds" in line and line.rstrip().endswith(PACK_FOLDER)]
    assert loaded, f"the pack is not in ComfyUI's import-times list:\n{log[-4000:]}"


def test_lists_its_nodes(installed):
    assert PACK_NODES <= set(installed["info"]), sorted(PACK_NODES - set(installed["info"]))
    for name in PACK_NODES:
        assert installed["info"][name]["python_module"] == f"custom_nodes.{PACK_FOLDER}"


def test_lists_its_workflow_templates(installed):
    expected = sorted(p.stem for p in (REPO / "workflows").glob("*.json"))
    assert len(expected) == 12
    assert sorted(installed["templates"].get(PACK_FOLDER, [])) == expected, installed["templates"]


def test_requirements_leave_torch_alone(installed):
    changed = sorted(set(installed["before"]) ^ set(installed["after"]))
    assert not [c for c in changed if re.match(r"(?i)^(torch|torchvision|torchaudio)(==| @)", c)], changed
    assert installed["versions"]["torch"].split("+")[0] == TORCH["torch"], installed["versions"]
    assert installed["versions"]["torchvision"] == TORCH["torchvision"]
