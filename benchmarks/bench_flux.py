"""FLUX benchmark: the pack's TCD sampler (the FLUX recipe's eta 0, and eta 0.3) against ComfyUI's core `euler`
on the reduced FLUX.1-dev of the tests (ComfyUI's own Flux class; 1 double + 1 single block at full width).

    python benchmarks/bench_flux.py [--steps 8] [--size 128] [--repeats 3] [--device cpu|cuda]

One process, a real ComfyUI (COMFYUI_PATH), ComfyUI's SamplerCustom path (comfy.sample.sample_custom), the same
model, sigmas (diffusers' FLUX schedule: linspace(1, 1/N, N) shifted with mu 1.15), seed, guidance 3.5 and random
text conditioning (256 tokens, as T5 gives). Prints seconds per image and per step (median, runs interleaved),
the ratio to euler, and the model calls per run (NFE; equals the steps at cfg 1). No assertions: figures only.
"""
import argparse
import math
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def flux_sigmas(steps, mu=1.15):
    import torch
    out = [math.exp(mu) / (math.exp(mu) + (1 / s - 1)) for s in torch.linspace(1, 1 / steps, steps).tolist()]
    return torch.tensor(out + [0.0])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
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
    import flow_models

    model = comfy.sd.load_diffusion_model(str(flow_models.flux_dev_unet()))
    gen = torch.Generator().manual_seed(0)
    cond = [[torch.randn(1, 256, 4096, generator=gen), {"pooled_output": torch.randn(1, 768, generator=gen),
                                                        "guidance": 3.5}]]
    sigmas = flux_sigmas(args.steps)
    samplers = {
        "tcd (pack, eta 0)": pack.nodes.sampling.HyperSDTCDSampler().get_sampler(0.0)[0],
        "tcd (pack, eta 0.3)": pack.nodes.sampling.HyperSDTCDSampler().get_sampler(0.3)[0],
        "euler (core)": comfy.samplers.sampler_object("euler"),
    }
    latent = torch.zeros(1, 16, args.size // 8, args.size // 8)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(1))
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
    times, nfe = {k: [] for k in samplers}, {}
    for _ in range(args.repeats):
        for name, s in samplers.items():
            dt, nfe[name] = run(s)
            times[name].append(dt)
    base = statistics.median(times["euler (core)"])
    print(f"\nFLUX benchmark: reduced FLUX.1-dev ({type(model.model.model_config).__name__}, "
          f"{flow_models.FLUX_DEPTH} double + {flow_models.FLUX_SINGLE} single blocks), {args.size}x{args.size}, "
          f"{args.steps} steps, cfg 1, guidance 3.5, median of {args.repeats}, {args.device}")
    print(f"{'sampler':<22}{'s/image':>10}{'s/step':>10}{'ratio vs euler':>16}{'model calls':>13}")
    for name in samplers:
        med = statistics.median(times[name])
        print(f"{name:<22}{med:>10.3f}{med / args.steps:>10.3f}{med / base:>16.3f}{nfe[name]:>13}")


if __name__ == "__main__":
    main()
