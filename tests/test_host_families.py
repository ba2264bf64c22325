"""What the pack does with the host's own model classes, noise and node categories, on every host.

* Families the host knows but Hyper-SD has no file for. ComfyUI 0.33's ``Flux2`` subclasses ``Flux`` and
  samples with the same ``ModelSamplingFlux``: a reduced FLUX.2 built from ComfyUI's own config (its detection
  of a FLUX.2 key skeleton, ``flow_models.flux_unet_config(flux2=True)``, on the meta device) is refused by the
  LoRA loader before any download, naming the model, and by the Hyper-SD Scheduler instead of getting FLUX.1's
  schedule. Other families that share a flow sampling class (Chroma, Qwen-Image on FLUX's; HiDream, WAN on
  SD3's) are refused the same way; FLUX.1-dev and SD3 keep their schedules.
* Noise: the noise the TCD sampler injects is core's own stream (``default_noise_sampler`` for the prompt's
  seed), whatever the host's seeding (since 0.7 it is seed + 1 on the CPU).
* Categories: each node sits beside the core node of its kind, in the category this host gives that node.
"""
import re
from types import SimpleNamespace

import pytest
import torch

import flow_models

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def pack(comfy_host):
    return comfy_host


def patcher(unet_config):
    """ComfyUI's own model class for ``unet_config`` on the meta device, in a ModelPatcher (no weights)."""
    import comfy.model_patcher
    _, model = flow_models.meta_model(unet_config)
    return comfy.model_patcher.ModelPatcher(model, load_device=CPU, offload_device=CPU)


def config_model(class_name, unet_config, model_type):
    """A MODEL stand-in: the host's model-config class and the sampling object ComfyUI builds for it."""
    import comfy.model_base
    import comfy.supported_models
    config = getattr(comfy.supported_models, class_name)(unet_config)
    ms = comfy.model_base.model_sampling(config, comfy.model_base.ModelType[model_type])
    return SimpleNamespace(model=SimpleNamespace(model_config=config), get_model_object=lambda name: ms)


@pytest.fixture(scope="module")
def flux2(comfy_host):
    """A reduced FLUX.2 (width 256, 1 + 1 blocks) of the host's own classes, or None on a host without FLUX.2."""
    config = flow_models.flux_unet_config(flux2=True, hidden=256, context=64, vec=0)
    return None if config is None else patcher(config)


def test_flux2_is_not_taken_for_flux1(pack, flux2):
    from hypersd_pack.nodes import modelfiles
    if flux2 is None:  # 0.3.64 and older: no FLUX.2 class to mistake
        assert modelfiles._host_class("Flux2") is None
        return
    assert type(flux2.model.model_config).__name__ == "Flux2"
    assert isinstance(flux2.model.model_config, __import__("comfy.supported_models").supported_models.Flux)
    assert modelfiles.model_family(flux2) == "FLUX.2"


