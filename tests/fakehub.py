"""A stand-in for huggingface.co on 127.0.0.1, serving files of one or more repos the way the real hub does.

Two threaded HTTP/1.1 servers share one state and one request log:

* the *hub*: ``HEAD``/``GET /<repo>/resolve/<revision>/<file>``. With ``redirect=True`` (the default,
  like the real hub for LFS files) it answers ``302`` with ``Location`` pointing at the *cdn* server (another
  host, 127.0.0.2, so huggingface_hub does not follow it and drops the token) and the metadata headers
  huggingface_hub's ``get_hf_file_metadata`` reads: ``X-Repo-Commit``, ``X-Linked-Etag`` (the LFS sha256,
  quoted), ``X-Linked-Size``, plus ``ETag`` (a git blob id, as the hub sends for the pointer file). With
  ``redirect=False`` it serves the bytes itself: ``200``/``206`` with ``ETag`` = the sha256,
  ``Content-Length``, ``Accept-Ranges`` and the same ``X-*`` headers. Unknown files: ``404`` with
  ``X-Error-Code: EntryNotFound``; unknown repos: ``404`` with ``X-Error-Code: RepoNotFound``.
* the *cdn*: ``HEAD``/``GET /blobs/<sha256>`` with ``Range: bytes=<a>-[<b>]`` support (``206`` +
  ``Content-Range``; ``416`` when unsatisfiable), ``Accept-Ranges``, ``Content-Length``, ``ETag``.

Content: ``FakeHub(files)`` serves ``files`` ({path in the repo: bytes}) as ``repo_id`` (ByteDance/Hyper-SD by
default); ``repos={repo id: {path: bytes or Path}}`` adds more repos (a ``Path`` is served from the disk
through ``mmap``: a 2 GB checkpoint is not read into memory). ``gated[repo id] = token`` makes one repo
gated, as FLUX.1-dev is on the real hub (the answers of ``token`` below, for that repo only).

Fault injection: ``advertise_sha[name]`` (a wrong sha256 in the metadata), ``cut_after`` (the next body
is cut after that many bytes: full ``Content-Length`` sent, then the socket is closed), ``ignore_range``
(answer ``200`` with the whole body to ``Range`` requests, as some proxies/CDNs do), ``body_status`` (one-shot:
the next request for a body is answered with that HTTP error status instead), ``pause_after`` (every body
stops after that many bytes until ``release()`` -- lets a test kill or race a client mid-download),
``token`` (a gated mirror: the hub answers ``401`` without ``Authorization: Bearer <token>`` and ``403``
with another token, ``X-Error-Code: GatedRepo`` as the real hub does).

Every request for a file is logged in ``requests`` as a :class:`Request` (role, method, path, headers, status,
body bytes sent); requests to ``/api/...`` (huggingface_hub >= 1.x asks ``/api/agent-harnesses`` once a day)
are answered ``404`` and logged apart, in ``api_requests``.
"""
import hashlib
import mmap
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

REPO_ID = "ByteDance/Hyper-SD"
COMMIT = "5f5d6f6c2c1a4b3e9d8c7b6a5f4e3d2c1b0a9f8e"
BODY_CHUNK = 64 * 1024
# The CDN is another host, as on the real hub (huggingface_hub >= 1.x follows a redirect to the same host name,
# whatever the port, and reads the metadata there): 127.0.0.2 where the loopback answers it (Linux).
CDN_HOST = "127.0.0.2"


def _bind(host, handler):
    try:
        return ThreadingHTTPServer((host, 0), handler)
    except OSError:  # e.g. macOS, where only 127.0.0.1 is configured
        return ThreadingHTTPServer(("127.0.0.1", 0), handler)


@dataclass
class Request:
    role: str  # "hub" or "cdn"
    method: str
    path: str
    headers: dict  # lower-cased names
    status: int = 0
    body_bytes: int = 0
    range: str = field(default=None)
    paused: bool = False


