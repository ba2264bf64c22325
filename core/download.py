"""Find an official Hyper-SD file on disk, or download it -- or any model file a workflow lists -- from
Hugging Face.

Importable without ComfyUI, torch and ``huggingface_hub`` (imported only when a download actually starts).
Works with huggingface_hub 0.23 to 2.x (CI runs the download tests once per generation:
``bash .ci/hub_matrix.sh``).

Public API
----------
``find_local(filename, folders) -> str | None``
    The official file name, case-insensitively, in every given folder and its subfolders (one
    ``os.scandir`` walk, symlinked folders followed, no hashing). No network.

``download(entry, dest_dir, searched_folders, progress=None, should_stop=None) -> str``
    :func:`find_local` once, then :func:`fetch` on a miss.

``fetch(entry, dest_dir, searched_folders, progress=None, should_stop=None) -> str``
    For a caller that already searched: downloads ``dest_dir/<official name>`` (sha256-verified), or
    returns it when another process or thread placed it there meanwhile. ``searched_folders`` only feeds
    the error messages: nothing is walked again.

``hub_file(url, filename=None) -> HubFile``
    A file a workflow lists (``https://huggingface.co/<repo>/resolve/<revision>/<path>``, saved as
    ``filename``), checked by the safety rules below; ``download``/``fetch`` take it as ``entry``. The
    headless runner's ``--download`` uses it for the workflow's ``models`` list.

Safety rules
------------
* An ``entry`` is an official file (only ``catalog.REPO_ID`` at ``catalog.REVISION``, only names in
  ``catalog.BY_FILENAME``) or a :class:`HubFile` from :func:`hub_file`: a model repository file given by its
  ``https://huggingface.co/<owner>/<name>/resolve/<revision>/<path>`` URL, each part checked (no ``..``,
  no backslash, no empty part), ``.safetensors`` / ``.sft`` only (no pickle formats), saved under a plain
  file name (no path component, not hidden). Only the hub's origin -- or the ``HF_ENDPOINT`` mirror -- is
  asked: the URL is rebuilt from its parts with ``hf_hub_url``, never requested as given.
* ``HF_HUB_OFFLINE`` (read at call time, or huggingface_hub's own setting) -> :class:`DownloadError`
  before any request. ``HF_ENDPOINT`` (read at call time, else huggingface_hub's endpoint) selects a
  mirror. The token (``HF_TOKEN`` or the stored login) and proxies go through huggingface_hub's own
  headers and shared HTTP client; the token is never sent to a CDN on another origin.

Why not ``hf_hub_download``
---------------------------
``hf_hub_download(local_dir=...)`` misses one of the pack's guarantees on every supported generation:
up to 1.0.x it has no ``tqdm_class`` (no progress bar in ComfyUI, no Cancel without patching the
library's globals); the releases that have ``tqdm_class`` (latest 1.x, 2.x) write each download to a
process-unique ``.incomplete`` file, so a partial left by a killed process is never resumed. It never
checks the sha256 either. So the transfer is the pack's, built only on huggingface_hub's public helpers
(``hf_hub_url``, ``get_hf_file_metadata``, ``build_hf_headers``, ``get_session``,
``hf_raise_for_status`` and its error classes); every difference between generations is found by a
capability check (:func:`_hub_api`, :func:`_offline`, :func:`_stream`, :func:`_network_error_types`),
never by a version number.

How a download works
--------------------
1. ``get_hf_file_metadata`` (one HEAD on the hub) gives the size, the LFS sha256 and the download location
   (the CDN ``Location``, or the resolve URL itself).
2. A cross-process lock, ``dest_dir/.<official name>.lock`` (``flock``, or ``msvcrt.locking`` on
   Windows): one process downloads, the others wait -- polling ``should_stop`` and reporting the first
   one's bytes as their own progress -- then use its file. The kernel drops the lock of a dead process;
   the file is deleted on release.
3. Under the lock: the file already at ``dest_dir/<official name>`` is returned as is; partials of
   another hub revision (another sha256) are deleted; free space is checked against the bytes still to
   fetch plus a margin.
4. The body is streamed with huggingface_hub's shared HTTP client into the hidden
   ``dest_dir/.<official name>.<sha256[:16]>.partial`` in 64 KiB blocks, hashed on the fly; ``progress`` is
   called (throttled) and ``should_stop`` polled every 1 MiB. A partial left by an earlier call (failed,
   cancelled or killed) is re-hashed and resumed with ``Range`` (a clean restart when the server answers
   200).
5. Size and sha256 are compared with the hub's; on a match the partial is fsynced and ``os.replace``-d
   onto the official name (atomic, same folder). ComfyUI lists models by extension and ``.partial`` and
   ``.lock`` are not model extensions: nothing incomplete is ever listed.

Failures (decided policy)
-------------------------
Bytes that arrived are kept: on a network error, an HTTP error, a cancel (``should_stop()`` True:
:class:`DownloadCancelled`, or an exception from ``should_stop``/``progress`` such as ComfyUI's interrupt or
Ctrl-C), a disk that fills up (:class:`NotEnoughSpaceError`) or another local I/O error, the hidden partial
stays (an empty one is deleted) and the next call resumes it with ``Range``: a connection dropped at 9 GB
of 10.3 GB costs 1.3 GB, not 10.3. The partial's name carries the hub's sha256, and the whole file is
checked against it before it gets the official name, so keeping it is safe. Only bytes known to be wrong
are deleted: a checksum or size mismatch (:class:`ChecksumError`), a server that resumes at another byte.
The lock file is always deleted on release; a killed process's stale lock file is taken over.
"""
import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import sys
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import quote, unquote, urljoin, urlsplit

