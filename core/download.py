"""Find an official Hyper-SD file on disk, or download it from ``ByteDance/Hyper-SD`` on Hugging Face.

Importable without ComfyUI and without ``huggingface_hub`` (which is imported only when a download
actually starts).

Public API
----------
``find_local(filename, folders) -> str | None``
    The official file name, case-insensitively, in every given folder and its subfolders (one
    ``os.scandir`` walk, symlinked folders followed, no hashing). No network.

``download(entry, dest_dir, searched_folders, progress=None, should_stop=None) -> str``
    The path of the file: an existing copy found by :func:`find_local` (no network at all), or a freshly
    downloaded, sha256-verified copy at ``dest_dir/<official name>``.

Safety rules
------------
* Only ``catalog.REPO_ID`` at ``catalog.REVISION``; only file names in ``catalog.BY_FILENAME``, ending in
  ``.safetensors``, without path separators or ``..``. Nothing from the user is ever used as a repo id,
  URL or path component.
* ``HF_HUB_OFFLINE`` (read at call time, or ``huggingface_hub.constants``) -> :class:`DownloadError`
  before any request. ``HF_ENDPOINT`` (read at call time, else ``huggingface_hub.constants.ENDPOINT``)
  selects a mirror. ``HF_TOKEN`` and proxies are honoured through huggingface_hub's own headers and
  shared HTTP client.

How a download works
--------------------
1. ``huggingface_hub.get_hf_file_metadata(hf_hub_url(...))`` (one HEAD request, hub redirects followed,
   CDN redirect not followed) gives the file's size (``X-Linked-Size``), its LFS sha256 (``X-Linked-Etag``
   / ``ETag``) and the download location (the CDN ``Location``, or the resolve URL itself).
2. Free space in ``dest_dir`` is checked against the bytes still to fetch plus a small margin.
3. The body is streamed with ``huggingface_hub.get_session()`` -- huggingface_hub's shared HTTP client
   (``httpx2`` in 2.x, ``httpx`` in 1.x, ``requests`` in 0.x: proxies, offline guard) -- into a hidden
   temporary file in ``dest_dir`` named ``.<official name>.<sha256[:16]>.partial``. ComfyUI's model lists
   filter by extension (``folder_paths.supported_pt_extensions``) and ``.partial`` is not one, so ComfyUI
   never lists it. The sha256 is computed while streaming; ``progress`` is called (throttled) and
   ``should_stop`` polled between 1 MiB chunks.
4. Size and sha256 are compared with the hub's; on a match the temp file is fsynced and ``os.replace``-d
   onto the official name (atomic, same folder). Nothing ever sits under the official name until it is
   complete and verified. No copy goes to the Hugging Face cache.

Interruptions (decided policy)
------------------------------
* Every failure -- a network failure (connection cut, timeout, HTTP error), ``should_stop()``, a
  checksum mismatch -- deletes the ``.partial`` file before the error propagates: nothing partial stays in
  a models folder, and the next attempt restarts cleanly. Only a process killed mid-download can leave a
  ``.partial`` behind; the next call re-hashes it and resumes with ``Range: bytes=<n>-``
  (falling back to a clean restart when the server
  answers 200 instead of 206, when the hub's sha256 changed -- the sha is part of the temp name -- or when
  the partial is longer than the file).
* Anything else -- ``should_stop()`` returning True (:class:`DownloadCancelled`), an exception raised by
  ``should_stop``/``progress`` (e.g. ComfyUI's interrupt), a sha256/size mismatch (:class:`ChecksumError`),
  a local I/O error -- deletes the temp file before the exception propagates.
"""
import contextlib
import hashlib
import logging
import os
import re
import shutil
import sys
import threading
import time
from collections import deque
from urllib.parse import urljoin, urlsplit

from . import catalog

log = logging.getLogger("HyperSD")

SUFFIX = ".safetensors"
PARTIAL_SUFFIX = ".partial"  # not in ComfyUI's supported_pt_extensions: never listed as a model
CHUNK_BYTES = 1 << 20
DISK_MARGIN_BYTES = 64 * 1024 * 1024
PROGRESS_MIN_INTERVAL_S = 0.5  # progress() at most every 0.5 s ...
PROGRESS_MIN_FRACTION = 0.01  # ... or every 1 % of the file, plus the first and the last update

_SHA256 = re.compile(r"[0-9a-f]{64}")
_DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "on", "yes", "true"}

