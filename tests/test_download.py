"""core/download.py against a stand-in hub on 127.0.0.1 (tests/fakehub.py). No ComfyUI, no torch, no internet.

These tests run once per huggingface_hub generation (0.23.x, 0.36.x, 1.0.x, latest 1.x, latest 2.x), each
in a small venv: ``bash .ci/hub_matrix.sh`` (called by ``.ci/run``). They also run in the dev venv.

huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE into ``huggingface_hub.constants`` at import time;
``download`` reads both from the environment at call time (falling back to the constants), so the tests
simply set the environment with ``monkeypatch`` -- and pin the constants' offline flag to False so an
HF_HUB_OFFLINE inherited from the shell cannot break the online tests. Several tests start real processes
(``Worker``) that share one models folder, as one ComfyUI server per GPU does.
"""
import hashlib
import importlib.util
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import types
from collections import namedtuple
from pathlib import Path

import pytest

from fakehub import FakeHub
from hypersd_pack.core import catalog, download

NAME = "Hyper-SD15-1step-lora.safetensors"
ENTRY = catalog.BY_FILENAME[NAME]
SIZE = 3 * 1024 * 1024 + 12345  # 3 MiB and a bit: four 1 MiB chunks, the last one short
TOKEN = "hf_fakeTokenForTests"
MODEL_EXTENSIONS = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}  # ComfyUI's list
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def payload():
    return random.Random(1234).randbytes(SIZE)