@pytest.mark.parametrize("label", ["FLUX.1-dev · 8 steps", "FLUX.1-dev · 16 steps"])
def test_loader_refuses_flux2_before_any_download(pack, flux2, label, tmp_path, monkeypatch):
    """With download 'if missing' and the stand-in hub reachable, nothing is requested and nothing written."""
    import folder_paths
    from fakehub import FakeHub
    if flux2 is None:
        assert pack.nodes.modelfiles._host_class("Flux2") is None
        return
    loras = tmp_path / "loras"
    loras.mkdir()
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "loras", ([str(loras)], {".safetensors"}))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    entry = pack.core.catalog.BY_LABEL[label]
    with FakeHub({entry.filename: b"never served"}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        with pytest.raises(pack.nodes.lora.LoraMismatchError) as info:
            pack.nodes.lora.HyperSDLoraLoader().load(flux2, label, 1.0, "if missing")
        assert hub.requests == []
    message = str(info.value)
    for needle in (entry.filename, "the model is FLUX.2", "Flux2 class", "no official Hyper-SD file is for it",
                   "FLUX.1-dev"):
        assert needle in message, message
    assert list(loras.iterdir()) == []


def test_scheduler_refuses_flux2_instead_of_the_flux1_schedule(pack, flux2):
    S = pack.nodes.sampling
    if flux2 is None:
        assert pack.nodes.modelfiles._host_class("Flux2") is None
        return
    with pytest.raises(S.UnsupportedModelError) as info:
        S.HyperSDScheduler().get_sigmas(flux2, 8, 1.0, 999)
    for needle in ("FLUX.2", "Flux2 class", "FluxPipeline", "silently wrong", "Flux2Scheduler"):
        assert needle in str(info.value), str(info.value)


@pytest.mark.parametrize("class_name,unet_config,model_type,kind", [
    ("Chroma", {"image_model": "chroma"}, "FLUX", "FLUX"),
    ("QwenImage", {"image_model": "qwen_image"}, "FLUX", "FLUX"),
    ("HiDream", {"image_model": "hidream"}, "FLOW", "SD3"),
    ("WAN21_T2V", {"image_model": "wan2.1"}, "FLOW", "SD3"),
])
def test_scheduler_refuses_other_families_sharing_a_flow_sampling_class(pack, class_name, unet_config, model_type,
                                                                        kind):
    S = pack.nodes.sampling
    model = config_model(class_name, unet_config, model_type)
    assert S.sampling_time(model.get_model_object("model_sampling")).kind == kind.lower()  # the class alone passes
    with pytest.raises(S.UnsupportedModelError, match=re.escape(f"ComfyUI's {class_name} class). It samples like {kind}")):
        S.HyperSDScheduler().get_sigmas(model, 4, 1.0, 999)


def test_flux1_and_sd3_keep_their_schedules(pack):
    S = pack.nodes.sampling
    flux = patcher(flow_models.flux_unet_config())
    sigmas, = S.HyperSDScheduler().get_sigmas(flux, 8, 1.0, 999)
    assert len(sigmas) == 9 and float(sigmas[0]) == pytest.approx(1.0) and float(sigmas[-1]) == 0.0
    sd3 = config_model("SD3", flow_models.sd3_config(), "FLOW")
    sigmas, = S.HyperSDScheduler().get_sigmas(sd3, 4, 1.0, 999)
    assert [round(float(s), 4) for s in sigmas] == [1.0, 0.8577, 0.6022, 0.0089, 0.0]  # StableDiffusion3Pipeline


# ------------------------------------------------------------------------------------------------ noise


class Recorder(torch.nn.Module):
    """Stands in for the UNet: predicts eps = 0.1 x (any fixed function does), records what it is called with."""

    def __init__(self):
        super().__init__()
        self.dtype = torch.float32
        self.inputs = []

    def forward(self, x, t, context=None, **kwargs):
        self.inputs.append(x.clone())
        return 0.1 * x


def sd15_model(unet):
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models
    base = comfy.model_base.BaseModel(comfy.supported_models.SD15({"disable_unet_model_creation": True}),
                                      model_type=comfy.model_base.ModelType.EPS, device=CPU)
    base.diffusion_model = unet
    return comfy.model_patcher.ModelPatcher(base, load_device=CPU, offload_device=CPU)


@pytest.mark.parametrize("seed", [0, 7])
def test_injected_noise_is_cores_stream_for_the_seed(pack, seed):
    """Two TCD steps at eta 1 through SamplerCustom's code path: from what the model saw at each call, the noise
    added between them is recovered exactly and equals the first draw of core's default_noise_sampler for the
    prompt's seed (a copy of core's old seeding would give the start noise again on 0.7+)."""
    import comfy.k_diffusion.sampling
    import comfy.sample
    S, tcd = pack.nodes.sampling, pack.samplers.tcd
    unet = Recorder()
    model = sd15_model(unet)
    ms = model.get_model_object("model_sampling")
    sigmas, = S.HyperSDScheduler().get_sigmas(model, 2, 1.0, 999)
    sampler, = S.HyperSDTCDSampler().get_sampler(1.0)
    start = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(seed))
    ctx = torch.zeros(1, 77, 768)
    comfy.sample.sample_custom(model, start, 1.0, sampler, sigmas, [[ctx, {}]], [[ctx, {}]],
                               torch.zeros_like(start), seed=seed, disable_pbar=True)
    assert len(unet.inputs) == 2  # NFE = steps
    (sigma, sigma_s, noise_factor, _), _ = tcd.tcd_plan(sigmas, ms.sigmas, 1.0)
    scale = [1.0 / (1.0 + float(s) ** 2) ** 0.5 for s in sigmas[:2]]  # ComfyUI's eps input scaling
    x0, x1 = unet.inputs[0] / scale[0], unet.inputs[1] / scale[1]
    eps = 0.1 * unet.inputs[0]
    denoised = x0 - sigma * eps
    injected = (x1 - (denoised + sigma_s * eps)) / noise_factor
    expected = comfy.k_diffusion.sampling.default_noise_sampler(start, seed=seed)(sigmas[0], sigmas[1])
    torch.testing.assert_close(injected, expected, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------------ categories


def test_nodes_sit_beside_cores(pack):
    """Each node's category is the one this host gives the core node beside it (0.3.64: loaders, sampling/
    custom_sampling/...; 0.33: model/loaders, model/sampling/...)."""
    import comfy_extras.nodes_custom_sampler as custom
    import comfy_extras.nodes_model_advanced as advanced
    import nodes
    beside = {"HyperSDLoraLoader": nodes.LoraLoader, "HyperSDUNetLoader": nodes.CheckpointLoaderSimple,
              "HyperSDTCDSampler": custom.KSamplerSelect, "HyperSDScheduler": custom.BasicScheduler,
              "HyperSDXL1StepUnetScheduler": custom.BasicScheduler,
              "TCDModelSamplingDiscrete": advanced.ModelSamplingDiscrete}
    for node_id, core in beside.items():
        assert pack.NODE_CLASS_MAPPINGS[node_id].CATEGORY == core.CATEGORY, node_id
