"""The pack installed by ComfyUI-Manager 4 on ComfyUI 0.33.0: the pip package ``comfyui_manager`` that
0.33's ``manager_requirements.txt`` pins (4.2.2), which ComfyUI runs with ``--enable-manager``. Its UI
installs packs from the Comfy Registry only; its ``cm-cli`` also installs from a git URL (the route for
versions not published yet). Both routes, each into a fresh ComfyUI 0.33.0, then the server.

Registry route, nothing from the network but PyPI:
- A stand-in for the Registry API on 127.0.0.1 (tests/registry.py) receives what ``comfy node publish``
  (comfy-cli from PyPI, run in a git checkout of this repository) sends: the node and version records read
  from ``pyproject.toml`` and the archive comfy-cli packs (git-tracked files less ``.comfyignore``).
- ``cm-cli install hyper-sd --mode remote``, with the Manager's registry address
  (``comfyui_manager.common.cnr_utils.base_url``, ``https://api.comfy.org``) set to the stand-in's. ``--mode
  remote`` reads the registry's node list now: on a fresh install, before a ComfyUI with
  ``--enable-manager`` has filled the Manager's cache, plain ``cm-cli install hyper-sd`` answers "not found".
  The Manager unpacks the archive into ``custom_nodes/<project.name>`` and pip-installs requirements.txt.
- ``python main.py --enable-manager`` (Manager ``network_mode = offline``: no channel or registry fetch from
  the running server) loads it; the nodes, the help pages, the workflow templates and the Manager's
  installed list are read over HTTP; the shipped 1-step SD1.5 workflow runs at 64² on the random
  checkpoint of tests/models.py.

Git route: ``cm-cli install git://127.0.0.1:PORT/ComfyUI-HyperSD.git`` (``git daemon`` serving a clone of
this checkout) into ``custom_nodes/ComfyUI-HyperSD``, then the server lists the nodes and templates.

One venv for both routes (tests/manager_env.py, ``manager4-venv`` in the cache): torch 2.13.0 (CPU),
torchvision and torchaudio without dependencies, ComfyUI 0.33.0's requirements and
``manager_requirements.txt``. Skipped, each with a message: no ComfyUI at COMFYUI_PATH (it builds the
random checkpoint in-process), no ../shared tools or 0.33.0 snapshot, no git or ``git daemon``.
"""
import configparser
import io
import json
import os
import re
import subprocess
import urllib.request
import zipfile
from pathlib import Path

import pytest

import host
import manager_env as env
from host import ComfyServer, execution_error, require_comfyui
from registry import Registry

tomllib = pytest.importorskip("tomllib")

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
NODE_ID = PROJECT["name"]
GIT_FOLDER = host.PACK_FOLDER
VERSION = "0.33.0"
MANAGER = "comfyui_manager==4.2.2"
PACK_NODES = {"HyperSDLoraLoader", "HyperSDTCDSampler", "HyperSDScheduler", "HyperSDUNetLoader"}
TOKEN = "publish-token-for-the-stand-in"
# cm-cli as its console script runs it, with the Manager's registry address set first.
CM_CLI = ("import sys; url = sys.argv.pop(1); from cm_cli import __main__ as cli; "
          "cli.cnr_utils.base_url = url; sys.argv[0] = 'cm-cli'; cli.main()")
# comfy-cli as its console script runs it, with its registry address set first.
COMFY_CLI = ("import sys, comfy_cli.registry.api as api; url = sys.argv.pop(1); "
             "api.RegistryAPI.determine_base_url = lambda self: url; "
             "from comfy_cli.__main__ import main; sys.argv[0] = 'comfy'; sys.exit(main())")


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """(shared tools, root folder, Manager-4 venv), the venv held (locked) for the module. The venv's
    requirements are read from the fresh ComfyUI the registry route installs into."""
    host_comfy = require_comfyui()
    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("needs git (comfy-cli packs git-tracked files; the Manager clones)")
    tools = env.shared_tools(host_comfy)
    env.upstream_archive(tools, f"comfyui-{VERSION}.tar.gz")
    root = tmp_path_factory.mktemp("manager4")
    comfy = env.fresh_comfyui(tools, root / "registry", VERSION)
    manager_req = comfy / "manager_requirements.txt"
    assert manager_req.read_text().split() == [MANAGER], manager_req.read_text()
    with env.host_venv("manager4-venv", comfy, [manager_req], tools, torchaudio=True) as venv:
        yield tools, root, venv


