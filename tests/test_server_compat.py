"""Workflows made for ComfyUI-TCD and for the official one-step scheduler, on a real ComfyUI server: with
this pack alone they validate and run, ComfyUI-TCD's own example workflows (saved in its examples' PNGs)
included; with ComfyUI-TCD installed next to it, ComfyUI-TCD's node is the one used, the pack says so in
the log, and the same workflow gives the same latent on both servers where the rules are the same.
Skipped with a message without ComfyUI (COMFYUI_PATH) or the upstream snapshot. Random SD1.5 weights and
LoRAs, 64-128 px, 1-4 steps (30 in ComfyUI-TCD's high-step example)."""
import json

import numpy as np
import pytest

from host import PACK_FOLDER, ComfyServer, import_comfy
from test_compat import OFFICIAL_INPUTS, TCD_ID, UNET_ID, unpack_comfyui_tcd, without_tooltips

from hypersd_pack.workflows.runner import convert, edits

pytestmark = pytest.mark.every_host  # also run on the oldest supported host (.ci/run)

PACK_MODULE = f"custom_nodes.{PACK_FOLDER}"
TCD_INPUTS = ["model", "steps", "scheduler", "denoise", "eta"]


EXAMPLES = ("tcd_with_low_NFEs", "tcd_with_high_NFEs")  # ComfyUI-TCD's examples/*.png with a saved workflow
EXAMPLE_CKPT = "anithing_v11Pruned.safetensors"  # the checkpoint and LoRA files those workflows name
EXAMPLE_LORAS = ("tcd-lora-sdv1-5.safetensors", "lcm-lora-sdv1-5.safetensors")


def add_models(server):
    """The random SD1.5 checkpoint, and random SD1.5 LoRAs under the names ComfyUI-TCD's examples use."""
    import_comfy()
    import loras
    import models
    for seed, name in enumerate(EXAMPLE_LORAS):
        loras.write(server.models_dir("loras") / name, loras.make_lora(loras.SD15_UNET[:3], "kohya", seed=seed))
    return server.add_model("checkpoints", models.sd15_checkpoint(), "random-sd15.safetensors")


@pytest.fixture(scope="module")
def sd15(comfy_server):
    return add_models(comfy_server)


@pytest.fixture(scope="module")
def upstream_folder(tmp_path_factory):
    return unpack_comfyui_tcd(tmp_path_factory.mktemp("comfyui-tcd"))


def example_workflow(folder, name):
    """The UI-format workflow ComfyUI-TCD saved in examples/<name>.png (the PNG's 'workflow' text chunk)."""
    from PIL import Image
    with Image.open(folder / "examples" / f"{name}.png") as im:
        return json.loads(im.info["workflow"])


def example_prompt(server, folder, name, ckpt, size=64):
    """The example as the frontend would queue it (the pack's graphToPrompt port against this server's
    /object_info), on the random checkpoint at size x size."""
    prompt = convert.convert(example_workflow(folder, name), server.object_info())
    return edits.customize(prompt, size=size, models=[f"{EXAMPLE_CKPT}={ckpt}"])


def tcd_node(prompt):
    (node_id,) = [k for k, v in prompt.items() if v["class_type"] == TCD_ID]
    return node_id


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


@pytest.mark.parametrize("name", EXAMPLES)
def test_comfyui_tcds_example_workflows_run_with_this_pack_alone(comfy_server, sd15, upstream_folder, name):
    """ComfyUI-TCD's own example workflows (TCD via its node next to LCM via core's KSampler, sgm_uniform,
    4 and 30 steps, eta 0.3): converted as the frontend would, they validate and give both images. The
    30-step one runs at 6 steps here (one widget, shared through a PrimitiveNode; ~2 minutes saved)."""
    prompt = example_prompt(comfy_server, upstream_folder, name, sd15)
    tcd = prompt[tcd_node(prompt)]["inputs"]
    assert tcd["scheduler"] == "sgm_uniform" and tcd["eta"] == 0.3 and tcd["steps"] in (4, 30)
    for node in prompt.values():
        if node["inputs"].get("steps") == 30:
            node["inputs"]["steps"] = 6
    pngs = comfy_server.output_images(comfy_server.run_ok(prompt))
    assert len(pngs) == 2
    for png in pngs:
        img = image(png)
        assert img.shape == (64, 64, 3) and img.std() > 1.0


