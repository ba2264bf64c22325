"""What the pack's nodes show on the canvas: their ``ui`` output (web/js/hypersd.js draws it on the node).

In-process, on ComfyUI's own model classes:

* Hyper-SD LoRA Loader: the file and where it came from (found in a folder, or downloaded from the stand-in hub
  tests/fakehub.py), the strength applied and whether it is the recipe's, the layers the ModelPatcher really took
  out of the file's total for the UNet/transformer and the text encoder, and the recipe it outputs. Models: SDXL
  and its CLIP on the meta device (names and shapes; patches need no weights) with a kohya LoRA over
  tests/loras.py's SDXL layers; FLUX.1-dev loaded as fp8 e4m3fn (UNETLoader's way) and as GGUF Q8_0 (through
  city96/ComfyUI-GGUF), tests/flow_models.py's reduced file, with the PEFT layout of tests/flow_loras.py. The
  expected counts are the test files' own layer lists.
* Hyper-SD Scheduler: the timesteps and sigmas it produced and the shift, against diffusers run here
  (DDIMScheduler trailing, TCDScheduler, FluxPipeline's calculate_shift + FlowMatchEulerDiscreteScheduler,
  StableDiffusion3Pipeline's default scheduler).
"""
from types import SimpleNamespace

import pytest
import torch

import flow_loras
import flow_models
import loras

pytest.importorskip("diffusers")
from diffusers import DDIMScheduler, TCDScheduler  # noqa: E402

from fakehub import FakeHub  # noqa: E402
from test_flow_schedules import (SD_BETAS, diffusers_flux_sigmas, diffusers_sd3, discrete_ms, flux_at,  # noqa: E402
                                 sd3_model)

CPU = torch.device("cpu")
SDXL_LABEL, SDXL_FILE = "SDXL · 4 steps", "Hyper-SDXL-4steps-lora.safetensors"
FLUX_LABEL, FLUX_FILE = "FLUX.1-dev · 8 steps", "Hyper-FLUX.1-dev-8steps-lora.safetensors"


@pytest.fixture(scope="module")
def pack(comfy_host):
    return comfy_host.nodes


