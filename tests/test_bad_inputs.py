"""Bad-input matrix over the real server: every case, sent through POST /prompt, ends in an HTTP 400 node
error or an execution error whose message names the value or file and the fix; afterwards the server still
answers, the next good prompt succeeds, and no partial file exists in any models folder (but for a cut
download's hidden partial, which the next run resumes).

Download cases use a second server whose HF_ENDPOINT points at a local stand-in hub (tests/fakehub.py).
Skipped, with a message naming COMFYUI_PATH, without a host.
"""
import os
import subprocess
from pathlib import Path

import pytest

import prompts
from host import ComfyServer, execution_error, import_comfy, require_comfyui
from pixels import real_image

SD15_CKPT = "random-sd15.safetensors"
SDXL_CKPT = "random-sdxl.safetensors"
SD15_LORA = "Hyper-SD15-4steps-lora.safetensors"
SD15_LABEL = "SD1.5 · 4 steps"


def lora_prompt(ckpt=SD15_CKPT, label=SD15_LABEL, download="never", steps=1, strength=None):
    """CheckpointLoaderSimple -> HyperSDLoraLoader -> HyperSDScheduler/TCD (recipe outputs) -> SamplerCustom."""
    p = prompts.sampler_custom_prompt(ckpt, steps=steps, size=64)
    p["lora"] = {"class_type": "HyperSDLoraLoader", "inputs": {"model": ["ckpt", 0], "clip": ["ckpt", 1],
                                                               "lora": label, "download": download,
                                                               "strength": 1.0 if strength is None else strength,
                                                               "strength_from": "recipe" if strength is None
                                                               else "custom"}}
    p["sched"]["inputs"]["model"] = ["lora", 0]
    p["sample"]["inputs"]["model"] = ["lora", 0]
    p["pos"]["inputs"]["clip"] = ["lora", 1]
    p["neg"]["inputs"]["clip"] = ["lora", 1]
    return p


def onestep_prompt():
    return {"unet": {"class_type": "HyperSDUNetLoader", "inputs": {
        "unet": "SDXL · one-step UNet (ComfyUI checkpoint, fp16)", "download": "never", "base_checkpoint": "none",
        "start_timestep": 800}}, **{k: v for k, v in prompts.sampler_custom_prompt(SD15_CKPT, size=64).items()
                                    if k in ("save",)},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["unet", 1]}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "sample": {"class_type": "SamplerCustom", "inputs": {
            "model": ["unet", 0], "add_noise": True, "noise_seed": 1, "cfg": 1.0, "positive": ["pos", 0],
            "negative": ["pos", 0], "sampler": ["unet", 3], "sigmas": ["unet", 4], "latent_image": ["latent", 0]}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["unet", 2]}}}


def set_input(node, name, value):
    def edit(p):
        p[node]["inputs"][name] = value
        return p
    return edit


def flip_sigmas(p):
    p["flip"] = {"class_type": "FlipSigmas", "inputs": {"sigmas": ["sched", 0]}}
    p["sample"]["inputs"]["sigmas"] = ["flip", 0]
    return p


def single_sigma(p):
    p["split"] = {"class_type": "SplitSigmas", "inputs": {"sigmas": ["sched", 0], "step": p["sched"]["inputs"]["steps"]}}
    p["sample"]["inputs"]["sigmas"] = ["split", 1]  # [0.0]: a schedule with no step
    return p


