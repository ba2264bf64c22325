"""The pack's Comfy Registry metadata: ``pyproject.toml`` per the Registry's pyproject specification
(docs.comfy.org/registry/specifications), the icon, ``.comfyignore``, and comfy-cli's own verdict.

The pure tests read the files. The comfy-cli tests run comfy-cli from PyPI (``manager_env.COMFY_CLI``, in a
venv cached under ``~/.cache/hypersd-pack-tests/comfy-cli-venv``) in a git checkout of this repository (what
``comfy node publish`` runs in): ``comfy node validate`` (the checks publishing runs) must pass without a
warning, and ``comfy node pack`` (the archive publishing uploads, git-tracked files less ``.comfyignore``)
must hold the pack's runtime files and none of the development ones. No network but PyPI, no ComfyUI.
"""
import os
import re
import subprocess
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

import manager_env as env

tomllib = pytest.importorskip("tomllib")

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT, COMFY = PYPROJECT["project"], PYPROJECT["tool"]["comfy"]
# The Registry specification's classifier lists (docs.comfy.org/registry/specifications, "classifiers").
SPEC_OS = {"Operating System :: OS Independent", "Operating System :: Microsoft :: Windows",
           "Operating System :: POSIX :: Linux", "Operating System :: MacOS"}
SPEC_ACCELERATORS = {"Environment :: GPU :: NVIDIA CUDA", "Environment :: GPU :: AMD ROCm",
                     "Environment :: GPU :: Intel Arc", "Environment :: NPU :: Huawei Ascend",
                     "Environment :: GPU :: Apple Metal"}
OLDEST_HOST = "0.3.64"  # the oldest ComfyUI the tests run on (../shared/HOST.md)
# Development-only paths that must stay out of the Registry archive, and runtime paths that must be in it.
DEV_ONLY = ("tests/", "benchmarks/", ".ci/", "requirements-test.txt")
RUNTIME = ("__init__.py", "pyproject.toml", "requirements.txt", "LICENSE", "README.md", "icon.svg")