@pytest.fixture
def lora_dir(comfy_host, tmp_path, monkeypatch):
    import folder_paths
    folder = tmp_path / "models" / "loras"
    folder.mkdir(parents=True)
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "loras",
                        ([str(folder)], set(folder_paths.supported_pt_extensions)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return folder


@pytest.fixture(scope="module")
def sdxl_meta(comfy_host):
    """SDXL and its CLIP on the meta device: ComfyUI's own classes, key names and shapes, no weights."""
    import comfy.model_detection
    import comfy.model_patcher
    import comfy.sd
    import models
    config = comfy.model_detection.model_config_from_unet_config(
        comfy.model_detection.convert_config(models._UNET_CONFIGS["SDXL"]))
    with torch.device("meta"):
        base = config.get_model({})
        text = config.clip_target().clip(device="meta", dtype=torch.float16)
    clip = comfy.sd.CLIP(no_init=True)
    clip.cond_stage_model = text
    clip.patcher = comfy.model_patcher.ModelPatcher(text, load_device=CPU, offload_device=CPU)
    clip.tokenizer, clip.layer_idx, clip.tokenizer_options = None, None, {}
    clip.use_clip_schedule, clip.apply_hooks_to_conds = False, None
    return SimpleNamespace(model=comfy.model_patcher.ModelPatcher(base, load_device=CPU, offload_device=CPU),
                           clip=clip)


def shown(result, key):
    """The node's ``ui`` entry (one per run) and its result tuple."""
    assert set(result) == {"ui", "result"}
    (entry,) = result["ui"][key]
    return entry, result["result"]


def test_loader_shows_the_file_strength_layers_and_recipe(pack, sdxl_meta, lora_dir):
    lora = loras.make_lora(loras.SDXL_LAYERS, "kohya", seed=3)
    loras.write(lora_dir / SDXL_FILE, lora)
    unet, text = len(lora.unet_parts()), len(lora.text_parts())
    assert unet > 10 and text > 2
    node = pack.lora.HyperSDLoraLoader()
    info, out = shown(node.apply(sdxl_meta.model, SDXL_LABEL, 0.8, "never", sdxl_meta.clip, "custom"),
                      "hypersd_lora")
    assert out[2:] == (4, 1.0, 0.0) and out[0].patches and out[1] is not None
    assert info["file"] == SDXL_FILE and info["origin"] == "found" and info["folder"] == str(lora_dir)
    assert (info["strength"], info["strength_from"], info["recipe_strength"]) == (0.8, "custom", 1.0)
    assert info["model_layers"] == [unet, unet] and info["text_encoder_layers"] == [text, text]
    assert info["recipe"] == {"steps": 4, "cfg": 1.0, "eta": 0.0, "spacing": "trailing"}
    assert info["text"].splitlines() == [
        SDXL_FILE, f"found in {lora_dir}", "strength 0.8 (custom; the recipe's is 1)",
        f"UNet: {unet} of {unet} layers patched", f"text encoder: {text} of {text} layers patched",
        "recipe out: 4 steps, cfg 1, eta 0, spacing trailing"]
    # without a clip the text-encoder layers are counted as not applied; the recipe's strength is said so
    info, _ = shown(node.apply(sdxl_meta.model, SDXL_LABEL, 1.0, "never", None, "recipe"), "hypersd_lora")
    assert info["text_encoder_layers"] == [0, text] and info["clip_connected"] is False
    assert "strength 1 (the recipe's)" in info["text"]
    assert f"text encoder: {text} layers not applied (no clip connected)" in info["text"]
    # load() keeps returning the plain tuple (the Python API)
    assert node.load(sdxl_meta.model, SDXL_LABEL, 1.0, "never")[2:] == (4, 1.0, 0.0)


def test_loader_says_when_it_downloaded_the_file(pack, sdxl_meta, lora_dir, monkeypatch):
    import huggingface_hub.constants
    lora = loras.make_lora(loras.SDXL_UNET, "kohya", seed=4)
    data = loras.to_bytes(lora)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    with FakeHub({SDXL_FILE: data}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        info, _ = shown(pack.lora.HyperSDLoraLoader().apply(sdxl_meta.model, SDXL_LABEL, 1.0, "if missing"),
                        "hypersd_lora")
    assert info["origin"] == "downloaded" and (lora_dir / SDXL_FILE).read_bytes() == data
    assert info["text"].splitlines()[1] == f"downloaded into {lora_dir}"
    assert info["model_layers"] == [len(lora.unet_parts())] * 2


def test_patch_count_is_what_the_model_patcher_took(pack):
    """Counted from the patched ModelPatcher (a layer the patcher did not take is not counted)."""
    before = SimpleNamespace(patches={"a": [1], "b": [1, 2]})
    after = SimpleNamespace(patches={"a": [1, 3], "b": [1, 2, 3, 4, 5], "c": [6]})
    assert pack.lora.patches_added(before, after) == 1 + 3 + 1
    assert pack.lora.patches_added(before, None) == 0


def flux_lora(lora_dir):
    targets = flow_loras.flux_targets(3072, flow_models.FLUX_DEPTH, flow_models.FLUX_SINGLE)
    loras.write(lora_dir / FLUX_FILE, flow_loras.make_lora(targets))
    return len(targets)


def check_flux(pack, model, layers):
    info, out = shown(pack.lora.HyperSDLoraLoader().apply(model, FLUX_LABEL, -1.0, "never"), "hypersd_lora")
    assert info["part"] == "transformer" and info["model_layers"] == [layers, layers]
    assert info["text_encoder_layers"] == [0, 0] and (info["strength"], info["strength_from"]) == (0.125, "recipe")
    assert f"transformer: {layers} of {layers} layers patched" in info["text"]
    assert sum(len(v) for v in out[0].patches.values()) == layers


def test_loader_counts_what_fp8_flux_took(pack, lora_dir):
    import comfy.model_management
    import comfy.sd
    layers = flux_lora(lora_dir)
    model = comfy.sd.load_diffusion_model(str(flow_models.flux_dev_unet()),
                                          model_options={"dtype": torch.float8_e4m3fn})
    assert model.model.get_dtype() == torch.float8_e4m3fn
    check_flux(pack, model, layers)
    del model
    comfy.model_management.unload_all_models()


def test_loader_counts_what_gguf_flux_took(pack, lora_dir, tmp_path):
    import comfy.model_management
    import folder_paths
    from test_flux_quantized import comfyui_gguf
    gguf_nodes = comfyui_gguf(tmp_path)
    layers = flux_lora(lora_dir)
    path = flow_models.flux_dev_gguf("Q8_0")
    for key in ("unet_gguf", "unet", "diffusion_models"):
        paths, exts = folder_paths.folder_names_and_paths.get(key, ([], set()))
        folder_paths.folder_names_and_paths[key] = ([str(path.parent)] + list(paths), set(exts) | {".gguf"})
    model = gguf_nodes.NODE_CLASS_MAPPINGS["UnetLoaderGGUF"]().load_unet(path.name)[0]
    check_flux(pack, model, layers)
    del model
    comfy.model_management.unload_all_models()


class _Model:
    def __init__(self, model_sampling):
        self.ms = model_sampling

    def get_model_object(self, name):
        assert name == "model_sampling"
        return self.ms


def schedule(pack, model, steps, spacing="trailing", denoise=1.0):
    return shown(pack.sampling.HyperSDScheduler().schedule(model, steps, denoise, 999, spacing), "hypersd_schedule")


def sd_sigma(t):
    """σ of an SD1.5 training timestep from diffusers' own alphas_cumprod."""
    ac = DDIMScheduler(**SD_BETAS).alphas_cumprod[int(t)]
    return float(((1 - ac) / ac).sqrt())


@pytest.mark.parametrize("spacing,steps", [("trailing", 4), ("trailing", 3), ("tcd", 4), ("tcd", 8)])
def test_scheduler_shows_sd_timesteps_and_sigmas(pack, spacing, steps):
    if spacing == "trailing":
        ref = DDIMScheduler(**SD_BETAS, timestep_spacing="trailing")
        ref.set_timesteps(steps)
    else:
        ref = TCDScheduler(**SD_BETAS)
        ref.set_timesteps(steps)
    expected = [int(t) for t in ref.timesteps]
    info, (sigmas,) = schedule(pack, _Model(discrete_ms("SD15")), steps, spacing)
    assert info["timesteps"] == expected and info["steps"] == steps and info["shift"] is None
    assert info["sigmas"] == pytest.approx([sd_sigma(t) for t in expected] + [0.0], rel=1e-5)
    assert info["sigmas"] == pytest.approx(sigmas.tolist(), rel=1e-6)
    assert info["text"].splitlines()[:2] == [f"SD1.5/SDXL · {steps} steps · {spacing}",
                                             "timesteps: " + ", ".join(map(str, expected))]


@pytest.mark.parametrize("width,height", [(512, 512), (1024, 1024), (832, 1216)])
def test_scheduler_shows_the_flux_shift_of_the_size(pack, width, height):
    from diffusers.pipelines.flux import pipeline_flux
    mu = pipeline_flux.calculate_shift((height // 16) * (width // 16), 256, 4096, 0.5, 1.15)
    ref = diffusers_flux_sigmas(8, width, height)
    info, _ = schedule(pack, flux_at(width, height), 8)
    assert info["model"] == "FLUX" and info["shift"] == pytest.approx(mu, rel=1e-6)
    assert info["timesteps"] == pytest.approx(ref.timesteps.tolist(), abs=2e-3)
    assert info["sigmas"] == pytest.approx(ref.sigmas.tolist(), abs=1e-6)
    assert info["text"].splitlines()[0] == f"FLUX · 8 steps · shift (mu) {mu:.4g}"


def test_scheduler_shows_sd3s_shift(pack):
    ref = diffusers_sd3(4)
    info, _ = schedule(pack, sd3_model(), 4)
    assert info["model"] == "SD3" and info["shift"] == 3.0
    assert info["timesteps"] == pytest.approx(ref.timesteps.tolist(), abs=2e-3)
    assert info["sigmas"] == pytest.approx(ref.sigmas.tolist(), abs=1e-6)


def test_long_schedules_are_shortened_in_the_text_only(pack):
    info, _ = schedule(pack, _Model(discrete_ms("SD15")), 30)
    assert len(info["timesteps"]) == 30 and len(info["sigmas"]) == 31
    line = info["text"].splitlines()[1]
    assert line.count(",") == 11 and "…" in line  # 8 first, …, 3 last