class FakeHub:
    def __init__(self, files=None, *, repos=None, redirect=True, repo_id=REPO_ID):
        self.repo_id = repo_id
        self.redirect = redirect
        self.files = dict(files or {})  # the main repo's files (tests change it in place)
        self.repos = {repo_id: self.files}
        self.gated = {}  # {repo id: token}: that repo answers as `token` below
        self._shas = {}
        for rid, content in (repos or {}).items():
            self.repos.setdefault(rid, {}).update({name: _load(data) for name, data in content.items()})
            for name, data in content.items():
                if isinstance(data, Path):  # hashed now, not inside the client's first request (its timeout)
                    self.sha256(self.repos[rid][name])
        self.advertise_sha = {}
        self.cut_after = None  # one-shot: cut the next body after this many bytes
        self.ignore_range = False
        self.body_status = None  # one-shot HTTP error for the next body request
        self.pause_after = None  # every body waits after this many bytes until release()
        self.token = None  # when set: a gated mirror that wants "Authorization: Bearer <token>"
        self.requests = []
        self.api_requests = []
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._servers = []

    # -- lifecycle
    def start(self):
        for role in ("hub", "cdn"):
            server = _bind(CDN_HOST if role == "cdn" else "127.0.0.1", _make_handler(self, role))
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                      daemon=True, name=f"fakehub-{role}")
            thread.start()
            self._servers.append((server, thread))
        return self

    def stop(self):
        self._released.set()
        for server, thread in self._servers:
            server.shutdown()
            server.server_close()
            thread.join(5)
        self._servers = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self._servers[0][0].server_address[1]}"

    @property
    def cdn(self):
        host, port = self._servers[1][0].server_address[:2]
        return f"http://{host}:{port}"

    # -- content
    def sha256(self, data):
        key = id(data)
        cached = self._shas.get(key)
        if cached is None or cached[0] is not data:  # hashed once per payload (benchmarks serve 1 GB)
            cached = self._shas[key] = (data, hashlib.sha256(data).hexdigest())
        return cached[1]

    def release(self):
        """Let every body paused at ``pause_after`` continue (and the later ones pass)."""
        self._released.set()

    def paused_bodies(self):
        return [r for r in self.requests if r.paused]

    def advertised(self, name, data=None):
        return self.advertise_sha.get(name) or self.sha256(self.files[name] if data is None else data)

    def _blob(self, sha):
        for files in self.repos.values():
            for data in files.values():
                if self.sha256(data) == sha:
                    return data
        return None

    def find(self, path):
        """(repo id, revision, file path) of a ``/<repo>/resolve/<revision>/<file>`` path, or None."""
        for rid in sorted(self.repos, key=len, reverse=True):
            prefix = f"/{rid}/resolve/"
            if path.startswith(prefix):
                revision, _, name = path[len(prefix):].partition("/")
                return rid, unquote(revision), unquote(name)
        return None

    # -- log helpers
    def log(self, request):
        with self._lock:
            (self.api_requests if request.path.startswith("/api/") else self.requests).append(request)

    def reset_log(self):
        with self._lock:
            self.requests.clear()

    def body_requests(self):
        """The GET requests that returned a body (200/206)."""
        return [r for r in self.requests if r.method == "GET" and r.status in (200, 206)]

    def bytes_sent(self):
        return sum(r.body_bytes for r in self.requests)

    def take_cut(self):
        with self._lock:
            cut, self.cut_after = self.cut_after, None
            return cut

    def take_body_status(self):
        with self._lock:
            status, self.body_status = self.body_status, None
            return status


