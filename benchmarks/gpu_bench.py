"""The GPU benchmark's driver (``benchmarks/gpu.sh`` sets up the Python and ComfyUI, then runs this).

    python benchmarks/gpu_bench.py [--cpu] [--repeats N] [--out FILE]

Random-weight models (tests/models.py, tests/loras.py; built and cached on first use), ComfyUI 0.3.64 at
``$COMFYUI_PATH``. Default: SDXL, fp16 weights (ComfyUI's default on CUDA), 1024², on the GPU. ``--cpu``:
the same measurements on SD1.5 at 256² on the CPU, to prove the script runs where no GPU is (the one-step
UNet row needs an SDXL file and is left out there). Four parts, one markdown table (printed, and written to
``--out``):

1. **Headless runner**: a ComfyUI server with the pack; the shipped 1-, 2-, 4- and 8-step workflows
   (``hyper-sdxl-1step-unified-tcd``, ``-2step-lora``, ``-4step-lora``, ``-8step-lora``; SD1.5's with
   ``--cpu``), converted and customized by ``workflows/run.py``; one warm-up through ``run.run`` (the whole
   runner path, images saved), then ``--repeats`` prompts with new seeds (sampling + VAE decode + save;
   checkpoint, LoRA and text encoding stay cached). Seconds per image = the server's own execution time
   (``execution_start`` to ``execution_success`` in the history), median; seconds per model call = the
   slope from 1 to 8 steps, (t8 - t1) / 7.
2. **Sampler overhead**: in-process, same model, sigmas (Hyper-SD Scheduler, 4 steps), noise and seed,
   through ComfyUI's SamplerCustom path (``comfy.sample.sample_custom``): the pack's TCD sampler (eta 0
   and 0.3) against core ``euler``; ratio of medians (goal <= 1.01) and model calls counted.
3. **LoRA node call**: Hyper-SD LoRA Loader against core ``LoraLoaderModelOnly`` on one file (kohya LoRA
   over every UNet weight, rank 64): the node call alone, and node + ComfyUI's ``load_models_gpu`` (which
   computes every patched weight); medians.
4. **One-step UNet** (not with ``--cpu``): Hyper-SD One-Step UNet Loader + its SAMPLER/SIGMAS against
   ``CheckpointLoaderSimple`` + core ``euler`` on the same sigmas [sigma(800), 0], same file: load +
   one step at 1024², second of two passes each (warm page cache), and the one step alone.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))  # the tests' model builders and host helpers

STEPS = (1, 2, 4, 8)
ARCHS = {
    "sdxl": {"size": 1024, "ckpt": "sd_xl_base_1.0.safetensors", "prefix": "Hyper-SDXL", "label": "SDXL · 4 steps",
             "workflows": {1: "hyper-sdxl-1step-unified-tcd", 2: "hyper-sdxl-2step-lora",
                           4: "hyper-sdxl-4step-lora", 8: "hyper-sdxl-8step-lora"}},
    "sd15": {"size": 256, "ckpt": "v1-5-pruned-emaonly-fp16.safetensors", "prefix": "Hyper-SD15",
             "label": "SD1.5 · 4 steps",
             "workflows": {1: "hyper-sd15-1step-unified-tcd", 2: "hyper-sd15-2step-lora",
                           4: "hyper-sd15-4step-lora", 8: "hyper-sd15-8step-lora"}},
}
LORA_FILES = {1: "1step", 2: "2steps", 4: "4steps", 8: "8steps"}


def log(msg):
    print(f"[gpu-bench] {msg}", flush=True)


# ------------------------------------------------------------------------------------------ models


def build_models(arch, folder):
    """checkpoints/ and loras/ under ``folder``: the random checkpoint (linked) and small random LoRAs."""
    import loras
    import models
    cfg = ARCHS[arch]
    t0 = time.time()
    ckpt = models.sdxl_checkpoint() if arch == "sdxl" else models.sd15_checkpoint()
    log(f"checkpoint {ckpt} ready in {time.time() - t0:.0f} s")
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    (folder / "loras").mkdir(parents=True, exist_ok=True)
    link = folder / "checkpoints" / cfg["ckpt"]
    if not link.exists():
        link.symlink_to(ckpt)
    if arch == "sdxl":
        one_step = folder / "checkpoints" / "Hyper-SDXL-1step-Unet-Comfyui.fp16.safetensors"
        if not one_step.exists():
            one_step.symlink_to(ckpt)
    layers = loras.SDXL_UNET if arch == "sdxl" else loras.SD15_UNET
    for n, name in LORA_FILES.items():
        path = folder / "loras" / f"{cfg['prefix']}-{name}-lora.safetensors"
        if not path.exists():
            loras.write(path, loras.make_lora(layers, "kohya", seed=n, std=0.01))
    return ckpt


# ------------------------------------------------------------------------------------------ 1. runner


def start_server(comfy, base, cpu):
    (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
    link = base / "custom_nodes" / "ComfyUI-HyperSD"
    if not link.exists():
        link.symlink_to(REPO, target_is_directory=True)
    for sub in ("input", "output", "temp", "user"):
        (base / sub).mkdir(exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, str(comfy / "main.py"), "--listen", "127.0.0.1", "--port", str(port),
           "--disable-auto-launch", "--base-directory", str(base), "--database-url", "sqlite:///:memory:"]
    logf = open(base / "server.log", "ab")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(cmd + (["--cpu"] if cpu else []), cwd=str(comfy), stdout=logf,
                            stderr=subprocess.STDOUT, env=env)
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc, url, base):
    from hypersd_pack.workflows.runner import client, errors
    server = client.Server(url)
    for _ in range(1200):
        if proc.poll() is not None:
            sys.exit(f"ComfyUI exited at start-up: see {base / 'server.log'}")
        try:
            server.get("/system_stats", timeout=2)
            return server
        except errors.RunError:
            time.sleep(0.25)
    sys.exit(f"ComfyUI did not start within 300 s: see {base / 'server.log'}")


def execution_seconds(server, prompt, workflow):
    """Queue one prompt; the server's own execution time (execution_start -> execution_success), s."""
    from hypersd_pack.workflows.runner import client
    status, body = server.request("/prompt", {"prompt": prompt})
    if status != 200:
        sys.exit("the server refused the prompt:\n" + client.validation_message(body, workflow))
    prompt_id = body["prompt_id"]
    while True:
        entry = (server.get(f"/history/{prompt_id}") or {}).get(prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None:
            break
        time.sleep(0.02)
    stamps = {kind: data.get("timestamp") for kind, data in entry["status"].get("messages", [])}
    if "execution_success" not in stamps:
        sys.exit(f"prompt failed: {entry['status']}")
    return (stamps["execution_success"] - stamps["execution_start"]) / 1000.0


def bench_runner(arch, comfy, base, cpu, repeats):
    """{steps: median s/image} through the headless runner's conversion, on a ComfyUI server."""
    from hypersd_pack.workflows.runner import client, convert as conversion, edits
    cfg = ARCHS[arch]
    proc, url = start_server(comfy, base, cpu)
    try:
        server = wait_ready(proc, url, base)
        info = server.get("/object_info", timeout=120)
        out = {}
        for steps, name in cfg["workflows"].items():
            workflow = json.loads((REPO / "workflows" / f"{name}.json").read_text())
            convert = lambda seed: edits.customize(conversion.convert(workflow, info), "a red fox in snow", seed,  # noqa
                                                    cfg["size"])
            t0 = time.time()
            client.run(server, workflow, convert(1), base / "output-runner", log=lambda m: None)
            log(f"{name}: warm-up through the runner's client.run (model + LoRA load) {time.time() - t0:.1f} s")
            times = [execution_seconds(server, convert(100 + i), workflow) for i in range(repeats)]
            out[steps] = statistics.median(times)
            log(f"{name}: {out[steps]:.3f} s/image (median of {repeats}: {', '.join(f'{t:.3f}' for t in times)})")
        server.request("/free", {"unload_models": True, "free_memory": True})
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=60)


