"""The pack inside a real ComfyUI server: node registration, tooltips, prompts that produce images,
reproducibility and validation of bad input. Skipped with a message naming COMFYUI_PATH without a host."""
import numpy as np
import pytest

import prompts
from host import import_comfy


@pytest.fixture(scope="module")
def sd15(comfy_server):
    import_comfy()
    import models
    return comfy_server.add_model("checkpoints", models.sd15_checkpoint(), "random-sd15.safetensors")


def image(path):
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def test_nodes_listed_with_descriptions_and_tooltips(comfy_server):
    info = comfy_server.object_info()
    for name, display in (("HyperSDTCDSampler", "Hyper-SD TCD Sampler"), ("HyperSDScheduler", "Hyper-SD Scheduler")):
        node = info[name]
        assert node["display_name"] == display
        assert node["description"]
        assert all(node["output_tooltips"])
        for spec in node["input"]["required"].values():
            assert spec[1].get("tooltip"), (name, spec)
    eta = info["HyperSDTCDSampler"]["input"]["required"]["eta"][1]
    assert "0 = deterministic" in eta["tooltip"] and "1 = fully stochastic" in eta["tooltip"]
    assert (eta["min"], eta["max"], eta["default"]) == (0.0, 1.0, 0.3)
    ks = info["KSampler"]["input"]["required"]
    assert "tcd" in ks["sampler_name"][0] and "trailing" in ks["scheduler"][0]
    assert "euler" in ks["sampler_name"][0] and "simple" in ks["scheduler"][0]  # core names untouched


def test_sampler_custom_prompt_makes_an_image(comfy_server, sd15):
    entry = comfy_server.run_ok(prompts.sampler_custom_prompt(sd15, steps=2, eta=0.3, seed=5))
    (png,) = comfy_server.output_images(entry)
    img = image(png)
    assert img.shape == (256, 256, 3)


def test_ksampler_with_tcd_and_trailing_makes_an_image(comfy_server, sd15):
    entry = comfy_server.run_ok(prompts.ksampler_prompt(sd15, steps=1, seed=3))
    (png,) = comfy_server.output_images(entry)
    assert image(png).shape == (256, 256, 3)


def test_same_seed_same_image_other_seed_differs(comfy_server, sd15):
    """Seeds 7, 8, 7 in a row (ComfyUI re-executes the third: its cache holds only the last prompt)."""
    imgs = [image(comfy_server.output_images(comfy_server.run_ok(
        prompts.sampler_custom_prompt(sd15, steps=2, eta=1.0, seed=s, prefix=f"seed{s}-{i}")))[0])
        for i, s in enumerate((7, 8, 7))]
    assert np.array_equal(imgs[0], imgs[2])
    assert np.abs(imgs[0] - imgs[1]).max() > 0


@pytest.mark.parametrize("node,field,value,expect", [
    ("tcd", "eta", 1.5, "eta"), ("tcd", "eta", -0.1, "eta"),
    ("sched", "steps", 0, "steps"), ("sched", "steps", 51, "steps"),
    ("sched", "denoise", -1.0, "denoise"),
    ("sched", "start_timestep", 1000, "start_timestep"), ("sched", "start_timestep", -5, "start_timestep"),
])
def test_out_of_range_inputs_are_rejected_by_validation(comfy_server, sd15, node, field, value, expect):
    prompt = prompts.sampler_custom_prompt(sd15, steps=1)
    prompt[node]["inputs"][field] = value
    status, body = comfy_server.post("/prompt", {"prompt": prompt})
    assert status == 400
    text = prompts.node_errors(body)
    assert expect in text and str(value) in text, text
    assert comfy_server.alive()


def test_increasing_sigmas_fail_with_a_message_and_the_server_goes_on(comfy_server, sd15):
    prompt = prompts.sampler_custom_prompt(sd15, steps=2)
    prompt["flip"] = {"class_type": "FlipSigmas", "inputs": {"sigmas": ["sched", 0]}}
    prompt["sample"]["inputs"]["sigmas"] = ["flip", 0]
    entry = comfy_server.run(prompt)
    assert entry["status"]["status_str"] == "error"
    from host import execution_error
    msg = execution_error(entry)
    assert "SIGMAS must decrease" in msg and "SamplingError" in msg, msg
    comfy_server.run_ok(prompts.sampler_custom_prompt(sd15, steps=1, prefix="after-error"))


def test_img2img_denoise_keeps_too_few_steps_is_an_execution_error(comfy_server, sd15):
    prompt = prompts.sampler_custom_prompt(sd15, steps=2, denoise=0.3)
    entry = comfy_server.run(prompt)
    from host import execution_error
    assert "denoise 0.3 with 2 steps keeps no step" in execution_error(entry)
    assert comfy_server.alive()
