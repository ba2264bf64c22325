"""The real ComfyUI host for the integration tests: in-process import and a running server.

ComfyUI is not on PyPI. It is found at ``$COMFYUI_PATH`` (default ``~/comfy/ComfyUI``); when it is absent,
every test that needs it is skipped with a message naming COMFYUI_PATH, so the suite passes on a fresh
machine. The server runs with the interpreter running the tests (or ``$COMFYUI_PYTHON``), under a
temporary ``--base-directory`` whose ``custom_nodes/ComfyUI-HyperSD`` links to this repository, so the
pack is loaded exactly as ComfyUI-Manager would install it, and nothing is written into ComfyUI's tree.
"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACK = "hypersd_pack"
PACK_FOLDER = "ComfyUI-HyperSD"


def comfyui_path():
    return Path(os.environ.get("COMFYUI_PATH") or Path.home() / "comfy" / "ComfyUI").expanduser()


def require_comfyui():
    """The ComfyUI folder, or skip the test with a message naming COMFYUI_PATH."""
    path = comfyui_path()
    if not (path / "main.py").is_file():
        pytest.skip(f"needs a real ComfyUI: none at COMFYUI_PATH={path} (set COMFYUI_PATH to a ComfyUI "
                    f"checkout, see ../shared/HOST.md)")
    return path


def import_comfy():
    """Import ComfyUI in-process (CPU unless CUDA is there) and execute the pack's ``__init__`` as package
    ``hypersd_pack``."""
    path = require_comfyui()
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    import comfy.options  # noqa: F401
    import comfy.cli_args
    import torch
    if "comfy.model_management" not in sys.modules and not torch.cuda.is_available():
        comfy.cli_args.args.cpu = True
    import comfy.model_management  # noqa: F401
    import comfy.samplers  # noqa: F401
    import folder_paths  # noqa: F401
    pack = sys.modules[PACK]
    if not hasattr(pack, "NODE_CLASS_MAPPINGS"):
        code = compile((REPO / "__init__.py").read_text(), str(REPO / "__init__.py"), "exec")
        exec(code, pack.__dict__)  # noqa: S102 -- runs the pack's own __init__ as ComfyUI would import it
    return pack


@pytest.fixture(scope="session")
def comfy_host():
    """The pack, imported inside an in-process ComfyUI (``hypersd_pack`` with its node mappings)."""
    return import_comfy()


RUNNING = []  # servers started by this test session (to free their memory before an SDXL run)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """A ComfyUI server process on 127.0.0.1 with the pack installed under a temporary base directory."""

    def __init__(self, base):
        self.base = Path(base)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.base / "server.log"
        self.proc = None
        self.client_id = uuid.uuid4().hex

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self, timeout=180):
        comfy = require_comfyui()
        (self.base / "custom_nodes").mkdir(parents=True, exist_ok=True)
        link = self.base / "custom_nodes" / PACK_FOLDER
        if not link.exists():
            link.symlink_to(REPO, target_is_directory=True)
        for sub in ("checkpoints", "loras", "diffusion_models", "vae", "input", "output", "temp", "user"):
            (self.base / ("models/" + sub if sub in ("checkpoints", "loras", "diffusion_models", "vae") else sub)
             ).mkdir(parents=True, exist_ok=True)
        python = os.environ.get("COMFYUI_PYTHON") or sys.executable
        cmd = [python, str(comfy / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--disable-auto-launch", "--base-directory", str(self.base),
               "--database-url", "sqlite:///:memory:", "--log-stdout", "--cache-classic"] + list(self.extra_args)
        env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"))
        env.update(self.extra_env)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=str(comfy), stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                self.get("/system_stats", timeout=2)
                RUNNING.append(self)
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {timeout}s:\n{self.log()[-4000:]}")

    extra_env = {}
    extra_args = ()  # e.g. ("--front-end-root", folder)
    # --cache-classic (every supported host has it; 0.3.64's default): a node output leaves the cache when the
    # next prompt no longer has that node. 0.2x+'s default RAM-pressure cache keeps them until free RAM runs low,
    # which on this 24 GB test machine let two SDXL checkpoints of one session pile up until the OOM killer ended
    # the server mid-load.

    def stop(self):
        if self in RUNNING:
            RUNNING.remove(self)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def alive(self):
        try:
            return self.proc.poll() is None and self.get("/system_stats", timeout=5) is not None
        except (OSError, urllib.error.URLError):
            return False

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- models ---------------------------------------------------------------------------------------
    def models_dir(self, folder):
        return self.base / "models" / folder

    def add_model(self, folder, source, name=None):
        """Link a model file into ``models/<folder>`` (ComfyUI sees it on its next file listing)."""
        dest = self.models_dir(folder) / (name or Path(source).name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        dest.symlink_to(Path(source).resolve())
        return dest.name

    # -- HTTP -----------------------------------------------------------------------------------------
    def get(self, path, timeout=30):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read() or b"null")

    def post(self, path, payload, timeout=30):
        """POST JSON; returns (status, parsed body) also for 4xx answers (the headless runner's client)."""
        return _runner().Server(self.url).request(path, payload, timeout=timeout)

    def object_info(self):
        return self.get("/object_info", timeout=60)

    def queue(self, prompt):
        status, body = self.post("/prompt", {"prompt": prompt, "client_id": self.client_id})
        if status != 200:
            raise PromptRejected(status, body)
        return body["prompt_id"]

    def wait(self, prompt_id, timeout=600):
        """The prompt's history entry once it finished (success or error)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            hist = self.get(f"/history/{prompt_id}")
            if hist and prompt_id in hist and hist[prompt_id].get("status", {}).get("completed") is not None:
                entry = hist[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI died while running {prompt_id}:\n{self.log()[-4000:]}")
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout}s")

    def run(self, prompt, timeout=600):
        """Queue a prompt and wait; returns the history entry (check ``status.status_str``)."""
        return self.wait(self.queue(prompt), timeout=timeout)

    def run_ok(self, prompt, timeout=600):
        entry = self.run(prompt, timeout=timeout)
        if entry["status"]["status_str"] != "success":
            raise AssertionError(f"prompt failed: {execution_error(entry)}\n{self.log()[-3000:]}")
        return entry

    def output_images(self, entry):
        """Paths of the images a finished prompt saved."""
        paths = []
        for out in entry.get("outputs", {}).values():
            for img in out.get("images", []):
                folder = {"output": "output", "temp": "temp"}.get(img.get("type"), "output")
                paths.append(self.base / folder / img.get("subfolder", "") / img["filename"])
        return paths


def _runner():
    """The pack's headless runner's HTTP client (workflows/runner/client.py), which serves the tests too."""
    from hypersd_pack.workflows.runner import client as run
    return run


class PromptRejected(AssertionError):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {json.dumps(body)[:3000] if not isinstance(body, str) else body[:3000]}")
        self.status = status
        self.body = body


def execution_error(entry):
    """The execution_error message of a failed history entry ('' when none)."""
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            return f"{data.get('node_type')}: {data.get('exception_type')}: {data.get('exception_message')}"
    return ""


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory):
    """One ComfyUI server for the session, with the pack installed."""
    require_comfyui()
    server = ComfyServer(tmp_path_factory.mktemp("comfy-base")).start()
    yield server
    server.stop()
