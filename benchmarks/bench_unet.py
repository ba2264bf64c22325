"""One-step UNet loader benchmark: HyperSDUNetLoader vs ComfyUI's CheckpointLoaderSimple / UNETLoader on the
same files, load time and peak RSS, each load in a fresh process (ratios; target <= 1.02).

    python benchmarks/bench_unet.py [--repeats 2]

Uses the tests' random SDXL checkpoint and the same weights as a bare diffusers UNet (built and cached on
first use). Needs ComfyUI at COMFYUI_PATH (default ~/comfy/ComfyUI). One SDXL load at a time (~15-19 GB).
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

CKPT = "Hyper-SDXL-1step-Unet-Comfyui.fp16.safetensors"
UNET = "Hyper-SDXL-1step-Unet.safetensors"


def child(which, ck_dir, un_dir):
    import conftest  # noqa: F401
    import host
    pack = host.import_comfy()
    import folder_paths
    import nodes
    exts = folder_paths.supported_pt_extensions
    folder_paths.folder_names_and_paths["checkpoints"] = ([ck_dir], exts)
    folder_paths.folder_names_and_paths["diffusion_models"] = ([un_dir], exts)
    t0 = time.perf_counter()
    if which == "ours-checkpoint":
        out = pack.nodes.unet.HyperSDUNetLoader().load("SDXL · one-step UNet (ComfyUI checkpoint, fp16)", "never",
                                                      "none", 800)
    elif which == "core-checkpoint":
        out = nodes.CheckpointLoaderSimple().load_checkpoint(CKPT)
    elif which == "ours-diffusers":
        out = pack.nodes.unet.HyperSDUNetLoader().load("SDXL · one-step UNet (diffusers, fp32)", "never",
                                                      "base.safetensors", 800)
    else:  # core's UNETLoader, plus CLIP and VAE from the same base checkpoint through core's own function
        out = nodes.UNETLoader().load_unet(UNET, "default")
        import comfy.sd
        comfy.sd.load_checkpoint_guess_config(str(Path(ck_dir) / "base.safetensors"), output_vae=True,
                                              output_clip=True, output_model=False)
    dt = time.perf_counter() - t0
    assert out[0] is not None
    print(json.dumps({"s": dt, "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}))


def drop_page_cache():
    """Start every load from a cold page cache (root only): otherwise whoever runs after a load of the same
    file reads it from memory and looks faster."""
    try:
        subprocess.run(["sync"], check=False)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    import conftest  # noqa: F401
    import host
    if not (host.comfyui_path() / "main.py").is_file():
        sys.exit(f"needs ComfyUI: none at COMFYUI_PATH={host.comfyui_path()}")
    host.import_comfy()
    import models
    ckpt, unet = models.sdxl_checkpoint(), models.sdxl_unet_diffusers()
    tmp = Path(tempfile.mkdtemp())
    (tmp / "ck").mkdir()
    (tmp / "un").mkdir()
    (tmp / "ck" / CKPT).symlink_to(ckpt)
    (tmp / "ck" / "base.safetensors").symlink_to(ckpt)
    (tmp / "un" / UNET).symlink_to(unet)
    results = {}
    order = ["ours-checkpoint", "core-checkpoint", "ours-diffusers", "core-unet"]
    cold = True
    for r in range(args.repeats):
        for which in (order if r % 2 == 0 else order[::-1]):  # alternate who goes first
            cold = drop_page_cache() and cold
            out = subprocess.run([sys.executable, __file__, "--child", which, str(tmp / "ck"), str(tmp / "un")],
                                 capture_output=True, text=True, timeout=900)
            if out.returncode != 0:
                sys.exit(out.stderr[-3000:])
            results.setdefault(which, []).append(json.loads(out.stdout.strip().splitlines()[-1]))
    med = {k: (statistics.median(r["s"] for r in v), max(r["rss_gb"] for r in v)) for k, v in results.items()}
    print(f"\nOne-step UNet loader vs core (random SDXL, CPU, median of {args.repeats} fresh processes, "
          f"{'page cache dropped before each load' if cold else 'page cache NOT dropped (not root): order alternates'})")
    print(f"{'load':<44}{'s':>8}{'peak RSS GB':>13}{'time ratio':>12}{'RSS ratio':>11}")
    for ours, core, what in (("ours-checkpoint", "core-checkpoint", "ComfyUI file: ours / CheckpointLoaderSimple"),
                             ("ours-diffusers", "core-unet", "diffusers file: ours / UNETLoader")):
        (ts, rs), (tc, rc) = med[ours], med[core]
        print(f"{what:<44}{ts:>8.2f}{rs:>13.2f}{ts / tc:>12.3f}{rs / rc:>11.3f}")
        print(f"{'  (core)':<44}{tc:>8.2f}{rc:>13.2f}")
    print("diffusers-file rows: ours loads CLIP and VAE from base_checkpoint; core = UNETLoader + "
          "comfy.sd.load_checkpoint_guess_config(base, output_model=False) for the same CLIP and VAE.")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
    else:
        main()