# (id, file to place under SD15_LORA or None, prompt builder, expected HTTP status or "error", message parts)
CASES = [
    ("increasing-sigmas", None, lambda: flip_sigmas(prompts.sampler_custom_prompt(SD15_CKPT, size=64)), "error",
     ["SIGMAS must decrease", "wire a scheduler"]),
    ("single-sigma", None, lambda: single_sigma(prompts.sampler_custom_prompt(SD15_CKPT, size=64)), "error",
     ["SIGMAS has 1 value", "a schedule needs a start and an end"]),
    ("img2img-no-step", None, lambda: set_input("sched", "denoise", 0.2)(prompts.sampler_custom_prompt(SD15_CKPT, size=64)),
     "error", ["denoise 0.2 with 4 steps keeps no step", "raise denoise"]),
    ("missing-offline", None, lambda: lora_prompt(download="if missing"), "error",
     [SD15_LORA, "Download it by hand from https://huggingface.co/ByteDance/Hyper-SD/resolve/main/" + SD15_LORA,
      "models/loras", "HF_HUB_OFFLINE"]),
    ("missing-never", None, lambda: lora_prompt(download="never"), "error",
     [SD15_LORA, "policy is 'never'", "set it to 'if missing'"]),
    ("truncated", "truncated", lambda: lora_prompt(), "error", [SD15_LORA, "truncated", "download it again"]),
    ("corrupt", "corrupt", lambda: lora_prompt(), "error", [SD15_LORA, "cannot read", "download it again"]),
    ("pickle-renamed", "pickle", lambda: lora_prompt(), "error", [SD15_LORA, "cannot read", "not a safetensors"]),
    ("foreign-keys", "foreign", lambda: lora_prompt(), "error", [SD15_LORA, "match no layer",
                                                                  "choose the Hyper-SD file for SD1.5"]),
    ("sdxl-lora-on-sd15", None, lambda: lora_prompt(label="SDXL · 4 steps"), "error",
     ["is a SDXL LoRA but the model is SD1.5", "choose a Hyper-SD LoRA for SD1.5"]),
    ("flux-lora-on-sd15", None, lambda: lora_prompt(label="FLUX.1-dev · 8 steps"), "error",
     ["is a FLUX.1-dev LoRA but the model is SD1.5"]),
    ("sd3-lora-on-sdxl", None, lambda: lora_prompt(ckpt=SDXL_CKPT, label="SD3 · 4 steps CFG"), "error",
     ["is a SD3 LoRA but the model is SDXL", "choose a Hyper-SD LoRA for SDXL"]),
    ("flux-lora-on-sdxl", None, lambda: lora_prompt(ckpt=SDXL_CKPT, label="FLUX.1-dev · 8 steps"), "error",
     ["is a FLUX.1-dev LoRA but the model is SDXL"]),
    ("onestep-unet-is-sd15", "unet-sd15", onestep_prompt, "error",
     ["Hyper-SDXL-1step-Unet-Comfyui.fp16.safetensors", "is not an SDXL UNet", "SD1.5"]),
]


def partial_files(base):
    models = Path(base) / "models"
    return [str(p) for p in models.rglob("*") if p.name.endswith((".partial", ".tmp", ".part"))
            or (p.is_file() and p.suffix == ".safetensors" and p.stat().st_size == 0)]


@pytest.fixture(scope="module")
def server(comfy_server):
    import_comfy()
    import loras
    import models
    srv = comfy_server
    srv.post("/free", {"unload_models": True, "free_memory": True})
    srv.add_model("checkpoints", models.sd15_checkpoint(), SD15_CKPT)
    srv.add_model("checkpoints", models.sdxl_checkpoint(), SDXL_CKPT)
    good = loras.make_lora(loras.SD15_UNET, "kohya", seed=1, std=0.01)
    srv.files = {
        "truncated": lambda p: loras.write_truncated(p, good),
        "corrupt": lambda p: p.write_bytes(os.urandom(4096)),
        "pickle": lambda p: loras.write_pickle(p, "not a lora"),
        "foreign": lambda p: loras.write(p, loras.make_lora(loras.SDXL_UNET, "kohya", seed=2)),
        "unet-sd15": None,
    }
    yield srv
    srv.post("/free", {"unload_models": True, "free_memory": True})


def place(server, kind):
    lora_path = server.models_dir("loras") / SD15_LORA
    unet_link = server.models_dir("checkpoints") / "Hyper-SDXL-1step-Unet-Comfyui.fp16.safetensors"
    for p in (lora_path, unet_link):
        if p.is_symlink() or p.exists():
            p.unlink()
    if kind == "unet-sd15":
        import models
        server.add_model("checkpoints", models.sd15_checkpoint(), unet_link.name)
    elif kind is not None:
        server.files[kind](lora_path)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(server, case):
    name, kind, build, expect, parts = case
    place(server, kind)
    try:
        status, body = server.post("/prompt", {"prompt": build()})
        if expect == 400:
            assert status == 400, body
            text = prompts.node_errors(body)
        else:
            assert status == 200, body
            entry = server.wait(body["prompt_id"], timeout=600)
            assert entry["status"]["status_str"] == "error"
            text = execution_error(entry)
        for part in parts:
            assert part in text, f"{name}: {part!r} not in {text!r}"
        assert server.alive()
        assert partial_files(server.base) == []
    finally:
        place(server, None)