_LOCKS = {}
_LOCKS_GUARD = threading.Lock()


class DownloadError(RuntimeError):
    """A Hyper-SD file could not be found locally nor downloaded. The message says what to do by hand."""

    def __init__(self, message, *, filename=None, folders=(), url=None, dest_dir=None):
        super().__init__(message)
        self.filename = filename
        self.folders = tuple(folders)
        self.url = url
        self.dest_dir = dest_dir


class RefusedFileError(DownloadError, ValueError):
    """The requested name is not an official Hyper-SD ``.safetensors`` file (nothing was requested)."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the hub's size or sha256; the temp file was deleted."""


class NotEnoughSpaceError(DownloadError):
    """Not enough free disk space in the destination folder (checked before the body is fetched)."""


class DownloadCancelled(DownloadError):
    """``should_stop()`` returned True; the temp file was deleted."""


# --------------------------------------------------------------------------------------------- finding


def find_local(filename, folders):
    """Path of ``filename`` (case-insensitive) in any of ``folders`` or their subfolders, else None.

    Folders are searched in the given order; inside one folder, shallower files win. Missing or unreadable
    folders are skipped; symlinked folders are followed (as ComfyUI does) with loop protection.
    """
    if not isinstance(filename, str) or not filename:
        return None
    target = filename.casefold()
    for top in _unique_folders(folders):
        found = _scan(top, target)
        if found is not None:
            return found
    return None


def _unique_folders(folders):
    if isinstance(folders, (str, bytes, os.PathLike)):
        folders = [folders]
    seen, out = set(), []
    for folder in folders or ():
        if folder is None or folder == "":
            continue
        path = os.path.abspath(os.fspath(folder))
        key = os.path.normcase(path)
        if key not in seen:
            seen.add(key)
            out.append(path)
    return out


def _scan(top, target):
    visited = set()
    queue = deque([top])
    while queue:
        directory = queue.popleft()
        try:
            st = os.stat(directory)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if st.st_ino and key in visited:
            continue
        visited.add(key)
        subdirs = []
        try:
            with os.scandir(directory) as it:
                for item in it:
                    try:
                        if item.name.casefold() == target and item.is_file():
                            return item.path
                        if item.is_dir():
                            subdirs.append(item.path)
                    except OSError:
                        continue
        except OSError:
            continue
        queue.extend(sorted(subdirs))
    return None


# --------------------------------------------------------------------------------------------- helpers


def _validated_entry(entry):
    """The catalog entry for ``entry`` (a catalog entry or an official file name); refuses anything else."""
    name = getattr(entry, "filename", entry)
    if not isinstance(name, str) or not name:
        raise RefusedFileError(f"[Hyper-SD] refused to download {name!r}: not a file name", filename=None)
    bad = ("/" in name or "\\" in name or ".." in name or ":" in name or "\x00" in name
           or name != name.strip() or not name.endswith(SUFFIX))
    official = catalog.BY_FILENAME.get(name)
    if bad or official is None:
        raise RefusedFileError(
            f"[Hyper-SD] refused to download {name!r}: only the official {catalog.REPO_ID} "
            f"{SUFFIX} files listed in the pack's catalog can be downloaded "
            f"({', '.join(sorted(catalog.BY_FILENAME))})", filename=name)
    return official


def _env_true(name):
    return os.environ.get(name, "").strip().lower() in _TRUE


def _endpoint():
    """HF_ENDPOINT at call time, else huggingface_hub's configured endpoint (if it is imported), else the hub."""
    env = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    if env:
        return env
    constants = sys.modules.get("huggingface_hub.constants")
    return constants.ENDPOINT.rstrip("/") if constants is not None else _DEFAULT_ENDPOINT


def _offline():
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        return True
    constants = sys.modules.get("huggingface_hub.constants")  # don't import the hub just to ask
    return bool(constants is not None and constants.is_offline_mode())


def _partial_path(dest_dir, filename, sha256):
    return os.path.join(dest_dir, f".{filename}.{sha256[:16]}{PARTIAL_SUFFIX}")


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as e:  # pragma: no cover - e.g. Windows file still open elsewhere
        log.warning("[Hyper-SD] could not delete temporary file %s: %s", path, e)


