"""Every family's schedule on ComfyUI's real model classes, against diffusers run in the test.

The sampling objects are ComfyUI's own: ``comfy.model_base.Flux`` / ``SD3`` / ``BaseModel`` built from the
``comfy.supported_models`` configs (FLUX.1-dev, SD3, SD1.5, SDXL), patched by ComfyUI's own ModelSamplingFlux
/ ModelSamplingSD3 nodes where the recipe uses them. Only the network is an analytic stand-in (the schedule
and the sampler never look inside it). Golden values: FluxPipeline's ``calculate_shift`` +
FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline's default scheduler, DDIMScheduler trailing,
TCDScheduler and the flow img2img pipelines' ``get_timesteps``. Skipped (naming COMFYUI_PATH) without ComfyUI.
"""
import pytest
import torch

pytestmark = pytest.mark.every_host  # also run on the oldest supported host (.ci/run)

pytest.importorskip("diffusers")
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler, TCDScheduler  # noqa: E402
from diffusers.pipelines.flux import pipeline_flux, pipeline_flux_img2img  # noqa: E402
from diffusers.pipelines.stable_diffusion_3 import pipeline_stable_diffusion_3_img2img as sd3_img2img  # noqa: E402

# FLUX.1-dev's scheduler config (black-forest-labs/FLUX.1-dev, scheduler/scheduler_config.json).
FLUX_SCHEDULER = dict(base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096, max_shift=1.15,
                      num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True)
SD_BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
SIZES = [(512, 512), (1024, 1024), (832, 1216)]
STEPS = list(range(1, 17))


class AnalyticDiT(torch.nn.Module):
    """Stands in for the FLUX/SD3 transformer: a fixed velocity field of (x, sigma), counting calls.

    ``scale`` is the family's timestep unit (FLUX receives sigma, SD3 sigma * 1000), as the real networks.
    """

    def __init__(self, scale):
        super().__init__()
        self.scale, self.calls, self.dtype = scale, 0, torch.float32

    def forward(self, x, t, context=None, **kwargs):
        self.calls += 1
        return velocity(x, t.float() / self.scale)


def velocity(x, sigma):
    s = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1, 1, 1, 1)
    return 0.6 * torch.tanh(x * (1.0 + s)) - 0.4 * x.flip(-1) + 0.3 * torch.cos(5 * s)


@pytest.fixture(scope="module")
def pack(comfy_host):
    return comfy_host


def patcher(base):
    import comfy.model_patcher
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(base, load_device=cpu, offload_device=cpu)


def flux_model():
    """comfy.model_base.Flux from the FLUX.1-dev config (guidance embedding), analytic network."""
    import comfy.model_base
    import comfy.supported_models
    cfg = comfy.supported_models.Flux({"image_model": "flux", "guidance_embed": True, "in_channels": 16,
                                       "out_channels": 16, "disable_unet_model_creation": True})
    base = comfy.model_base.Flux(cfg, device=torch.device("cpu"))
    base.diffusion_model = AnalyticDiT(1.0)
    return patcher(base)


def sd3_model():
    import comfy.model_base
    import comfy.supported_models
    cfg = comfy.supported_models.SD3({"in_channels": 16, "pos_embed_scaling_factor": None,
                                     "disable_unet_model_creation": True})
    base = comfy.model_base.SD3(cfg, device=torch.device("cpu"))
    base.diffusion_model = AnalyticDiT(1000.0)
    return patcher(base)


def discrete_ms(family):
    import comfy.model_base
    import comfy.supported_models
    cfg = getattr(comfy.supported_models, family)({"disable_unet_model_creation": True})
    return comfy.model_base.model_sampling(cfg, comfy.model_base.ModelType.EPS)


def flux_at(width, height):
    """The FLUX model as the workflows wire it: ComfyUI's ModelSamplingFlux node with the image size."""
    import comfy_extras.nodes_model_advanced as adv
    return adv.ModelSamplingFlux().patch(flux_model(), 1.15, 0.5, width, height)[0]


def ms_of(model):
    return model.get_model_object("model_sampling")


def diffusers_flux_sigmas(steps, width, height):
    """FluxPipeline.__call__'s schedule: sigmas linspace(1, 1/N, N) and mu from the packed latent's tokens."""
    import numpy as np
    seq_len = (height // 16) * (width // 16)
    mu = pipeline_flux.calculate_shift(seq_len, 256, 4096, 0.5, 1.15)
    sch = FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER)
    sch.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    return sch


def diffusers_sd3(steps, shift=3.0):
    sch = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    sch.set_timesteps(steps)
    return sch


