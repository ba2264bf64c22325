"""The pack installed by the real ComfyUI-Manager: ``cm-cli.py install <git URL>`` of ltdrdata/ComfyUI-Manager
3.31.9 (the git-clone Manager ComfyUI 0.3.64 users have), in offline network mode, from this repository
served on 127.0.0.1 by ``git daemon``, into a ComfyUI whose environment has only ComfyUI's requirements
(plus the Manager's own, which a user who has the Manager has installed). Then the server starts without
import errors, lists the pack's nodes and workflow templates, and a shipped workflow validates and runs.

Set-up, all at test time, nothing from the network but PyPI:
- ComfyUI: a fresh copy of ComfyUI 0.3.64 (``../shared/tools/unpack-comfyui``) in a temporary folder, so
  the Manager writes into its own ``custom_nodes`` and ``user`` folders, never into $COMFYUI_PATH's.
- ComfyUI-Manager: ``../shared/tools/unpack-upstream ComfyUI-Manager <custom_nodes>``; its
  ``user/default/ComfyUI-Manager/config.ini`` says ``network_mode = offline`` (no registry or channel
  fetch: the Manager reads its bundled lists and skips the Comfy Registry).
- The repository: what a ``git clone`` of this checkout would hold (tracked plus untracked non-ignored
  files, so uncommitted work is tested too) committed into a bare repository named ``ComfyUI-HyperSD.git``
  and served by ``git daemon`` on a free loopback port; the Manager clones ``git://127.0.0.1:PORT/
  ComfyUI-HyperSD.git`` into ``custom_nodes/ComfyUI-HyperSD`` and pip-installs the pack's requirements.txt
  line by line itself.
- The environment: a venv cached under ``~/.cache/hypersd-pack-tests/manager-venv`` (``$HYPERSD_CACHE``
  overrides the parent folder): ``torch==2.13.0`` (the CPU build available here), ``torchvision==0.28.0``
  without dependencies, ComfyUI's ``requirements.txt`` without its torch lines (torch and torchvision held
  by constraints), ``requests``, the Manager's ``requirements.txt``, then
  ``../shared/tools/patch_torchvision_cpu.py`` (see ../shared/HOST.md). It is rebuilt when a requirements
  file changes (their sha256 are in the stamp) or when a previous run left it different from the
  pristine ``pip freeze`` (the Manager's installs of the pack's requirements are undone that way).

Skipped, each with a message: no ComfyUI (COMFYUI_PATH), no ``../shared`` tools or Manager snapshot, no
``git`` with ``git daemon``. The previous test imitated the Manager (copy + ``pip install`` per line); the
real Manager shows all of it, so nothing of the imitation is kept.
"""
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host import PACK_FOLDER, ComfyServer, execution_error, import_comfy, require_comfyui

REPO = Path(__file__).resolve().parents[1]
PACK_NODES = {"HyperSDLoraLoader", "HyperSDTCDSampler", "HyperSDScheduler", "HyperSDUNetLoader"}
TORCH = {"torch": "2.13.0", "torchvision": "0.28.0"}
RECIPE = ("v2: torch==2.13.0; --no-deps torchvision==0.28.0; comfy reqs -torch* + requests; manager reqs; "
          "patch torchvision")
IGNORED = {".git", ".venv", "artifacts", "__pycache__", "node_modules", ".pytest_cache"}
WORKFLOW = "hyper-sd15-1step-unified-tcd"


def cache_root():
    return Path(os.environ.get("HYPERSD_CACHE") or Path.home() / ".cache" / "hypersd-pack-tests").expanduser()


def shared_tools(comfy):
    """../shared/tools (next to the repository, as CI lays it out), or $HYPERSD_SHARED/tools."""
    candidates = [os.environ.get("HYPERSD_SHARED"), REPO.parent / "shared", REPO.parents[1] / "shared",
                  comfy.parent.parent / "shared", comfy.parent / "shared"]
    for cand in candidates:
        if cand and (Path(cand) / "tools" / "unpack-upstream").is_file():
            tools = Path(cand) / "tools"
            if list((tools.parent / "upstream").glob("ComfyUI-Manager-*.tar.gz")):
                return tools
    pytest.skip("needs ../shared/tools (unpack-comfyui, unpack-upstream, patch_torchvision_cpu.py) and "
                "../shared/upstream/ComfyUI-Manager-*.tar.gz, or HYPERSD_SHARED pointing at that folder")