def cm_cli(venv, comfy, registry_url, *args):
    # COLUMNS: the Manager prints through rich, which wraps at 80 columns when not on a terminal.
    proc = subprocess.run([venv.python, "-c", CM_CLI, registry_url, *args], capture_output=True, text=True,
                          timeout=1800, env=dict(os.environ, COMFYUI_PATH=str(comfy), COLUMNS="1000"))
    return proc.returncode, proc.stdout + proc.stderr


def offline_manager(comfy):
    """The Manager's config.ini (ComfyUI's user/__manager) with ``network_mode = offline``."""
    path = comfy / "user" / "__manager" / "config.ini"
    config = configparser.ConfigParser(strict=False)
    config.read(path)
    if "default" not in config:
        config["default"] = {}
    config["default"]["network_mode"] = "offline"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        config.write(fh)


def fetch(server, path):
    with urllib.request.urlopen(server.url + path, timeout=30) as r:
        return r.read()


def started(comfy, venv, folder, monkeypatch):
    """A ComfyUI server with ``--enable-manager`` on ``comfy`` (its own tree as base directory)."""
    offline_manager(comfy)
    monkeypatch.setenv("COMFYUI_PYTHON", str(venv.python))
    monkeypatch.setenv("COMFYUI_PATH", str(comfy))
    monkeypatch.setattr(host, "PACK_FOLDER", folder)  # the installed folder: nothing linked next to it
    server = ComfyServer(comfy)
    server.extra_args = ("--enable-manager",)
    return server.start(timeout=300)


@pytest.fixture(scope="module")
def published(setting):
    """The stand-in registry, serving what ``comfy node publish`` uploaded from a git checkout."""
    _, root, _ = setting
    checkout = env.git_checkout(root / "checkout" / GIT_FOLDER)
    home = root / "home"
    home.mkdir()
    with Registry() as reg:
        with env.comfy_cli_venv() as cli:
            proc = subprocess.run([cli.python, "-c", COMFY_CLI, reg.url, "--skip-prompt", "node", "publish",
                                   "--token", TOKEN], cwd=checkout, capture_output=True, text=True, timeout=600,
                                  env=dict(os.environ, HOME=str(home), DO_NOT_TRACK="1"))
        assert proc.returncode == 0 and "Upload successful." in proc.stdout, proc.stdout + proc.stderr
        reg.publish_calls = list(reg.calls)
        yield reg


@pytest.fixture(scope="module")
def from_registry(setting, published):
    _, root, venv = setting
    comfy = root / "registry" / "ComfyUI"
    before = env.freeze(venv.python)
    published.calls.clear()
    rc, out = cm_cli(venv, comfy, published.url, "install", NODE_ID, "--mode", "remote")
    calls, after = list(published.calls), env.freeze(venv.python)
    env.add_test_models(comfy)
    with pytest.MonkeyPatch.context() as mp:
        server = started(comfy, venv, NODE_ID, mp)
        try:
            got = {"info": server.object_info(), "templates": server.get("/workflow_templates"),
                   "installed": server.get("/v2/customnode/installed"),
                   "docs": {p.name: fetch(server, f"/extensions/{NODE_ID}/docs/{p.name}")
                            for p in (REPO / "web" / "docs").glob("*.md")},
                   "template": json.loads(fetch(server, f"/api/workflow_templates/{NODE_ID}/{env.WORKFLOW}.json")),
                   "workflow": env.validate_and_run_workflow(server, size=64)}
            got["images"] = server.output_images(got["workflow"][2]) if got["workflow"][2] else []
            got["log"] = server.log()
        finally:
            server.stop()
    return dict(got, comfy=comfy, rc=rc, out=out, calls=calls, before=before, after=after,
                dest=comfy / "custom_nodes" / NODE_ID, archive=published.archive(NODE_ID))