def test_out_of_range_values_are_still_rejected_by_validation(server):
    """ComfyUI's own validation refuses these whatever the pack does (combo and min/max): one prompt checks
    that the pack's input declarations still let it, naming each input and value in one HTTP 400."""
    p = lora_prompt()
    for node, name, value in (("tcd", "eta", 1.5), ("sched", "steps", 51), ("sched", "start_timestep", 1000),
                              ("lora", "lora", "../../x.safetensors"), ("lora", "strength", 99.0)):
        p[node]["inputs"][name] = value
    status, body = server.post("/prompt", {"prompt": p})
    assert status == 400, body
    text = prompts.node_errors(body)
    for needle in ("eta", "1.5", "steps", "51", "start_timestep", "1000", "../../x.safetensors", "strength", "99"):
        assert needle in text, (needle, text)
    assert server.alive()


def test_good_prompt_after_the_matrix(server):
    entry = server.run_ok(prompts.sampler_custom_prompt(SD15_CKPT, steps=1, size=64, prefix="after-matrix"))
    (png,) = server.output_images(entry)
    real_image(png, 64)
    assert partial_files(server.base) == []


# ----------------------------------------------------------------------------------- download failures


@pytest.fixture(scope="module")
def hub_server(tmp_path_factory, comfy_host):
    """A second ComfyUI whose HF_ENDPOINT is a local stand-in hub serving a valid SD1.5 LoRA."""
    require_comfyui()
    import fakehub
    import loras
    import models
    data = loras.to_bytes(loras.make_lora(loras.SD15_UNET, "kohya", seed=5, std=0.01))
    hub = fakehub.FakeHub({SD15_LORA: data})
    hub.start()
    srv = ComfyServer(tmp_path_factory.mktemp("comfy-hub-base"))
    srv.extra_env = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_test_token"}
    srv.start()
    srv.add_model("checkpoints", models.sd15_checkpoint(), SD15_CKPT)
    srv.hub, srv.lora_bytes = hub, data
    yield srv
    srv.stop()
    hub.stop()


@pytest.mark.every_host
def test_download_cut_half_way_then_resumes(hub_server):
    hub = hub_server.hub
    total = len(hub_server.lora_bytes)
    hub.cut_after = total // 2
    entry = hub_server.run(lora_prompt(download="if missing"))
    msg = execution_error(entry)
    assert "DownloadError" in msg and SD15_LORA in msg and "bytes received so far are kept" in msg, msg
    (partial,) = [Path(p) for p in partial_files(hub_server.base)]  # hidden: ComfyUI lists no model
    assert list(hub_server.models_dir("loras").iterdir()) == [partial] and partial.name.startswith(".")
    have = partial.stat().st_size
    assert 0 < have <= total // 2 and hub_server.lora_bytes.startswith(partial.read_bytes())
    hub.reset_log()
    entry = hub_server.run_ok(lora_prompt(download="if missing"))  # resumed: only the rest is sent
    assert [(r.range, r.body_bytes) for r in hub.body_requests()] == [(f"bytes={have}-", total - have)]
    assert (hub_server.models_dir("loras") / SD15_LORA).read_bytes() == hub_server.lora_bytes
    (png,) = hub_server.output_images(entry)
    real_image(png, 64)
    (hub_server.models_dir("loras") / SD15_LORA).unlink()


@pytest.mark.every_host
def test_download_with_wrong_hash_is_deleted(hub_server):
    hub = hub_server.hub
    hub.advertise_sha[SD15_LORA] = "0" * 64
    try:
        msg = execution_error(hub_server.run(lora_prompt(download="if missing", strength=0.9)))
    finally:
        hub.advertise_sha.clear()
    assert "ChecksumError" in msg and "failed verification" in msg and SD15_LORA in msg, msg
    assert list(hub_server.models_dir("loras").iterdir()) == [] and partial_files(hub_server.base) == []


@pytest.mark.every_host
def test_download_into_a_full_disk_is_refused(hub_server):
    loras_dir = hub_server.models_dir("loras")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(loras_dir)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip()}): full-disk case not run")
    try:
        msg = execution_error(hub_server.run(lora_prompt(download="if missing", strength=0.8)))
        assert "NotEnoughSpaceError" in msg and str(loras_dir) in msg, msg
        assert list(loras_dir.iterdir()) == []
    finally:
        subprocess.run(["umount", str(loras_dir)], check=False)
    assert hub_server.alive()
    hub_server.run_ok(prompts.sampler_custom_prompt(SD15_CKPT, steps=1, size=64, prefix="after-full-disk"))