from . import catalog

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None
try:  # Windows
    import msvcrt
except ImportError:
    msvcrt = None

log = logging.getLogger("HyperSD")

SUFFIX = ".safetensors"
PARTIAL_SUFFIX = ".partial"  # not in ComfyUI's supported_pt_extensions: never listed as a model
LOCK_SUFFIX = ".lock"
CHUNK_BYTES = 1 << 20  # should_stop is polled every CHUNK_BYTES received
READ_BYTES = 64 * 1024  # the body is read in blocks this size: a cut connection loses at most one
DISK_MARGIN_BYTES = 64 * 1024 * 1024
PROGRESS_MIN_INTERVAL_S = 0.5  # progress() at most every 0.5 s ...
PROGRESS_MIN_FRACTION = 0.01  # ... or every 1 % of the file, plus the first and the last update
LOCK_POLL_MAX_S = 0.1  # a waiting process looks at the lock (and should_stop) at least this often
DEFAULT_DOWNLOAD_TIMEOUT_S = 10

_SHA256 = re.compile(r"[0-9a-f]{64}")
HUB_SUFFIXES = (".safetensors", ".sft")  # what hub_file() downloads: no pickle formats (.ckpt, .pt, .bin ...)
_REPO_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
_REVISION = re.compile(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")
_PATH_PART = re.compile(r"[^/\\\x00-\x1f:*?\"<>|]+")
_DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "on", "yes", "true"}
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
_NO_LOCKING = {errno.ENOLCK, getattr(errno, "ENOTSUP", errno.ENOLCK), getattr(errno, "EOPNOTSUPP", errno.ENOLCK)}


class DownloadError(RuntimeError):
    """A file could not be found locally nor downloaded. The message says what to do by hand; ``reason`` is
    its first sentence alone (what went wrong), for callers that print one line."""

    def __init__(self, message, *, filename=None, folders=(), url=None, dest_dir=None, reason=None):
        super().__init__(message)
        self.filename = filename
        self.folders = tuple(folders)
        self.url = url
        self.dest_dir = dest_dir
        self.reason = reason or message.split("\n", 1)[0].replace("[Hyper-SD] ", "", 1)


class RefusedFileError(DownloadError, ValueError):
    """The requested name is not an official Hyper-SD ``.safetensors`` file (nothing was requested)."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the hub's size or sha256; the temp file was deleted."""


class NotEnoughSpaceError(DownloadError):
    """Not enough free disk space in the destination folder (before or during the download)."""


class AccessDeniedError(DownloadError):
    """The hub or mirror answered 401/403: a token (or a different one) is needed. ``status`` (401/403),
    ``sent_token`` (whether a token went with the request), ``gated`` (the hub said ``GatedRepo``: the
    repository's license must be accepted) and ``license_url`` (the repository's page) say which."""

    status = None
    sent_token = False
    gated = False
    license_url = None


class DownloadCancelled(DownloadError):
    """``should_stop()`` returned True; the temp file was deleted."""


# --------------------------------------------------------------------------------------------- what to fetch


@dataclass(frozen=True)
class HubFile:
    """One file of a Hugging Face model repository and the plain file name it is saved under."""

    repo_id: str  # "owner/name"
    revision: str
    path: str  # inside the repository, "/"-separated
    filename: str
    approx_bytes: int = 0  # for the disk-space check when the hub does not give the size

    @property
    def url(self):
        return (f"{_DEFAULT_ENDPOINT}/{self.repo_id}/resolve/{quote(self.revision, safe='')}/"
                f"{quote(self.path, safe='/')}")

    @property
    def license_url(self):
        return f"{_DEFAULT_ENDPOINT}/{self.repo_id}"


