"""Start and stop a ComfyUI for ``--start``: its python, its device, this pack loaded from its folder."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .client import Server
from .errors import RunError

PACK_ROOT = Path(__file__).resolve().parents[2]  # the pack folder (this file: workflows/runner/launcher.py)


def comfyui_path():
    """The ComfyUI to start: $COMFYUI_PATH, default ~/comfy/ComfyUI; RunError when there is none."""
    comfy = Path(os.environ.get("COMFYUI_PATH") or Path.home() / "comfy" / "ComfyUI").expanduser()
    if not (comfy / "main.py").is_file():
        raise RunError(f"no ComfyUI at COMFYUI_PATH={comfy}: set COMFYUI_PATH to a ComfyUI folder")
    return comfy


# Which accelerator torch sees, as ComfyUI picks its device (CUDA and ROCm both answer torch.cuda).
ACCELERATOR_PROBE = """
import importlib.util, torch
found = []
if torch.cuda.is_available():
    found.append("ROCm" if getattr(torch.version, "hip", None) else "CUDA")
if getattr(torch, "xpu", None) is not None and torch.xpu.is_available():
    found.append("XPU")
mps = getattr(torch.backends, "mps", None)
if mps is not None and mps.is_available():
    found.append("MPS")
found += [name for name in ("torch_npu", "torch_mlu") if importlib.util.find_spec(name)]
print("ACCELERATORS=" + ",".join(found))
"""
# ComfyUI arguments that choose the device themselves: with one of them, the runner adds no --cpu.
DEVICE_ARGS = ("--cpu", "--directml", "--cuda-device", "--oneapi-device-selector", "--default-device")


def comfy_python():
    return os.environ.get("COMFYUI_PYTHON") or sys.executable


def accelerators(python):
    """The accelerators torch finds in ComfyUI's python (a subprocess: this process may lack torch)."""
    try:
        proc = subprocess.run([python, "-c", ACCELERATOR_PROBE], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RunError(f"cannot run ComfyUI's python {python} to look for a GPU ({e}): set COMFYUI_PYTHON to "
                       f"the python that runs your ComfyUI") from e
    lines = [line for line in proc.stdout.splitlines() if line.startswith("ACCELERATORS=")]
    if proc.returncode != 0 or not lines:
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise RunError(f"{python} cannot import torch ({why}): set COMFYUI_PYTHON to the python that runs "
                       f"your ComfyUI")
    return [a for a in lines[-1].split("=", 1)[1].split(",") if a]


def server_command(comfy_path, port, workdir, comfy_args=(), accel=None, python=None):
    """ComfyUI's command line: our loopback port, the pack via an extra-model-paths yaml (nothing written
    into ComfyUI's custom_nodes; ComfyUI's own models, input, output and user folders and its
    extra_model_paths.yaml stay in use, so messages name them), previews in ``workdir`` (a second server
    must not wipe the temp folder of a running one), ``--cpu`` when torch has no accelerator, then
    ``comfy_args`` as given."""
    cmd = [python or comfy_python(), str(comfy_path / "main.py"), "--listen", "127.0.0.1", "--port", str(port),
           "--disable-auto-launch", "--database-url", "sqlite:///:memory:"]
    if (workdir / "hypersd-pack.yaml").is_file():
        cmd += ["--extra-model-paths-config", str(workdir / "hypersd-pack.yaml")]
    given = {a.split("=", 1)[0] for a in comfy_args}
    if "--temp-directory" not in given:
        cmd += ["--temp-directory", str(workdir)]
    if accel is not None and not accel and not given.intersection(DEVICE_ARGS):
        cmd.append("--cpu")
    return cmd + list(comfy_args)


def pack_installed_in(comfy_path):
    """True when this pack already sits in ComfyUI's custom_nodes (then ComfyUI loads it by itself)."""
    here = PACK_ROOT
    nodes = comfy_path / "custom_nodes"
    return nodes.is_dir() and any(p.resolve() == here for p in nodes.iterdir())


def prepare_workdir(comfy_path):
    """A temporary folder for the server's log and previews; unless ComfyUI already has this pack in its
    custom_nodes, also a yaml that adds this pack's folder to ComfyUI's custom_nodes."""
    workdir = Path(tempfile.mkdtemp(prefix="hypersd-run-"))
    if not pack_installed_in(comfy_path):
        (workdir / "custom_nodes").mkdir()
        (workdir / "custom_nodes" / "ComfyUI-HyperSD").symlink_to(PACK_ROOT)
        (workdir / "hypersd-pack.yaml").write_text(
            f"hypersd_pack:\n  custom_nodes: {json.dumps(str(workdir / 'custom_nodes'))}\n")
    return workdir


def start_server(comfy_path, log, comfy_args=()):
    """A ComfyUI on a free loopback port with this pack installed; (Server, process)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    python = comfy_python()
    accel = accelerators(python)
    workdir = prepare_workdir(comfy_path)
    cmd = server_command(comfy_path, port, workdir, comfy_args, accel, python)
    log(f"starting ComfyUI ({', '.join(accel) if accel else 'no GPU found by torch: --cpu'}): {' '.join(cmd)}")
    logf = open(workdir / "server.log", "ab")
    proc = subprocess.Popen(cmd, cwd=str(comfy_path), stdout=logf, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}")
    for _ in range(600):
        if proc.poll() is not None:
            raise RunError(f"ComfyUI exited at start-up ({startup_error(workdir / 'server.log')}): see "
                           f"{workdir / 'server.log'}")
        try:
            server.get("/system_stats", timeout=2)
            log(f"started ComfyUI at {server.url} (log: {workdir / 'server.log'})")
            server.workdir = workdir
            return server, proc
        except RunError:
            time.sleep(0.5)
    proc.terminate()
    raise RunError(f"ComfyUI did not start within 300 s: see {workdir / 'server.log'}")


def startup_error(log_path):
    """The last line of a failed start-up's log that names an error."""
    lines = log_path.read_text(errors="replace").splitlines() if log_path.exists() else []
    errors = [line.strip() for line in lines if "Error" in line or "error:" in line]
    return (errors or lines or ["no output"])[-1][:300]



def stop_server(proc, workdir, keep_log):
    """Stop a server started by --start; remove its folder unless its log is needed to explain a failure."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if workdir is not None and not keep_log:
        shutil.rmtree(workdir, ignore_errors=True)
    elif workdir is not None:
        print(f"ComfyUI's log: {workdir / 'server.log'}", file=sys.stderr)
