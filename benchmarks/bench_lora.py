#!/usr/bin/env python
"""Benchmark: the Hyper-SD LoRA Loader against ComfyUI's core LoraLoaderModelOnly, and the file lookup.

    python benchmarks/bench_lora.py [--repeats 25] [--apply-repeats 3] [--rss-runs 3] [--rank 128] [--files 1000]

A script, not a test: it prints a table and asserts nothing about time. Both loaders run in one
ComfyUI, imported in-process (``$COMFYUI_PATH``, default ``~/comfy/ComfyUI``; the script exits with a
message when there is none), on the same random-weight SD1.5 checkpoint (tests/models.py, built on first
use) and the same LoRA file: a kohya-spelled LoRA (``lora_unet_<ldm path>`` + ``.alpha``) over every
linear and conv weight of the UNet, fp16, written once into a temporary loras folder under the official
name ``Hyper-SD15-4steps-lora.safetensors``. The pack loads it as 'SD1.5 · 4 steps' at strength 1.0 with
no clip (model only, like core's node); core loads it by file name with strength 1.0.

Rows
----
* ``node call``: the node function alone (read the file, [pack: fit check], build the patches). A fresh
  node instance each time, so core's one-file cache on its node instance does not hide the file read.
  Median of ``--repeats`` calls per loader, alternating which goes first, after one warm-up each.
* ``node + apply``: the node, then ComfyUI's own ``load_models_gpu`` (which computes every patched weight,
  what the first sampling step pays), then ``unload_all_models`` (restores the weights); median of
  ``--apply-repeats``. Both loaders hand ComfyUI the same patches (checked), so this row differs only by
  the node call and by noise.
* Times are given as CPU time of the process (``time.process_time``, the ratio's basis: the work done,
  not time lost to other processes on a shared machine) and as wall-clock time.
* ``peak RSS``: each loader in ``--rss-runs`` fresh subprocesses per loader: whole-process peak RSS
  (checkpoint load included), and the peak *above* the RSS right after the checkpoint load during the
  node call and during node + apply (Linux ``/proc/self/clear_refs`` resets the high-water mark between
  phases). Median over the runs.
* ``find_local``: the pack's lookup of an official file name (case-insensitive, recursive) in a loras
  folder holding ``--files`` other files in 10 subfolders, hit and miss, against what core does with the
  same folder: ``folder_paths.get_full_path`` (an exact relative path, one ``isfile``) and an uncached
  ``folder_paths.get_filename_list`` (the recursive listing behind core's LoRA dropdown).

Ratios are pack / core; the target for the loader rows is <= 1.02.
"""
import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LABEL, NAME = "SD1.5 · 4 steps", "Hyper-SD15-4steps-lora.safetensors"
TARGET = 1.02


# ------------------------------------------------------------------------------------------ set-up


sys.path.insert(0, str(REPO / "tests"))


def comfyui_path():
    import host
    return host.comfyui_path()


def import_comfy():
    """ComfyUI (CPU unless CUDA is there), its nodes.py, and the pack as package ``hypersd_pack``, the way
    the tests import them (tests/conftest.py, tests/host.py)."""
    import conftest  # noqa: F401  (registers hypersd_pack)
    import host
    if not (host.comfyui_path() / "main.py").is_file():
        sys.exit(f"bench_lora: needs a real ComfyUI, and there is none at COMFYUI_PATH={host.comfyui_path()}. "
                 f"Set COMFYUI_PATH to a ComfyUI checkout (and run this script with that ComfyUI's Python).")
    pack = host.import_comfy()
    import nodes as core_nodes  # ComfyUI's nodes.py
    return types.SimpleNamespace(core=core_nodes, lora=pack.nodes.lora, download=pack.core.download)


def quiet():
    import logging
    logging.getLogger().setLevel(logging.ERROR)
    logging.getLogger("HyperSD").setLevel(logging.ERROR)


def set_loras_folder(folder):
    import folder_paths
    folder_paths.folder_names_and_paths["loras"] = ([str(folder)], set(folder_paths.supported_pt_extensions))
    folder_paths.filename_list_cache.pop("loras", None)


def load_model(ckpt):
    import comfy.sd
    model, _, _, _ = comfy.sd.load_checkpoint_guess_config(str(ckpt), output_vae=False, output_clip=False)
    return model