@pytest.fixture
def hub(payload, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_IMPLICIT_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with FakeHub({NAME: payload}) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
        yield fake


@pytest.fixture
def dirs(tmp_path):
    dest = tmp_path / "models" / "loras"
    other = tmp_path / "extra" / "loras"
    other.mkdir(parents=True)
    return dest, other


def model_files(folder):
    """Every file under ``folder`` that ComfyUI would list as a model."""
    if not folder.exists():
        return []
    return [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MODEL_EXTENSIONS]


def all_files(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def recorder():
    calls = []
    return calls, lambda done, total: calls.append((done, total))


def hub_heads(hub):
    """The metadata requests to the hub (huggingface_hub >= 1.x may also HEAD the CDN it redirects to)."""
    return [r for r in hub.requests if r.method == "HEAD" and r.role == "hub"]


def gets(hub):
    return [r for r in hub.requests if r.method == "GET"]


def assert_progress(calls, start=0):
    assert calls, "progress was never called"
    assert all(total == SIZE for _, total in calls)
    dones = [d for d, _ in calls]
    assert dones == sorted(dones), f"not monotonic: {dones}"
    assert dones[0] == start and dones[-1] == SIZE


# ------------------------------------------------------------------------------------------ success


@pytest.mark.parametrize("redirect", [True, False], ids=["cdn-redirect", "direct"])
def test_download_success_progress_bytes_and_requests(hub, dirs, payload, redirect, tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    hub.redirect = redirect
    dest, other = dirs
    dest.mkdir(parents=True)
    stale = dest / f".{NAME}.{'0' * 16}.partial"  # leftover of an older revision of the file
    stale.write_bytes(b"old")
    calls, progress = recorder()

    path = download.download(ENTRY, str(dest), [str(other)], progress=progress)

    assert Path(path) == dest / NAME
    data = Path(path).read_bytes()
    assert data == payload and hashlib.sha256(data).hexdigest() == hub.sha256(payload)
    assert_progress(calls)
    assert len(calls) >= 4  # start, per 1 MiB chunk, end
    assert all_files(dest) == [NAME]  # no temp file, stale partial removed
    assert all_files(cache) == []  # no second copy in the Hugging Face cache

    (head,) = hub_heads(hub)
    assert head.path == f"/ByteDance/Hyper-SD/resolve/main/{NAME}"
    assert head.headers.get("authorization") == f"Bearer {TOKEN}"
    (get,) = gets(hub)
    assert get.status == 200 and get.body_bytes == SIZE
    assert "range" not in get.headers
    if redirect:  # signed CDN URL: the pack never sends the token off the hub's origin
        assert get.role == "cdn" and "authorization" not in get.headers
    else:
        assert get.role == "hub" and get.headers.get("authorization") == f"Bearer {TOKEN}"


def test_concurrent_calls_download_once(hub, dirs, payload):
    dest, _ = dirs
    results, errors = [], []

    def worker():
        try:
            results.append(download.download(ENTRY, dest, []))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and results == [str(dest / NAME)] * 3
    assert (dest / NAME).read_bytes() == payload and all_files(dest) == [NAME]
    assert len(gets(hub)) == 1


def test_accepts_official_name_string_and_no_callbacks(hub, dirs, payload):
    dest, _ = dirs
    path = download.download(NAME, dest, [])
    assert Path(path).read_bytes() == payload


# ------------------------------------------------------------------------------------------ interruption


def assert_kept_partial(hub, dest, payload, at_most):
    """The failed call kept its bytes: the hidden partial holds a prefix of the file (no model file, no lock)."""
    partial = partial_of(hub, dest, payload)
    have = partial.stat().st_size
    assert 0 < have <= at_most, (have, at_most)
    assert partial.read_bytes() == payload[:have]
    assert all_files(dest) == [partial.name]  # nothing ComfyUI would list, and the lock file is gone
    return have


def assert_resumes(hub, dest, payload, have, folders=()):
    """The next call asks only for the missing bytes (Range: bytes=<have>-) and the hub sends only those."""
    hub.reset_log()
    calls, progress = recorder()
    path = download.download(ENTRY, dest, list(folders), progress=progress)
    assert Path(path).read_bytes() == payload and all_files(dest) == [NAME]
    assert_progress(calls, start=have)
    (get,) = gets(hub)
    assert get.headers["range"] == f"bytes={have}-" and get.status == 206
    assert get.body_bytes == SIZE - have  # counted by the hub: only the rest of the file was sent
    return get.body_bytes


def test_cut_transfer_keeps_the_partial_and_the_next_call_fetches_only_the_rest(hub, dirs, payload):
    dest, other = dirs
    cut = SIZE * 6 // 10  # the connection drops at 60 %
    hub.cut_after = cut

    with pytest.raises(download.DownloadError) as info:
        download.download(ENTRY, dest, [other])
    message = str(info.value)
    assert NAME in message and ENTRY.url in message and str(dest) in message
    have = assert_kept_partial(hub, dest, payload, at_most=cut)
    assert f"{have:,} bytes received so far are kept in {partial_of(hub, dest, payload)}" in message
    assert "resumes" in message

    hub.cut_after = None
    assert assert_resumes(hub, dest, payload, have, [other]) == SIZE - have


def _killed_process_partial(hub, dest, payload, have):
    """What a process killed mid-download leaves: the hidden partial with the first ``have`` bytes."""
    dest.mkdir(parents=True, exist_ok=True)
    partial = dest / f".{NAME}.{hub.sha256(payload)[:16]}.partial"
    partial.write_bytes(payload[:have])
    return partial


def test_partial_of_a_killed_process_is_resumed(hub, dirs, payload):
    dest, _ = dirs
    have = SIZE // 2
    _killed_process_partial(hub, dest, payload, have)
    calls, progress = recorder()

    path = download.download(ENTRY, dest, [], progress=progress)

    assert Path(path).read_bytes() == payload and all_files(dest) == [NAME]
    assert_progress(calls, start=have)
    (get,) = gets(hub)
    assert get.headers["range"] == f"bytes={have}-"
    assert get.status == 206 and get.body_bytes == SIZE - have


def test_resume_restarts_cleanly_when_server_ignores_range(hub, dirs, payload):
    dest, _ = dirs
    _killed_process_partial(hub, dest, payload, SIZE // 2)
    hub.ignore_range = True
    calls, progress = recorder()

    path = download.download(ENTRY, dest, [], progress=progress)

    assert Path(path).read_bytes() == payload
    assert all_files(dest) == [NAME]
    assert_progress(calls, start=0)  # restarted from 0, never reported the discarded bytes
    (get,) = gets(hub)
    assert "range" in get.headers and get.status == 200 and get.body_bytes == SIZE


def test_complete_partial_is_verified_without_refetching(hub, dirs, payload):
    dest, _ = dirs
    dest.mkdir(parents=True)
    (dest / f".{NAME}.{hub.sha256(payload)[:16]}.partial").write_bytes(payload)

    path = download.download(ENTRY, dest, [])

    assert Path(path).read_bytes() == payload and all_files(dest) == [NAME]
    assert len(hub_heads(hub)) == 1 and gets(hub) == []


def test_corrupt_partial_fails_verification_then_restarts(hub, dirs, payload):
    dest, _ = dirs
    dest.mkdir(parents=True)
    partial = dest / f".{NAME}.{hub.sha256(payload)[:16]}.partial"
    partial.write_bytes(b"\0" * 1000)  # wrong bytes: resumed download cannot match the sha

    with pytest.raises(download.ChecksumError):
        download.download(ENTRY, dest, [])
    assert all_files(dest) == []
    path = download.download(ENTRY, dest, [])
    assert Path(path).read_bytes() == payload


@pytest.mark.parametrize("status", [403, 503])
def test_http_error_on_body_leaves_no_empty_partial_and_next_attempt_works(hub, dirs, payload, status):
    dest, other = dirs
    hub.body_status = status
    with pytest.raises(download.DownloadError) as info:
        download.download(ENTRY, dest, [other])
    assert str(status) in str(info.value) and ENTRY.url in str(info.value)
    assert all_files(dest) == []  # no empty partial left behind
    path = download.download(ENTRY, dest, [other])
    assert Path(path).read_bytes() == payload


# ------------------------------------------------------------------------------------------ several processes

WORKER = r"""
import json, logging, os, sys, types
repo, name, dest = sys.argv[1:4]
fsize = int(os.environ.get("WORKER_FSIZE_LIMIT", "0"))
if fsize:  # a file-size limit: writes past it fail with EFBIG, as a full disk fails with ENOSPC
    import resource, signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
pkg = types.ModuleType("hypersd_pack"); pkg.__path__ = [repo]; sys.modules["hypersd_pack"] = pkg
import huggingface_hub.constants  # as transformers does inside ComfyUI, before any node runs
from hypersd_pack.core import download
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
try:
    result = {"path": download.download(name, dest, [])}
except download.DownloadError as e:
    result = {"error": type(e).__name__, "message": str(e)}
print(json.dumps(result))
"""


def wait_until(condition, what, deadline_s=60):
    """Poll ``condition`` (a liveness deadline, not a timing assertion)."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


class Worker:
    """Another process (one ComfyUI server per GPU) downloading NAME into ``dest``; logs read as they come."""

    def __init__(self, dest, **env):
        env = {**os.environ, "HF_HUB_DOWNLOAD_TIMEOUT": "120", **env}
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER, str(REPO), NAME, str(dest)], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True)
        self.reader.start()

    def logged(self, needle):
        return any(needle in line for line in list(self.lines))

    def result(self):
        out, _ = self.proc.communicate(timeout=120)
        self.reader.join(10)
        assert self.proc.returncode == 0, "".join(self.lines)
        return json.loads(out.strip().splitlines()[-1])

    def kill(self):
        self.proc.kill()
        self.proc.communicate(timeout=30)


def partial_of(hub, dest, payload):
    return dest / f".{NAME}.{hub.sha256(payload)[:16]}.partial"


def test_fresh_process_with_hub_constants_imported_first(hub, dirs, payload):
    """ComfyUI's situation: transformers imported huggingface_hub.constants before the node's first download
    (this raised AttributeError 'is_offline_mode' on huggingface_hub 0.23 to 1.0)."""
    dest, _ = dirs
    assert Worker(dest).result() == {"path": str(dest / NAME)}
    assert (dest / NAME).read_bytes() == payload and all_files(dest) == [NAME]


def test_two_processes_one_download_the_other_waits_and_uses_it(hub, dirs, payload):
    dest, _ = dirs
    hub.pause_after = SIZE // 2  # the first process holds the lock, mid-body, until released
    first = Worker(dest)
    wait_until(lambda: hub.paused_bodies(), "the first process's download")
    second = Worker(dest)
    wait_until(lambda: second.logged("waiting for it") or second.proc.poll() is not None,
               "the second process to wait on the lock")
    assert second.logged(f".{NAME}.lock"), second.lines
    hub.release()

    assert first.result() == second.result() == {"path": str(dest / NAME)}  # no ChecksumError, no error
    assert (dest / NAME).read_bytes() == payload and all_files(dest) == [NAME]  # lock file gone too
    assert len(gets(hub)) == 1 and gets(hub)[0].body_bytes == SIZE  # downloaded once
    assert len(hub_heads(hub)) == 2  # each process asked the hub for the metadata once
    assert second.logged("downloaded by another process")


def test_killed_process_partial_is_resumed_and_its_lock_taken_over(hub, dirs, payload, caplog):
    dest, _ = dirs
    hub.pause_after = 2 * 1024 * 1024 + 1  # two 1 MiB chunks reach the client, then the body stalls
    first = Worker(dest)
    partial, lock = partial_of(hub, dest, payload), dest / f".{NAME}.lock"
    wait_until(lambda: partial.exists() and partial.stat().st_size >= 2 * 1024 * 1024, "2 MiB on disk")
    first_pid = first.proc.pid
    assert lock.read_text().strip() == str(first_pid)
    first.kill()  # mid-download, holding the lock: SIGKILL, no cleanup
    have = partial.stat().st_size
    assert lock.exists() and have < SIZE
    hub.pause_after = None
    hub.release()
    hub.reset_log()
    calls, progress = recorder()

    with caplog.at_level("INFO", logger="HyperSD"):
        path = download.download(ENTRY, dest, [], progress=progress)

    assert Path(path).read_bytes() == payload and all_files(dest) == [NAME]
    assert_progress(calls, start=have)
    (get,) = gets(hub)
    assert get.headers["range"] == f"bytes={have}-" and get.status == 206 and get.body_bytes == SIZE - have
    assert f"left by process {first_pid}" in caplog.text and str(lock) in caplog.text


def test_cancel_while_waiting_for_another_process(hub, dirs, payload):
    dest, _ = dirs
    hub.pause_after = SIZE // 2
    first = Worker(dest)
    partial = partial_of(hub, dest, payload)
    wait_until(lambda: hub.paused_bodies() and partial.exists() and partial.stat().st_size > 0,
               "the first process's download")
    polls, calls = [], []

    def should_stop():
        polls.append(1)
        return len(polls) >= 5

    with pytest.raises(download.DownloadCancelled) as info:
        download.download(ENTRY, dest, [], progress=lambda d, t: calls.append((d, t)), should_stop=should_stop)

    assert f".{NAME}.lock" in str(info.value) and str(first.proc.pid) in str(info.value)
    assert calls and calls[-1] == (partial.stat().st_size, SIZE)  # the waiter shows the other's progress
    assert partial.exists()  # the other process's partial is not ours to delete
    hub.release()
    assert first.result() == {"path": str(dest / NAME)}
    assert all_files(dest) == [NAME] and len(gets(hub)) == 1


def test_stale_partial_of_another_hub_revision_is_deleted_not_resumed(hub, dirs, payload, caplog):
    dest, _ = dirs
    dest.mkdir(parents=True)
    old_revision = random.Random(99).randbytes(SIZE)
    stale = partial_of(hub, dest, old_revision)
    stale.write_bytes(old_revision[: SIZE // 2])  # a process killed while the hub had the old file

    with caplog.at_level("INFO", logger="HyperSD"):
        path = download.download(ENTRY, dest, [])

    assert Path(path).read_bytes() == payload and all_files(dest) == [NAME]
    (get,) = gets(hub)
    assert "range" not in get.headers and get.body_bytes == SIZE
    assert str(stale) in caplog.text and "another revision" in caplog.text


# ------------------------------------------------------------------------------------------ refused access


def test_gated_mirror_without_token_names_the_fix(hub, dirs, payload, monkeypatch):
    import huggingface_hub

    dest, other = dirs
    hub.token = TOKEN
    monkeypatch.delenv("HF_TOKEN")
    if huggingface_hub.get_token() is not None:
        pytest.skip("this machine has a saved Hugging Face login: 'no token' cannot be shown")

    with pytest.raises(download.AccessDeniedError) as info:
        download.download(ENTRY, dest, [other])

    message = str(info.value)
    for needle in (NAME, "HTTP 401", hub.endpoint, "no token was sent", "HF_TOKEN", ENTRY.url, str(dest)):
        assert needle in message, needle
    assert gets(hub) == [] and not dest.exists()
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # the fix the message gives
    assert Path(download.download(ENTRY, dest, [other])).read_bytes() == payload


def test_gated_mirror_refusing_the_token_names_the_fix(hub, dirs, monkeypatch):
    dest, other = dirs
    hub.token = "hf_theRightOne"
    with pytest.raises(download.AccessDeniedError) as info:
        download.download(ENTRY, dest, [other])
    message = str(info.value)
    for needle in (NAME, "HTTP 403", hub.endpoint, "token that was sent", "read access", ENTRY.url):
        assert needle in message, needle
    assert gets(hub) == [] and not dest.exists()


# ------------------------------------------------------------------------------------------ disk full mid-download


def test_disk_full_mid_download_tmpfs(hub, dirs, payload, monkeypatch):
    """A real ENOSPC: a 2 MiB tmpfs as the models folder (needs root; the pre-check is told there is room)."""
    dest, other = dirs
    dest.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(dest)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): the rlimit variant covers it")
    try:
        usage = namedtuple("usage", "total used free")
        monkeypatch.setattr(download.shutil, "disk_usage", lambda path: usage(10**12, 0, 10**12))
        with pytest.raises(download.NotEnoughSpaceError) as info:
            download.download(ENTRY, dest, [other])
        message = str(info.value)
        for needle in (NAME, "no room left", str(partial_of(hub, dest, payload)), str(dest), "kept and resumed"):
            assert needle in message, needle
        assert_kept_partial(hub, dest, payload, at_most=2 * 1024 * 1024)  # what fitted stays; no lock file
    finally:
        subprocess.run(["umount", str(dest)], check=False)


def test_disk_full_mid_download_file_size_limit(hub, dirs, payload):
    """Writes past 1.5 MiB fail (RLIMIT_FSIZE in a worker process): a clear error, the bytes written so far
    kept, and the next call (with room again) fetches only the rest."""
    dest, _ = dirs
    limit = 3 * 1024 * 1024 // 2
    result = Worker(dest, WORKER_FSIZE_LIMIT=str(limit)).result()
    assert result["error"] == "NotEnoughSpaceError", result
    for needle in (NAME, "no room left", str(partial_of(hub, dest, payload)), "kept and resumed"):
        assert needle in result["message"], needle
    have = assert_kept_partial(hub, dest, payload, at_most=limit)
    assert_resumes(hub, dest, payload, have)


# ------------------------------------------------------------------------------------------ one walk per call


def test_a_miss_walks_each_folder_once(hub, dirs, payload, monkeypatch):
    dest, other = dirs
    walked, real = [], download._scan
    monkeypatch.setattr(download, "_scan", lambda top, target: walked.append(top) or real(top, target))
    path = download.download(ENTRY, dest, [other])
    assert Path(path).read_bytes() == payload
    assert walked == [str(other), str(dest)]


def load_files_glue(monkeypatch, folders):
    """nodes/files.py with a stand-in for the three ComfyUI names it uses (the real host: test_lora_loader)."""
    importlib.import_module("hypersd_pack.nodes")  # the glue package (its __init__ imports nothing)

    bars = []

    class ProgressBar:
        def __init__(self, total):
            bars.append([])

        def update_absolute(self, value, total=None):
            bars[-1].append((value, total))

    host = {"comfy": types.ModuleType("comfy"),
            "comfy.utils": types.SimpleNamespace(ProgressBar=ProgressBar),
            "comfy.model_management": types.SimpleNamespace(throw_exception_if_processing_interrupted=lambda: None),
            "folder_paths": types.SimpleNamespace(get_folder_paths=lambda name: [str(f) for f in folders[name]])}
    for name, module in host.items():
        monkeypatch.setitem(sys.modules, name, module)
    host["comfy"].utils, host["comfy"].model_management = host["comfy.utils"], host["comfy.model_management"]
    spec = importlib.util.spec_from_file_location("hypersd_pack.nodes._files_under_test", REPO / "nodes" / "files.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, bars


def test_node_glue_walks_once_then_downloads_with_progress(hub, dirs, payload, monkeypatch):
    dest, other = dirs
    files, bars = load_files_glue(monkeypatch, {"loras": [dest, other]})
    walked, real = [], download._scan
    monkeypatch.setattr(download, "_scan", lambda top, target: walked.append(top) or real(top, target))

    path = files.locate(ENTRY, files.POLICY_IF_MISSING)

    assert Path(path) == dest / NAME and Path(path).read_bytes() == payload
    assert walked == [str(dest), str(other)]  # files.locate's walk is the only one
    (updates,) = bars
    assert updates[-1] == (SIZE, SIZE) and [v for v, _ in updates] == sorted(v for v, _ in updates)


# ------------------------------------------------------------------------------------------ verification


def test_wrong_hash_deletes_everything(hub, dirs, payload):
    dest, other = dirs
    hub.advertise_sha[NAME] = hashlib.sha256(b"something else").hexdigest()

    with pytest.raises(download.ChecksumError) as info:
        download.download(ENTRY, dest, [other])

    assert hub.advertise_sha[NAME] in str(info.value) and hub.sha256(payload) in str(info.value)
    assert all_files(dest) == []
    (get,) = gets(hub)
    assert get.body_bytes == SIZE  # the whole body came, and was discarded


# ------------------------------------------------------------------------------------------ offline / unreachable


def test_offline_makes_no_request_and_explains(hub, dirs, monkeypatch):
    dest, other = dirs
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    with pytest.raises(download.DownloadError) as info:
        download.download(ENTRY, dest, [other])

    message = str(info.value)
    for needle in (NAME, str(dest), str(other), ENTRY.url, "HF_HUB_OFFLINE", "HF_ENDPOINT", hub.endpoint):
        assert needle in message, needle
    assert message.startswith("[Hyper-SD]")
    assert info.value.filename == NAME and info.value.url == ENTRY.url
    assert hub.requests == []
    assert all_files(dest) == []


def test_unreachable_endpoint_explains(dirs, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", dead)
    dest, other = dirs

    with pytest.raises(download.DownloadError) as info:
        download.download(ENTRY, dest, [other])

    message = str(info.value)
    for needle in (NAME, str(dest), str(other), ENTRY.url, "HF_ENDPOINT", dead):
        assert needle in message, needle
    assert all_files(dest) == []


def test_file_missing_on_hub_explains(hub, dirs):
    dest, other = dirs
    hub.files.clear()
    with pytest.raises(download.DownloadError) as info:
        download.download(ENTRY, dest, [other])
    assert NAME in str(info.value) and ENTRY.url in str(info.value) and str(other) in str(info.value)
    assert [r.method for r in hub.requests] == ["HEAD"]


# ------------------------------------------------------------------------------------------ local files


def test_existing_file_found_case_insensitive_in_subfolder_without_request(hub, dirs, monkeypatch):
    dest, other = dirs
    nested = other / "Hyper" / "sd15"
    nested.mkdir(parents=True)
    existing = nested / NAME.upper()
    existing.write_bytes(b"local copy")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # found before any offline check

    path = download.download(ENTRY, dest, [other])

    assert Path(path) == existing and Path(path).read_bytes() == b"local copy"
    assert hub.requests == []
    assert not dest.exists()


def test_existing_file_in_dest_dir_is_reused(hub, dirs):
    dest, _ = dirs
    (dest / "sub").mkdir(parents=True)
    (dest / "sub" / NAME.lower()).write_bytes(b"x")
    assert download.download(ENTRY, dest, []) == str(dest / "sub" / NAME.lower())
    assert hub.requests == []


def test_find_local_reads_each_folder_once_and_opens_no_file(tmp_path, monkeypatch):
    folder = tmp_path / "loras"
    for i in range(10):
        sub = folder / f"set{i}"
        sub.mkdir(parents=True)
        for j in range(100):
            (sub / f"lora_{i}_{j}.safetensors").write_bytes(b"")
    for j in range(1000):
        (folder / f"top_{j}.safetensors").write_bytes(b"")
    target = folder / "set7" / "deeper"
    target.mkdir()
    (target / "hyper-sd15-1STEP-lora.SafeTensors").write_bytes(b"")
    (folder / "set3" / NAME).mkdir()  # a folder with the name is not a file
    every_dir = sorted({str(folder), *(str(p) for p in folder.rglob("*") if p.is_dir())})
    read, opened = [], []
    real_scandir, real_open = os.scandir, open
    monkeypatch.setattr(download.os, "scandir", lambda path: read.append(path) or real_scandir(path))
    monkeypatch.setattr("builtins.open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))

    missing = download.find_local("Hyper-SDXL-1step-lora.safetensors", [folder])
    every_folder = read[:]
    read.clear()
    found = download.find_local(NAME, [tmp_path / "missing", folder])
    read_for_hit = read[:]
    monkeypatch.undo()

    assert missing is None
    assert sorted(every_folder) == every_dir  # each folder read once, no file opened
    assert found == str(target / "hyper-sd15-1STEP-lora.SafeTensors")
    assert read_for_hit[-1] == str(folder / "set7" / "deeper") and len(read_for_hit) == len(set(read_for_hit))
    assert opened == []  # names only: no file is opened, nothing is hashed
    assert download.find_local(NAME, []) is None


def test_find_local_prefers_given_order_and_shallow_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "deep").mkdir(parents=True)
    b.mkdir()
    (a / "deep" / NAME).write_bytes(b"")
    (b / NAME).write_bytes(b"")
    (a / NAME).write_bytes(b"")
    assert download.find_local(NAME, [b, a]) == str(b / NAME)
    assert download.find_local(NAME, [a, b]) == str(a / NAME)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_find_local_survives_symlink_loops(tmp_path):
    folder = tmp_path / "loras"
    (folder / "x").mkdir(parents=True)
    try:
        os.symlink(folder, folder / "x" / "loop")
    except OSError:
        pytest.skip("symlinks not permitted")
    assert download.find_local(NAME, [folder]) is None


# ------------------------------------------------------------------------------------------ refusals


class Forged:
    def __init__(self, filename):
        self.filename = filename
        self.url = "https://evil.example/x.safetensors"


@pytest.mark.parametrize("entry", [
    "../" + NAME,
    "loras/" + NAME,
    "..\\" + NAME,
    NAME + "/../../evil.safetensors",
    NAME.lower(),  # official names are exact
    "Hyper-SD15-1step-lora.ckpt",
    "evil.safetensors",
    "https://huggingface.co/ByteDance/Hyper-SD/resolve/main/" + NAME,
    "ByteDance/Hyper-SD",
    "",
    None,
    Forged("../" + NAME),
    Forged("someone-else/model.safetensors"),
])
def test_refuses_anything_not_in_catalog_before_any_request(hub, dirs, entry):
    dest, other = dirs
    with pytest.raises(download.RefusedFileError):
        download.download(entry, dest, [other])
    assert hub.requests == []
    assert not dest.exists()


def test_forged_entry_with_official_name_uses_catalog_url(hub, dirs, payload):
    dest, _ = dirs
    path = download.download(Forged(NAME), dest, [])
    assert Path(path).read_bytes() == payload
    assert all(r.path.startswith(f"/ByteDance/Hyper-SD/resolve/main/{NAME}") or r.role == "cdn"
               for r in hub.requests)


# ------------------------------------------------------------------------------------------ stop / callbacks


def test_should_stop_true_midway_stops_keeps_the_bytes_and_the_next_call_resumes(hub, dirs, payload):
    dest, _ = dirs
    polls = []

    def should_stop():
        polls.append(1)
        return len(polls) >= 3  # once before the body, then after each chunk: stop after the 2nd chunk

    calls, progress = recorder()
    with pytest.raises(download.DownloadCancelled):
        download.download(ENTRY, dest, [], progress=progress, should_stop=should_stop)

    assert len(polls) == 3
    assert calls[-1][0] < SIZE
    assert len(hub_heads(hub)) == 1 and len(gets(hub)) == 1
    have = assert_kept_partial(hub, dest, payload, at_most=calls[-1][0])
    assert have == calls[-1][0]  # what the progress showed is what is on disk
    assert_resumes(hub, dest, payload, have)


class Interrupted(Exception):
    """Stands in for ComfyUI's InterruptProcessingException."""


@pytest.mark.parametrize("where", ["should_stop", "progress"])
def test_callback_exceptions_propagate_and_the_bytes_are_kept(hub, dirs, payload, where):
    """ComfyUI's Cancel (an exception from its interrupt check) or Ctrl-C: the partial stays for the next call."""
    dest, _ = dirs
    seen = []

    def boom(*args):
        seen.append(args)
        if len(seen) >= 2:
            raise Interrupted()
        return False

    kwargs = {where: boom}
    with pytest.raises(Interrupted):
        download.download(ENTRY, dest, [], **kwargs)
    have = assert_kept_partial(hub, dest, payload, at_most=SIZE - 1)
    assert_resumes(hub, dest, payload, have)


# ------------------------------------------------------------------------------------------ disk space


def test_not_enough_disk_space_fails_before_body(hub, dirs, monkeypatch):
    dest, other = dirs
    usage = namedtuple("usage", "total used free")
    checked = []

    def fake_disk_usage(path):
        checked.append(path)
        return usage(10**9, 10**9 - 12_345, 12_345)

    monkeypatch.setattr(download.shutil, "disk_usage", fake_disk_usage)

    with pytest.raises(download.NotEnoughSpaceError) as info:
        download.download(ENTRY, dest, [other])

    message = str(info.value)
    needed = SIZE + download.DISK_MARGIN_BYTES
    assert str(dest) in message and "12,345" in message and f"{needed:,}" in message
    assert checked == [str(dest)]
    assert len(hub_heads(hub)) == 1 and gets(hub) == []
    assert all_files(dest) == []


# ------------------------------------------------------------------------------------------ any listed hub file

OTHER_REPO = "Comfy-Org/stable-diffusion-v1-5-archive"
OTHER_PATH = "split files/v1-5-pruned-emaonly-fp16.safetensors"  # a subfolder, and a space to quote
OTHER_URL = f"https://huggingface.co/{OTHER_REPO}/resolve/main/split%20files/v1-5-pruned-emaonly-fp16.safetensors"


@pytest.mark.parametrize("redirect", [True, False], ids=["cdn-redirect", "direct"])
def test_a_listed_file_of_another_repo_downloads_with_every_guarantee(hub, dirs, payload, redirect):
    hub.redirect = redirect
    hub.repos[OTHER_REPO] = {OTHER_PATH: payload}
    dest, _ = dirs
    entry = download.hub_file(OTHER_URL, "v1-5.safetensors")
    assert (entry.repo_id, entry.revision, entry.path) == (OTHER_REPO, "main", OTHER_PATH)
    hub.cut_after = SIZE * 6 // 10

    with pytest.raises(download.DownloadError) as info:
        download.fetch(entry, dest, [])
    assert OTHER_URL in str(info.value) and "v1-5.safetensors" in str(info.value)
    partial = dest / f".v1-5.safetensors.{hub.sha256(payload)[:16]}.partial"
    have = partial.stat().st_size
    hub.reset_log()
    path = download.fetch(entry, dest, [])

    assert Path(path) == dest / "v1-5.safetensors" and Path(path).read_bytes() == payload
    assert all_files(dest) == ["v1-5.safetensors"]
    (head,) = hub_heads(hub)
    assert head.path == f"/{OTHER_REPO}/resolve/main/split%20files/v1-5-pruned-emaonly-fp16.safetensors"
    (get,) = gets(hub)
    assert get.headers["range"] == f"bytes={have}-" and get.body_bytes == SIZE - have


def test_a_gated_repo_names_the_token_and_the_license_page(hub, dirs, payload, monkeypatch):
    import huggingface_hub

    hub.repos["black-forest-labs/FLUX.1-dev"] = {"flux1-dev.safetensors": payload}
    hub.gated["black-forest-labs/FLUX.1-dev"] = TOKEN
    entry = download.hub_file("https://huggingface.co/black-forest-labs/FLUX.1-dev/resolve/main/"
                              "flux1-dev.safetensors")
    dest, _ = dirs
    monkeypatch.setenv("HF_TOKEN", "hf_notAcceptedForThisRepo")
    with pytest.raises(download.AccessDeniedError) as refused:
        download.fetch(entry, dest, [])
    assert refused.value.status == 403 and refused.value.gated and refused.value.sent_token
    for needle in ("HTTP 403", "gated", "https://huggingface.co/black-forest-labs/FLUX.1-dev", "token that was sent"):
        assert needle in str(refused.value), needle

    monkeypatch.delenv("HF_TOKEN")
    if huggingface_hub.get_token() is None:  # a saved login on this machine would be sent
        with pytest.raises(download.AccessDeniedError) as info:
            download.fetch(entry, dest, [])
        error = info.value
        assert (error.status, error.gated, error.sent_token) == (401, True, False)
        assert error.license_url == "https://huggingface.co/black-forest-labs/FLUX.1-dev"
        for needle in ("accept its license at https://huggingface.co/black-forest-labs/FLUX.1-dev", "HF_TOKEN",
                       "hf auth login"):
            assert needle in error.reason, needle
    assert gets(hub) == [] and not dest.exists()
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert Path(download.fetch(entry, dest, [])).read_bytes() == payload


@pytest.mark.parametrize("url, name", [
    ("http://huggingface.co/a/b/resolve/main/x.safetensors", None),  # not https
    ("https://evil.example/a/b/resolve/main/x.safetensors", None),
    ("https://huggingface.co.evil.example/a/b/resolve/main/x.safetensors", None),
    ("https://user@huggingface.co/a/b/resolve/main/x.safetensors", None),
    ("https://huggingface.co:8443/a/b/resolve/main/x.safetensors", None),
    ("https://huggingface.co/datasets/a/b/resolve/main/x.safetensors", None),
    ("https://huggingface.co/a/b/blob/main/x.safetensors", None),
    ("https://huggingface.co/a/b/resolve/main/../../x.safetensors", None),
    ("https://huggingface.co/a/b/resolve/main/%2E%2E/x.safetensors", None),
    ("https://huggingface.co/a/b/resolve/main/sub%2F..%2Fx.safetensors", None),
    ("https://huggingface.co/a/b/resolve/main/sub%5Cx.safetensors", None),  # a backslash
    ("https://huggingface.co/../b/resolve/main/x.safetensors", None),
    ("https://huggingface.co/a/b/resolve/../x.safetensors", None),
    ("https://huggingface.co/a/b/resolve/main/x.ckpt", "x.safetensors"),  # a pickle under another name
    ("https://huggingface.co/a/b/resolve/main/x.pth", None),
    ("https://huggingface.co/a/b/resolve/main/x.safetensors", "../x.safetensors"),
    ("https://huggingface.co/a/b/resolve/main/x.safetensors", "/etc/x.safetensors"),
    ("https://huggingface.co/a/b/resolve/main/x.safetensors", "sub/x.safetensors"),
    ("https://huggingface.co/a/b/resolve/main/x.safetensors", ".hidden.safetensors"),
    ("https://huggingface.co/a/b/resolve/main/x.safetensors", "x.safetensors.partial"),
    ("https://huggingface.co/a/b/resolve/main/x.safetensors", "C:x.safetensors"),
    (None, None),
])
def test_hub_file_refuses_unsafe_urls_and_names_before_any_request(hub, dirs, url, name):
    with pytest.raises(download.RefusedFileError):
        download.hub_file(url, name)
    forged = download.HubFile("a/b", "main", "../x.safetensors", name or "x.safetensors")  # built by hand
    with pytest.raises(download.RefusedFileError):
        download.fetch(forged, dirs[0], [])
    assert hub.requests == [] and not dirs[0].exists()


# ------------------------------------------------------------------------------------------ import hygiene


def test_module_imports_without_huggingface_hub_or_comfy():
    code = (
        "import sys, types\n"
        f"pkg = types.ModuleType('hypersd_pack'); pkg.__path__ = [{str(REPO)!r}]\n"
        "sys.modules['hypersd_pack'] = pkg\n"
        "from hypersd_pack.core import download\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('huggingface_hub', 'httpx2', 'comfy', 'torch')]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