def requirement_lines():
    return [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def oldest_host_frontend():
    """The comfyui-frontend-package version ComfyUI 0.3.64 pins, read from its source snapshot."""
    tools = env.shared_tools(REPO)
    archive = tools.parent / "upstream" / f"comfyui-{OLDEST_HOST}.tar.gz"
    if not archive.is_file():
        pytest.skip(f"needs {archive}")
    with tarfile.open(archive) as tar:
        req = tar.extractfile("ComfyUI/requirements.txt").read().decode()
    return re.search(r"^comfyui-frontend-package==(\S+)$", req, re.M).group(1)


# -- [project] ------------------------------------------------------------------------------------------
def test_name_follows_the_registry_rules():
    name = PROJECT["name"]
    assert len(name) < 100 and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*([-_.][A-Za-z0-9]+)*", name), name
    assert "comfyui" not in name.lower()  # the specification's best practice


def test_version_is_static_semver():
    assert "version" not in PROJECT.get("dynamic", [])
    assert re.fullmatch(r"\d+\.\d+\.\d+", PROJECT["version"]), PROJECT["version"]


def test_license_and_repository():
    assert PROJECT["license"] == {"file": "LICENSE"} and (REPO / "LICENSE").is_file()
    assert "GNU GENERAL PUBLIC LICENSE" in (REPO / "LICENSE").read_text()[:200]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", PROJECT["urls"]["Repository"])


def test_classifiers_are_the_specifications():
    classifiers = set(PROJECT["classifiers"])
    os_ = {c for c in classifiers if c.startswith("Operating System ::")}
    gpu = {c for c in classifiers if c.startswith("Environment ::")}
    assert os_ == {"Operating System :: OS Independent"}  # pure Python and torch through ComfyUI
    assert gpu and gpu <= SPEC_ACCELERATORS, gpu - SPEC_ACCELERATORS
    assert "Environment :: GPU :: NVIDIA CUDA" in gpu
    assert classifiers == os_ | gpu


def test_dependencies_are_requirements_txt_plus_the_oldest_frontend():
    deps = PROJECT["dependencies"]
    frontend = [d for d in deps if d.startswith("comfyui-frontend-package")]
    assert [d for d in deps if d not in frontend] == requirement_lines()
    assert frontend == [f"comfyui-frontend-package>={oldest_host_frontend()}"]
    assert not [d for d in deps if re.match(r"(?i)torch", d)]


# -- [tool.comfy] ---------------------------------------------------------------------------------------
def test_tool_comfy_fields():
    assert re.fullmatch(r"[a-z][a-z0-9-]*", COMFY["PublisherId"]), COMFY["PublisherId"]
    assert COMFY["DisplayName"] == "Hyper-SD"
    assert COMFY["requires-comfyui"] == f">={OLDEST_HOST}"
    assert COMFY.get("includes", []) == []


def icon_file():
    """The repository file the Icon URL names (raw.githubusercontent.com/<owner>/<repo>/main/<path>)."""
    repo_path = PROJECT["urls"]["Repository"].removeprefix("https://github.com/")
    prefix = f"https://raw.githubusercontent.com/{repo_path}/main/"
    assert COMFY["Icon"].startswith(prefix), (COMFY["Icon"], prefix)
    return REPO / COMFY["Icon"][len(prefix):]


def test_icon_is_a_square_image_of_at_most_400_px():
    path = icon_file()
    assert path.is_file(), path
    assert path.suffix in (".svg", ".png", ".jpg", ".gif")
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    width, height = float(root.get("width")), float(root.get("height"))
    vb = [float(x) for x in root.get("viewBox").split()]
    assert width == height <= 400 and vb[2] == vb[3] and vb[2] / vb[3] == width / height


def test_comfyignore_names_the_development_files():
    lines = {line.strip() for line in (REPO / ".comfyignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")}
    assert set(DEV_ONLY) <= lines and "__pycache__/" in lines


# -- comfy-cli --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def comfy_cli(tmp_path_factory):
    """(run comfy-cli in a git checkout of the pack, that checkout)."""
    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("needs git (comfy-cli packs the git-tracked files)")
    root = tmp_path_factory.mktemp("comfy-cli")
    checkout = env.git_checkout(root / "ComfyUI-HyperSD")
    home = root / "home"  # comfy-cli keeps its config under ~/.config: a throw-away one
    home.mkdir()
    with env.comfy_cli_venv() as venv:
        def comfy(*args, cwd=checkout):
            proc = subprocess.run([venv.venv / "bin" / "comfy", "--skip-prompt", *args], cwd=cwd,
                                  capture_output=True, text=True, timeout=300,
                                  env=dict(os.environ, HOME=str(home), DO_NOT_TRACK="1"))
            return proc.returncode, proc.stdout + proc.stderr
        yield comfy, checkout


def test_comfy_node_validate_passes_without_a_warning(comfy_cli):
    comfy, _ = comfy_cli
    rc, out = comfy("node", "validate")
    assert rc == 0 and "All validation checks passed successfully" in out, out
    assert not re.search(r"(?i)warning|error", out), out


def test_comfy_node_validate_would_report_a_bad_field(comfy_cli, tmp_path):
    """The check above can fail: the same checkout with requires-comfyui not in x.y.z form is reported."""
    comfy, checkout = comfy_cli
    broken = tmp_path / "broken"
    broken.mkdir()
    text = (checkout / "pyproject.toml").read_text().replace('requires-comfyui = ">=0.3.64"',
                                                             'requires-comfyui = ">=0.3"')
    (broken / "pyproject.toml").write_text(text)
    _, out = comfy("node", "validate", cwd=broken)
    assert "Warning: Invalid requires-comfyui format" in out, out


def test_comfy_node_pack_holds_the_runtime_files_only(comfy_cli):
    comfy, checkout = comfy_cli
    rc, out = comfy("node", "pack")
    assert rc == 0, out
    with zipfile.ZipFile(checkout / "node.zip") as zf:
        infos = zf.infolist()
    names = {i.filename for i in infos}
    tracked = set(env.run(["git", "-C", checkout, "ls-files"]).splitlines())
    runtime = {f for f in tracked if f.split("/")[0] in ("core", "nodes", "samplers", "workflows", "web")}
    assert runtime and runtime | set(RUNTIME) <= names, sorted(runtime | set(RUNTIME) - names)
    assert {f"web/docs/{p.name}" for p in (REPO / "web" / "docs").glob("*.md")} <= names
    assert not [n for n in names if n.startswith(DEV_ONLY) or "__pycache__" in n or n.endswith(".pyc")]
    assert not [i.filename for i in infos if (i.external_attr >> 16) & 0o170000 == 0o120000]  # no symlinks
    assert names <= tracked  # nothing untracked
