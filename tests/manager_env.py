"""Environments for the ComfyUI-Manager tests: cached host venvs, a comfy-cli venv, fresh ComfyUI trees, and
the pack as a git checkout of it would hold it.

Every venv lives under ``~/.cache/hypersd-pack-tests`` (``$HYPERSD_CACHE`` overrides the folder), is built
under a file lock (tests running side by side share it) and carries a stamp: the recipe, the sha256 of each
requirements file it was built from, the base python, and the ``pip freeze`` right after the build. A venv
is rebuilt when any of that changes, or when a previous test left it different from that freeze (a Manager
installs the pack's requirements into it; the next run starts again from ComfyUI's and the Manager's
requirements only). ``build_seconds`` in the stamp is the wall time of its last build from scratch.

The host venvs follow ../shared/HOST.md: ``torch==2.13.0`` (the CPU build here), ``torchvision`` (and, for
ComfyUI 0.33, ``torchaudio``) without dependencies, ComfyUI's ``requirements.txt`` without its torch lines
with torch and torchvision held by constraints, ``requests``, the Manager's requirements, then the
../shared/tools CPU patches.
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

REPO = Path(__file__).resolve().parents[1]
TORCH = {"torch": "2.13.0", "torchvision": "0.28.0"}
TORCHAUDIO = "2.11.0"  # ComfyUI 0.33 imports torchaudio in nodes.py (../shared/HOST.md)
COMFY_CLI = "comfy-cli==1.23.0"
TORCH_LINE = re.compile(r"^\s*(torch|torchvision|torchaudio)\s*([<>=!~;#].*)?$")
# comfyui-workflow-templates pulls five media bundles (hundreds of MB) that no test reads: the templates
# package and its core and JSON parts are installed without dependencies instead.
TEMPLATES_LINE = re.compile(r"^\s*comfyui-workflow-templates\s*==\s*(\S+)\s*$")
IGNORED = {".git", ".venv", "artifacts", "__pycache__", "node_modules", ".pytest_cache", ".cache-frontend"}


def cache_root():
    return Path(os.environ.get("HYPERSD_CACHE") or Path.home() / ".cache" / "hypersd-pack-tests").expanduser()


def shared_tools(comfy):
    """../shared/tools (next to the repository, as CI lays it out), or $HYPERSD_SHARED/tools."""
    candidates = [os.environ.get("HYPERSD_SHARED"), REPO.parent / "shared", REPO.parents[1] / "shared",
                  comfy.parent.parent / "shared", comfy.parent / "shared"]
    for cand in candidates:
        if cand and (Path(cand) / "tools" / "unpack-upstream").is_file():
            return Path(cand) / "tools"
    pytest.skip("needs ../shared/tools (unpack-comfyui, unpack-upstream, the CPU patches) and ../shared/upstream, "
                "or HYPERSD_SHARED pointing at that folder")


def upstream_archive(tools, pattern):
    found = sorted((tools.parent / "upstream").glob(pattern))
    if not found:
        pytest.skip(f"needs {tools.parent / 'upstream' / pattern} (see ../shared/upstream/README.md)")
    return found[-1]


def run(cmd, timeout=1800, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def freeze(python):
    return sorted(run([python, "-m", "pip", "freeze", "--all", "--disable-pip-version-check"], timeout=120)
                  .splitlines())


def versions(frozen):
    """``{name: version}`` of a ``pip freeze`` listing (lower-case names)."""
    out = {}
    for line in frozen:
        if "==" in line:
            name, ver = line.split("==", 1)
            out[name.lower().replace("_", "-")] = ver
    return out


def torch_lines(lines):
    return [c for c in lines if re.match(r"(?i)^(torch|torchvision|torchaudio)(==| @)", c)]


@contextlib.contextmanager
def locked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class CachedVenv:
    """A venv under the cache folder, rebuilt by ``build(venv, python)`` when its stamp no longer matches.

    Use as a context manager: it holds the venv's lock, and on exit drops the stamp when the venv is no
    longer what was built (so the next user rebuilds it)."""

    def __init__(self, name, recipe, inputs, build):
        self.venv = cache_root() / name
        self.python = self.venv / "bin" / "python"
        self.lock = cache_root() / f"{name}.lock"
        self.want = {"recipe": recipe, "base_python": sys.version.split()[0],
                     **{f"{k}_sha256": hashlib.sha256(Path(p).read_bytes()).hexdigest() for k, p in inputs.items()}}
        self.build = build
        self.stamp = None
        self._cm = None

    @property
    def stamp_path(self):
        return self.venv / "hypersd-stamp.json"

    def __enter__(self):
        self._cm = locked(self.lock)
        self._cm.__enter__()
        try:
            self.stamp = self._ensure()
        except BaseException:
            self._cm.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc):
        try:
            if self.python.is_file() and freeze(self.python) != self.stamp["freeze"]:
                self.stamp_path.unlink(missing_ok=True)
        finally:
            self._cm.__exit__(*exc)

    def _ensure(self):
        stamp = json.loads(self.stamp_path.read_text()) if self.stamp_path.is_file() else {}
        if (self.python.is_file() and {k: stamp.get(k) for k in self.want} == self.want
                and freeze(self.python) == stamp.get("freeze")):
            return stamp
        shutil.rmtree(self.venv, ignore_errors=True)
        t0 = time.time()
        run([sys.executable, "-m", "venv", self.venv])
        self.build(self.venv, self.python)
        stamp = dict(self.want, freeze=freeze(self.python), build_seconds=round(time.time() - t0, 1))
        self.stamp_path.write_text(json.dumps(stamp, indent=1))
        return stamp


def pip(python):
    return [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]


def host_requirements(comfy_req, venv):
    """ComfyUI's requirements.txt less torch/torchvision/torchaudio; the templates package split off."""
    lines, templates = [], None
    for line in comfy_req.read_text().splitlines():
        if TORCH_LINE.match(line):
            continue
        m = TEMPLATES_LINE.match(line)
        if m:
            templates = m.group(1)
            continue
        lines.append(line)
    path = venv / "comfy-requirements.txt"
    path.write_text("\n".join(lines) + "\n")
    return path, templates