def _remove_stale_partials(dest_dir, filename, keep):
    prefix = f".{filename}."
    try:
        with os.scandir(dest_dir) as it:
            stale = [e.path for e in it if e.name.startswith(prefix) and e.name.endswith(PARTIAL_SUFFIX)
                     and e.path != keep]
    except OSError:
        return
    for path in stale:
        log.info("[Hyper-SD] deleting outdated partial download %s", path)
        _remove(path)


def _fmt_bytes(n):
    if n is None:
        return "unknown size"
    return f"{n:,} bytes ({n / 1e6:,.1f} MB)"


def _lock_for(path):
    key = os.path.normcase(os.path.abspath(path))
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


@contextlib.contextmanager
def _process_lock(dest_dir, filename):
    """Held by one process at a time per destination file: two ComfyUIs (one per GPU) sharing a models
    folder must not write the same ``.partial`` at once. ``flock`` on ``.<name>.lock`` in ``dest_dir``,
    removed (while held) when done; a waiter that wakes on a removed lock file retries on the new one.
    Where ``fcntl`` is missing (Windows) only the in-process lock applies."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    os.makedirs(dest_dir, exist_ok=True)
    path = os.path.join(dest_dir, f".{filename}.lock")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                try:
                    yield
                finally:
                    _remove(path)
                return
        finally:
            os.close(fd)  # also releases the flock


def _origin(url):
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme, 0)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


class _Reporter:
    """Throttled ``progress(done, total)``: first call, then every 1 % or 0.5 s, and the last byte."""

    def __init__(self, progress, total):
        self.progress, self.total = progress, total
        self.last_done, self.last_time = None, 0.0
        self.step = max(1, int((total or 0) * PROGRESS_MIN_FRACTION))

    def __call__(self, done, force=False):
        if self.progress is None:
            return
        now = time.monotonic()
        if (force or self.last_done is None or done == self.total or done - self.last_done >= self.step
                or now - self.last_time >= PROGRESS_MIN_INTERVAL_S):
            if done == self.last_done and not force:
                return
            self.last_done, self.last_time = done, now
            self.progress(done, self.total)


# --------------------------------------------------------------------------------------------- download


def download(entry, dest_dir, searched_folders, progress=None, should_stop=None):
    """Return the path of the official file ``entry``, downloading it into ``dest_dir`` if needed.

    ``entry``: a :class:`catalog.HyperSDFile` or an official file name (anything else is refused before any
    request). ``searched_folders``: every folder (searched recursively, case-insensitive) where the file
    may already be; ``dest_dir`` is searched too. ``progress(bytes_done, bytes_total)`` is called as bytes
    arrive (throttled); ``should_stop()`` is polled between chunks -- True cancels
    (:class:`DownloadCancelled`); exceptions raised by either callback propagate after cleanup.

    Raises :class:`DownloadError` (or a subclass) with a message naming the file, the folders searched,
    the URL to fetch it by hand and where to put it.
    """
    official = _validated_entry(entry)
    filename = official.filename
    dest_dir = os.path.abspath(os.fspath(dest_dir))
    folders = _unique_folders(_unique_folders(searched_folders) + [dest_dir])

    found = find_local(filename, folders)
    if found is not None:
        log.debug("[Hyper-SD] using existing %s", found)
        return found

    with _lock_for(os.path.join(dest_dir, filename)), _process_lock(dest_dir, filename):
        found = find_local(filename, folders)  # another thread or process may have finished it meanwhile
        if found is not None:
            return found
        return _download_locked(official, dest_dir, folders, progress, should_stop)


def not_found_error(entry, dest_dir, folders, reason):
    """The :class:`DownloadError` for a file that is not on disk and will not be downloaded (``reason``)."""
    official = _validated_entry(entry)
    message = (f"[Hyper-SD] {official.filename} is not available: {reason}\n"
               f"{_hint(official, os.fspath(dest_dir), list(folders), _endpoint())}")
    return DownloadError(message, filename=official.filename, folders=folders, url=official.url,
                         dest_dir=os.fspath(dest_dir))


def _hint(official, dest_dir, folders, endpoint):
    lines = [f"Searched for {official.filename} (case-insensitive, including subfolders) in:"]
    lines += [f"  - {f}" for f in folders]
    lines.append(f"Download it by hand from {official.url}")
    if endpoint and endpoint != _DEFAULT_ENDPOINT:
        mirror = f"{endpoint}/{catalog.REPO_ID}/resolve/{catalog.REVISION}/{official.filename}"
        lines.append(f"  (HF_ENDPOINT is set to {endpoint}: mirror URL {mirror})")
    lines.append(f"and put it in {dest_dir} (or any folder above), keeping the file name {official.filename}.")
    return "\n".join(lines)


def _download_locked(official, dest_dir, folders, progress, should_stop):
    filename = official.filename
    endpoint = _endpoint()

    def fail(reason, cls=DownloadError, cause=None):
        message = f"[Hyper-SD] Cannot download {filename}: {reason}\n{_hint(official, dest_dir, folders, endpoint)}"
        err = cls(message, filename=filename, folders=folders, url=official.url, dest_dir=dest_dir)
        raise err from cause

    if _offline():
        fail("offline mode is enabled (HF_HUB_OFFLINE), so no network request was made.")

    # Only now touch huggingface_hub (import is slow, and not needed when the file is already here).
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import (HfHubHTTPError, OfflineModeIsEnabled, build_hf_headers, get_session,
                                       hf_raise_for_status)

    network_errors = _network_error_types() + (HfHubHTTPError, OfflineModeIsEnabled)

    url = hf_hub_url(catalog.REPO_ID, filename, revision=catalog.REVISION, endpoint=endpoint)
    try:
        meta = get_hf_file_metadata(url)
    except network_errors as e:
        fail(f"the hub at {endpoint} could not be reached or refused the request ({type(e).__name__}: {e}).",
             cause=e)

    sha256 = (meta.etag or "").lower()
    if not _SHA256.fullmatch(sha256):
        fail(f"the hub at {endpoint} did not advertise an LFS sha256 for the file (ETag {meta.etag!r}), "
             "so it cannot be verified; is HF_ENDPOINT a Hugging Face-compatible endpoint?")
    total = meta.size
    location = urljoin(url, meta.location or url)

    try:
        os.makedirs(dest_dir, exist_ok=True)
    except OSError as e:
        fail(f"cannot create the folder {dest_dir} ({e}).", cause=e)
    final = os.path.join(dest_dir, filename)
    partial = _partial_path(dest_dir, filename, sha256)
    _remove_stale_partials(dest_dir, filename, keep=partial)

    have = os.path.getsize(partial) if os.path.isfile(partial) else 0
    if total is not None and have > total:
        log.info("[Hyper-SD] partial download %s is longer than the file; restarting", partial)
        _remove(partial)
        have = 0

    # Disk space, before any body byte is fetched.
    expected = total if total is not None else official.approx_bytes
    needed = max(expected - have, 0) + DISK_MARGIN_BYTES
    free = shutil.disk_usage(dest_dir).free
    if free < needed:
        raise NotEnoughSpaceError(
            f"[Hyper-SD] Not enough free disk space in {dest_dir} to download {filename}: needs "
            f"{_fmt_bytes(needed)} -- the file is {_fmt_bytes(expected)}, {have:,} bytes of it already "
            f"downloaded, plus a {DISK_MARGIN_BYTES // (1024 * 1024)} MiB margin -- but only {_fmt_bytes(free)} "
            "are free. "
            f"Free some space, or download {official.url} by hand into {dest_dir}.",
            filename=filename, folders=folders, url=official.url, dest_dir=dest_dir)

    headers = build_hf_headers(headers={"Accept-Encoding": "identity"})
    if _origin(location) != _origin(url):
        headers.pop("authorization", None)  # never send the token to the CDN (signed URL)

    start_time = time.monotonic()
    try:
        hasher = hashlib.sha256()
        if have:
            log.info("[Hyper-SD] resuming %s at %s", filename, _fmt_bytes(have))
            _hash_existing(partial, have, hasher, should_stop, fail)
        if should_stop is not None and should_stop():
            raise DownloadCancelled(f"[Hyper-SD] download of {filename} cancelled", filename=filename,
                                    folders=folders, url=official.url, dest_dir=dest_dir)
        reporter = _Reporter(progress, total)
        done = have
        if total is not None and have == total:
            reporter(done, force=True)  # complete but never verified: just verify it
        else:
            log.info("[Hyper-SD] downloading %s, %s, from %s into %s", filename, _fmt_bytes(total), url,
                     dest_dir)
            request_headers = dict(headers)
            if have:
                request_headers["Range"] = f"bytes={have}-"
            with open(partial, "r+b" if have else "wb") as f:
                f.seek(have)
                try:
                    with _stream(get_session(), location, request_headers,
                                 constants.HF_HUB_DOWNLOAD_TIMEOUT) as (response, chunks):
                        hf_raise_for_status(response)
                        if have and response.status_code != 206:
                            log.info("[Hyper-SD] server ignored the Range request; restarting %s", filename)
                            f.seek(0)
                            f.truncate()
                            hasher, done = hashlib.sha256(), 0
                        elif have:
                            start = _content_range_start(response.headers.get("Content-Range"))
                            if start != have:
                                raise ChecksumError(
                                    f"[Hyper-SD] the server resumed {filename} at byte {start} instead of {have}; "
                                    "the partial download was discarded, please try again",
                                    filename=filename, folders=folders, url=official.url, dest_dir=dest_dir)
                        if total is None:
                            length = response.headers.get("Content-Length")
                            total = done + int(length) if length and length.isdigit() else None
                            reporter.total = total
                        reporter(done, force=True)
                        for chunk in chunks:
                            if not chunk:
                                continue
                            f.write(chunk)
                            hasher.update(chunk)
                            done += len(chunk)
                            if total is not None and done > total:
                                raise ChecksumError(
                                    f"[Hyper-SD] {filename}: received more bytes than the hub's size {total:,}; "
                                    "the download was discarded, please try again",
                                    filename=filename, folders=folders, url=official.url, dest_dir=dest_dir)
                            reporter(done)
                            if should_stop is not None and should_stop():
                                raise DownloadCancelled(
                                    f"[Hyper-SD] download of {filename} cancelled at {done:,} bytes",
                                    filename=filename, folders=folders, url=official.url, dest_dir=dest_dir)
                except network_errors as e:
                    fail(f"the transfer failed after {done:,} of {total if total is not None else '?'} bytes "
                         f"({type(e).__name__}: {e}). Nothing was kept; try again.", cause=e)
                f.flush()
                os.fsync(f.fileno())

        if total is not None and done != total:
            fail(f"the transfer ended after {done:,} of {total:,} bytes. Nothing was kept; try again.")
        digest = hasher.hexdigest()
        if digest != sha256:
            raise ChecksumError(
                f"[Hyper-SD] {filename} failed verification: sha256 {digest} but the hub says {sha256}; the "
                f"download was discarded, please try again (or download {official.url} by hand into "
                f"{dest_dir}).", filename=filename, folders=folders, url=official.url, dest_dir=dest_dir)
        os.replace(partial, final)
    except BaseException:
        _remove(partial)
        raise
    reporter(done, force=reporter.last_done != done)
    log.info("[Hyper-SD] saved %s (%s, sha256 verified) in %.1f s", final, _fmt_bytes(done),
             time.monotonic() - start_time)
    return final


def _network_error_types():
    """The base exception of whichever HTTP library huggingface_hub uses: httpx2 (2.x), httpx (1.x) or
    requests (0.x). Only already-imported modules are looked at: an exception can't come from the others."""
    found = []
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


