"""The ComfyUI server as the runner talks to it: HTTP (queue, history, view), its websocket's progress
messages, and one-line explanations of what the server refuses."""
import json
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from .errors import RunError


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


def node_label(prompt, node_id, class_type=None):
    """'node 7:12 (title, Class)' from the prompt's _meta, as the user sees the node in the canvas."""
    entry = (prompt or {}).get(str(node_id), {})
    cls = class_type or entry.get("class_type")
    title = entry.get("_meta", {}).get("title")
    if title and cls and title != cls:
        return f"node {node_id} ({title}, {cls})"
    return f"node {node_id} ({title or cls or 'unknown type'})"


def dangling_inputs(prompt, node_id):
    """(input name, source id) of the node's inputs linked to nodes the prompt does not hold."""
    inputs = ((prompt or {}).get(str(node_id)) or {}).get("inputs", {})
    return [(name, str(v[0])) for name, v in inputs.items()
            if isinstance(v, list) and len(v) == 2 and str(v[0]) not in prompt]


def error_line(node_id, err, e, prompt):
    """One server validation error as a line naming the node and the input the server names.

    ComfyUI reports a node that fails while a downstream node validates it ("Exception when validating
    inner node") under the downstream node's input name; the line names the failing node's own input
    instead when it is linked to a node the prompt lacks (a dropped Reroute, say)."""
    extra = e.get("extra_info") or {}
    where = node_label(prompt, node_id, err.get("class_type"))
    if e.get("type") == "exception_during_inner_validation" and prompt is not None:
        dangling = dangling_inputs(prompt, node_id)
        if dangling:
            return "; ".join(f"{where}, input '{name}': it is linked from node {source}, which the prompt does not "
                             f"hold: open the workflow in ComfyUI, reconnect that input and save it again"
                             for name, source in dangling)
        return (f"{where}: could not be validated ({extra.get('exception_type', 'error')}: {e.get('details', '')}), "
                f"found while validating the input '{extra.get('input_name', '?')}' it feeds")
    if extra.get("input_name"):
        where += f", input '{extra['input_name']}'"
    detail = e.get("details") or ""
    line = f"{where}: {e.get('message', 'invalid')}" + (f" ({detail})" if detail else "")
    linked = extra.get("linked_node")
    if isinstance(linked, list) and linked:
        source = str(linked[0])
        if prompt is not None and source not in prompt:
            line += (f"; it is linked from node {source}, which the prompt does not hold: open the workflow in "
                     f"ComfyUI, reconnect that input and save it again")
        else:
            line += f"; it is linked from {node_label(prompt, source)}, output {linked[1] if len(linked) > 1 else 0}"
    return line


def validation_message(body, workflow, prompt=None, folders=None):
    """One line per node error of a 400 answer, naming the node (id, title, class) and the input the server
    names, with the missing-model hint when the value is a file of the workflow's models list; the hint
    names the server's own folders for that kind of model (``folders``: /internal/folder_paths)."""
    if not isinstance(body, dict):
        return f"HTTP 400: {body}"
    downloads = {m["name"]: m for m in workflow.get("models", [])}
    lines = []
    for node_id, err in (body.get("node_errors") or {}).items():
        for e in err.get("errors", []):
            line = error_line(node_id, err, e, prompt)
            value = (e.get("extra_info") or {}).get("received_value")
            if isinstance(value, str) and value in downloads:
                m = downloads[value]
                where = ((folders or {}).get(m["directory"]) or [f"models/{m['directory']}"])[0]
                line = (f"missing model {value}: put it in {where} (download: {m.get('url') or 'no URL listed'}), "
                        f"or run again with --download (it fetches the workflow's listed files into the "
                        f"server's folders), or pass --model {value}=<your file>. ({line})")
            lines.append(line)
    if not lines:
        error = body.get("error") or {}
        lines.append(f"{error.get('message', 'rejected')}: {error.get('details', '')}".rstrip(": "))
    return "\n".join(lines)


def run(server, workflow, prompt, out_dir, log=print, timeout=3600):
    client_id = uuid.uuid4().hex
    events = ProgressListener(server.url, client_id, prompt, log)
    status, body = server.request("/prompt", {"prompt": prompt, "client_id": client_id})
    if status != 200:
        events.close()
        raise RunError("the server refused the workflow:\n" + validation_message(body, workflow, prompt,
                                                                                 model_folders(server)))
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
            sock = self.sock  # None once close() ran (from the main thread)
            if sock is None:
                raise OSError("closed")
            chunk = sock.recv(n - len(data))
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
            kind = str(data.get("exception_type", "")).rsplit(".", 1)[-1]  # ComfyUI's module name is a path
            raise RunError(f"node {node} ({title}) failed: {kind}: "
                           f"{data.get('exception_message', '').strip()}")
    images = [img for node_out in entry.get("outputs", {}).values() for img in node_out.get("images", [])]
    targets = [(img, saved_path(out_dir, img, server.url)) for img in images]  # every name checked first
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for img, dest in targets:
        query = urllib.parse.urlencode({"filename": img["filename"], "subfolder": img.get("subfolder", ""),
                                        "type": img.get("type", "output")})
        with urllib.request.urlopen(f"{server.url}/view?{query}", timeout=60) as r:
            write_inside(out_dir, dest, r.read(), server.url)
        paths.append(dest)
    for p in paths:
        log(str(p))
    return paths


def refuse_name(img, out_dir, url, why):
    return RunError(f"the server at {url} named an image {img.get('filename')!r} in subfolder "
                    f"{img.get('subfolder', '')!r}, which {why}: nothing was saved; is it a ComfyUI you trust?")


def saved_path(out_dir, img, url):
    """``out_dir/<subfolder>/<filename>`` for an image the server names; RunError for a name that would land
    outside ``out_dir``: an absolute path, a drive, ``..``, a backslash, a control character."""
    name, sub = img.get("filename"), img.get("subfolder") or ""
    if not isinstance(name, str) or not isinstance(sub, str):
        raise refuse_name(img, out_dir, url, "is not a file name")
    parts = [p for p in sub.split("/") if p not in ("", ".")] + [name]
    for part in parts:
        if part in ("", ".", "..") or any(c in part for c in '/\\:') or any(ord(c) < 32 for c in part):
            raise refuse_name(img, out_dir, url, f"would be saved outside --out ({out_dir})")
    if sub.startswith("/") or os.path.isabs(sub) or os.path.isabs(name):
        raise refuse_name(img, out_dir, url, f"would be saved outside --out ({out_dir})")
    return out_dir.joinpath(*parts)


def write_inside(out_dir, dest, data, url):
    """Write ``dest`` (already checked by name) after checking where it really lands: a symlinked folder inside
    ``out_dir`` pointing elsewhere is refused too. The bytes go to a hidden temporary file, then replace
    ``dest`` in one step."""
    root = os.path.realpath(out_dir)
    if os.path.commonpath([root, os.path.realpath(dest.parent)]) != root or dest.is_symlink():
        raise RunError(f"{dest} (from the server at {url}) would be written outside --out ({out_dir}) through "
                       "a symbolic link: nothing more was saved")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def model_folders(server):
    """{folder name: [paths]} of the running ComfyUI (its real model folders), {} when it does not say."""
    try:
        status, body = server.request("/internal/folder_paths", timeout=30)
    except RunError:
        return {}
    if status != 200 or not isinstance(body, dict):
        return {}
    return {name: [p for p in paths if not str(p).startswith(tempfile.gettempdir() + os.sep + "hypersd-run-")]
            for name, paths in body.items()}