def _make_handler(hub, role):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "FakeHub/1.0"
        timeout = 10

        def log_message(self, *args):  # keep pytest output clean
            pass

        def do_HEAD(self):
            self._handle(head=True)

        def do_GET(self):
            self._handle(head=False)

        # ------------------------------------------------------------------
        def _handle(self, head):
            path = urlsplit(self.path).path
            record = Request(role, self.command, path, {k.lower(): v for k, v in self.headers.items()},
                             range=self.headers.get("Range"))
            hub.log(record)
            try:
                if role == "hub":
                    self._hub(record, path, head)
                else:
                    self._cdn(record, path, head)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _send(self, record, status, headers, body=b""):
            record.status = status
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, str(v))
            if "Content-Length" not in headers:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)
                record.body_bytes += len(body)

        def _error(self, record, status, code, message):
            self._send(record, status, {"X-Error-Code": code, "X-Error-Message": message,
                                        "X-Repo-Commit": COMMIT, "Content-Type": "application/json"},
                       ('{"error": "%s"}' % message).encode())

        def _hub(self, record, path, head):
            found = hub.find(path)
            if found is None:
                return self._error(record, 404, "RepoNotFound", "Repository not found")
            rid, revision, name = found
            token = hub.gated.get(rid, hub.token)
            if token is not None and (denied := self._denied(token)):
                return self._error(record, denied, "GatedRepo", f"Access to model {rid} is restricted")
            if revision not in ("main", COMMIT):
                return self._error(record, 404, "RevisionNotFound", "Invalid rev id")
            if name not in hub.repos[rid]:
                return self._error(record, 404, "EntryNotFound", "Entry not found")
            data = hub.repos[rid][name]
            sha = hub.sha256(data)
            meta = {
                "X-Repo-Commit": COMMIT,
                "X-Linked-Etag": f'"{hub.advertised(name, data)}"',
                "X-Linked-Size": len(data),
                "Accept-Ranges": "bytes",
            }
            if hub.redirect:
                meta.update({"ETag": '"0123456789abcdef0123456789abcdef01234567"',
                             "Location": f"{hub.cdn}/blobs/{sha}?name={quote(name)}", "Content-Length": 0})
                return self._send(record, 302, meta)
            meta["ETag"] = f'"{hub.advertised(name, data)}"'
            return self._body(record, data, meta)

        def _denied(self, token):
            auth = self.headers.get("Authorization")
            if not auth:
                return 401
            return None if auth == f"Bearer {token}" else 403

        def _cdn(self, record, path, head):
            sha = path.rpartition("/")[2]
            data = hub._blob(sha) if path.startswith("/blobs/") else None
            if data is None:
                return self._send(record, 404, {"Content-Type": "text/plain"}, b"NoSuchKey")
            return self._body(record, data, {"ETag": f'"{sha}"', "Accept-Ranges": "bytes"})

        def _body(self, record, data, headers):
            if self.command == "GET" and (status := hub.take_body_status()) is not None:
                return self._send(record, status, {"Content-Type": "text/plain"}, b"injected failure")
            total = len(data)
            start, end, status = 0, total - 1, 200
            rng = self.headers.get("Range")
            if rng and not hub.ignore_range:
                try:
                    unit, _, spec = rng.partition("=")
                    a, _, b = spec.strip().partition("-")
                    start, end = int(a), (int(b) if b else total - 1)
                    assert unit.strip() == "bytes" and "," not in spec
                except (ValueError, AssertionError):
                    start, end = 0, total - 1
                else:
                    if start >= total or start > end:
                        return self._send(record, 416, {"Content-Range": f"bytes */{total}"})
                    end = min(end, total - 1)
                    status = 206
                    headers = dict(headers, **{"Content-Range": f"bytes {start}-{end}/{total}"})
            length = end + 1 - start
            headers = dict(headers, **{"Content-Length": length,
                                       "Content-Type": "application/octet-stream"})
            record.status = status
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, str(v))
            self.end_headers()
            if self.command == "HEAD":
                return
            cut = hub.take_cut()
            limit = length if cut is None else min(cut, length)
            sent = 0
            while sent < limit:
                if hub.pause_after is not None and sent >= hub.pause_after and not hub._released.is_set():
                    self.wfile.flush()
                    record.paused = True
                    hub._released.wait()
                piece = data[start + sent:start + min(sent + BODY_CHUNK, limit)]
                self.wfile.write(piece)
                sent += len(piece)
                record.body_bytes = sent
            self.wfile.flush()
            if cut is not None and limit < length:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    return Handler


def _load(data):
    """bytes as they are; a Path mapped read-only (sliced and hashed without being read into memory)."""
    if isinstance(data, Path):
        with open(data, "rb") as f:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return data
