"""The shipped workflows (workflows/*.json) against a real ComfyUI: valid, and each runs end to end through
the headless command (workflows/run.py) with random-weight models. Skipped, with a message naming
COMFYUI_PATH, without a host.

SD1.5, SDXL and the one-step UNet run at 256² with random weights under the workflows' file names. The
SD3 and FLUX workflows run end to end in tests/test_flow_workflows.py, on reduced models.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from host import comfyui_path, execution_error, import_comfy

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
from hypersd_pack.workflows.runner import client, convert as conversion, edits  # noqa: E402

PACK_NODES = conversion.PACK_NODES
#: The values of the frontend's control_after_generate widget, saved after a seed widget.
CONTROL_AFTER_GENERATE = {"fixed", "increment", "decrement", "randomize"}
SD_WORKFLOWS = [p for p in WORKFLOWS if "flux" not in p.stem and "sd3" not in p.stem]


def load(path):
    return json.loads(path.read_text())


def test_workflow_files_exist_for_every_recipe():
    names = {p.stem for p in WORKFLOWS}
    for expected in ("hyper-sdxl-1step-unified-tcd", "hyper-sdxl-2step-lora", "hyper-sdxl-4step-lora",
                     "hyper-sdxl-8step-lora", "hyper-sdxl-8step-cfg-lora", "hyper-sdxl-1step-unet",
                     "hyper-sdxl-4step-img2img", "hyper-sd15-1step-unified-tcd", "hyper-sd15-2step-lora",
                     "hyper-sd15-4step-lora", "hyper-sd15-8step-lora", "hyper-flux1-dev-8step-lora",
                     "hyper-flux1-dev-16step-lora", "hyper-sd3-4step-cfg-lora", "hyper-sd3-8step-cfg-lora",
                     "hyper-sd3-16step-cfg-lora"):
        assert expected in names


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_metadata(path):
    """Models list, Note node, registry id/version in every node's properties, string seed markers."""
    wf = load(path)
    assert wf["models"] and all({"name", "url", "directory"} <= set(m) for m in wf["models"])
    assert all(m["url"].startswith("https://huggingface.co/") for m in wf["models"])
    assert any(n["type"] == "Note" for n in wf["nodes"])
    import tomllib
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for node in wf["nodes"]:
        if node["type"] in PACK_NODES:
            assert node["properties"]["cnr_id"] == project["name"] and node["properties"]["ver"] == project["version"]
        elif node["type"] != "Note":
            assert node["properties"]["cnr_id"] == "comfy-core"
        if node["type"] in ("SamplerCustom", "KSampler"):
            assert node["widgets_values"][2] in CONTROL_AFTER_GENERATE  # after noise_seed
    size = 512 if "sd15" in path.stem else 1024
    sizes = [n["widgets_values"][0 if n["type"] != "ImageScale" else 1] for n in wf["nodes"]
             if n["type"] in ("EmptyLatentImage", "EmptySD3LatentImage", "ImageScale")]
    assert sizes
    assert all(s == size for s in sizes)


@pytest.fixture(scope="module")
def server(comfy_server):
    import_comfy()
    import loras
    import models
    srv = comfy_server
    srv.post("/free", {"unload_models": True, "free_memory": True})
    srv.add_model("checkpoints", models.sd15_checkpoint(), "v1-5-pruned-emaonly-fp16.safetensors")
    srv.add_model("checkpoints", models.sdxl_checkpoint(), "sd_xl_base_1.0.safetensors")
    srv.add_model("checkpoints", models.sdxl_checkpoint(), "Hyper-SDXL-1step-Unet-Comfyui.fp16.safetensors")
    lora_dir = srv.models_dir("loras")
    for n, name in ((1, "1step"), (2, "2steps"), (4, "4steps"), (8, "8steps"), (8, "8steps-CFG")):
        loras.write(lora_dir / f"Hyper-SDXL-{name}-lora.safetensors",
                    loras.make_lora(loras.SDXL_UNET, "kohya", seed=n, std=0.01))
        loras.write(lora_dir / f"Hyper-SD15-{name}-lora.safetensors",
                    loras.make_lora(loras.SD15_UNET, "kohya", seed=n, std=0.01))
    shutil.copy(comfyui_path() / "input" / "example.png",
                srv.base / "input" / "example.png")
    yield srv
    srv.post("/free", {"unload_models": True, "free_memory": True})