@pytest.fixture(scope="module")
def tcd_server(tmp_path_factory, upstream_folder):
    """A second server with ComfyUI-TCD installed next to the pack (its folder first or last: os.listdir)."""
    import shutil
    import_comfy()
    base = tmp_path_factory.mktemp("with-comfyui-tcd")
    shutil.copytree(upstream_folder, base / "custom_nodes" / upstream_folder.name)
    server = ComfyServer(base).start()
    yield server
    server.stop()


def test_comfyui_tcd_installed_keeps_its_node_and_the_log_names_it(tcd_server):
    """ComfyUI imports custom-node folders in os.listdir order, so either pack may load first; both orders
    end with ComfyUI-TCD's node registered and a log line naming it. The other stand-in stays."""
    info = tcd_server.object_info()
    log = tcd_server.log()
    assert info[TCD_ID]["python_module"] == "custom_nodes.ComfyUI-TCD"
    assert info[TCD_ID]["display_name"] == "TCD Model Sampling Discrete"  # ComfyUI-TCD's own name
    assert "tooltip" not in info[TCD_ID]["input"]["required"]["eta"][1]
    assert info[UNET_ID]["python_module"] == PACK_MODULE
    assert f"[Hyper-SD] {TCD_ID} is" in log and "provided by custom_nodes.ComfyUI-TCD" in log, log[-3000:]
    failed = [line for line in log.splitlines() if "(IMPORT FAILED)" in line and "custom_nodes" in line]
    assert not failed, failed


def saved_latent(server, prompt, node_id, prefix):
    """Run the prompt with a SaveLatent on SamplerCustom ``node_id``'s output; the saved latent tensor."""
    from safetensors.torch import load_file
    prompt = dict(prompt, save_latent={"class_type": "SaveLatent", "inputs": {
        "samples": [node_id, 0], "filename_prefix": f"latents/{prefix}"}})
    entry = server.run_ok(prompt)
    (item,) = entry["outputs"]["save_latent"]["latents"]
    return load_file(str(server.base / "output" / item["subfolder"] / item["filename"]))["latent_tensor"]


@pytest.mark.parametrize("denoise", [1.0, 0.6])
def test_example_workflow_gives_comfyui_tcds_latent(comfy_server, sd15, tcd_server, upstream_folder, denoise):
    """ComfyUI-TCD's low-step example with scheduler simple and eta 0 (where the rules are the same: no
    sgm_uniform interpolation, no step noise), at denoise 1 and 0.6 (an empty latent: ComfyUI's start
    noise in both): the TCD branch's latent on the pack-alone server equals the one ComfyUI-TCD's node gives
    on the other server. (At eta > 0 ComfyUI-TCD's step noise comes from torch's global generator, which on
    the CPU continues the stream the start noise was drawn from: the README's noise difference.)"""
    ckpt = add_models(tcd_server)
    latents = []
    for server, model in ((comfy_server, sd15), (tcd_server, ckpt)):
        prompt = example_prompt(server, upstream_folder, EXAMPLES[0], model)
        node = tcd_node(prompt)
        prompt[node]["inputs"].update(scheduler="simple", eta=0.0, denoise=denoise)
        (sampler,) = [k for k, v in prompt.items() if v["class_type"] == "SamplerCustom"]
        assert prompt[sampler]["inputs"]["sigmas"] == [node, 2]
        latents.append(saved_latent(server, prompt, sampler, f"tcd-{denoise}"))
    ours, theirs = latents
    assert ours.shape == theirs.shape == (1, 4, 8, 8)
    scale = theirs.abs().max().item()
    assert (ours - theirs).abs().max().item() <= 2e-5 * max(scale, 1.0), (ours - theirs).abs().max()
    assert ours.std() > 0.01