def assert_sigmas(ours, ref, tol=1e-5):
    ours, ref = torch.as_tensor(ours, dtype=torch.float32).cpu(), torch.as_tensor(ref, dtype=torch.float32)
    assert ours.shape == ref.shape, (ours.tolist(), ref.tolist())
    err = (ours - ref).abs().max().item()
    assert err <= tol, f"max error {err:.3g} > {tol}\nours {ours.tolist()}\nref  {ref.tolist()}"


def node_sigmas(pack, model, steps, denoise=1.0, start=999, spacing="trailing"):
    return pack.nodes.sampling.HyperSDScheduler().get_sigmas(model, steps, denoise, start, spacing)[0]


def ksampler_sigmas(model, name, steps):
    import comfy.samplers
    return comfy.samplers.calculate_sigmas(ms_of(model) if hasattr(model, "get_model_object") else model,
                                           name, steps).cpu()


# ------------------------------------------------------------------------------------------------ FLUX


@pytest.mark.parametrize("width,height", SIZES)
def test_flux_schedule_equals_flux_pipeline(pack, width, height):
    model = flux_at(width, height)
    for steps in STEPS:
        ref = diffusers_flux_sigmas(steps, width, height).sigmas
        assert_sigmas(node_sigmas(pack, model, steps), ref)
        assert_sigmas(ksampler_sigmas(model, "trailing", steps), ref)


def test_flux_default_shift_is_1024_and_issue_values(pack):
    """Without the ModelSamplingFlux node the model's own default (1.15) is diffusers' 1024x1024 mu."""
    model = flux_model()
    ref = diffusers_flux_sigmas(8, 1024, 1024).sigmas
    assert_sigmas(node_sigmas(pack, model, 8), ref)
    # The values the issue quotes from diffusers (and not the broken 1.4627, 1.4626, ...).
    assert_sigmas(node_sigmas(pack, model, 8),
                  [1.0, 0.9567, 0.9045, 0.8403, 0.7595, 0.6546, 0.5128, 0.3109, 0.0], tol=1e-4)


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 8, 16])
@pytest.mark.parametrize("strength", [0.1, 0.3, 0.5, 0.6, 0.75, 0.9])
def test_flux_img2img_equals_flux_img2img_pipeline(pack, steps, strength):
    width, height = 832, 1216
    sch = diffusers_flux_sigmas(steps, width, height)
    pipe = type("P", (), {"scheduler": sch})()
    timesteps, n = pipeline_flux_img2img.FluxImg2ImgPipeline.get_timesteps(pipe, steps, strength, "cpu")
    ours = node_sigmas(pack, flux_at(width, height), steps, denoise=strength)
    assert len(ours) == n + 1
    assert_sigmas(ours, torch.cat([timesteps / 1000, torch.zeros(1)]))


# ------------------------------------------------------------------------------------------------ SD3


def test_sd3_schedule_equals_sd3_pipeline_default(pack):
    model = sd3_model()
    assert ms_of(model).shift == 3.0  # the SD3 config's own shift
    for steps in STEPS:
        ref = diffusers_sd3(steps).sigmas
        assert_sigmas(node_sigmas(pack, model, steps), ref, tol=2e-6)
        assert_sigmas(ksampler_sigmas(model, "trailing", steps), ref, tol=2e-6)
    assert_sigmas(node_sigmas(pack, model, 4), [1.0, 0.8577, 0.6022, 0.0089, 0.0], tol=1e-4)


@pytest.mark.parametrize("shift", [1.0, 2.0, 6.0])
def test_sd3_follows_model_sampling_sd3_shift(pack, shift):
    import comfy_extras.nodes_model_advanced as adv
    model = adv.ModelSamplingSD3().patch(sd3_model(), shift)[0]
    for steps in (1, 4, 8, 16):
        ref = diffusers_sd3(steps, shift).sigmas
        assert_sigmas(node_sigmas(pack, model, steps), ref, tol=2e-6)
        assert_sigmas(ksampler_sigmas(model, "trailing", steps), ref, tol=2e-6)


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 8, 16])
@pytest.mark.parametrize("strength", [0.1, 0.125, 0.3, 0.5, 0.7, 0.75, 1.0])
def test_sd3_img2img_equals_sd3_img2img_pipeline(pack, steps, strength):
    sch = diffusers_sd3(steps)
    pipe = type("P", (), {"scheduler": sch})()
    timesteps, n = sd3_img2img.StableDiffusion3Img2ImgPipeline.get_timesteps(pipe, steps, strength, "cpu")
    ours = node_sigmas(pack, sd3_model(), steps, denoise=strength)
    assert len(ours) == n + 1
    assert_sigmas(ours, torch.cat([timesteps / 1000, torch.zeros(1)]), tol=2e-6)