def make_lora_file(model, path, rank):
    """kohya LoRA over every >= 2-D UNet weight (linear and conv), fp16, alpha = rank / 2."""
    import torch
    from safetensors.torch import save_file
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for key, weight in model.model.state_dict().items():
        if not (key.startswith("diffusion_model.") and key.endswith(".weight") and weight.ndim >= 2):
            continue
        base = "lora_unet_" + key[len("diffusion_model."):-len(".weight")].replace(".", "_")
        out_dim, rest = weight.shape[0], tuple(weight.shape[1:])
        r = min(rank, out_dim)
        tail = (1, 1) if weight.ndim == 4 else ()
        tensors[base + ".lora_down.weight"] = (torch.randn((r,) + rest, generator=gen) * 0.05).half()
        tensors[base + ".lora_up.weight"] = (torch.randn((out_dim, r) + tail, generator=gen) * 0.05).half()
        tensors[base + ".alpha"] = torch.tensor(r / 2, dtype=torch.float16)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return len(tensors) // 3


# ------------------------------------------------------------------------------------------ the two loaders


def run_pack(env, model):
    # the node as ComfyUI calls it (FUNCTION "apply": the load and what the node shows)
    node = env.lora.HyperSDLoraLoader()
    return node.apply(model, LABEL, 1.0, "never", clip=None, strength_from="custom")["result"][0]


def run_core(env, model):
    return env.core.LoraLoaderModelOnly().load_lora_model_only(model, NAME, 1.0)[0]


LOADERS = {"pack": run_pack, "core": run_core}


def apply(patcher):
    import comfy.model_management
    comfy.model_management.load_models_gpu([patcher], force_full_load=True)
    comfy.model_management.unload_all_models()


# ------------------------------------------------------------------------------------------ memory (child)


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child(args):
    """One loader in a fresh process: JSON with whole-process and per-phase peak RSS (KiB)."""
    env = import_comfy()
    quiet()
    set_loras_folder(Path(args.loras))
    model = load_model(args.ckpt)
    gc.collect()
    peaks = [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss]
    base = _status_kb("VmRSS")
    can_reset = _reset_peak()
    out = LOADERS[args.child](env, model)
    node_peak = _status_kb("VmHWM") if can_reset else None
    peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    _reset_peak()
    apply(out)
    apply_peak = _status_kb("VmHWM") if can_reset else None
    peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print(json.dumps({"total_peak": max(peaks), "base": base,
                      "node_extra": None if node_peak is None else node_peak - base,
                      "apply_extra": None if apply_peak is None else apply_peak - base}))


def measure_rss(ckpt, loras, runs):
    results = {name: [] for name in LOADERS}
    for i in range(runs):
        for name in (("pack", "core") if i % 2 == 0 else ("core", "pack")):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--ckpt", str(ckpt),
                   "--loras", str(loras)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"bench_lora: the {name} child failed:\n{proc.stderr[-3000:]}")
            results[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    med = {}
    for name, rows in results.items():
        med[name] = {k: (statistics.median(r[k] for r in rows) if rows[0][k] is not None else None)
                     for k in rows[0]}
    return med


# ------------------------------------------------------------------------------------------ time


def measure_time(env, model, node_repeats, apply_repeats):
    """Medians of wall-clock and CPU (process) time: {(row, loader): (wall, cpu)}. CPU time is what the
    ratios use: it counts the work done, not time lost to other processes on a shared machine."""
    rows = {}
    for name, fn in LOADERS.items():  # warm-up: page cache, lazy imports
        apply(fn(env, model))

    def timed(row, repeats, with_apply):
        for i in range(repeats):
            for name in (("pack", "core") if i % 2 == 0 else ("core", "pack")):
                gc.collect()
                w0, c0 = time.perf_counter(), time.process_time()
                out = LOADERS[name](env, model)
                if with_apply:
                    apply(out)
                rows.setdefault((row, name), []).append((time.perf_counter() - w0, time.process_time() - c0))
                del out

    timed("node call", node_repeats, False)
    timed("node + apply", apply_repeats, True)
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in rows.items()}


def measure_lookup(env, tmp, n_files, repeats=51):
    import folder_paths
    folder = tmp / "many-loras"
    for i in range(n_files):
        sub = folder / f"set{i % 10:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"style-{i:04d}-lora.safetensors").write_bytes(b"")
    official = folder / "set09" / "hyper" / NAME
    official.parent.mkdir(parents=True, exist_ok=True)
    official.write_bytes(b"")
    set_loras_folder(folder)
    rel = os.path.relpath(official, folder)

    def timed(fn):
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples)

    assert env.download.find_local(NAME, [str(folder)]) == str(official)
    assert env.download.find_local("Hyper-SD15-8steps-lora.safetensors", [str(folder)]) is None

    def listing():
        folder_paths.filename_list_cache.pop("loras", None)
        return folder_paths.get_filename_list("loras")

    assert rel in listing()
    return {
        "find_local hit": timed(lambda: env.download.find_local(NAME, [str(folder)])),
        "find_local miss": timed(lambda: env.download.find_local("Hyper-SD15-8steps-lora.safetensors",
                                                                 [str(folder)])),
        "core get_full_path": timed(lambda: folder_paths.get_full_path("loras", rel)),
        "core get_filename_list (uncached)": timed(listing),
    }