def hub_file(url, filename=None):
    """The :class:`HubFile` of ``https://huggingface.co/<owner>/<name>/resolve/<revision>/<path>``, saved as
    ``filename`` (default: the last part of the path). :class:`RefusedFileError` for anything else: another
    host or scheme, a dataset or space, ``..`` or a backslash anywhere, a name with a path component or
    a leading dot, a format other than ``.safetensors`` / ``.sft``. Nothing is requested."""
    parts = _url_parts(url)
    repo_id, revision, path = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
    name = parts[-1] if filename is None else filename
    _check_name(name, f"the file name {name!r} (for {url})")
    if not path.lower().endswith(HUB_SUFFIXES):
        raise RefusedFileError(f"[Hyper-SD] refused to download {url}: only {' / '.join(HUB_SUFFIXES)} files are "
                               "downloaded (pickle formats can run code when loaded); download it by hand if you "
                               "trust it", filename=name, url=url)
    return HubFile(repo_id, revision, path, name)


def _url_parts(url):
    """[owner, name, "resolve", revision, *path parts] of a hub resolve URL, each part decoded and checked."""
    def refuse(why):
        return RefusedFileError(f"[Hyper-SD] refused to download {url!r}: {why}; only files of Hugging Face "
                                f"model repositories, as {_DEFAULT_ENDPOINT}/<owner>/<name>/resolve/<revision>/"
                                "<path>, are downloaded", url=url if isinstance(url, str) else None)
    if not isinstance(url, str):
        raise refuse("not a URL")
    split = urlsplit(url.strip())
    if split.scheme != "https" or split.netloc.lower() != "huggingface.co":
        raise refuse("not an https://huggingface.co URL")
    raw = split.path.split("/")
    if len(raw) < 6 or raw[0] != "" or raw[3] != "resolve":
        raise refuse("not a /<owner>/<name>/resolve/<revision>/<path> URL")
    parts = [unquote(p) for p in raw[1:]]
    if not all(_REPO_PART.fullmatch(p) and ".." not in p for p in parts[:2]):
        raise refuse("the repository name has characters a repository name cannot have")
    if not _REVISION.fullmatch(parts[3]) or ".." in parts[3]:
        raise refuse("the revision has characters a revision cannot have")
    if not all(_PATH_PART.fullmatch(p) and p.strip(".") for p in parts[4:]):
        raise refuse("the path in the repository has an empty, '.', '..' or unsafe part")
    return parts


def _check_name(name, what):
    """A plain, visible file name: no path component, no '..', no control characters."""
    if (not isinstance(name, str) or not _PATH_PART.fullmatch(name) or name.startswith(".") or ".." in name
            or name != name.strip() or not name.lower().endswith(HUB_SUFFIXES)):
        raise RefusedFileError(f"[Hyper-SD] refused to download {what}: a file is saved under a plain "
                               f"{' / '.join(HUB_SUFFIXES)} file name, without folders, '..' or a leading dot",
                               filename=name if isinstance(name, str) else None)


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
    """The :class:`HubFile` for ``entry``: a :class:`HubFile` (checked again), or a catalog entry or an
    official file name (looked up in the catalog); refuses anything else."""
    if isinstance(entry, HubFile):
        checked = hub_file(entry.url, entry.filename)
        return HubFile(checked.repo_id, checked.revision, checked.path, checked.filename, entry.approx_bytes)
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
    return HubFile(catalog.REPO_ID, catalog.REVISION, official.filename, official.filename, official.approx_bytes)


def _env_true(name):
    return os.environ.get(name, "").strip().lower() in _TRUE


def _endpoint():
    """HF_ENDPOINT at call time, else huggingface_hub's configured endpoint (if it is imported), else the hub."""
    env = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    if env:
        return env
    constants = sys.modules.get("huggingface_hub.constants")
    endpoint = getattr(constants, "ENDPOINT", None)
    return endpoint.rstrip("/") if isinstance(endpoint, str) and endpoint else _DEFAULT_ENDPOINT


