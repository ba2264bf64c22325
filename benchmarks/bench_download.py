"""Download benchmark on a local stand-in hub (tests/fakehub.py on 127.0.0.1), no ComfyUI, no torch.

1. Throughput: the pack's download (sha256-verified, atomic, cross-process lock) vs plain
   ``huggingface_hub.hf_hub_download(local_dir=...)``, same file, same hub, alternating order, median of
   ``--repeats``, in a client process apart from the hub's. Ratio = pack MB/s / hf_hub_download MB/s (target >= 0.95).
2. Two processes, one models folder: the download call's time in a process alone, then in two processes
   started together (one downloads, the other waits on the lock and uses the file). Time lost by the
   waiting process = its call time - the lone process's call time; hand-over = how long after the
   downloader the waiter returned.

    python benchmarks/bench_download.py [--mb 256] [--repeats 3]      # the installed huggingface_hub
    python benchmarks/bench_download.py --matrix                        # every generation, one table

``--matrix`` creates/updates the venvs of ``.ci/hub_matrix.sh`` (0.23.5, 0.36.2, 1.0.1, latest 1.x, latest 2.x)
and runs this script in each.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAME = "Hyper-SDXL-1step-lora.safetensors"

WORKER = r"""
import json, os, sys, time, types
repo, name, dest = sys.argv[1:4]
pkg = types.ModuleType("hypersd_pack"); pkg.__path__ = [repo]; sys.modules["hypersd_pack"] = pkg
import huggingface_hub.constants
from hypersd_pack.core import download
print("ready", flush=True)
sys.stdin.readline()  # start together
t0 = time.perf_counter()
path = download.download(name, dest, [])
print(json.dumps({"call_s": time.perf_counter() - t0, "end": time.time(), "size": os.path.getsize(path)}))
"""


def _load_pack():
    pkg = types.ModuleType("hypersd_pack")
    pkg.__path__ = [str(REPO)]
    sys.modules["hypersd_pack"] = pkg
    from hypersd_pack.core import catalog, download
    return catalog, download


def throughput(hub, mb, repeats):
    """Run in a client process of its own (the hub's server threads must not share the client's GIL)."""
    out = subprocess.run([sys.executable, __file__, "--mb", str(mb), "--repeats", str(repeats), "--client"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def client_throughput(mb, repeats):
    catalog, download = _load_pack()
    from huggingface_hub import hf_hub_download

    def pack(dest):
        return download.download(catalog.BY_FILENAME[NAME], dest, [])

    def plain(dest):
        return hf_hub_download(catalog.REPO_ID, NAME, local_dir=dest, cache_dir=os.path.join(dest, ".cache"))

    times = {"pack": [], "hf_hub_download": []}
    for i in range(repeats):
        order = [("pack", pack), ("hf_hub_download", plain)]
        for label, fn in (order if i % 2 == 0 else order[::-1]):
            dest = tempfile.mkdtemp(prefix="bench-dl-")
            try:
                t0 = time.perf_counter()
                path = fn(dest)
                times[label].append(time.perf_counter() - t0)
                assert os.path.getsize(path) == mb * 2 ** 20
            finally:
                shutil.rmtree(dest, ignore_errors=True)
    return {label: mb / statistics.median(values) for label, values in times.items()}


def _workers(count, dest):
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(REPO), NAME, dest], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(count)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:  # imports done: release them together
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def lock_wait(hub, mb, repeats):
    alone, winner, waiter, handover = [], [], [], []
    for _ in range(repeats):
        for count in (1, 2):
            dest = tempfile.mkdtemp(prefix="bench-dl-")
            try:
                hub.reset_log()
                results = sorted(_workers(count, dest), key=lambda r: r["end"])
                bodies = len(hub.body_requests())
                assert bodies == 1 and all(r["size"] == mb * 2 ** 20 for r in results), (bodies, results)
            finally:
                shutil.rmtree(dest, ignore_errors=True)
            if count == 1:
                alone.append(results[0]["call_s"])
            else:
                winner.append(results[0]["call_s"])
                waiter.append(results[1]["call_s"])
                handover.append(results[1]["end"] - results[0]["end"])
    med = statistics.median
    return {"alone_s": med(alone), "winner_s": med(winner), "waiter_s": med(waiter),
            "handover_ms": 1000 * med(handover)}


def run_here(mb, repeats):
    sys.path.insert(0, str(REPO / "tests"))
    import fakehub
    import huggingface_hub

    hub = fakehub.FakeHub({NAME: os.urandom(mb * 2 ** 20)})
    hub.start()
    os.environ.update(HF_ENDPOINT=hub.endpoint, HF_HUB_OFFLINE="0", HF_HUB_DISABLE_PROGRESS_BARS="1",
                      HF_HUB_DISABLE_XET="1")
    try:
        speeds = throughput(hub, mb, repeats)
        lock = lock_wait(hub, mb, repeats)
    finally:
        hub.stop()
    return {"hub": huggingface_hub.__version__, "mb": mb, "repeats": repeats, **speeds, **lock}


def run_matrix(mb, repeats):
    subprocess.run(["bash", str(REPO / ".ci" / "hub_matrix.sh"), "--setup-only"], check=True)
    cache = Path(os.environ.get("HUB_MATRIX_CACHE", REPO / ".venv" / "hub-matrix"))
    specs = os.environ.get("HUB_MATRIX", "0.23.5 0.36.2 1.0.1 latest-1 latest-2").split()
    rows = []
    for spec in specs:
        out = subprocess.run([str(cache / spec / "bin" / "python"), __file__, "--mb", str(mb), "--repeats",
                              str(repeats), "--json"], check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    return rows


def print_table(rows):
    r0 = rows[0]
    print(f"\nDownload of {r0['mb']} MB from a local stand-in hub, median of {r0['repeats']}")
    print("| huggingface_hub | pack MB/s | hf_hub_download MB/s | ratio | alone s | 2 processes: downloader s "
          "| waiter s | waiter lost s (ratio) | hand-over ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lost = r["waiter_s"] - r["alone_s"]
        print(f"| {r['hub']} | {r['pack']:.1f} | {r['hf_hub_download']:.1f} | {r['pack'] / r['hf_hub_download']:.3f} "
              f"| {r['alone_s']:.2f} | {r['winner_s']:.2f} | {r['waiter_s']:.2f} "
              f"| {lost:+.2f} ({r['waiter_s'] / r['alone_s']:.3f}) | {r['handover_ms']:.0f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--matrix", action="store_true", help="every huggingface_hub generation of .ci/hub_matrix.sh")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        sys.stdout.write(json.dumps(client_throughput(args.mb, args.repeats)) + "\n")
        return
    if args.matrix:
        print_table(run_matrix(args.mb, args.repeats))
        return
    row = run_here(args.mb, args.repeats)
    if args.json:
        sys.stdout.write(json.dumps(row) + "\n")
    else:
        print_table([row])


if __name__ == "__main__":
    main()