@pytest.mark.parametrize("path", SD_WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_is_valid_for_the_server(server, path):
    """Every node type exists, every link's types match, the server's validation accepts the values and the
    prompt runs (at 64²; the HEADLESS ones run through the command below instead, at 256²)."""
    info = server.object_info()
    wf = load(path)
    nodes = {n["id"]: n for n in wf["nodes"]}
    for node in wf["nodes"]:
        assert node["type"] in info or node["type"] == "Note", node["type"]
    for link_id, src, slot, dst, dst_slot, typ in wf["links"]:
        out_type = info[nodes[src]["type"]]["output"][slot]
        target = nodes[dst]["inputs"][dst_slot]
        spec = {**info[nodes[dst]["type"]]["input"]["required"],
                **info[nodes[dst]["type"]]["input"].get("optional", {})}[target["name"]]
        assert typ == out_type == spec[0] and target["link"] == link_id, (path.stem, link_id)
    if path.stem in HEADLESS:
        return  # queued, validated and run by test_workflow_runs_through_the_headless_command
    prompt = edits.customize(conversion.convert(wf, info), size=64)  # shipped sizes are in range; 64² runs fast
    status, body = server.post("/prompt", {"prompt": prompt})
    assert status == 200, body
    entry = server.wait(body["prompt_id"], timeout=900)
    assert entry["status"]["status_str"] == "success", execution_error(entry)


#: Every SD workflow runs once: on the server above at 64², or one of each kind through the headless command at
#: 256²: the unified TCD LoRA (SD1.5), the README's main job (SDXL 4 steps), the one-step UNet and img2img.
HEADLESS = ("hyper-sd15-1step-unified-tcd", "hyper-sdxl-4step-lora", "hyper-sdxl-1step-unet",
            "hyper-sdxl-4step-img2img")


@pytest.mark.parametrize("path", [p for p in SD_WORKFLOWS if p.stem in HEADLESS], ids=lambda p: p.stem)
def test_workflow_runs_through_the_headless_command(server, path, tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "workflows" / "run.py"), str(path), "--server", server.url,
                           "--prompt", "a small test image", "--seed", "3", "--size", "256",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    images = [Path(line) for line in proc.stdout.splitlines() if line.endswith(".png")]
    assert len(images) == 1 and images[0].is_file()
    assert_real_image(images[0], 256)
    assert "queued" in proc.stdout and "running node" in proc.stdout


def assert_real_image(path, size):
    """A decoded image of the size asked for, finite and not one flat colour (random weights give noise-like
    pictures, never a constant one unless the sampler or the decode broke)."""
    import numpy as np
    from PIL import Image
    with Image.open(path) as im:
        assert im.size == (size, size)
        px = np.asarray(im.convert("RGB"), dtype=np.float64)
    assert np.isfinite(px).all()
    assert px.std() > 1.0 and len(np.unique(px.reshape(-1, 3), axis=0)) > 16, f"{path}: a flat image"


def test_committed_workflows_equal_the_builder(server):
    """workflows/*.json are what workflows/build.py writes from the server's /object_info (regenerate with
    `python workflows/build.py` after changing a node's inputs or the builder)."""
    from hypersd_pack.workflows import build
    built = build.build_all(server.object_info())
    assert sorted(built) == sorted(p.stem for p in WORKFLOWS)
    for path in WORKFLOWS:
        assert load(path) == json.loads(json.dumps(built[path.stem], ensure_ascii=False)), \
            f"{path.name} differs from the builder's output: run python workflows/build.py"


def test_workflow_with_reroute_runs(server, tmp_path):
    """The workflow as the frontend saved it after a Reroute node was spliced into a link (recorded in
    tests/data/frontend_prompts.json) runs through the headless command."""
    from oracle import GOLDEN
    saved = next(r["workflow"] for r in json.loads(GOLDEN.read_text())["results"]
                 if r["name"] == "hyper-sd15-4step-lora" and r["variant"] == "reroute")
    assert any(n["type"] == "Reroute" for n in saved["nodes"])
    path = tmp_path / "with-reroute.json"
    path.write_text(json.dumps(saved))
    proc = subprocess.run([sys.executable, str(REPO / "workflows" / "run.py"), str(path), "--server", server.url,
                           "--seed", "3", "--size", "256", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    images = [Path(line) for line in proc.stdout.splitlines() if line.endswith(".png")]
    assert len(images) == 1
    assert_real_image(images[0], 256)


def test_validation_message_names_node_input_and_link(server):
    """A link to a node the prompt lacks: the message names the node, the input the server names, and the
    missing node."""
    wf = load(REPO / "workflows" / "hyper-sd15-4step-lora.json")
    prompt = edits.customize(conversion.convert(wf, server.object_info()), size=64)
    lora_id = next(k for k, v in prompt.items() if v["class_type"] == "HyperSDLoraLoader")
    prompt[lora_id]["inputs"]["model"] = ["99", 0]
    status, body = server.post("/prompt", {"prompt": prompt})
    assert status == 400
    msg = client.validation_message(body, wf, prompt)
    assert f"node {lora_id} (" in msg and "HyperSDLoraLoader" in msg and "input 'model'" in msg, msg
    assert "node 99" in msg and "does not hold" in msg, msg


def test_headless_command_errors(server, tmp_path):
    wf_path = REPO / "workflows" / "hyper-sd15-1step-unified-tcd.json"
    cmd = [sys.executable, str(REPO / "workflows" / "run.py"), str(wf_path), "--size", "256", "--out", str(tmp_path)]
    unreachable = subprocess.run(cmd + ["--server", "http://127.0.0.1:9"], capture_output=True, text=True)
    assert unreachable.returncode == 2 and "unreachable" in unreachable.stderr
    missing = subprocess.run(cmd + ["--server", server.url, "--model",
                                    "v1-5-pruned-emaonly-fp16.safetensors=nope.safetensors"],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "ckpt_name" in missing.stderr and "nope.safetensors" in missing.stderr
    wf = load(wf_path)
    wf["nodes"][0]["type"] = "HyperSDNoSuchNode"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(wf))
    unknown = subprocess.run([sys.executable, str(REPO / "workflows" / "run.py"), str(bad), "--server", server.url],
                             capture_output=True, text=True)
    assert unknown.returncode == 2 and "HyperSDNoSuchNode" in unknown.stderr


def test_missing_model_names_file_folder_and_url(server):
    wf = load(REPO / "workflows" / "hyper-sdxl-4step-lora.json")
    prompt = edits.customize(conversion.convert(wf, server.object_info()), models=[
        "sd_xl_base_1.0.safetensors=sd_xl_base_1.0_missing.safetensors"])
    for node in prompt.values():  # the workflow's own name is missing on this server
        if node["class_type"] == "CheckpointLoaderSimple":
            node["inputs"]["ckpt_name"] = "sd_xl_base_1.0.safetensors"
    server.models_dir("checkpoints").joinpath("sd_xl_base_1.0.safetensors").rename(
        server.models_dir("checkpoints") / "moved.safetensors")
    try:
        status, body = server.post("/prompt", {"prompt": prompt})
        assert status == 400
        msg = client.validation_message(body, wf)
        assert "missing model sd_xl_base_1.0.safetensors" in msg and "models/checkpoints" in msg
        assert "stabilityai/stable-diffusion-xl-base-1.0" in msg
    finally:
        server.models_dir("checkpoints").joinpath("moved.safetensors").rename(
            server.models_dir("checkpoints") / "sd_xl_base_1.0.safetensors")