# ------------------------------------------------------------------------------------------ SD1.5 / SDXL


def diffusers_discrete_sigmas(timesteps):
    """sigma = sqrt((1 - abar) / abar) at the given timesteps, abar from diffusers' own scheduler."""
    abar = DDIMScheduler(**SD_BETAS).alphas_cumprod.to(torch.float64)
    t = torch.as_tensor([int(x) for x in timesteps])
    return torch.cat([((1 - abar[t]) / abar[t]).sqrt(), torch.zeros(1, dtype=torch.float64)])


def assert_discrete(ms, sigmas, timesteps):
    """The sigmas sit exactly at diffusers' integer timesteps (the model sees them) and have its values."""
    assert [int(ms.timestep(s)) for s in sigmas[:-1]] == [int(t) for t in timesteps]
    ref = diffusers_discrete_sigmas(timesteps)
    err = ((sigmas.double() - ref).abs() / ref.clamp(min=1.0)).max().item()
    assert err < 1e-5 and float(sigmas[-1]) == 0.0, (sigmas.tolist(), ref.tolist())


class _Model:
    """A MODEL-like wrapper around a bare sampling object, for the scheduler node."""

    def __init__(self, ms):
        self.ms = ms

    def get_model_object(self, name):
        assert name == "model_sampling"
        return self.ms


@pytest.mark.parametrize("family", ["SD15", "SDXL"])
def test_discrete_trailing_equals_ddim_trailing(pack, family):
    ms = discrete_ms(family)
    for steps in list(range(1, 17)) + [20, 25, 50]:
        ddim = DDIMScheduler(**SD_BETAS, timestep_spacing="trailing", set_alpha_to_one=False)
        ddim.set_timesteps(steps)
        assert_discrete(ms, ksampler_sigmas(ms, "trailing", steps), ddim.timesteps)
        assert_discrete(ms, node_sigmas(pack, _Model(ms), steps), ddim.timesteps)


@pytest.mark.parametrize("family", ["SD15", "SDXL"])
def test_tcd_spacing_equals_tcd_scheduler(pack, family):
    ms = discrete_ms(family)
    for steps in range(1, 17):
        sch = TCDScheduler(**SD_BETAS)
        sch.set_timesteps(steps)
        assert_discrete(ms, ksampler_sigmas(ms, "tcd", steps), sch.timesteps)
        assert_discrete(ms, node_sigmas(pack, _Model(ms), steps, spacing="tcd"), sch.timesteps)
    assert [int(ms.timestep(s)) for s in node_sigmas(pack, _Model(ms), 4, spacing="tcd")[:-1]] == [999, 759, 499, 259]


@pytest.mark.parametrize("steps", [1, 2, 4, 8])
@pytest.mark.parametrize("strength", [0.2, 0.5, 0.58, 0.75, 0.9])
def test_tcd_spacing_img2img_is_tcd_scheduler_strength(pack, steps, strength):
    ms = discrete_ms("SD15")
    sch = TCDScheduler(**SD_BETAS)
    sch.set_timesteps(steps, strength=strength)
    assert_discrete(ms, node_sigmas(pack, _Model(ms), steps, denoise=strength, spacing="tcd"), sch.timesteps)


def test_tcd_spacing_rejects_what_tcd_scheduler_rejects(pack):
    ms = discrete_ms("SD15")
    with pytest.raises(ValueError, match="smaller than"):
        TCDScheduler(**SD_BETAS).set_timesteps(8, strength=0.1)
    with pytest.raises(pack.samplers.schedules.ScheduleError, match="denoise 0.1 keeps 5 .* fewer than steps 8"):
        node_sigmas(pack, _Model(ms), 8, denoise=0.1, spacing="tcd")
    with pytest.raises(pack.samplers.schedules.ScheduleError, match="start_timestep 800 with spacing 'tcd'"):
        node_sigmas(pack, _Model(ms), 1, start=800, spacing="tcd")
    assert node_sigmas(pack, _Model(ms), 4, denoise=0.0, spacing="tcd").numel() == 0


# ------------------------------------------------------------------------------- unknown sampling classes


def _custom_flux_class():
    import comfy.model_sampling as M

    class MyFluxSampling(M.ModelSamplingFlux, M.CONST):
        def sigma(self, timestep):  # a custom time scale: t in [0, 1000]
            return super().sigma(timestep / 1000.0)

    return MyFluxSampling()


