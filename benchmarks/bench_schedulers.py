"""Flow-model sampler and scheduler benchmark, ratios against ComfyUI core in one run.

    python benchmarks/bench_schedulers.py [--steps 8] [--size 256] [--repeats 5] [--device cpu|cuda]

1. The pack's TCD sampler on a small FLUX-shaped model -- ComfyUI's own ``comfy.ldm.flux`` transformer
   (FLUX.1-dev layout: guidance embedding, double and single blocks) with fewer and narrower blocks and
   seeded random weights, inside ``comfy.model_base.Flux`` patched by ComfyUI's ModelSamplingFlux node at
   the image size -- against core ``euler``, same sigmas (the Hyper-SD Scheduler's FluxPipeline schedule),
   noise and seed, through SamplerCustom's path. Prints time per image, ratio to euler and the model calls
   (NFE; must equal the steps at cfg 1).
2. Scheduler cost on each family's real sampling object (SD1.5, SDXL, SD3, FLUX.1-dev): the Hyper-SD
   Scheduler (trailing and, on SD1.5/SDXL, tcd spacing) against core ``simple`` through
   ``comfy.samplers.calculate_sigmas``, microseconds per call and the ratio.

Needs ComfyUI at COMFYUI_PATH (default ~/comfy/ComfyUI). No assertions: figures only.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

# FLUX.1-dev's layout, reduced: 1 double + 2 single blocks, hidden 256 (FLUX.1-dev: 19 + 38 blocks, 3072).
TINY_FLUX = dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=64, context_in_dim=128,
                 hidden_size=256, mlp_ratio=4.0, num_heads=4, depth=1, depth_single_blocks=2,
                 axes_dim=[16, 24, 24], theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True)


def tiny_flux(device, size):
    import torch
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models
    import comfy_extras.nodes_model_advanced as adv
    cfg = comfy.supported_models.Flux(dict(TINY_FLUX))
    cfg.set_inference_dtype(torch.float32, None)
    base = comfy.model_base.Flux(cfg, device=torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in base.diffusion_model.parameters():  # ComfyUI's ops leave weights uninitialised
            p.copy_(torch.randn(p.shape, generator=gen) * (0.5 / max(p.shape[-1], 1) ** 0.5))
    model = comfy.model_patcher.ModelPatcher(base, load_device=torch.device(device),
                                             offload_device=torch.device("cpu"))
    return adv.ModelSamplingFlux().patch(model, 1.15, 0.5, size, size)[0]


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_sampler(pack, args):
    import torch
    import comfy.sample
    import comfy.samplers
    S = pack.nodes.sampling
    model = tiny_flux(args.device, args.size)
    sigmas, = S.HyperSDScheduler().get_sigmas(model, args.steps, 1.0, 999)
    ctx = torch.randn(1, 16, TINY_FLUX["context_in_dim"], generator=torch.Generator().manual_seed(1))
    cond = [[ctx, {"pooled_output": torch.zeros(1, TINY_FLUX["vec_in_dim"]), "guidance": 3.5}]]
    latent = torch.zeros(1, 16, args.size // 8, args.size // 8)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))
    samplers = {"tcd eta 0 (pack)": S.HyperSDTCDSampler().get_sampler(0.0)[0],
                "tcd eta 0.3 (pack)": S.HyperSDTCDSampler().get_sampler(0.3)[0],
                "euler (core)": comfy.samplers.sampler_object("euler")}
    calls = []
    model.model.diffusion_model.register_forward_hook(lambda *a: calls.append(1))
    outputs, nfe, times = {}, {}, {k: [] for k in samplers}

    def run(name):
        calls.clear()
        t0 = time.perf_counter()
        outputs[name] = comfy.sample.sample_custom(model, noise, 1.0, samplers[name], sigmas, cond, cond, latent,
                                                   seed=1, disable_pbar=True)
        if args.device == "cuda":
            torch.cuda.synchronize()
        nfe[name] = len(calls)
        return time.perf_counter() - t0

    for name in samplers:  # warm-up
        run(name)
    for _ in range(args.repeats):  # interleaved
        for name in samplers:
            times[name].append(run(name))
    base = statistics.median(times["euler (core)"])
    same = torch.equal(outputs["tcd eta 0 (pack)"], outputs["euler (core)"])
    print(f"\n1. Flow sampler: tiny FLUX.1-dev-layout transformer ({sum(p.numel() for p in model.model.parameters())/1e6:.1f} M "
          f"params), {args.size}x{args.size}, {args.steps} steps, cfg 1, median of {args.repeats}, {args.device}")
    print(f"{'sampler':<22}{'s/image':>10}{'ratio vs euler':>16}{'model calls':>13}")
    for name in samplers:
        med = statistics.median(times[name])
        print(f"{name:<22}{med:>10.4f}{med / base:>16.3f}{nfe[name]:>13}")
    print(f"tcd eta 0 output identical to core euler: {same}")


def family_samplings():
    import comfy.model_base as mb
    import comfy.supported_models as sm
    off = {"disable_unet_model_creation": True}
    return {
        "SD1.5": mb.model_sampling(sm.SD15(dict(off)), mb.ModelType.EPS),
        "SDXL": mb.model_sampling(sm.SDXL(dict(off)), mb.ModelType.EPS),
        "SD3": mb.model_sampling(sm.SD3({"in_channels": 16, "pos_embed_scaling_factor": None, **off}),
                                 mb.ModelType.FLOW),
        "FLUX.1-dev": mb.model_sampling(sm.Flux({"image_model": "flux", "guidance_embed": True, **off}),
                                        mb.ModelType.FLUX),
    }


def bench_schedulers(pack, args):
    import comfy.samplers
    S = pack.nodes.sampling
    loops = 200
    print(f"\n2. Scheduler cost per call ({args.steps} steps; median of {args.repeats} x {loops} calls), "
          f"against core 'simple' on the same sampling object")
    print(f"{'family':<12}{'scheduler':<26}{'us/call':>10}{'ratio vs simple':>17}")
    for family, ms in family_samplings().items():
        rows = {"simple (core)": lambda: comfy.samplers.calculate_sigmas(ms, "simple", args.steps),
                "Hyper-SD trailing": lambda: S.hyper_sd_sigmas(ms, args.steps)}
        if family in ("SD1.5", "SDXL"):
            rows["Hyper-SD tcd"] = lambda: S.hyper_sd_sigmas(ms, args.steps, spacing="tcd")
        per_call = {}
        for name, fn in rows.items():
            per_call[name] = median_time(lambda: [fn() for _ in range(loops)], args.repeats) / loops * 1e6
        for name, us in per_call.items():
            print(f"{family:<12}{name:<26}{us:>10.1f}{us / per_call['simple (core)']:>17.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    import conftest  # noqa: F401  (registers the hypersd_pack package)
    import host
    if not (host.comfyui_path() / "main.py").is_file():
        sys.exit(f"needs ComfyUI: none at COMFYUI_PATH={host.comfyui_path()}")
    pack = host.import_comfy()
    bench_sampler(pack, args)
    bench_schedulers(pack, args)


if __name__ == "__main__":
    main()
