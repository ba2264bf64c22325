"""Sampler benchmark: the pack's TCD sampler against ComfyUI's core samplers, same model, sigmas, seed.

    python benchmarks/bench_sampler.py [--steps 4] [--size 256] [--repeats 5] [--device cpu|cuda]

Runs in one process on a real ComfyUI (COMFYUI_PATH, default ~/comfy/ComfyUI) with the random-weight
SD1.5 checkpoint of the tests (or --ckpt), through ComfyUI's own SamplerCustom path
(comfy.sample.sample_custom). Prints time per image and per step for tcd at eta 0 and 0.3 / euler / lcm
(median of the repeats, runs interleaved), their ratios to euler (deterministic, like tcd at eta 0) and to
lcm (which injects noise each step, like tcd at eta > 0), and the model calls per run (NFE; must equal the
steps at cfg 1). Then the pack's import time: measured around ComfyUI's own load_custom_node, and the
line ComfyUI prints at start-up ("Import times for custom nodes"). No assertions: figures only.
"""
import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
sys.path.insert(0, str(TESTS))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ckpt", default=None, help="checkpoint file (default: the tests' random SD1.5)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import conftest  # noqa: F401  (registers the hypersd_pack package)
    import host
    if not (host.comfyui_path() / "main.py").is_file():
        sys.exit(f"needs ComfyUI: none at COMFYUI_PATH={host.comfyui_path()}")
    pack = host.import_comfy()
    import torch
    import comfy.sample
    import comfy.samplers
    import comfy.sd
    import models

    ckpt = args.ckpt or str(models.sd15_checkpoint())
    model, clip, _, _ = comfy.sd.load_checkpoint_guess_config(ckpt, output_vae=False, output_clip=True)
    tokens = clip.tokenize("a lighthouse at dusk")
    context, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    cond = [[context, {"pooled_output": pooled}]]
    sigmas, = pack.nodes.sampling.HyperSDScheduler().get_sigmas(model, args.steps, 1.0, 999)
    samplers = {  # eta 0 (the N-step recipes) is deterministic like euler; eta > 0 injects noise like lcm
        "tcd (pack, eta 0)": pack.nodes.sampling.HyperSDTCDSampler().get_sampler(0.0)[0],
        "tcd (pack, eta 0.3)": pack.nodes.sampling.HyperSDTCDSampler().get_sampler(0.3)[0],
        "euler (core)": comfy.samplers.sampler_object("euler"),
        "lcm (core)": comfy.samplers.sampler_object("lcm"),
    }
    latent = torch.zeros(1, 4, args.size // 8, args.size // 8)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))
    calls = []
    model.model.diffusion_model.register_forward_hook(lambda *a: calls.append(1))

    def run(sampler):
        calls.clear()
        t0 = time.perf_counter()
        comfy.sample.sample_custom(model, noise, 1.0, sampler, sigmas, cond, cond, latent, seed=1, disable_pbar=True)
        if args.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, len(calls)

    for s in samplers.values():  # warm-up: model load, first-call allocations
        run(s)
    times = {k: [] for k in samplers}
    nfe = {}
    for _ in range(args.repeats):
        for name, s in samplers.items():
            dt, n = run(s)
            times[name].append(dt)
            nfe[name] = n
    base, lcm = statistics.median(times["euler (core)"]), statistics.median(times["lcm (core)"])
    print(f"\nSampler benchmark: SD1.5 UNet ({Path(ckpt).name}), {args.size}x{args.size}, {args.steps} steps, "
          f"cfg 1, median of {args.repeats}, {args.device}")
    print(f"{'sampler':<22}{'s/image':>10}{'s/step':>10}{'ratio vs euler':>16}{'ratio vs lcm':>14}"
          f"{'model calls':>13}")
    for name in samplers:
        med = statistics.median(times[name])
        print(f"{name:<22}{med:>10.3f}{med / args.steps:>10.3f}{med / base:>16.3f}{med / lcm:>14.3f}{nfe[name]:>13}")

    print("\nImport time of the pack:")
    print(import_times())


def import_times():
    """The pack's import, timed like ComfyUI does (perf_counter around load_custom_node), in a fresh process
    where ComfyUI's nodes.py is imported and an empty pack was loaded first (ComfyUI's own overhead)."""
    code = f"""
import sys, time, asyncio, os, tempfile, logging
sys.path.insert(0, {str(TESTS)!r})
import host
comfy = str(host.comfyui_path()); sys.path.insert(0, comfy); os.chdir(comfy)
import comfy.cli_args; comfy.cli_args.args.cpu = True
import nodes
d = tempfile.mkdtemp(); link = os.path.join(d, "ComfyUI-HyperSD"); os.symlink({str(HERE.parent)!r}, link)
empty = os.path.join(d, "empty_pack"); os.mkdir(empty)
open(os.path.join(empty, "__init__.py"), "w").write("NODE_CLASS_MAPPINGS = {{}}")
asyncio.run(nodes.load_custom_node(empty))  # ComfyUI's own first-node overhead (pyproject parser ...) out
t0 = time.perf_counter(); ok = asyncio.run(nodes.load_custom_node(link)); t1 = time.perf_counter()
print(f"{{(t1 - t0) * 1000:.1f}} ms (loaded: {{ok}})")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    measured = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-2000:]
    server_line = startup_line()
    return f"  load_custom_node, measured: {measured}\n  ComfyUI start-up line: {server_line}"


def startup_line():
    import tempfile
    import host
    with tempfile.TemporaryDirectory() as base:
        server = host.ComfyServer(base)
        try:
            server.start()
            time.sleep(0.5)
            lines = [l for l in server.log().splitlines() if "ComfyUI-HyperSD" in l and "seconds" in l]
            return lines[-1].strip() if lines else "(not found in the log)"
        finally:
            server.stop()


if __name__ == "__main__":
    main()