def _unknown_samplings():
    import comfy.model_base
    import comfy.model_sampling as M
    import comfy.supported_models as sm
    schnell = sm.FluxSchnell({"image_model": "flux", "guidance_embed": False, "disable_unet_model_creation": True})
    sd15 = sm.SD15({"disable_unet_model_creation": True})

    class Discrete2000(M.ModelSamplingDiscrete, M.EPS):
        pass

    long_grid = Discrete2000()
    long_grid._register_schedule(beta_schedule="linear", timesteps=2000, linear_start=0.00085, linear_end=0.012)

    class Distilled(M.ModelSamplingDiscrete, M.EPS):  # replaces sigma(): an unknown time scale
        def sigma(self, timestep):
            return super().sigma(timestep * 20)

    class ZeroShift(M.ModelSamplingDiscreteFlow, M.CONST):  # ComfyUI's own class, but sigma(1000) is not 1
        pass

    zero_shift = ZeroShift()
    zero_shift.set_parameters(shift=0.0)
    return [
        ("SD3 sampling with shift 0", zero_shift, "shift 0.0"),
        ("FLUX.1-schnell (ModelSamplingDiscreteFlow, multiplier 1)",
         comfy.model_base.model_sampling(schnell, comfy.model_base.ModelType.FLOW), "multiplier 1"),
        ("custom flow class", _custom_flux_class(), "MyFluxSampling"),
        ("discrete, 2000 timesteps", long_grid, "2000 training timesteps"),
        ("discrete, own sigma()", Distilled(), "Distilled"),
        ("EDM", comfy.model_base.model_sampling(sd15, comfy.model_base.ModelType.EDM), "ModelSamplingContinuousEDM"),
    ]


def test_unknown_sampling_classes_get_a_typed_error_naming_the_class(pack):
    S = pack.nodes.sampling
    cases = _unknown_samplings()
    for what, ms, detail in cases:
        for spacing in ("trailing", "tcd"):
            with pytest.raises(S.UnsupportedModelError, match=detail) as err:
                node_sigmas(pack, _Model(ms), 4, spacing=spacing)
            assert type(ms).__name__ in str(err.value), what
        with pytest.raises(S.UnsupportedModelError, match=detail):
            ksampler_sigmas(ms, "trailing", 4)


def test_flow_models_refuse_tcd_spacing_and_other_starts(pack):
    ScheduleError = pack.samplers.schedules.ScheduleError
    for model, family in ((flux_model(), "FLUX"), (sd3_model(), "SD3")):
        with pytest.raises(ScheduleError, match=f"flow model \\({family}\\).*spacing 'trailing'"):
            node_sigmas(pack, model, 4, spacing="tcd")
        with pytest.raises(ScheduleError, match="start_timestep 800 on a flow model"):
            node_sigmas(pack, model, 4, start=800)


# ---------------------------------------------------------------------- the sampler on flow model classes


def comfy_sample(model, sampler, sigmas, noise, latent=None, seed=0, cond=None):
    """SamplerCustom's code path (comfy.sample.sample_custom), returned in the model's latent space."""
    import comfy.sample
    ctx = torch.zeros(1, 16, 64)
    cond = [[ctx, dict(cond or {})]]
    latent = torch.zeros_like(noise) if latent is None else latent
    out = comfy.sample.sample_custom(model, noise, 1.0, sampler, sigmas, cond, cond,
                                     model.model.process_latent_out(latent), seed=seed, disable_pbar=True)
    return model.model.process_latent_in(out)


def diffusers_flow_euler(sch, start, begin=0):
    """FlowMatchEulerDiscreteScheduler.step over the scheduler's timesteps on the same velocity field."""
    sample = start.clone()
    sch.set_begin_index(begin)
    for t in sch.timesteps[begin:]:
        sample = sch.step(velocity(sample, t / 1000.0), t, sample).prev_sample
    return sample


def close(ours, ref, tol=1e-5):
    err = ((ours - ref).abs() / ref.abs().clamp(min=1.0)).max().item()
    assert torch.isfinite(ours).all() and err <= tol, f"max scaled error {err:.3g} > {tol}"


FLUX_COND = {"pooled_output": torch.zeros(1, 768), "guidance": 3.5}
SD3_COND = {"pooled_output": torch.zeros(1, 2048)}


