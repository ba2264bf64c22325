"""The pack inside a real ComfyUI server: node registration, tooltips, prompts whose latents equal
diffusers' own loop on the same checkpoint, reproducibility. Bad input is in test_bad_inputs.py (one
table). Skipped with a message naming COMFYUI_PATH without a host."""
import numpy as np
import pytest

import prompts
import reference
from host import import_comfy
from pixels import load_image, real_image, real_latent

pytestmark = pytest.mark.every_host  # also run on the oldest supported host (.ci/run)


@pytest.fixture(scope="module")
def sd15(comfy_server):
    import_comfy()
    import models
    return comfy_server.add_model("checkpoints", models.sd15_checkpoint(), "random-sd15.safetensors")


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


def saved_latent(server, entry, node="savelatent"):
    (item,) = entry["outputs"][node]["latents"]
    return reference.latent_file(server.base / "output" / item.get("subfolder", "") / item["filename"])


def with_latent_output(prompt, prefix):
    prompt["savelatent"] = {"class_type": "SaveLatent",
                            "inputs": {"samples": ["sample", 0], "filename_prefix": f"latents/{prefix}"}}
    return prompt


@pytest.fixture(scope="module")
def golden(sd15):
    """diffusers' DDIM-trailing latents (the N-step recipe) for the random SD1.5 checkpoint, by steps."""
    import models
    model, clip = reference.load_sd15(models.sd15_checkpoint())
    out = {steps: reference.ddim_trailing_latent(model, clip, prompts.POSITIVE, seed=5, steps=steps, size=256)
           for steps in (1, 2)}
    del model, clip
    return out


def assert_close(latent, ref):
    err = ((latent - ref).abs() / ref.abs().clamp(min=1.0)).max().item()
    assert err <= 1e-3, f"server latent differs from diffusers' by {err}"


def test_sampler_custom_prompt_equals_diffusers(comfy_server, sd15, golden):
    """Hyper-SD Scheduler + TCD (eta 0) in SamplerCustom = diffusers' DDIM trailing, on the real UNet."""
    prompt = with_latent_output(prompts.sampler_custom_prompt(sd15, steps=2, eta=0.0, seed=5), "custom")
    entry = comfy_server.run_ok(prompt)
    (png,) = comfy_server.output_images(entry)
    real_image(png, 256)
    assert_close(real_latent(saved_latent(comfy_server, entry)), golden[2])


def test_ksampler_with_tcd_and_trailing_equals_diffusers(comfy_server, sd15, golden):
    """KSampler's 'tcd' sampler and 'trailing' scheduler, 1 step (eta has no effect at 1 step)."""
    prompt = with_latent_output(prompts.ksampler_prompt(sd15, steps=1, seed=5), "ksampler")
    entry = comfy_server.run_ok(prompt)
    (png,) = comfy_server.output_images(entry)
    real_image(png, 256)
    assert_close(real_latent(saved_latent(comfy_server, entry)), golden[1])


def test_same_seed_same_image_other_seed_differs(comfy_server, sd15):
    """Seeds 7, 8, 7 in a row (ComfyUI re-executes the third: its cache holds only the last prompt)."""
    imgs = [load_image(comfy_server.output_images(comfy_server.run_ok(
        prompts.sampler_custom_prompt(sd15, steps=2, eta=1.0, seed=s, prefix=f"seed{s}-{i}")))[0])
        for i, s in enumerate((7, 8, 7))]
    real_image(imgs[0])
    assert np.array_equal(imgs[0], imgs[2])
    assert np.abs(imgs[0] - imgs[1]).max() > 0
