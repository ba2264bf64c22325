"""A stand-in for the Comfy Registry API (``https://api.comfy.org``) on 127.0.0.1, for the Manager tests.

It answers the calls the two clients make, with the shapes of the registry's OpenAPI description
(Comfy-Org/registry-backend ``openapi.yml``):

- ``comfy node publish`` (comfy-cli): ``POST /publishers/{publisher}/nodes/{node}/versions`` with the node
  and version records comfy-cli reads from ``pyproject.toml``, answered ``201`` with the new version and a
  signed upload URL; then ``PUT`` of the zip comfy-cli packed to that URL.
- ComfyUI-Manager (``comfyui_manager.common.cnr_utils``): ``GET /nodes?page=&limit=...`` (the node list,
  paginated), ``GET /nodes/{node}/install[?version=]`` (the version to install, with its ``downloadUrl``),
  ``GET /nodes/{node}/versions``, ``GET /nodes/{node}``; and the download itself.

What it stores is only what was published to it: no pack is listed before its upload completed. Every
request is recorded in ``calls`` (method, path with query) for the tests to read.
"""
import json
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Registry:
    """``with Registry() as reg:`` serves on ``reg.url`` until the block ends."""

    def __init__(self, page_limit=30):
        self.nodes = {}        # node id -> node record (registry "Node")
        self.versions = {}     # node id -> {version: version record (registry "NodeVersion")}
        self.archives = {}     # (node id, version) -> zip bytes
        self.uploads = {}      # upload token -> (node id, version)
        self.publishers = {}   # publisher id -> publisher record
        self.calls = []
        self.page_limit = page_limit
        self._lock = threading.Lock()
        self._server = None
        self.url = None

    # -- lifecycle --------------------------------------------------------------------------------------
    def __enter__(self):
        registry = self

        class Handler(_Handler):
            reg = registry

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    # -- what publishing stores -------------------------------------------------------------------------
    def publish(self, publisher, node_id, body):
        """A ``POST .../versions`` body (comfy-cli's): the version record and its upload URL."""
        node, version = body.get("node") or {}, body.get("node_version") or {}
        if not body.get("personal_access_token"):
            return 401, {"message": "personal_access_token is required"}
        if node.get("id") != node_id or not version.get("version"):
            return 400, {"message": f"node.id must be {node_id!r} and node_version.version set"}
        with self._lock:
            if version["version"] in self.versions.get(node_id, {}):
                return 409, {"message": f"version {version['version']} of {node_id} already exists"}
            self.publishers.setdefault(publisher, {"id": publisher, "name": publisher})
            record = {k: v for k, v in node.items()}
            record.update(publisher=self.publishers[publisher], status="NodeStatusActive", downloads=0,
                          rating=0, tags=[], category="")
            token = uuid.uuid4().hex
            ver = dict(version, id=str(uuid.uuid4()), node_id=node_id, deprecated=False,
                       createdAt=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
                       status="NodeVersionStatusPending", changelog=version.get("changelog", ""),
                       downloadUrl=f"{self.url}/archives/{node_id}/{version['version']}/node.zip")
            self.nodes.setdefault(node_id, record).update(record)
            self.versions.setdefault(node_id, {})[version["version"]] = ver
            self.uploads[token] = (node_id, version["version"])
        return 201, {"node_version": ver, "signedUrl": f"{self.url}/uploads/{token}"}

    def upload(self, token, data):
        with self._lock:
            key = self.uploads.pop(token, None)
            if key is None:
                return 403, {"message": "unknown or used upload URL"}
            self.archives[key] = data
            ver = self.versions[key[0]][key[1]]
            ver["status"] = "NodeVersionStatusActive"
            self.nodes[key[0]]["latest_version"] = ver
        return 200, {}

    def listed(self):
        """The nodes with at least one uploaded version (what ``GET /nodes`` lists)."""
        return [n for n in self.nodes.values() if "latest_version" in n]

    def archive(self, node_id, version=None):
        version = version or self.nodes[node_id]["latest_version"]["version"]
        return self.archives[(node_id, version)]


class _Handler(BaseHTTPRequestHandler):
    reg = None  # the Registry (set per server)
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self):  # http.server calls do_<METHOD>
        self.reg.calls.append(("GET", self.path))
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        query = parse_qs(url.query)
        reg = self.reg
        if parts == ["nodes"]:
            return self._send(200, self._page(query))
        if len(parts) >= 2 and parts[0] == "nodes" and parts[1] not in reg.nodes:
            return self._send(404, {"message": f"node {parts[1]!r} not found"})
        if len(parts) == 2 and parts[0] == "nodes":
            return self._send(200, reg.nodes[parts[1]])
        if len(parts) == 3 and parts[0] == "nodes" and parts[2] == "install":
            return self._install(parts[1], (query.get("version") or [None])[0])
        if len(parts) == 3 and parts[0] == "nodes" and parts[2] == "versions":
            return self._send(200, sorted(reg.versions[parts[1]].values(), key=lambda v: v["createdAt"],
                                          reverse=True))
        if len(parts) == 4 and parts[0] == "archives" and (parts[1], parts[2]) in reg.archives:
            return self._send(200, reg.archives[(parts[1], parts[2])], "application/zip")
        return self._send(404, {"message": f"no such resource: {url.path}"})

    def _page(self, query):
        listed = self.reg.listed()
        limit = int((query.get("limit") or [self.reg.page_limit])[0])
        page = int((query.get("page") or [1])[0])
        pages = max(1, -(-len(listed) // limit))
        return {"nodes": listed[(page - 1) * limit: page * limit], "total": len(listed), "page": page,
                "limit": limit, "totalPages": pages}

    def _install(self, node_id, version):
        node = self.reg.nodes[node_id]
        if version is None:
            if "latest_version" not in node:
                return self._send(404, {"message": f"{node_id} has no published version"})
            return self._send(200, node["latest_version"])
        ver = self.reg.versions[node_id].get(version)
        if ver is None or (node_id, version) not in self.reg.archives:
            return self._send(404, {"message": f"{node_id}@{version} not found"})
        return self._send(200, ver)

    def do_POST(self):
        self.reg.calls.append(("POST", self.path))
        parts = [p for p in urlsplit(self.path).path.split("/") if p]
        if len(parts) == 5 and parts[0] == "publishers" and parts[2] == "nodes" and parts[4] == "versions":
            try:
                body = json.loads(self._body() or b"{}")
            except ValueError:
                return self._send(400, {"message": "body is not JSON"})
            return self._send(*self.reg.publish(parts[1], parts[3], body))
        return self._send(404, {"message": f"no such resource: {self.path}"})

    def do_PUT(self):
        self.reg.calls.append(("PUT", self.path))
        parts = [p for p in urlsplit(self.path).path.split("/") if p]
        if len(parts) == 2 and parts[0] == "uploads":
            return self._send(*self.reg.upload(parts[1], self._body()))
        return self._send(404, {"message": f"no such resource: {self.path}"})