def install_templates(python, version):
    """comfyui-workflow-templates==version without dependencies, then its core and JSON parts at the versions
    it pins (read from its installed metadata)."""
    run(pip(python) + ["--no-deps", f"comfyui-workflow-templates=={version}"])
    code = ("import importlib.metadata as m, re; print(' '.join(r.split(';')[0].replace(' ', '') for r in "
            "m.requires('comfyui-workflow-templates') or [] if ';' not in r and "
            "re.match(r'comfyui-workflow-templates-(core|json)==', r)))")
    parts = run([python, "-c", code]).split()
    if parts:
        run(pip(python) + ["--no-deps"] + parts)


class PreparedHost:
    """A host venv .ci/run already built with this host's requirements and its Manager's (.ci/host_venv.sh):
    used as it is, like ComfyUI's own environment a Manager installs into; the tests compare its ``pip freeze``
    before and after the install."""

    def __init__(self, python):
        self.python = Path(python)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def prepared_host(version):
    """The python of a prepared host venv for ComfyUI ``version``, named in ``$HYPERSD_HOST_PYTHONS``
    ("0.33.0=/path/bin/python 0.3.64=/other/bin/python", set by .ci/run), or None."""
    for item in os.environ.get("HYPERSD_HOST_PYTHONS", "").split():
        ver, _, python = item.partition("=")
        if ver == version and Path(python).is_file():
            return python
    return None


def comfyui_version(comfy):
    """The version a ComfyUI tree declares (comfyui_version.py), or None."""
    match = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", (comfy / "comfyui_version.py").read_text()) \
        if (comfy / "comfyui_version.py").is_file() else None
    return match.group(1) if match else None


def host_venv(name, comfy, extra_requirements, tools, torchaudio=False):
    """The host venv for ``comfy``: the prepared one of its version when .ci/run names it
    (``$HYPERSD_HOST_PYTHONS``), else a cached venv built here (ComfyUI's requirements, plus
    ``extra_requirements`` files)."""
    prepared = prepared_host(comfyui_version(comfy))
    if prepared is not None:
        return PreparedHost(prepared)
    comfy_req = comfy / "requirements.txt"
    inputs = {"comfy_requirements": comfy_req,
              **{f"extra{i}": p for i, p in enumerate(extra_requirements)}}
    recipe = (f"v3: torch=={TORCH['torch']}; --no-deps torchvision=={TORCH['torchvision']}"
              f"{f' torchaudio=={TORCHAUDIO}' if torchaudio else ''}; comfy reqs -torch* (templates core+json "
              f"--no-deps) + requests; extra reqs; CPU patches")

    def build(venv, python):
        constraints = venv / "constraints.txt"
        constraints.write_text("".join(f"{k}=={v}\n" for k, v in TORCH.items()))
        run(pip(python) + [f"torch=={TORCH['torch']}"])
        run(pip(python) + ["--no-deps", f"torchvision=={TORCH['torchvision']}"]
            + ([f"torchaudio=={TORCHAUDIO}"] if torchaudio else []))
        reqs, templates = host_requirements(comfy_req, venv)
        if templates:
            install_templates(python, templates)
        extra = [x for p in extra_requirements for x in ("-r", p)]
        run(pip(python) + ["-c", constraints, "-r", reqs, "requests"] + extra)
        for patch in ("patch_torchvision_cpu.py", "patch_torchaudio_cpu.py") if torchaudio else (
                "patch_torchvision_cpu.py",):
            run([python, tools / patch])

    return CachedVenv(name, recipe, inputs, build)