def _offline():
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE now, or huggingface_hub's own offline setting if it is imported:
    ``constants.is_offline_mode()`` in recent releases, the ``constants.HF_HUB_OFFLINE`` flag before."""
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        return True
    constants = sys.modules.get("huggingface_hub.constants")  # don't import the hub just to ask
    if constants is None:
        return False
    is_offline_mode = getattr(constants, "is_offline_mode", None)
    if callable(is_offline_mode):
        return bool(is_offline_mode())
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _partial_path(dest_dir, filename, sha256):
    return os.path.join(dest_dir, f".{filename}.{sha256[:16]}{PARTIAL_SUFFIX}")


def _lock_path(dest_dir, filename):
    return os.path.join(dest_dir, f".{filename}{LOCK_SUFFIX}")


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as e:  # pragma: no cover - e.g. Windows file still open elsewhere
        log.warning("[Hyper-SD] could not delete temporary file %s: %s", path, e)


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _fmt_bytes(n):
    if n is None:
        return "unknown size"
    return f"{n:,} bytes ({n / 1e6:,.1f} MB)"


def _origin(url):
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme, 0)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def _content_range_start(value):
    match = re.match(r"\s*bytes\s+(\d+)-", value or "")
    return int(match.group(1)) if match else None


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


# --------------------------------------------------------------------------------------------- one download


@dataclass
class _Job:
    """One requested file: where it goes, where it was looked for, and how to report and stop."""

    official: HubFile
    dest_dir: str
    folders: list
    endpoint: str
    progress: object = None
    should_stop: object = None

    @property
    def filename(self):
        return self.official.filename

    @property
    def final(self):
        return os.path.join(self.dest_dir, self.filename)

    def error(self, message, cls=DownloadError, reason=None):
        return cls(message, filename=self.filename, folders=self.folders, url=self.official.url,
                   dest_dir=self.dest_dir, reason=reason)

    def failure(self, reason, cls=DownloadError):
        """The error for a failed download: the reason, then where it was searched and how to get it by hand."""
        return self.error(f"[Hyper-SD] Cannot download {self.filename}: {reason}\n"
                          f"{_hint(self.official, self.dest_dir, self.folders, self.endpoint)}", cls, reason)

    @staticmethod
    def kept(partial, have):
        """What happens to the ``have`` bytes received so far, for a message."""
        if not have:
            return "Nothing was kept: the next try starts from the first byte."
        return (f"The {have:,} bytes received so far are kept in {partial}: the next try resumes from there "
                "(delete that file to start over).")

    def check_stop(self, what):
        if self.should_stop is not None and self.should_stop():
            raise self.error(f"[Hyper-SD] download of {self.filename} cancelled {what}", DownloadCancelled)


@dataclass
class _Remote:
    """What the hub says about the file."""

    url: str  # the resolve URL on the hub (or mirror)
    location: str  # where the bytes are: the CDN URL, or the resolve URL itself
    sha256: str
    total: object  # int, or None when the hub did not say


@contextlib.contextmanager
def _local_io(job, path, action):
    """Turns an ``OSError`` of the local disk into a clear :class:`DownloadError` naming the file."""
    try:
        yield
    except OSError as e:
        if e.errno in _NO_SPACE:
            free = shutil.disk_usage(job.dest_dir).free if os.path.isdir(job.dest_dir) else None
            raise job.failure(
                f"no room left on the disk: {action} {path} failed ({e.strerror or e}); {_fmt_bytes(free)} free in "
                f"{job.dest_dir}. Free more space there (or point the models folder to a larger disk) and try "
                f"again: the bytes already written are kept and resumed.", NotEnoughSpaceError) from e
        if isinstance(e, (PermissionError, FileNotFoundError, IsADirectoryError, NotADirectoryError)) or \
                e.errno in (errno.EROFS, errno.EIO):
            raise job.failure(f"{action} {path} failed ({type(e).__name__}: {e}). Check that {job.dest_dir} "
                              "is a writable folder.") from e
        raise


def download(entry, dest_dir, searched_folders, progress=None, should_stop=None):
    """Return the path of the official file ``entry``, downloading it into ``dest_dir`` if needed.

    ``entry``: a :class:`catalog.HyperSDFile` or an official file name (anything else is refused before any
    request). ``searched_folders``: every folder (searched recursively, case-insensitive) where the file
    may already be; ``dest_dir`` is searched too. ``progress(bytes_done, bytes_total)`` is called as bytes
    arrive (throttled); ``should_stop()`` is polled between chunks and while waiting for another process
    -- True cancels (:class:`DownloadCancelled`); exceptions raised by either callback propagate after
    cleanup.

    Raises :class:`DownloadError` (or a subclass) with a message naming the file, the folders searched,
    the URL to fetch it by hand and where to put it.
    """
    official = _validated_entry(entry)
    folders = _unique_folders(_unique_folders(searched_folders) + [os.path.abspath(os.fspath(dest_dir))])
    found = find_local(official.filename, folders)
    if found is not None:
        log.debug("[Hyper-SD] using existing %s", found)
        return found
    return fetch(official, dest_dir, folders, progress=progress, should_stop=should_stop)


def fetch(entry, dest_dir, searched_folders, progress=None, should_stop=None):
    """Download ``entry`` into ``dest_dir`` for a caller whose :func:`find_local` found nothing.

    Same arguments and errors as :func:`download`; ``searched_folders`` only names the folders in messages.
    When another process or thread is downloading the same file into ``dest_dir``, waits for it and returns
    its file (no second download).
    """
    official = _validated_entry(entry)
    dest_dir = os.path.abspath(os.fspath(dest_dir))
    job = _Job(official, dest_dir, _unique_folders(_unique_folders(searched_folders) + [dest_dir]), _endpoint(),
               _Reporter(progress, None), should_stop)
    if _offline():
        raise job.failure("offline mode is enabled (HF_HUB_OFFLINE), so no network request was made.")
    hub = _hub_api(job)  # only now import huggingface_hub (slow, and not needed when the file is on disk)
    remote = _metadata(job, hub)
    job.progress.total = remote.total
    job.progress.step = max(1, int((remote.total or 0) * PROGRESS_MIN_FRACTION))
    with _local_io(job, dest_dir, "creating the folder"):
        os.makedirs(dest_dir, exist_ok=True)
    partial = _partial_path(dest_dir, job.filename, remote.sha256)
    with _held_lock(job, lambda: job.progress(_size(partial))):
        if os.path.isfile(job.final):  # placed by the process we waited for
            job.progress(remote.total if remote.total is not None else _size(job.final), force=True)
            log.info("[Hyper-SD] using %s, downloaded by another process", job.final)
            return job.final
        return _download_locked(job, hub, remote, partial)


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
        mirror = endpoint + official.url[len(_DEFAULT_ENDPOINT):]
        lines.append(f"  (HF_ENDPOINT is set to {endpoint}: mirror URL {mirror})")
    lines.append(f"and put it in {dest_dir} (or any folder above), keeping the file name {official.filename}.")
    return "\n".join(lines)


def _download_locked(job, hub, remote, partial):
    """Under the lock: resume or start the partial, stream, verify, place. Deletes the partial only when its
    bytes are wrong (:class:`ChecksumError`) or empty; keeps it on every other failure, for the next call."""
    _remove_stale_partials(job.dest_dir, job.filename, keep=partial)
    have = _size(partial) if os.path.isfile(partial) else 0
    if remote.total is not None and have > remote.total:
        log.info("[Hyper-SD] partial download %s is longer than the file; restarting", partial)
        _remove(partial)
        have = 0
    _check_space(job, remote.total, have)
    start_time = time.monotonic()
    try:
        done, digest = _transfer(job, hub, remote, partial, have)
        _verify(job, remote, done, digest, partial)
        with _local_io(job, job.final, "moving the verified download to"):
            os.replace(partial, job.final)
    except ChecksumError:
        _remove(partial)
        raise
    except BaseException:
        _keep(job, partial)
        raise
    job.progress(done, force=job.progress.last_done != done)
    log.info("[Hyper-SD] saved %s (%s, sha256 verified) in %.1f s", job.final, _fmt_bytes(done),
             time.monotonic() - start_time)
    return job.final


def _keep(job, partial):
    """After a failure: an empty partial is deleted, a non-empty one stays for the next call to resume."""
    have = _size(partial)
    if not have:
        _remove(partial)
        return
    log.info("[Hyper-SD] kept %s of %s in %s: the next download resumes there", _fmt_bytes(have), job.filename,
             partial)


def _remove_stale_partials(dest_dir, filename, keep):
    """Partials of this file for another sha256 (another hub revision): useless, deleted (under the lock)."""
    prefix = f".{filename}."
    try:
        with os.scandir(dest_dir) as it:
            stale = [e.path for e in it if e.name.startswith(prefix) and e.name.endswith(PARTIAL_SUFFIX)
                     and e.path != keep]
    except OSError:
        return
    for path in stale:
        log.info("[Hyper-SD] deleting %s, a partial download of another revision of %s", path, filename)
        _remove(path)


def _check_space(job, total, have):
    """Free space for the bytes still to fetch plus a margin, before any body byte is fetched."""
    expected = total if total is not None else job.official.approx_bytes
    needed = max(expected - have, 0) + DISK_MARGIN_BYTES
    free = shutil.disk_usage(job.dest_dir).free
    if free < needed:
        raise job.error(
            f"[Hyper-SD] Not enough free disk space in {job.dest_dir} to download {job.filename}: needs "
            f"{_fmt_bytes(needed)} -- the file is {_fmt_bytes(expected)}, {have:,} bytes of it already "
            f"downloaded, plus a {DISK_MARGIN_BYTES // (1024 * 1024)} MiB margin -- but only {_fmt_bytes(free)} "
            f"are free. Free some space, or download {job.official.url} by hand into {job.dest_dir}.",
            NotEnoughSpaceError)


def _hash_existing(job, path, length, hasher):
    with _local_io(job, path, "reading the partial download"), open(path, "rb") as f:
        remaining = length
        while remaining:
            block = f.read(min(8 * CHUNK_BYTES, remaining))
            if not block:
                raise job.failure(f"the partial download {path} shrank while being read.")
            hasher.update(block)
            remaining -= len(block)
            job.check_stop("while checking the partial download")


def _verify(job, remote, done, digest, partial):
    if remote.total is not None and done != remote.total:
        raise job.failure(f"the transfer ended after {done:,} of {remote.total:,} bytes. {job.kept(partial, done)}")
    if digest != remote.sha256:
        raise job.error(
            f"[Hyper-SD] {job.filename} failed verification: sha256 {digest} but the hub says {remote.sha256}; "
            f"the download was discarded, please try again (or download {job.official.url} by hand into "
            f"{job.dest_dir}).", ChecksumError)


def _transfer(job, hub, remote, partial, have):
    """Hash what ``partial`` already holds, then stream the rest into it. Returns (bytes, sha256 hex)."""
    hasher = hashlib.sha256()
    if have:
        log.info("[Hyper-SD] resuming %s at %s (partial %s)", job.filename, _fmt_bytes(have), partial)
        _hash_existing(job, partial, have, hasher)
    job.check_stop("before the transfer")
    if remote.total is not None and have == remote.total:
        job.progress(have, force=True)  # complete but never verified: just verify it
        return have, hasher.hexdigest()
    return _stream_into(job, hub, remote, partial, have, hasher)


def _stream_into(job, hub, remote, partial, have, hasher):
    """GET the rest of the file (``Range`` when resuming) and append it to ``partial``, hashing as it goes."""
    log.info("[Hyper-SD] downloading %s, %s, from %s into %s", job.filename, _fmt_bytes(remote.total),
             remote.url, job.dest_dir)
    headers = hub.build_hf_headers(headers={"Accept-Encoding": "identity"})
    if _origin(remote.location) != _origin(remote.url):
        headers.pop("authorization", None)  # never send the token to the CDN (signed URL)
    if have:
        headers["Range"] = f"bytes={have}-"
    with _local_io(job, partial, "writing"), open(partial, "r+b" if have else "wb") as f:
        f.seek(have)
        try:
            with _stream(hub.get_session(), remote.location, headers, hub.timeout) as (response, chunks):
                hub.hf_raise_for_status(response)
                hasher = _check_resumed(job, response, f, have, hasher)
                total = remote.total if remote.total is not None else _length(response, f.tell())
                job.progress.total = total
                job.progress(f.tell(), force=True)
                _receive(job, f, chunks, hasher, total)
        except hub.network_errors as e:
            raise _http_failure(job, hub, e, f"the transfer failed after {f.tell():,} of "
                                f"{_fmt_bytes(remote.total) if remote.total is not None else '?'}",
                                "authorization" in headers, job.kept(partial, f.tell())) from e
        f.flush()
        os.fsync(f.fileno())
        return f.tell(), hasher.hexdigest()


def _check_resumed(job, response, f, have, hasher):
    """The hasher to continue with: a fresh one (and an emptied file) when the server ignored ``Range``."""
    if have and response.status_code != 206:
        log.info("[Hyper-SD] the server ignored the Range request; restarting %s", job.filename)
        f.seek(0)
        f.truncate()
        return hashlib.sha256()
    if have:
        start = _content_range_start(response.headers.get("Content-Range"))
        if start != have:
            raise job.error(f"[Hyper-SD] the server resumed {job.filename} at byte {start} instead of {have}; "
                            "the partial download was discarded, please try again", ChecksumError)
    return hasher


def _length(response, done):
    length = response.headers.get("Content-Length")
    return done + int(length) if length and length.isdigit() else None


def _receive(job, f, chunks, hasher, total):
    """Append the body's blocks to ``f``; ``should_stop`` is asked at every CHUNK_BYTES boundary and at the end."""
    next_poll = f.tell() + CHUNK_BYTES
    for chunk in chunks:
        if not chunk:
            continue
        f.write(chunk)
        hasher.update(chunk)
        done = f.tell()
        if total is not None and done > total:
            raise job.error(f"[Hyper-SD] {job.filename}: received more bytes than the hub's size {total:,}; the "
                            "download was discarded, please try again", ChecksumError)
        job.progress(done)
        if done >= next_poll or done == total:
            next_poll = done + CHUNK_BYTES
            job.check_stop(f"at {done:,} bytes")


