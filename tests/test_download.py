"""nodes/download.py against a stand-in hub on 127.0.0.1 (tests/fakehub.py). No ComfyUI, no internet.

huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE into ``huggingface_hub.constants`` at import time;
``download`` reads both from the environment at call time (falling back to the constants), so the tests
simply set the environment with ``monkeypatch`` -- and pin the constants' offline flag to False so an
HF_HUB_OFFLINE inherited from the shell cannot break the online tests.
"""
import hashlib
import os
import random
import socket
import subprocess
import sys
import threading
import time
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

    heads = [r for r in hub.requests if r.method == "HEAD"]
    gets = [r for r in hub.requests if r.method == "GET"]
    assert len(heads) == 1 and heads[0].role == "hub"
    assert heads[0].path == f"/ByteDance/Hyper-SD/resolve/main/{NAME}"
    assert heads[0].headers.get("authorization") == f"Bearer {TOKEN}"
    assert len(gets) == 1 and gets[0].status == 200 and gets[0].body_bytes == SIZE
    assert "range" not in gets[0].headers
    if redirect:  # signed CDN URL: the token must not leave the hub
        assert gets[0].role == "cdn" and "authorization" not in gets[0].headers
    else:
        assert gets[0].role == "hub" and gets[0].headers.get("authorization") == f"Bearer {TOKEN}"


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
    assert len([r for r in hub.requests if r.method == "GET"]) == 1


def test_accepts_official_name_string_and_no_callbacks(hub, dirs, payload):
    dest, _ = dirs
    path = download.download(NAME, dest, [])
    assert Path(path).read_bytes() == payload


# ------------------------------------------------------------------------------------------ interruption


def test_cut_transfer_leaves_nothing_then_restarts_cleanly(hub, dirs, payload):
    dest, other = dirs
    hub.cut_after = SIZE // 2

    with pytest.raises(download.DownloadError) as info:
        download.download(ENTRY, dest, [other])
    message = str(info.value)
    assert NAME in message and ENTRY.url in message and str(dest) in message
    assert all_files(dest) == []  # no model file and no hidden partial either

    hub.cut_after = None
    hub.reset_log()
    calls, progress = recorder()
    path = download.download(ENTRY, dest, [other], progress=progress)

    assert Path(path).read_bytes() == payload
    assert all_files(dest) == [NAME]
    assert_progress(calls, start=0)
    (get,) = [r for r in hub.requests if r.method == "GET"]
    assert "range" not in get.headers and get.body_bytes == SIZE


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
    (get,) = [r for r in hub.requests if r.method == "GET"]
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
    (get,) = [r for r in hub.requests if r.method == "GET"]
    assert "range" in get.headers and get.status == 200 and get.body_bytes == SIZE


def test_complete_partial_is_verified_without_refetching(hub, dirs, payload):
    dest, _ = dirs
    dest.mkdir(parents=True)
    (dest / f".{NAME}.{hub.sha256(payload)[:16]}.partial").write_bytes(payload)

    path = download.download(ENTRY, dest, [])

    assert Path(path).read_bytes() == payload and all_files(dest) == [NAME]
    assert [r.method for r in hub.requests] == ["HEAD"]


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
def test_http_error_on_body_leaves_nothing_and_next_attempt_works(hub, dirs, payload, status):
    dest, other = dirs
    hub.body_status = status
    with pytest.raises(download.DownloadError) as info:
        download.download(ENTRY, dest, [other])
    assert str(status) in str(info.value) and ENTRY.url in str(info.value)
    assert all_files(dest) == []  # no empty partial left behind
    path = download.download(ENTRY, dest, [other])
    assert Path(path).read_bytes() == payload


def test_requests_style_session_of_huggingface_hub_0x(hub, dirs, payload, monkeypatch):
    """huggingface_hub 0.x hands out a ``requests.Session`` (no ``.stream``): same behaviour, resume too."""
    requests = pytest.importorskip("requests")
    import huggingface_hub.utils

    session = requests.Session()
    monkeypatch.setattr(huggingface_hub.utils, "get_session", lambda: session)
    dest, _ = dirs
    hub.cut_after = SIZE // 2
    with pytest.raises(download.DownloadError):
        download.download(ENTRY, dest, [])
    assert all_files(dest) == []
    hub.cut_after = None
    have = SIZE // 3
    _killed_process_partial(hub, dest, payload, have)
    hub.reset_log()

    calls, progress = recorder()
    path = download.download(ENTRY, dest, [], progress=progress)
    session.close()

    assert Path(path).read_bytes() == payload and all_files(dest) == [NAME]
    assert_progress(calls, start=have)
    gets = [r for r in hub.requests if r.method == "GET"]
    assert [g.headers.get("range") for g in gets] == [f"bytes={have}-"]
    assert gets[-1].status == 206 and gets[-1].body_bytes == SIZE - have


# ------------------------------------------------------------------------------------------ verification


def test_wrong_hash_deletes_everything(hub, dirs, payload):
    dest, other = dirs
    hub.advertise_sha[NAME] = hashlib.sha256(b"something else").hexdigest()

    with pytest.raises(download.ChecksumError) as info:
        download.download(ENTRY, dest, [other])

    assert hub.advertise_sha[NAME] in str(info.value) and hub.sha256(payload) in str(info.value)
    assert all_files(dest) == []
    (get,) = [r for r in hub.requests if r.method == "GET"]
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

    start = time.monotonic()
    with pytest.raises(download.DownloadError) as info:
        download.download(ENTRY, dest, [other])
    assert time.monotonic() - start < 5

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


def test_find_local_is_cheap_with_many_files(tmp_path):
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

    start = time.perf_counter()
    found = download.find_local(NAME, [tmp_path / "missing", folder])
    missing = download.find_local("Hyper-SDXL-1step-lora.safetensors", [folder])
    elapsed = time.perf_counter() - start

    assert found == str(target / "hyper-sd15-1STEP-lora.SafeTensors")
    assert missing is None
    assert download.find_local(NAME, []) is None
    assert elapsed < 1.0, elapsed


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


def test_should_stop_true_midway_stops_and_cleans_up(hub, dirs):
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
    assert all_files(dest) == []
    assert [r.method for r in hub.requests] == ["HEAD", "GET"]


class Interrupted(Exception):
    """Stands in for ComfyUI's InterruptProcessingException."""


@pytest.mark.parametrize("where", ["should_stop", "progress"])
def test_callback_exceptions_propagate_after_cleanup(hub, dirs, where):
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
    assert all_files(dest) == []


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
    assert [(r.role, r.method) for r in hub.requests] == [("hub", "HEAD")]
    assert all_files(dest) == []


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