@contextlib.contextmanager
def _stream(session, url, headers, timeout):
    """GET ``url`` streamed with huggingface_hub's shared session; yields (response, chunk iterator).

    huggingface_hub >= 1.0 hands out an httpx-style client (``.stream``); 0.x a ``requests.Session``."""
    if callable(getattr(session, "stream", None)):  # requests.Session.stream is a bool attribute
        with session.stream("GET", url, headers=headers, timeout=timeout, follow_redirects=True) as response:
            yield response, response.iter_bytes(chunk_size=CHUNK_BYTES)
    else:
        with session.get(url, headers=headers, timeout=timeout, stream=True, allow_redirects=True) as response:
            yield response, response.iter_content(chunk_size=CHUNK_BYTES)


def _hash_existing(path, length, hasher, should_stop, fail):
    with open(path, "rb") as f:
        remaining = length
        while remaining:
            block = f.read(min(8 * CHUNK_BYTES, remaining))
            if not block:
                fail(f"the partial download {path} shrank while being read.")
            hasher.update(block)
            remaining -= len(block)
            if should_stop is not None and should_stop():
                raise DownloadCancelled(f"[Hyper-SD] download of {os.path.basename(path)} cancelled",
                                        filename=os.path.basename(path))


def _content_range_start(value):
    match = re.match(r"\s*bytes\s+(\d+)-", value or "")
    return int(match.group(1)) if match else None
