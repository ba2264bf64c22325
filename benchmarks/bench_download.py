"""Download benchmark: the pack's verified, atomic download vs plain ``huggingface_hub.hf_hub_download``,
same file, same local stand-in hub (tests/fakehub.py on 127.0.0.1), same run. Prints MB/s and the ratio
(target >= 0.95). No ComfyUI needed.

    python benchmarks/bench_download.py [--mb 1024] [--repeats 3]
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import fakehub
    name = "Hyper-SDXL-1step-lora.safetensors"
    data = os.urandom(args.mb * 2 ** 20)
    hub = fakehub.FakeHub({name: data})
    hub.start()
    os.environ.update(HF_ENDPOINT=hub.endpoint, HF_HUB_OFFLINE="0", HF_HUB_DISABLE_PROGRESS_BARS="1",
                      HF_HUB_DISABLE_XET="1")
    pkg = types.ModuleType("hypersd_pack")
    pkg.__path__ = [str(REPO)]
    sys.modules["hypersd_pack"] = pkg
    from hypersd_pack.core import catalog, download
    from huggingface_hub import hf_hub_download

    def ours(dest):
        return download.download(catalog.BY_FILENAME[name], dest, [])

    def plain(dest):
        return hf_hub_download(catalog.REPO_ID, name, local_dir=dest, cache_dir=os.path.join(dest, ".cache"))

    times = {"pack download (sha256-verified, atomic)": [], "hf_hub_download": []}
    try:
        for _ in range(args.repeats):
            for label, fn in (("pack download (sha256-verified, atomic)", ours), ("hf_hub_download", plain)):
                dest = tempfile.mkdtemp()
                try:
                    t0 = time.perf_counter()
                    path = fn(dest)
                    times[label].append(time.perf_counter() - t0)
                    assert os.path.getsize(path) == len(data)
                finally:
                    shutil.rmtree(dest, ignore_errors=True)
    finally:
        hub.stop()
    ours_s, plain_s = (statistics.median(v) for v in times.values())
    print(f"\nDownload of {args.mb} MB from a local stand-in hub, median of {args.repeats}")
    for label, values in times.items():
        med = statistics.median(values)
        print(f"  {label:<42}{med:8.2f} s {args.mb / med:9.1f} MB/s")
    print(f"  throughput ratio pack / hf_hub_download: {plain_s / ours_s:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
