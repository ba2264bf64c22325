"""A stand-in for a ComfyUI server on 127.0.0.1: the few routes the headless runner uses, with answers the
test chooses (a server that misbehaves on purpose). No ComfyUI, no torch.

Routes: ``GET /object_info``, ``/system_stats``, ``/internal/folder_paths`` (``folders``: {name: [paths]}),
``/models/<folder>`` (the files under the folder's paths, as ComfyUI lists them: relative, "/"-separated;
404 for an unknown folder), ``POST /prompt`` (the prompt is kept in ``prompts``; answers ``prompt_id`` "p1"),
``GET /history/p1`` (completed, with ``images`` as the output of node "9"), ``/view`` (``image_bytes``; the
queries are kept in ``views``). Anything else (the websocket included) answers 404.
"""
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99=\x1d\x00\x00\x00\x00IEND\xaeB`\x82")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client closing its socket is no test failure
        pass


class FakeComfy:
    def __init__(self, object_info=None, folders=None, images=()):
        self.object_info = object_info or {}
        self.folders = {name: [str(p) for p in paths] for name, paths in (folders or {}).items()}
        self.images = list(images)
        self.image_bytes = PNG
        self.prompts, self.views = [], []
        self._server = None

    def start(self):
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def listing(self, folder):
        """The files under a folder's paths, relative and "/"-separated, as /models/<folder> gives them."""
        found = set()
        for top in self.folders[folder]:
            for root, _, files in os.walk(top):
                rel = os.path.relpath(root, top)
                found.update(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/") for name in files
                             if not name.startswith("."))
        return sorted(found)


def _handler(fake):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _json(self, body, status=200):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            parts = urlsplit(self.path)
            path = parts.path
            if path == "/object_info":
                return self._json(fake.object_info)
            if path == "/system_stats":
                return self._json({"system": {}})
            if path == "/internal/folder_paths":
                return self._json(fake.folders)
            if path.startswith("/models/"):
                folder = unquote(path[len("/models/"):])
                return self._json(fake.listing(folder)) if folder in fake.folders else self._json(None, 404)
            if path == "/history/p1":
                outputs = {"9": {"images": fake.images}}
                return self._json({"p1": {"status": {"completed": True, "messages": []}, "outputs": outputs}})
            if path == "/view":
                fake.views.append({k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()})
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(fake.image_bytes)))
                self.end_headers()
                self.wfile.write(fake.image_bytes)
                return None
            return self._json({"error": "not found"}, 404)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if urlsplit(self.path).path == "/prompt":
                fake.prompts.append(body.get("prompt"))
                return self._json({"prompt_id": "p1", "number": 1, "node_errors": {}})
            return self._json({"error": "not found"}, 404)

    return Handler
