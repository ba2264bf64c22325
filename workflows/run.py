"""Run a shipped Hyper-SD workflow headless: UI format -> API format -> ComfyUI server -> saved images.

    python workflows/run.py workflows/hyper-sdxl-4step-lora.json --prompt "a red fox in snow" --seed 7 \
        --size 1024 [--model sd_xl_base_1.0.safetensors=my_sdxl.safetensors] [--server http://127.0.0.1:8188 |
        --start] [--out images/]

The workflow file is used as shipped (the UI format the frontend saves). It is converted to the API format
against the running server's ``/object_info`` by ``convert()`` below -- a small converter of our own for
the node kinds these workflows use (widgets in /object_info input order, the seed's "fixed"/"randomize"
marker skipped, links resolved, Note/MarkdownNote/Reroute left out), instead of comfy-cli's, which would
bring a large dependency set. Then ``--prompt`` replaces the positive prompt (the CLIPTextEncode whose
title is "Positive"), ``--seed`` every seed widget, ``--size`` every width/height (and the Int nodes titled
Width/Height), ``--model OLD=NEW``
every widget value OLD. The prompt is queued on ``--server`` (default http://127.0.0.1:8188) or, with
``--start``, on a ComfyUI started from $COMFYUI_PATH (default ~/comfy/ComfyUI) with this pack, stopped
afterwards. Progress is printed as it comes (step i/N of each node); the images are saved under ``--out``
and their paths printed.

Errors are one clear line each (exit status 2): server unreachable; a node type the server lacks (names the
pack to install); a missing model (the file, the folder, the download URL from the workflow's ``models``
list); a validation error (the node and the input); an execution error (the node and ComfyUI's message).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

PACK_NODES = {"HyperSDLoraLoader", "HyperSDTCDSampler", "HyperSDScheduler", "HyperSDUNetLoader"}
PACK_NAME = "Hyper-SD (ComfyUI-Manager / Comfy Registry id 'hyper-sd')"
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
SEED_MARKERS = {"fixed", "increment", "decrement", "randomize"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


class RunError(Exception):
    """A failure with a one-line explanation for the user."""


# ------------------------------------------------------------------------------------------- conversion


def is_widget(spec):
    kind = spec[0]
    return isinstance(kind, list) or kind in WIDGET_TYPES


def has_seed_control(name, spec):
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return options.get("control_after_generate", False) or (spec[0] == "INT" and name in ("seed", "noise_seed"))


def convert(workflow, object_info):
    """API-format prompt {node id: {class_type, inputs}} from a UI-format workflow."""
    links = {link[0]: link for link in workflow.get("links", [])}
    prompt = {}
    missing = sorted({n["type"] for n in workflow["nodes"]
                      if n["type"] not in object_info and n["type"] not in FRONTEND_ONLY})
    if missing:
        ours = [m for m in missing if m in PACK_NODES]
        hint = f"install {PACK_NAME}" if ours else "install the custom nodes that provide them"
        raise RunError(f"the server has no node type {', '.join(missing)}: {hint}, then restart ComfyUI")
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY or node.get("mode", 0) in (2, 4):  # muted / bypassed
            continue
        info = object_info[node["type"]]["input"]
        specs = {**info.get("required", {}), **info.get("optional", {})}
        linked = {i["name"]: links[i["link"]] for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values") or [])
        inputs = {}
        for name, spec in specs.items():
            if is_widget(spec):
                if values:
                    inputs[name] = values.pop(0)
                    if has_seed_control(name, spec) and values and values[0] in SEED_MARKERS:
                        values.pop(0)
            if name in linked:
                link = linked[name]
                inputs[name] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs,
                                   "_meta": {"title": node.get("title") or node["type"]}}
    return prompt


def customize(prompt, text=None, seed=None, size=None, models=()):
    """Apply --prompt, --seed, --size and --model OLD=NEW to an API prompt (in place)."""
    replace = dict(m.split("=", 1) for m in models)
    for node in prompt.values():
        inputs = node["inputs"]
        if text is not None and node["class_type"] == "CLIPTextEncode" and \
                node["_meta"]["title"].lower().startswith("positive"):
            inputs["text"] = text
        for key in ("seed", "noise_seed"):
            if seed is not None and key in inputs and not isinstance(inputs[key], list):
                inputs[key] = seed
        for key in ("width", "height"):
            if size is not None and key in inputs and not isinstance(inputs[key], list):
                inputs[key] = size
        if size is not None and node["class_type"] == "PrimitiveInt" and \
                node["_meta"]["title"].lower() in ("width", "height"):  # a size wired into several nodes
            inputs["value"] = size
        for key, value in list(inputs.items()):
            if isinstance(value, str) and value in replace:
                inputs[key] = replace[value]
    return prompt


# ----------------------------------------------------------------------------------------------- server


class Server:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def request(self, path, payload=None, timeout=60):
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                return e.code, json.loads(body)
            except ValueError:
                return e.code, body.decode(errors="replace")
        except (urllib.error.URLError, OSError) as e:
            raise RunError(f"ComfyUI server unreachable at {self.url} ({getattr(e, 'reason', e)}): start ComfyUI "
                           f"(python main.py) or pass --server URL, or --start") from e

    def get(self, path, timeout=60):
        status, body = self.request(path, timeout=timeout)
        if status != 200:
            raise RunError(f"GET {path} answered HTTP {status}: {body}")
        return body


def validation_message(body, workflow):
    """One line per node error of a 400 answer, with the missing-model hint when it is a file name."""
    downloads = {m["name"]: m for m in workflow.get("models", [])}
    lines = []
    for node_id, err in (body.get("node_errors") or {}).items():
        for e in err.get("errors", []):
            detail = e.get("details", "")
            extra = e.get("extra_info", {})
            value = extra.get("received_value")
            line = f"node {node_id} ({err.get('class_type')}), input '{extra.get('input_name', '?')}': " \
                   f"{e.get('message')} {detail}".strip()
            if isinstance(value, str) and value in downloads:
                m = downloads[value]
                line = (f"missing model {value}: put it in models/{m['directory']} (download: {m['url']}); "
                        f"or pass --model {value}=<your file>. ({line})")
            lines.append(line)
    if not lines:
        lines.append(f"{body.get('error', {}).get('message', 'rejected')}: {body.get('error', {}).get('details', '')}")
    return "\n".join(lines)


def run(server, workflow, prompt, out_dir, log=print, timeout=3600):
    client_id = uuid.uuid4().hex
    events = ProgressListener(server.url, client_id, prompt, log)
    status, body = server.request("/prompt", {"prompt": prompt, "client_id": client_id})
    if status != 200:
        events.close()
        raise RunError("the server refused the workflow:\n" + validation_message(body, workflow))
    prompt_id = body["prompt_id"]
    log(f"queued {prompt_id}")
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            entry = (server.get(f"/history/{prompt_id}") or {}).get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                return finish(server, entry, prompt, out_dir, log)
            time.sleep(0.5)
    finally:
        events.close()
    raise RunError(f"prompt {prompt_id} did not finish within {timeout} s")


class ProgressListener:
    """Prints ComfyUI's progress messages (node started, step i/N) from its websocket, in a thread.

    A minimal RFC 6455 client on the standard library (text frames only, server frames are unmasked);
    progress is a nicety, so any failure here only stops the printing.
    """

    def __init__(self, url, client_id, prompt, log):
        import socket
        import threading
        self.prompt, self.log, self.sock = prompt, log, None
        parts = urllib.parse.urlsplit(url)
        try:
            self.sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=10)
            key = "aHlwZXJzZC1wcm9ncmVzcw=="
            self.sock.sendall((f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                               f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                               f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = self.sock.recv(1)
                if not chunk:
                    raise OSError("closed")
                head += chunk
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                raise OSError("no websocket upgrade")
            self.sock.settimeout(None)
            threading.Thread(target=self._read, daemon=True).start()
        except OSError:
            self.close()

    def _recv(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise OSError("closed")
            data += chunk
        return data

    def _read(self):
        try:
            while True:
                b0, b1 = self._recv(2)
                length = b1 & 0x7F
                if length == 126:
                    length = int.from_bytes(self._recv(2), "big")
                elif length == 127:
                    length = int.from_bytes(self._recv(8), "big")
                payload = self._recv(length)
                if b0 & 0x0F == 1:
                    self._message(json.loads(payload))
                elif b0 & 0x0F == 8:
                    return
        except (OSError, ValueError, TypeError):
            return

    def _message(self, msg):
        data = msg.get("data") or {}
        title = self.prompt.get(str(data.get("node")), {}).get("_meta", {}).get("title", data.get("node"))
        if msg.get("type") == "executing" and data.get("node") is not None:
            self.log(f"running node {data['node']} ({title})")
        elif msg.get("type") == "progress":
            self.log(f"  {title}: {data.get('value')}/{data.get('max')}")

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None


def finish(server, entry, prompt, out_dir, log):
    for kind, data in entry["status"].get("messages", []):
        if kind == "execution_error":
            node = data.get("node_id")
            title = prompt.get(str(node), {}).get("_meta", {}).get("title", data.get("node_type"))
            raise RunError(f"node {node} ({title}) failed: {data.get('exception_type')}: "
                           f"{data.get('exception_message', '').strip()}")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for node_out in entry.get("outputs", {}).values():
        for img in node_out.get("images", []):
            query = urllib.parse.urlencode({"filename": img["filename"], "subfolder": img.get("subfolder", ""),
                                            "type": img.get("type", "output")})
            with urllib.request.urlopen(f"{server.url}/view?{query}", timeout=60) as r:
                dest = out_dir / img["filename"]
                dest.write_bytes(r.read())
            paths.append(dest)
    for p in paths:
        log(str(p))
    return paths


def comfyui_path():
    """The ComfyUI to start: $COMFYUI_PATH, default ~/comfy/ComfyUI; RunError when there is none."""
    comfy = Path(os.environ.get("COMFYUI_PATH") or Path.home() / "comfy" / "ComfyUI").expanduser()
    if not (comfy / "main.py").is_file():
        raise RunError(f"no ComfyUI at COMFYUI_PATH={comfy}: set COMFYUI_PATH to a ComfyUI folder")
    return comfy


def start_server(comfy_path, log):
    """A ComfyUI on a free loopback port with this pack installed (under a temporary base directory)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = Path(tempfile.mkdtemp(prefix="hypersd-run-"))
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / "ComfyUI-HyperSD").symlink_to(Path(__file__).resolve().parents[1])
    for sub in ("models", "input", "output", "temp", "user"):
        (base / sub).mkdir()
    (base / "models").rmdir()
    (base / "models").symlink_to(comfy_path / "models")
    logf = open(base / "server.log", "ab")
    proc = subprocess.Popen([os.environ.get("COMFYUI_PYTHON", sys.executable), str(comfy_path / "main.py"),
                             "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
                             "--base-directory", str(base), "--database-url", "sqlite:///:memory:"]
                            + (["--cpu"] if os.environ.get("HYPERSD_CPU") else []),
                            cwd=str(comfy_path), stdout=logf, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}")
    for _ in range(600):
        if proc.poll() is not None:
            raise RunError(f"ComfyUI exited at start-up: see {base / 'server.log'}")
        try:
            server.get("/system_stats", timeout=2)
            log(f"started ComfyUI at {server.url} (log: {base / 'server.log'})")
            return server, proc
        except RunError:
            time.sleep(0.5)
    proc.terminate()
    raise RunError(f"ComfyUI did not start within 300 s: see {base / 'server.log'}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workflow", type=Path)
    ap.add_argument("--prompt", help="positive prompt")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--size", type=int, help="width and height of the image")
    ap.add_argument("--model", action="append", default=[], metavar="OLD=NEW", help="use file NEW instead of OLD")
    ap.add_argument("--server", default="http://127.0.0.1:8188")
    ap.add_argument("--start", action="store_true", help="start a ComfyUI from $COMFYUI_PATH and stop it after")
    ap.add_argument("--out", type=Path, default=Path("hypersd-output"))
    args = ap.parse_args(argv)
    proc = None
    try:
        workflow = json.loads(args.workflow.read_text())
        if args.start:
            server, proc = start_server(comfyui_path(), print)
        else:
            server = Server(args.server)
        prompt = customize(convert(workflow, server.get("/object_info", timeout=120)), args.prompt, args.seed,
                           args.size, args.model)
        t0 = time.time()
        paths = run(server, workflow, prompt, args.out)
        print(f"done in {time.time() - t0:.1f} s: {len(paths)} image(s)")
        return 0
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
