"""Soak: many consecutive prompts on one real ComfyUI server with the pack, alternating LoRAs, strengths,
steps and eta, at a small size.

    python benchmarks/soak.py [--prompts 60] [--size 64] [--max-seconds 900]

Checks and prints: every prompt succeeds; repeated identical prompts give identical images (prompts are
interleaved so ComfyUI's cache, which keeps only the last prompt, re-executes them); the server's resident
memory grows less than 5 % after a warm-up of 10 prompts; no LoRA patch leaks (the plain model's image at
the end equals the one at the start). Exit status 1 when a check fails. Needs ComfyUI at COMFYUI_PATH
(default ~/comfy/ComfyUI); uses the tests' random SD1.5 checkpoint and random LoRAs under the official names.
"""
import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

LORAS = [("SD1.5 · 1 step (unified, TCD)", "Hyper-SD15-1step-lora.safetensors"),
         ("SD1.5 · 2 steps", "Hyper-SD15-2steps-lora.safetensors"),
         ("SD1.5 · 4 steps", "Hyper-SD15-4steps-lora.safetensors"),
         ("SD1.5 · 8 steps", "Hyper-SD15-8steps-lora.safetensors")]


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def prompt_for(ckpt, size, label=None, strength=1.0, eta=0.3, steps=None, seed=5):
    import prompts
    p = prompts.sampler_custom_prompt(ckpt, steps=steps or 2, eta=eta, seed=seed, size=size, prefix="soak")
    if label:
        p["lora"] = {"class_type": "HyperSDLoraLoader", "inputs": {"model": ["ckpt", 0], "clip": ["ckpt", 1],
                                                                   "lora": label, "strength": strength,
                                                                   "strength_from": "custom", "download": "never"}}
        for node, key in (("sched", "model"), ("sample", "model")):
            p[node]["inputs"][key] = ["lora", 0]
        for node in ("pos", "neg"):
            p[node]["inputs"]["clip"] = ["lora", 1]
        if steps is None:
            p["sched"]["inputs"]["steps"] = ["lora", 2]
    return p


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=60)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--max-seconds", type=float, default=900)
    args = ap.parse_args()
    import conftest  # noqa: F401
    import host
    if not (host.comfyui_path() / "main.py").is_file():
        sys.exit(f"needs ComfyUI: none at COMFYUI_PATH={host.comfyui_path()}")
    host.import_comfy()
    import numpy as np
    from PIL import Image
    import loras
    import models

    with tempfile.TemporaryDirectory() as base:
        server = host.ComfyServer(base).start()
        try:
            ckpt = server.add_model("checkpoints", models.sd15_checkpoint(), "soak-sd15.safetensors")
            for i, (_, name) in enumerate(LORAS):
                loras.write(server.models_dir("loras") / name, loras.make_lora(loras.SD15_UNET, "kohya", seed=i,
                                                                               std=0.05))

            def image(entry):
                (path,) = server.output_images(entry)
                with Image.open(path) as im:
                    return np.asarray(im.convert("RGB"))

            configs = [(label, strength, eta, steps) for (label, _), strength, eta, steps in itertools.product(
                LORAS, (1.0, 0.5), (0.0, 0.3, 1.0), (None, 3))]
            plain = prompt_for(ckpt, args.size, seed=11)
            plain_first = image(server.run_ok(plain))
            seen, mismatches, rss, t0, n = {}, [], [], time.time(), 0
            for n in range(1, args.prompts + 1):
                cfg = configs[(n * 7) % len(configs)]  # a stride that revisits configs between other prompts
                entry = server.run_ok(prompt_for(ckpt, args.size, *cfg))
                img = image(entry)
                if cfg in seen and not np.array_equal(seen[cfg], img):
                    mismatches.append(cfg)
                seen.setdefault(cfg, img)
                rss.append(rss_mb(server.proc.pid))
                if time.time() - t0 > args.max_seconds:
                    print(f"stopping at the time limit after {n} prompts")
                    break
            elapsed = time.time() - t0
            plain_last = image(server.run_ok(plain))
        finally:
            server.stop()

    warm = rss[min(9, len(rss) - 1)]
    growth = (rss[-1] - warm) / warm * 100
    repeats = n - len(seen)
    leak = not np.array_equal(plain_first, plain_last)
    print(f"\nSoak: {n} prompts in {elapsed:.0f} s ({elapsed / n:.2f} s/prompt), {args.size}x{args.size}, "
          f"{len(seen)} distinct configurations, {repeats} repeats")
    print("  errors: 0 (every prompt succeeded)")
    print(f"  repeated identical prompts with different images: {len(mismatches)}")
    print(f"  server RSS: {rss[0]:.0f} MB after prompt 1, {warm:.0f} MB after warm-up (10), {rss[-1]:.0f} MB at the "
          f"end: growth {growth:+.2f} % (limit 5 %)")
    print(f"  plain model after all LoRA prompts equals the plain model before: {not leak}")
    ok = not mismatches and growth < 5 and not leak
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