def run(cmd, timeout=1800, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def freeze(python):
    return sorted(run([python, "-m", "pip", "freeze", "--all", "--disable-pip-version-check"], timeout=120)
                  .splitlines())


@contextlib.contextmanager
def locked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def manager_venv(comfy_req, manager_req, patch):
    """The cached venv with ComfyUI's and the Manager's requirements only: (python, stamp)."""
    venv = cache_root() / "manager-venv"
    python = venv / "bin" / "python"
    stamp_path = venv / "hypersd-stamp.json"
    want = {"recipe": RECIPE, "comfy_requirements_sha256": hashlib.sha256(comfy_req.read_bytes()).hexdigest(),
            "manager_requirements_sha256": hashlib.sha256(manager_req.read_bytes()).hexdigest(),
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
    lines = [line for line in comfy_req.read_text().splitlines()
             if not re.match(r"^\s*(torch|torchvision|torchaudio)\s*([<>=!~;#].*)?$", line)]
    (venv / "comfy-requirements.txt").write_text("\n".join(lines) + "\n")
    run(pip + ["-c", constraints, "-r", venv / "comfy-requirements.txt", "requests", "-r", manager_req])
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


def served_repository(root):
    """A bare repository ``root/ComfyUI-HyperSD.git`` with one commit of the pack's files."""
    work = root / "work"
    for rel in pack_files():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, work / rel)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@127.0.0.1", "-c", "init.defaultBranch=main"]
    run(git + ["init", "-q", work])
    run(git + ["-C", work, "add", "-A"])
    run(git + ["-C", work, "commit", "-q", "-m", "the pack as checked out"])
    run(git + ["clone", "-q", "--bare", work, root / f"{PACK_FOLDER}.git"])
    return root


@contextlib.contextmanager
def git_daemon(base):
    """``git daemon`` serving ``base`` on a free 127.0.0.1 port; yields the git:// URL prefix."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["git", "daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={port}", "--export-all",
                             f"--base-path={base}", str(base)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            if proc.poll() is not None:
                pytest.skip(f"git daemon does not run here: {proc.stderr.read().decode()[-500:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"git://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def fresh_comfyui(tools, dest):
    """A fresh ComfyUI 0.3.64 with ComfyUI-Manager in its custom_nodes, set to offline network mode."""
    comfy = Path(run([tools / "unpack-comfyui", dest / "ComfyUI"]).strip().splitlines()[-1])
    manager = Path(run([tools / "unpack-upstream", "ComfyUI-Manager", comfy / "custom_nodes"])
                   .strip().splitlines()[-1])
    config = comfy / "user" / "default" / "ComfyUI-Manager" / "config.ini"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[default]\nnetwork_mode = offline\n")
    return comfy, manager


def add_test_models(comfy):
    """The random SD1.5 checkpoint and a random LoRA under the 1-step SD1.5 workflow's file names."""
    import_comfy()  # in-process ComfyUI (from $COMFYUI_PATH) builds the random checkpoint once
    import loras
    import models
    (comfy / "models" / "checkpoints" / "v1-5-pruned-emaonly-fp16.safetensors").symlink_to(models.sd15_checkpoint())
    loras.write(comfy / "models" / "loras" / "Hyper-SD15-1step-lora.safetensors",
                loras.make_lora(loras.SD15_UNET, "kohya", seed=1, std=0.01))


def validate_and_run_workflow(server):
    """The shipped 1-step SD1.5 workflow, converted against the server, at 64²: validated and run."""
    from hypersd_pack.workflows.runner import convert as conversion, edits
    wf = json.loads((REPO / "workflows" / f"{WORKFLOW}.json").read_text())
    prompt = edits.customize(conversion.convert(wf, server.object_info()), size=64)
    status, body = server.post("/prompt", {"prompt": prompt})
    entry = server.wait(body["prompt_id"], timeout=900) if status == 200 else None
    return status, body, entry


@pytest.fixture(scope="module")
def installed(tmp_path_factory, monkeypatch_module):
    host = require_comfyui()
    tools = shared_tools(host)
    if shutil.which("git") is None:
        pytest.skip("needs git (ComfyUI-Manager clones with it)")
    root = tmp_path_factory.mktemp("real-manager")
    comfy, manager = fresh_comfyui(tools, root)
    with locked(cache_root() / "manager-venv.lock"):
        python, stamp = manager_venv(comfy / "requirements.txt", manager / "requirements.txt",
                                     tools / "patch_torchvision_cpu.py")
        before = freeze(python)
        try:
            with git_daemon(served_repository(root / "served")) as url:
                env = dict(os.environ, COMFYUI_PATH=str(comfy))
                env.pop("COMFYUI_FOLDERS_BASE_PATH", None)
                proc = subprocess.run([python, manager / "cm-cli.py", "install", f"{url}/{PACK_FOLDER}.git"],
                                      cwd=manager, env=env, capture_output=True, text=True, timeout=1800)
            after = freeze(python)
            add_test_models(comfy)
            monkeypatch_module.setenv("COMFYUI_PYTHON", str(python))
            monkeypatch_module.setenv("COMFYUI_PATH", str(comfy))
            server = ComfyServer(comfy)  # its own tree as base directory: custom_nodes holds Manager + pack
            try:
                server.start(timeout=300)
                info = server.object_info()
                templates = server.get("/workflow_templates")
                workflow = validate_and_run_workflow(server)
                log = server.log()
            finally:
                server.stop()
        finally:
            if freeze(python) != stamp["freeze"]:  # the next run starts again from the requirements only
                (python.parent.parent / "hypersd-stamp.json").unlink(missing_ok=True)
    return {"comfy": comfy, "cli": proc, "dest": comfy / "custom_nodes" / PACK_FOLDER, "log": log, "info": info,
            "templates": templates, "workflow": workflow, "before": before, "after": after}


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_cm_cli_installs_from_the_git_url(installed):
    cli = installed["cli"]
    out = cli.stdout + cli.stderr
    assert cli.returncode == 0 and "[INSTALLED]" in out and "Installation was successful." in out, out[-4000:]
    # The Manager's only complaint here: "PyTorch is not installed", because no torchaudio build matches torch
    # 2.13.0 (../shared/HOST.md), so its torch-rollback check is skipped; nothing else may fail.
    errors = [line for line in out.splitlines() if "error" in line.lower() and "PyTorch is not installed" not in line]
    assert errors == [] and "install script failed" not in out, errors
    assert "Cannot connect to comfyregistry" not in out and "FETCH ComfyRegistry" not in out, out[-4000:]
    dest = installed["dest"]
    assert (dest / ".git").is_dir() and not dest.is_symlink(), "the Manager clones the repository"
    shipped = sorted(p.name for p in (REPO / "workflows").glob("*.json"))
    assert (dest / "__init__.py").is_file() and sorted(p.name for p in (dest / "workflows").glob("*.json")) == shipped
    assert "Install: pip packages" in out  # the Manager ran the pack's requirements.txt


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
    assert len(expected) == 16
    assert sorted(installed["templates"].get(PACK_FOLDER, [])) == expected, installed["templates"]


def test_shipped_workflow_validates_and_runs(installed):
    status, body, entry = installed["workflow"]
    assert status == 200, body
    assert entry["status"]["status_str"] == "success", execution_error(entry)


def test_requirements_leave_torch_alone(installed):
    changed = sorted(set(installed["before"]) ^ set(installed["after"]))
    assert not [c for c in changed if re.match(r"(?i)^(torch|torchvision|torchaudio)(==| @)", c)], changed
    versions = {line.split("==")[0].lower(): line.split("==")[1] for line in installed["after"] if "==" in line}
    assert versions["torch"].split("+")[0] == TORCH["torch"] and versions["torchvision"] == TORCH["torchvision"]