# --------------------------------------------------------------------------------------------- huggingface_hub


@dataclass
class _HubApi:
    """The public huggingface_hub names the download uses, looked up once per download."""

    version: str
    hf_hub_url: object
    get_hf_file_metadata: object
    build_hf_headers: object
    get_session: object
    hf_raise_for_status: object
    offline_error: type
    network_errors: tuple
    timeout: float


def _hub_api(job):
    try:
        import huggingface_hub
        from huggingface_hub import constants, utils
    except ImportError as e:
        raise job.failure(f"huggingface_hub is not installed ({e}). Install the pack's requirements: pip install "
                          "-r requirements.txt in its folder (huggingface_hub 0.23 or newer).") from e
    version = getattr(huggingface_hub, "__version__", "?")

    def need(name):
        for module in (huggingface_hub, utils):
            value = getattr(module, name, None)
            if value is not None:
                return value
        raise job.failure(f"the installed huggingface_hub {version} has no `{name}`; the pack supports "
                          "huggingface_hub 0.23 to 2.x: pip install -U \"huggingface_hub>=0.23\".")

    names = ("hf_hub_url", "get_hf_file_metadata", "build_hf_headers", "get_session", "hf_raise_for_status")
    functions = {name: need(name) for name in names}
    offline_error = need("OfflineModeIsEnabled")
    errors = _network_error_types() + (need("HfHubHTTPError"), offline_error)
    timeout = getattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", DEFAULT_DOWNLOAD_TIMEOUT_S)
    return _HubApi(version, **functions, offline_error=offline_error, network_errors=errors, timeout=timeout)


