"""Workflows made for ComfyUI-TCD and for the official one-step scheduler, on a real ComfyUI server: with
this pack alone they validate and run; with ComfyUI-TCD installed next to it, ComfyUI-TCD's node is the
one used and the pack says so in the log. Skipped with a message without ComfyUI (COMFYUI_PATH) or the
upstream snapshot. Random SD1.5 weights, 128 px, 1-2 steps."""
import numpy as np
import pytest

from host import PACK_FOLDER, ComfyServer, import_comfy
from test_compat import OFFICIAL_INPUTS, TCD_ID, UNET_ID, unpack_comfyui_tcd, without_tooltips

PACK_MODULE = f"custom_nodes.{PACK_FOLDER}"
TCD_INPUTS = ["model", "steps", "scheduler", "denoise", "eta"]


@pytest.fixture(scope="module")
def sd15(comfy_server):
    import_comfy()
    import models
    return comfy_server.add_model("checkpoints", models.sd15_checkpoint(), "random-sd15.safetensors")


def image(path):
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def base_nodes(ckpt, size=128):
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk", "clip": ["ckpt", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["ckpt", 1]}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
    }


def sample_node(model, sampler, sigmas, seed):
    return {"class_type": "SamplerCustom", "inputs": {
        "model": model, "add_noise": True, "noise_seed": seed, "cfg": 1.0, "positive": ["pos", 0],
        "negative": ["neg", 0], "sampler": sampler, "sigmas": sigmas, "latent_image": ["latent", 0]}}


def comfyui_tcd_prompt(ckpt, steps=2, eta=0.3, seed=3, prefix="compat-tcd"):
    """The graph ComfyUI-TCD's README shows: its node's MODEL, SAMPLER and SIGMAS into SamplerCustom."""
    nodes = base_nodes(ckpt)
    nodes["tcd"] = {"class_type": TCD_ID, "inputs": {"model": ["ckpt", 0], "steps": steps, "scheduler": "simple",
                                                     "denoise": 1.0, "eta": eta}}
    nodes["sample"] = sample_node(["tcd", 0], ["tcd", 1], ["tcd", 2], seed)
    nodes["save"] = {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": prefix}}
    return nodes


def official_unet_prompt(ckpt, seed=3, prefix="compat-unet"):
    """The official one-step workflow's graph: its scheduler's SIGMAS and core lcm into SamplerCustom."""
    nodes = base_nodes(ckpt)
    nodes["sched"] = {"class_type": UNET_ID, "inputs": {"model": ["ckpt", 0], "steps": 1}}
    nodes["select"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "lcm"}}
    nodes["sample"] = sample_node(["ckpt", 0], ["select", 0], ["sched", 0], seed)
    nodes["save"] = {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": prefix}}
    return nodes


def strip_info(spec):
    """/object_info's required inputs as INPUT_TYPES gives them (JSON lists back to tuples, no tooltips)."""
    return without_tooltips({"required": {k: tuple(v) if len(v) > 1 else (v[0],) for k, v in spec.items()}})


def test_both_ids_are_this_packs_with_the_originals_inputs(comfy_server):
    info = comfy_server.object_info()
    for node_id in (TCD_ID, UNET_ID):
        assert info[node_id]["python_module"] == PACK_MODULE
    assert strip_info(info[UNET_ID]["input"]["required"]) == {
        "required": {k: tuple(v) for k, v in OFFICIAL_INPUTS["required"].items()}}
    assert info[UNET_ID]["input_order"]["required"] == ["model", "steps"]
    assert info[TCD_ID]["input_order"]["required"] == TCD_INPUTS
    assert info[TCD_ID]["input"]["required"]["scheduler"][0] == ["simple", "sgm_uniform"]
    assert info[TCD_ID]["output"] == ["MODEL", "SAMPLER", "SIGMAS"] and info[UNET_ID]["output"] == ["SIGMAS"]


@pytest.mark.parametrize("make", [comfyui_tcd_prompt, official_unet_prompt], ids=["comfyui-tcd", "official-unet"])
def test_their_workflows_run_with_this_pack_alone(comfy_server, sd15, make):
    entry = comfy_server.run_ok(make(sd15))
    (png,) = comfy_server.output_images(entry)
    img = image(png)
    assert img.shape == (128, 128, 3) and img.std() > 1.0 and np.isfinite(img).all()


def test_comfyui_tcd_installed_keeps_its_node_and_the_log_names_it(tmp_path):
    """ComfyUI imports custom-node folders in os.listdir order, so either pack may load first; both orders
    end with ComfyUI-TCD's node registered and a log line naming it. The other stand-in stays."""
    import_comfy()
    unpack_comfyui_tcd(tmp_path / "custom_nodes")
    server = ComfyServer(tmp_path).start()
    try:
        info = server.object_info()
        log = server.log()
    finally:
        server.stop()
    assert info[TCD_ID]["python_module"] == "custom_nodes.ComfyUI-TCD"
    assert info[TCD_ID]["display_name"] == "TCD Model Sampling Discrete"  # ComfyUI-TCD's own name
    assert "tooltip" not in info[TCD_ID]["input"]["required"]["eta"][1]
    assert info[UNET_ID]["python_module"] == PACK_MODULE
    assert f"[Hyper-SD] {TCD_ID} is" in log and "provided by custom_nodes.ComfyUI-TCD" in log, log[-3000:]
    failed = [line for line in log.splitlines() if "(IMPORT FAILED)" in line and "custom_nodes" in line]
    assert not failed, failed