def comfy_cli_venv():
    """The cached venv with comfy-cli (``comfy node validate`` / ``pack`` / ``publish``) and nothing else."""
    def build(venv, python):
        run(pip(python) + [COMFY_CLI])
    return CachedVenv("comfy-cli-venv", f"v1: {COMFY_CLI}", {}, build)


def fresh_comfyui(tools, dest, version):
    """A fresh ComfyUI ``version`` (0.3.64 or 0.33.0) unpacked into ``dest/ComfyUI``."""
    out = run([tools / "unpack-comfyui", dest / "ComfyUI", version], env=dict(os.environ, COMFYUI_VERSION=version))
    return Path(out.strip().splitlines()[-1])


def pack_files():
    """The pack's files as a git checkout of it would have them (tracked plus untracked non-ignored, no
    symlinks: a checkout of this repository holds regular files only)."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True).stdout.decode()
        files = [f for f in out.split("\0") if f and (REPO / f).is_file() and not (REPO / f).is_symlink()
                 and not IGNORED.intersection(Path(f).parts)]
        if files:
            return files
    except (OSError, subprocess.CalledProcessError):
        pass
    return [str(p.relative_to(REPO)) for p in REPO.rglob("*")
            if p.is_file() and not p.is_symlink() and not IGNORED.intersection(p.relative_to(REPO).parts)
            and p.suffix != ".pyc"]


def git_checkout(dest):
    """``dest``: a git repository with one commit of the pack's files (what a clone of this checkout holds,
    uncommitted work included)."""
    for rel in pack_files():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest / rel)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@127.0.0.1", "-c", "init.defaultBranch=main"]
    run(git + ["init", "-q", dest])
    run(git + ["-C", dest, "add", "-A"])
    run(git + ["-C", dest, "commit", "-q", "-m", "the pack as checked out"])
    return dest


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc=None, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def bare_repository(root):
    """``root/ComfyUI-HyperSD.git``: a bare clone of :func:`git_checkout` (what ``git daemon`` serves)."""
    work = git_checkout(root / "work")
    run(["git", "clone", "-q", "--bare", work, root / "ComfyUI-HyperSD.git"])
    return root


@contextlib.contextmanager
def git_daemon(base):
    """``git daemon`` serving ``base`` on a free 127.0.0.1 port; yields the git:// URL prefix."""
    port = free_port()
    proc = subprocess.Popen(["git", "daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={port}", "--export-all",
                             f"--base-path={base}", str(base)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not wait_port(port, proc):
            pytest.skip(f"git daemon does not run here: {proc.stderr.read().decode()[-500:] if proc.poll() else ''}")
        yield f"git://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def add_test_models(comfy):
    """The random SD1.5 checkpoint and a random LoRA under the 1-step SD1.5 workflow's file names."""
    from host import import_comfy
    import_comfy()  # in-process ComfyUI (from $COMFYUI_PATH) builds the random checkpoint once
    import loras
    import models
    (comfy / "models" / "checkpoints" / "v1-5-pruned-emaonly-fp16.safetensors").symlink_to(models.sd15_checkpoint())
    loras.write(comfy / "models" / "loras" / "Hyper-SD15-1step-lora.safetensors",
                loras.make_lora(loras.SD15_UNET, "kohya", seed=1, std=0.01))


WORKFLOW = "hyper-sd15-1step-unified-tcd"


def validate_and_run_workflow(server, size=64):
    """The shipped 1-step SD1.5 workflow, converted against the server, at ``size``²: validated and run.
    Returns (HTTP status, body, history entry or None)."""
    from hypersd_pack.workflows.runner import convert as conversion, edits
    wf = json.loads((REPO / "workflows" / f"{WORKFLOW}.json").read_text())
    prompt = edits.customize(conversion.convert(wf, server.object_info()), size=size)
    status, body = server.post("/prompt", {"prompt": prompt})
    entry = server.wait(body["prompt_id"], timeout=900) if status == 200 else None
    return status, body, entry