def _network_error_types():
    """The base exception of whichever HTTP library huggingface_hub uses: httpx2 (2.x), httpx (1.x) or
    requests (0.x). Only already-imported modules are looked at: an exception can't come from the others."""
    found = []
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def _metadata(job, hub):
    """One HEAD on the hub: the file's size, its LFS sha256 and where its bytes are."""
    entry = job.official
    url = hub.hf_hub_url(entry.repo_id, entry.path, revision=entry.revision, endpoint=job.endpoint)
    try:
        meta = hub.get_hf_file_metadata(url)
    except hub.network_errors as e:
        sent = "authorization" in {k.lower() for k in hub.build_hf_headers()}
        raise _http_failure(job, hub, e, f"the hub at {job.endpoint} could not be asked for the file", sent) from e
    sha256 = (meta.etag or "").lower()
    if not _SHA256.fullmatch(sha256):
        raise job.failure(f"the hub at {job.endpoint} did not advertise an LFS sha256 for the file (ETag "
                          f"{meta.etag!r}), so it cannot be verified; is HF_ENDPOINT a Hugging Face-compatible "
                          "endpoint?")
    return _Remote(url, urljoin(url, meta.location or url), sha256, meta.size)


def _http_failure(job, hub, e, what, sent_token, kept=""):
    """The :class:`DownloadError` for an HTTP-level failure: refused access, another HTTP status, no answer.
    ``kept``: what became of the bytes received so far (a sentence), when a transfer had started."""
    response = getattr(e, "response", None)
    status = getattr(response, "status_code", None)
    cause = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    kept = f" {kept}" if kept else ""
    if status in (401, 403):
        return _access_denied(job, what, status, cause, sent_token, response)
    if isinstance(e, hub.offline_error):
        return job.failure(f"{what}: huggingface_hub is in offline mode ({cause}); unset HF_HUB_OFFLINE to "
                           f"download.{kept}")
    if status is not None:
        return job.failure(f"{what}: the hub at {job.endpoint} answered HTTP {status} ({cause}); try again "
                           f"later.{kept}")
    return job.failure(f"{what}: the connection failed or was cut ({cause}). Check the network connection and "
                       f"HF_ENDPOINT ({job.endpoint}) and try again, or download the file by hand and set "
                       f"HF_HUB_OFFLINE=1.{kept}")


