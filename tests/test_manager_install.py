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
  overrides the parent folder; built by tests/manager_env.py): ``torch==2.13.0`` (the CPU build available
  here), ``torchvision==0.28.0`` without dependencies, ComfyUI's ``requirements.txt`` without its torch lines
  (torch and torchvision held by constraints), ``requests``, the Manager's ``requirements.txt``, then
  ``../shared/tools/patch_torchvision_cpu.py`` (see ../shared/HOST.md). It is rebuilt when a requirements
  file changes (their sha256 are in the stamp) or when a previous run left it different from the
  pristine ``pip freeze`` (the Manager's installs of the pack's requirements are undone that way).

Skipped, each with a message: no ComfyUI (COMFYUI_PATH), no ``../shared`` tools or Manager snapshot, no
``git`` with ``git daemon``. The previous test imitated the Manager (copy + ``pip install`` per line); the
real Manager shows all of it, so nothing of the imitation is kept.
"""
import os
import re
import subprocess
from pathlib import Path

import pytest

import manager_env as env
from host import PACK_FOLDER, ComfyServer, execution_error, require_comfyui

REPO = Path(__file__).resolve().parents[1]
PACK_NODES = {"HyperSDLoraLoader", "HyperSDTCDSampler", "HyperSDScheduler", "HyperSDUNetLoader"}
TORCH = env.TORCH
VERSION = "0.3.64"


def fresh_comfyui(tools, dest):
    """A fresh ComfyUI 0.3.64 with ComfyUI-Manager in its custom_nodes, set to offline network mode."""
    comfy = env.fresh_comfyui(tools, dest, VERSION)
    manager = Path(env.run([tools / "unpack-upstream", "ComfyUI-Manager", comfy / "custom_nodes"])
                   .strip().splitlines()[-1])
    config = comfy / "user" / "default" / "ComfyUI-Manager" / "config.ini"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[default]\nnetwork_mode = offline\n")
    return comfy, manager


@pytest.fixture(scope="module")
def installed(tmp_path_factory, monkeypatch_module):
    host = require_comfyui()
    tools = env.shared_tools(host)
    env.upstream_archive(tools, "ComfyUI-Manager-*.tar.gz")
    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("needs git (ComfyUI-Manager clones with it)")
    root = tmp_path_factory.mktemp("real-manager")
    comfy, manager = fresh_comfyui(tools, root)
    with env.host_venv("manager-venv", comfy, [manager / "requirements.txt"], tools) as venv:
        python = venv.python
        before = env.freeze(python)
        with env.git_daemon(env.bare_repository(root / "served")) as url:
            cli_env = dict(os.environ, COMFYUI_PATH=str(comfy))
            cli_env.pop("COMFYUI_FOLDERS_BASE_PATH", None)
            proc = subprocess.run([python, manager / "cm-cli.py", "install", f"{url}/{PACK_FOLDER}.git"],
                                  cwd=manager, env=cli_env, capture_output=True, text=True, timeout=1800)
        after = env.freeze(python)
        env.add_test_models(comfy)
        monkeypatch_module.setenv("COMFYUI_PYTHON", str(python))
        monkeypatch_module.setenv("COMFYUI_PATH", str(comfy))
        server = ComfyServer(comfy)  # its own tree as base directory: custom_nodes holds Manager + pack
        try:
            server.start(timeout=300)
            info = server.object_info()
            templates = server.get("/workflow_templates")
            workflow = env.validate_and_run_workflow(server)
            log = server.log()
        finally:
            server.stop()
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