@pytest.fixture(scope="module")
def from_git(setting):
    tools, root, venv = setting
    comfy = env.fresh_comfyui(tools, root / "git", VERSION)
    served = env.bare_repository(root / "served")
    before = env.freeze(venv.python)
    with env.git_daemon(served) as url:
        # No registry on this route: its address is a closed loopback port, so nothing leaves the machine.
        rc, out = cm_cli(venv, comfy, "http://127.0.0.1:9", "install", f"{url}/{GIT_FOLDER}.git")
    after = env.freeze(venv.python)
    with pytest.MonkeyPatch.context() as mp:
        server = started(comfy, venv, GIT_FOLDER, mp)
        try:
            got = {"info": server.object_info(), "templates": server.get("/workflow_templates"),
                   "installed": server.get("/v2/customnode/installed"), "log": server.log()}
        finally:
            server.stop()
    return dict(got, rc=rc, out=out, before=before, after=after, dest=comfy / "custom_nodes" / GIT_FOLDER)


def pip_installs(out):
    """The package specs the Manager passed to ``pip install`` / ``uv pip install``."""
    return re.findall(r"'install',\s*'([^']+)'\]", out)


def requirement_lines():
    return [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def no_import_failure(log, folder):
    bad = [line for line in log.splitlines() if ("IMPORT FAILED" in line or "Cannot import" in line)
           and folder in line]
    loaded = [line for line in log.splitlines() if "seconds" in line and line.rstrip().endswith(f"/{folder}")]
    return not bad and bool(loaded)


# -- publishing -------------------------------------------------------------------------------------------
def test_registry_holds_what_comfy_node_publish_sent(published):
    assert [c[0] for c in published.publish_calls] == ["POST", "PUT"], published.publish_calls
    assert published.publish_calls[0][1] == f"/publishers/hyper-sd-comfy/nodes/{NODE_ID}/versions"
    node = published.nodes[NODE_ID]
    assert node["publisher"]["id"] == "hyper-sd-comfy" and node["name"] == "Hyper-SD"
    assert node["repository"] == PROJECT["urls"]["Repository"]
    assert node["supported_comfyui_version"] == ">=0.3.64"
    assert node["supported_comfyui_frontend_version"] == ">=1.27.10"
    assert "OS Independent" in node["supported_os"] and "GPU :: NVIDIA CUDA" in node["supported_accelerators"]
    latest = node["latest_version"]
    assert latest["version"] == PROJECT["version"] and latest["dependencies"] == requirement_lines()
    names = zipfile.ZipFile(io.BytesIO(published.archive(NODE_ID))).namelist()
    assert "__init__.py" in names and not [n for n in names if n.startswith(("tests/", "benchmarks/"))]


# -- registry route ---------------------------------------------------------------------------------------
def test_cm_cli_installs_from_the_registry(from_registry):
    out = from_registry["out"]
    assert from_registry["rc"] == 0, out[-4000:]
    assert re.search(rf"\[INSTALLED\] {re.escape(NODE_ID)}\s+\[{re.escape(PROJECT['version'])}\]", out), out[-4000:]
    assert not re.search(r"ERROR|Traceback", out), out[-4000:]
    paths = [c[1].split("?")[0] for c in from_registry["calls"]]
    assert paths[0] == "/nodes" and f"/nodes/{NODE_ID}/install" in paths
    assert f"/archives/{NODE_ID}/{PROJECT['version']}/node.zip" in paths


def test_installs_the_archive_into_custom_nodes_under_the_project_name(from_registry):
    dest = from_registry["dest"]
    assert dest.name == PROJECT["name"] and dest.is_dir() and not (dest / ".git").exists()
    archived = set(zipfile.ZipFile(io.BytesIO(from_registry["archive"])).namelist())
    on_disk = {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert on_disk == archived | {".tracking"}, sorted(on_disk ^ (archived | {".tracking"}))
    assert set((dest / ".tracking").read_text().split("\n")) == archived  # the Manager's record of the files


def test_registry_install_pip_installs_the_requirements_and_leaves_torch_alone(from_registry):
    assert "Install: pip packages" in from_registry["out"]
    assert pip_installs(from_registry["out"]) == requirement_lines()
    before, after = from_registry["before"], from_registry["after"]
    assert env.torch_lines(before) == env.torch_lines(after)
    assert env.versions(after)["torch"] == "2.13.0+cpu"


def test_server_with_the_manager_loads_the_registry_install(from_registry):
    log = from_registry["log"]
    assert "[START] ComfyUI-Manager" in log, log[-4000:]
    assert no_import_failure(log, NODE_ID), log[-4000:]
    info = from_registry["info"]
    assert PACK_NODES <= set(info), sorted(PACK_NODES - set(info))
    assert {info[n]["python_module"] for n in PACK_NODES} == {f"custom_nodes.{NODE_ID}"}


def test_the_manager_lists_it_as_a_registry_pack(from_registry):
    assert from_registry["installed"][NODE_ID] == {"ver": PROJECT["version"], "cnr_id": NODE_ID, "aux_id": None,
                                                  "enabled": True}


def test_help_pages_are_served_under_the_folder_name(from_registry):
    docs = from_registry["docs"]
    assert len(docs) == 6
    for name, body in docs.items():
        assert body == (REPO / "web" / "docs" / name).read_bytes(), name


def test_workflow_templates_are_listed_under_the_folder_name(from_registry):
    expected = sorted(p.stem for p in (REPO / "workflows").glob("*.json"))
    assert len(expected) == 16 and sorted(from_registry["templates"].get(NODE_ID, [])) == expected
    assert from_registry["template"] == json.loads((REPO / "workflows" / f"{env.WORKFLOW}.json").read_text())


def test_shipped_workflow_runs_on_the_registry_install(from_registry):
    from PIL import Image
    status, body, entry = from_registry["workflow"]
    assert status == 200, body
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    images = from_registry["images"]
    assert len(images) == 1 and Image.open(images[0]).size == (64, 64)


# -- git route --------------------------------------------------------------------------------------------
def test_cm_cli_installs_from_the_git_url(from_git):
    out = from_git["out"]
    assert from_git["rc"] == 0 and "[INSTALLED]" in out and "Installation was successful." in out, out[-4000:]
    assert not re.search(r"ERROR|Traceback|error\[", out), out[-4000:]
    dest = from_git["dest"]
    assert (dest / ".git").is_dir() and (dest / "__init__.py").is_file()
    shipped = sorted(p.name for p in (REPO / "workflows").glob("*.json"))
    assert sorted(p.name for p in (dest / "workflows").glob("*.json")) == shipped
    assert pip_installs(out) == requirement_lines()
    assert env.torch_lines(from_git["before"]) == env.torch_lines(from_git["after"])


def test_server_with_the_manager_loads_the_git_install(from_git):
    assert no_import_failure(from_git["log"], GIT_FOLDER), from_git["log"][-4000:]
    info = from_git["info"]
    assert {info[n]["python_module"] for n in PACK_NODES} == {f"custom_nodes.{GIT_FOLDER}"}
    expected = sorted(p.stem for p in (REPO / "workflows").glob("*.json"))
    assert sorted(from_git["templates"].get(GIT_FOLDER, [])) == expected
    assert from_git["installed"][GIT_FOLDER]["enabled"] is True