# ------------------------------------------------------------------------------------------ in-process


def sync(device):
    import torch
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    t0 = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - t0, result


def interleaved(fns, repeats, device):
    """{name: [seconds]}: one warm-up each, then ``repeats`` rounds, the order alternating per round."""
    for fn in fns.values():
        timed(fn, device)
    times = {name: [] for name in fns}
    names = list(fns)
    for i in range(repeats):
        for name in (names if i % 2 == 0 else names[::-1]):
            times[name].append(timed(fns[name], device)[0])
    return times


def conditioning(clip):
    tokens = clip.tokenize("a red fox in snow")
    context, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    return [[context, {"pooled_output": pooled}]]


def bench_sampler(pack, ckpt, size, repeats, device):
    """Rows: (name, s/image, s/model call, calls) for tcd eta 0 / 0.3 and core euler; 4 steps."""
    import comfy.sample
    import comfy.samplers
    import comfy.sd
    import torch
    model, clip, _, _ = comfy.sd.load_checkpoint_guess_config(str(ckpt), output_vae=False, output_clip=True)
    cond = conditioning(clip)
    sigmas, = pack.nodes.sampling.HyperSDScheduler().get_sigmas(model, 4, 1.0, 999)
    samplers = {"tcd eta 0 (pack)": pack.nodes.sampling.HyperSDTCDSampler().get_sampler(0.0)[0],
                "tcd eta 0.3 (pack)": pack.nodes.sampling.HyperSDTCDSampler().get_sampler(0.3)[0],
                "euler (core)": comfy.samplers.sampler_object("euler")}
    latent = torch.zeros(1, 4, size // 8, size // 8)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))
    calls = []
    model.model.diffusion_model.register_forward_hook(lambda *a: calls.append(1))

    def run(sampler):
        calls.clear()
        comfy.sample.sample_custom(model, noise, 1.0, sampler, sigmas, cond, cond, latent, seed=1,
                                   disable_pbar=True)
        return len(calls)

    fns = {name: (lambda s=s: run(s)) for name, s in samplers.items()}
    times = interleaved(fns, repeats, device)
    nfe = {name: fn() for name, fn in fns.items()}
    return {name: (statistics.median(t), nfe[name]) for name, t in times.items()}, model


def bench_lora(pack, model, folder, label, repeats, device):
    """{"node": (pack s, core s), "apply": (pack s, core s)} on one full-coverage rank-64 LoRA."""
    import bench_lora as bl
    import comfy.model_management
    import nodes as core_nodes
    path = folder / "loras-full" / bl.NAME.replace("SD15", "SDXL" if "SDXL" in label else "SD15")
    if not path.exists():
        bl.make_lora_file(model, path, 64)
    bl.set_loras_folder(path.parent)
    pack_call = lambda: pack.nodes.lora.HyperSDLoraLoader().apply(model, label, 1.0, "never", clip=None)["result"][0]  # noqa
    core_call = lambda: core_nodes.LoraLoaderModelOnly().load_lora_model_only(model, path.name, 1.0)[0]  # noqa

    def apply(call):
        patched = call()
        comfy.model_management.load_models_gpu([patched], force_full_load=True)
        comfy.model_management.unload_all_models()

    node = interleaved({"pack": pack_call, "core": core_call}, max(repeats, 5), device)
    applied = interleaved({"pack": lambda: apply(pack_call), "core": lambda: apply(core_call)}, repeats, device)
    med = lambda t: (statistics.median(t["pack"]), statistics.median(t["core"]))  # noqa
    return {"node": med(node), "apply": med(applied)}


def bench_unet(pack, folder, size, device):
    """{"load+step": (pack s, core s), "step": (pack s, core s)}: the one-step checkpoint, second pass."""
    import comfy.model_management
    import comfy.sample
    import comfy.samplers
    import folder_paths
    import nodes as core_nodes
    import torch
    name = "Hyper-SDXL-1step-Unet-Comfyui.fp16.safetensors"
    folder_paths.folder_names_and_paths["checkpoints"] = ([str(folder / "checkpoints")],
                                                         set(folder_paths.supported_pt_extensions))
    folder_paths.filename_list_cache.pop("checkpoints", None)
    latent = torch.zeros(1, 4, size // 8, size // 8)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))

    def step(model, clip, sampler, sigmas):
        cond = conditioning(clip)
        return timed(lambda: comfy.sample.sample_custom(model, noise, 1.0, sampler, sigmas, cond, cond, latent,
                                                        seed=1, disable_pbar=True), device)[0]

    def pack_run():
        model, clip, _, sampler, sigmas = pack.nodes.unet.HyperSDUNetLoader().load(
            "SDXL · one-step UNet (ComfyUI checkpoint, fp16)", "never", "none", 800)
        return model, clip, sampler, sigmas

    def core_run():
        model, clip, _ = core_nodes.CheckpointLoaderSimple().load_checkpoint(name)
        sigmas, = pack.nodes.sampling.HyperSDScheduler().get_sigmas(model, 1, 1.0, 800)  # [sigma(800), 0]
        return model, clip, comfy.samplers.sampler_object("euler"), sigmas

    out = {}
    for which, fn in (("pack", pack_run), ("core", core_run), ("pack", pack_run), ("core", core_run)):
        comfy.model_management.unload_all_models()
        comfy.model_management.soft_empty_cache()
        t_load, loaded = timed(fn, device)
        t_step = step(*loaded)
        out[which] = (t_load + t_step, t_step)  # the second pass overwrites the first (warm page cache)
        del loaded
    return {"load+step": (out["pack"][0], out["core"][0]), "step": (out["pack"][1], out["core"][1])}


# ------------------------------------------------------------------------------------------ table


def ratio(a, b):
    return f"{a / b:.3f}" if b else "–"


def table(title, arch, size, runner_times, sampler, lora, unet, repeats):
    rows = [f"**{title}**", "", "| measurement | Hyper-SD (pack) | ComfyUI core | ratio pack / core |",
            "|---|---|---|---|"]
    name = "SDXL" if arch == "sdxl" else "SD1.5"
    for steps, t in runner_times.items():
        rows.append(f"| runner, {name} {size}², {steps} step{'s' * (steps > 1)}: s/image (median of {repeats}) "
                    f"| {t:.3f} | – | – |")
    per_call = (runner_times[8] - runner_times[1]) / 7
    rows.append(f"| runner: s/model call (slope 1 → 8 steps) | {per_call:.4f} | – | – |")
    base = sampler["euler (core)"][0]
    for label, (t, calls) in sampler.items():
        if label != "euler (core)":
            rows.append(f"| sampler, 4 steps, s/image: {label} vs euler ({calls} vs "
                        f"{sampler['euler (core)'][1]} model calls) | {t:.4f} | {base:.4f} | {ratio(t, base)} |")
    rows.append(f"| sampler: s/model call, tcd eta 0 vs euler | {sampler['tcd eta 0 (pack)'][0] / 4:.4f} | "
                f"{base / 4:.4f} | {ratio(sampler['tcd eta 0 (pack)'][0], base)} |")
    rows.append(f"| LoRA node call, s (Hyper-SD LoRA Loader vs LoraLoaderModelOnly, rank 64, every UNet weight) "
                f"| {lora['node'][0]:.4f} | {lora['node'][1]:.4f} | {ratio(*lora['node'])} |")
    rows.append(f"| LoRA node + load_models_gpu (patched weights computed), s | {lora['apply'][0]:.4f} | "
                f"{lora['apply'][1]:.4f} | {ratio(*lora['apply'])} |")
    if unet:
        rows.append(f"| one-step UNet: load + 1 step at {size}², s (UNet Loader vs CheckpointLoaderSimple + euler) "
                    f"| {unet['load+step'][0]:.3f} | {unet['load+step'][1]:.3f} | {ratio(*unet['load+step'])} |")
        rows.append(f"| one-step UNet: the step alone, s | {unet['step'][0]:.4f} | {unet['step'][1]:.4f} | "
                    f"{ratio(*unet['step'])} |")
    else:
        rows.append("| one-step UNet vs CheckpointLoaderSimple + euler | not run with --cpu (needs an SDXL file) "
                    "| – | – |")
    return "\n".join(rows) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="SD1.5 at 256² on the CPU (proves the script runs)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5 on GPU, 2 with --cpu)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "gpu-results.md")
    args = ap.parse_args()
    arch, device = ("sd15", "cpu") if args.cpu else ("sdxl", "cuda")
    repeats = args.repeats or (2 if args.cpu else 5)
    size = ARCHS[arch]["size"]
    import conftest  # noqa: F401  (registers the hypersd_pack package)
    import host
    comfy = host.comfyui_path()
    if not (comfy / "main.py").is_file():
        sys.exit(f"needs ComfyUI: none at COMFYUI_PATH={comfy}")
    if device == "cuda":
        import torch
        if not torch.cuda.is_available():
            sys.exit("no CUDA device visible to torch: run with --cpu, or on a GPU machine")
        title = f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, SDXL random fp16 weights, {size}²"
    else:
        import torch
        title = f"CPU ({os.cpu_count()} cores), torch {torch.__version__}, SD1.5 random weights, {size}² (--cpu)"
    work = Path(tempfile.mkdtemp(prefix="hypersd-gpu-bench-"))
    ckpt = build_models(arch, work / "models")
    t0 = time.time()
    runner_times = bench_runner(arch, comfy, work, args.cpu, repeats)
    log(f"runner part: {time.time() - t0:.0f} s")
    pack = host.import_comfy()
    t0 = time.time()
    sampler, model = bench_sampler(pack, ckpt, size, repeats, device)
    lora = bench_lora(pack, model, work / "models", ARCHS[arch]["label"], repeats, device)
    del model
    unet = None if args.cpu else bench_unet(pack, work / "models", size, device)
    log(f"in-process parts: {time.time() - t0:.0f} s")
    text = table(title, arch, size, runner_times, sampler, lora, unet, repeats)
    args.out.write_text(text)
    print("\n" + text)
    log(f"table written to {args.out}")


if __name__ == "__main__":
    main()