@pytest.mark.parametrize("steps", [1, 4, 8, 16])
@pytest.mark.parametrize("family", ["FLUX", "SD3"])
def test_tcd_eta0_on_flow_models_is_diffusers_flow_match_euler(pack, family, steps):
    S = pack.nodes.sampling
    if family == "FLUX":
        model, cond, sch = flux_at(512, 512), FLUX_COND, diffusers_flux_sigmas(steps, 512, 512)
    else:
        model, cond, sch = sd3_model(), SD3_COND, diffusers_sd3(steps)
    noise = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(steps))
    sigmas = node_sigmas(pack, model, steps)
    ours = comfy_sample(model, S.HyperSDTCDSampler().get_sampler(0.0)[0], sigmas, noise, cond=cond)
    assert model.model.diffusion_model.calls == steps  # NFE = steps
    ref = diffusers_flow_euler(sch, noise)
    close(ours, ref)
    assert ours.std().item() > 0.1  # not a constant image


@pytest.mark.parametrize("family", ["FLUX", "SD3"])
def test_flow_img2img_sampling_equals_diffusers(pack, family):
    """img2img: ComfyUI's sigma*noise + (1 - sigma)*latent start is diffusers' scale_noise; same steps kept."""
    S = pack.nodes.sampling
    steps, strength = 8, 0.6
    if family == "FLUX":
        model, cond, sch = flux_at(512, 512), FLUX_COND, diffusers_flux_sigmas(steps, 512, 512)
        get_timesteps = pipeline_flux_img2img.FluxImg2ImgPipeline.get_timesteps
    else:
        model, cond, sch = sd3_model(), SD3_COND, diffusers_sd3(steps)
        get_timesteps = sd3_img2img.StableDiffusion3Img2ImgPipeline.get_timesteps
    timesteps, n = get_timesteps(type("P", (), {"scheduler": sch})(), steps, strength, "cpu")
    noise = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    latent = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(2))
    ours = comfy_sample(model, S.HyperSDTCDSampler().get_sampler(0.0)[0], node_sigmas(pack, model, steps, strength),
                        noise, latent=latent, cond=cond)
    start = sch.scale_noise(latent, timesteps[:1], noise)
    close(ours, diffusers_flow_euler(sch, start, begin=steps - n))


def test_flow_eta_positive_is_the_continuous_analogue_seeded(pack):
    """eta > 0 on a flow model: finite, seeded, different from Euler (the documented continuous analogue)."""
    S = pack.nodes.sampling
    model = flux_at(512, 512)
    sigmas = node_sigmas(pack, model, 8)
    noise = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(3))
    run = lambda eta, seed: comfy_sample(model, S.HyperSDTCDSampler().get_sampler(eta)[0], sigmas, noise,  # noqa: E731
                                         seed=seed, cond=FLUX_COND)
    a, b, c, euler = run(0.5, 1), run(0.5, 1), run(0.5, 2), run(0.0, 1)
    assert torch.isfinite(a).all() and torch.equal(a, b) and not torch.equal(a, c)
    assert (a - euler).abs().max().item() > 1e-3


# --------------------------------------------------------------------------- node inputs and the catalog


def test_spacing_is_the_last_optional_input_and_old_calls_still_work(pack):
    """Saved workflows store widget values by position: the new input comes last, optional, default
    'trailing', so files and API prompts from before it load unchanged."""
    S = pack.nodes.sampling
    spec = S.HyperSDScheduler.INPUT_TYPES()
    assert list(spec["required"]) == ["model", "steps", "denoise", "start_timestep"]
    assert list(spec["optional"]) == ["spacing"]
    choices, options = spec["optional"]["spacing"]
    assert choices == ["trailing", "tcd"] and options["default"] == "trailing" and options["tooltip"]
    ms = discrete_ms("SD15")
    old_call = S.HyperSDScheduler().get_sigmas(_Model(ms), 4, 1.0, 999)[0]  # no spacing argument
    ddim = DDIMScheduler(**SD_BETAS, timestep_spacing="trailing", set_alpha_to_one=False)
    ddim.set_timesteps(4)
    assert_discrete(ms, old_call, ddim.timesteps)


def test_catalog_spacing_per_file(pack):
    from hypersd_pack.core import catalog
    for entry in catalog.CATALOG:
        assert entry.spacing in pack.samplers.schedules.SPACINGS, entry.filename
        assert entry.spacing == ("tcd" if entry.kind == "unified" else "trailing"), entry.filename
    assert {e.filename for e in catalog.CATALOG if e.spacing == "tcd"} == {
        "Hyper-SD15-1step-lora.safetensors", "Hyper-SDXL-1step-lora.safetensors"}