def _access_denied(job, what, status, cause, sent_token, response):
    """:class:`AccessDeniedError` for a 401/403, naming the token to set and, for a gated repository (the hub
    says ``X-Error-Code: GatedRepo``, as for FLUX.1-dev), the page where its license is accepted."""
    entry = job.official
    headers = getattr(response, "headers", None) or {}
    gated = str(headers.get("X-Error-Code") or headers.get("x-error-code") or "") == "GatedRepo"
    login = "`hf auth login` (`huggingface-cli login` before huggingface_hub 1.0)"
    license = (f"; {entry.repo_id} is a gated repository: accept its license at {entry.license_url} (logged in) "
               "with that account" if gated else "")
    if sent_token:
        fix = (f"the token that was sent (HF_TOKEN or your saved login) was refused: check that it is valid and "
               f"has read access to {entry.repo_id} there{license}")
    elif gated:
        fix = (f"no token was sent{license}, then set HF_TOKEN to a read token of that account (or log in with "
               f"{login}) and try again")
    else:
        fix = (f"no token was sent and this endpoint (a gated or private repository or mirror?) needs one: set "
               f"HF_TOKEN to a token with read access (or log in with {login}) and try again")
    error = job.failure(f"{what}: the hub at {job.endpoint} answered HTTP {status} ({cause}); {fix}.",
                        AccessDeniedError)
    error.status, error.sent_token, error.gated, error.license_url = status, sent_token, gated, entry.license_url
    return error


