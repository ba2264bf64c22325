"""Whole-prompt benchmark on a real ComfyUI server: the pack's graph (Hyper-SD Scheduler + TCD Sampler in
SamplerCustom) vs the same graph with core KSampler (euler, simple), same model, steps, size and seed.

    python benchmarks/bench_prompt.py [--size 256] [--repeats 5]

Each prompt is timed from queueing to its history entry (ComfyUI's own execution, model already loaded);
runs are interleaved and each uses a new seed so ComfyUI's cache re-executes the sampler, VAE decode and
save. Prints the median seconds and the ratio for 1 and 4 steps. Needs ComfyUI at COMFYUI_PATH.
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import conftest  # noqa: F401
    import host
    import prompts
    if not (host.comfyui_path() / "main.py").is_file():
        sys.exit(f"needs ComfyUI: none at COMFYUI_PATH={host.comfyui_path()}")
    host.import_comfy()
    import models
    rows = []
    with tempfile.TemporaryDirectory() as base:
        server = host.ComfyServer(base).start()
        try:
            ckpt = server.add_model("checkpoints", models.sd15_checkpoint(), "bench-sd15.safetensors")
            server.run_ok(prompts.ksampler_prompt(ckpt, "euler", "simple", steps=1, size=args.size))  # warm-up
            seed = 100
            for steps in (1, 4):
                times = {"pack": [], "core": []}
                for _ in range(args.repeats):
                    for kind in ("pack", "core"):
                        seed += 1
                        p = (prompts.sampler_custom_prompt(ckpt, steps=steps, eta=0.3, seed=seed, size=args.size)
                             if kind == "pack" else
                             prompts.ksampler_prompt(ckpt, "euler", "simple", steps=steps, seed=seed, size=args.size))
                        t0 = time.perf_counter()
                        server.run_ok(p)
                        times[kind].append(time.perf_counter() - t0)
                rows.append((steps, statistics.median(times["pack"]), statistics.median(times["core"])))
        finally:
            server.stop()
    print(f"\nWhole prompt (text encode + sample + VAE decode + save), random SD1.5, {args.size}x{args.size}, CPU, "
          f"median of {args.repeats}")
    print(f"{'steps':>5}{'pack graph s':>14}{'KSampler euler/simple s':>25}{'ratio':>8}")
    for steps, pack, core in rows:
        print(f"{steps:>5}{pack:>14.2f}{core:>25.2f}{pack / core:>8.3f}")


if __name__ == "__main__":
    main()