# ------------------------------------------------------------------------------------------ main


def fmt_ratio(a, b):
    return "n/a" if a is None or b in (None, 0) else f"{a / b:.3f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=25, help="timed node calls per loader (median)")
    parser.add_argument("--apply-repeats", type=int, default=3, help="timed node + apply runs per loader")
    parser.add_argument("--rss-runs", type=int, default=3, help="fresh subprocesses per loader for RSS")
    parser.add_argument("--rank", type=int, default=128,
                        help="LoRA rank of the benchmark file (128: about the size of the official 269 MB file)")
    parser.add_argument("--files", type=int, default=1000, help="other files in the loras folder for find_local")
    parser.add_argument("--child", choices=sorted(LOADERS), help=argparse.SUPPRESS)
    parser.add_argument("--ckpt", help=argparse.SUPPRESS)
    parser.add_argument("--loras", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    env = import_comfy()
    quiet()
    import comfy.model_management
    import torch
    import models  # tests/models.py: the random-weight SD1.5 checkpoint
    ckpt = models.sd15_checkpoint()
    device = comfy.model_management.get_torch_device()
    print(f"ComfyUI {comfyui_path()}  torch {torch.__version__}  device {device}  checkpoint {ckpt.name}")

    with tempfile.TemporaryDirectory(prefix="bench-lora-") as tmp:
        tmp = Path(tmp)
        loras = tmp / "loras"
        model = load_model(ckpt)
        layers = make_lora_file(model, loras / NAME, args.rank)
        size = (loras / NAME).stat().st_size
        print(f"LoRA: {layers} UNet layers, rank <= {args.rank}, kohya spelling, {size / 1e6:.0f} MB; medians of "
              f"{args.repeats} node calls and {args.apply_repeats} node + apply runs per loader, "
              f"{args.rss_runs} RSS subprocesses per loader\n")
        set_loras_folder(loras)
        pack_out, core_out = run_pack(env, model), run_core(env, model)
        assert set(pack_out.patches) == set(core_out.patches) and len(pack_out.patches) == layers
        del pack_out, core_out

        times = measure_time(env, model, args.repeats, args.apply_repeats)
        del model
        gc.collect()
        rss = measure_rss(ckpt, loras, args.rss_runs)
        lookup = measure_lookup(env, tmp, args.files)

    mb = 1 / 1024
    rows = [
        ("node call, CPU time (s)", times[("node call", "pack")][1], times[("node call", "core")][1], "{:.3f}"),
        ("node call, wall time (s)", times[("node call", "pack")][0], times[("node call", "core")][0], "{:.3f}"),
        ("node + apply, CPU time (s)", times[("node + apply", "pack")][1], times[("node + apply", "core")][1],
         "{:.2f}"),
        ("node + apply, wall time (s)", times[("node + apply", "pack")][0], times[("node + apply", "core")][0],
         "{:.2f}"),
        ("peak RSS, whole process (MB)", rss["pack"]["total_peak"] * mb, rss["core"]["total_peak"] * mb, "{:.0f}"),
        ("peak RSS above checkpoint, node (MB)",
         None if rss["pack"]["node_extra"] is None else rss["pack"]["node_extra"] * mb,
         None if rss["core"]["node_extra"] is None else rss["core"]["node_extra"] * mb, "{:.0f}"),
        ("peak RSS above checkpoint, node + apply (MB)",
         None if rss["pack"]["apply_extra"] is None else rss["pack"]["apply_extra"] * mb,
         None if rss["core"]["apply_extra"] is None else rss["core"]["apply_extra"] * mb, "{:.0f}"),
    ]
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'loader (pack vs core LoraLoaderModelOnly)':<{width}}{'pack':>10}{'core':>10}{'ratio':>9}  target")
    for label, ours, core, form in rows:
        ratio = fmt_ratio(ours, core)
        flag = "" if ratio == "n/a" else ("ok" if float(ratio) <= TARGET else "OVER")
        print(f"{label:<{width}}{'n/a' if ours is None else form.format(ours):>10}"
              f"{'n/a' if core is None else form.format(core):>10}{ratio:>9}  <= {TARGET} {flag}")
    print()
    listing = lookup["core get_filename_list (uncached)"]
    print(f"{'lookup in a loras folder of ' + str(args.files) + ' files':<{width}}{'median':>10}{'/listing':>10}")
    for label, seconds in lookup.items():
        print(f"{label:<{width}}{seconds * 1e3:>8.3f}ms{seconds / listing:>10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