@contextlib.contextmanager
def _stream(session, url, headers, timeout):
    """GET ``url`` streamed with huggingface_hub's shared session; yields (response, chunk iterator).

    huggingface_hub >= 1.0 hands out an httpx-style client (``.stream``); 0.x a ``requests.Session``."""
    if callable(getattr(session, "stream", None)):  # requests.Session.stream is a bool attribute
        with session.stream("GET", url, headers=headers, timeout=timeout, follow_redirects=True) as response:
            yield response, response.iter_bytes(chunk_size=READ_BYTES)
    else:
        with session.get(url, headers=headers, timeout=timeout, stream=True, allow_redirects=True) as response:
            yield response, response.iter_content(chunk_size=READ_BYTES)


# --------------------------------------------------------------------------------------------- cross-process lock


@contextlib.contextmanager
def _held_lock(job, on_wait):
    """Holds ``dest_dir/.<name>.lock`` (waiting for another holder, calling ``on_wait`` meanwhile); deletes it
    on release. A dead holder's lock is free: the kernel drops it with the process."""
    path = _lock_path(job.dest_dir, job.filename)
    fd = _acquire(job, path, on_wait)
    try:
        yield
    finally:
        _release(fd, path)


def _acquire(job, path, on_wait):
    delay, waited = 0.005, False
    while True:
        fd, pid = _try_lock_file(job, path)
        if fd is not None:
            if pid and pid != str(os.getpid()):
                log.info("[Hyper-SD] the lock file %s was left by process %s, which no longer holds it (killed?): "
                         "taking it over", path, pid)
            return fd
        if not waited:
            log.info("[Hyper-SD] %s is being downloaded into %s by another process (pid %s): waiting for it "
                     "(lock file %s)", job.filename, job.dest_dir, pid or "?", path)
            waited = True
        job.check_stop(f"while waiting for process {pid or '?'} to download it (lock file {path})")
        on_wait()
        time.sleep(delay)
        delay = min(delay * 2, LOCK_POLL_MAX_S)


def _try_lock_file(job, path):
    """(fd, previous holder's pid) once locked, or (None, holder's pid) when another process holds it."""
    while True:
        with _local_io(job, path, "creating the lock file"):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if not _lock_fd(fd, path):
            pid = _read_pid(fd)
            os.close(fd)
            return None, pid
        if _same_file(fd, path):
            pid = _read_pid(fd)
            _write_pid(fd)
            return fd, pid
        _unlock_fd(fd)  # the holder deleted the file we waited on: lock the current one
        os.close(fd)


def _lock_fd(fd, path):
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                return False
            if e.errno in _NO_LOCKING:
                log.warning("[Hyper-SD] the file system of %s has no file locks (%s): a download there is not "
                            "protected against another ComfyUI process", path, e)
                return True
            raise
    if msvcrt is not None:  # pragma: no cover - Windows
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    return True  # pragma: no cover - neither API: no cross-process protection


def _unlock_fd(fd):
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    elif msvcrt is not None:  # pragma: no cover - Windows
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _release(fd, path):
    if fcntl is not None:  # delete while still holding it: a waiter then locks a fresh file
        with contextlib.suppress(OSError):
            os.remove(path)
        os.close(fd)
        return
    _unlock_fd(fd)  # pragma: no cover - Windows: an open file cannot be deleted; whoever has it last does
    os.close(fd)  # pragma: no cover
    with contextlib.suppress(OSError):  # pragma: no cover
        os.remove(path)


def _same_file(fd, path):
    try:
        st = os.stat(path)
    except OSError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def _read_pid(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 32).decode("ascii", "replace").strip() or None
    except OSError:  # Windows: the holder's locked byte cannot be read
        return None


def _write_pid(fd):
    with contextlib.suppress(OSError):  # informative only
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
