"""The sampler and scheduler inside a real (in-process) ComfyUI, against diffusers.

The model is ComfyUI's own ``BaseModel`` (its real model_sampling, calculate_input/denoised, CFG guider,
KSAMPLER and latent-format code) with the UNet replaced by a fixed analytic function, so the only thing
not ComfyUI's is the network; diffusers runs the same function as its "UNet" for the golden values.
Skipped with a message naming COMFYUI_PATH when ComfyUI is absent.
"""
import math

import pytest
import torch


pytest.importorskip("diffusers")
from diffusers import TCDScheduler  # noqa: E402


class AnalyticUNet(torch.nn.Module):
    """Stands in for the UNet: a fixed function of (input, timestep), counting its calls."""

    def __init__(self):
        super().__init__()
        self.calls = 0
        self.dtype = torch.float32

    def forward(self, x, t, context=None, **kwargs):
        self.calls += 1
        tt = t.float()[:, None, None, None] / 1000.0
        return 0.7 * torch.tanh(x * (1.0 + tt)) + 0.2 * torch.sin(7 * tt) + 0.05 * x.flip(-1)


@pytest.fixture(scope="module")
def pack(comfy_host):
    return comfy_host


def make_model(model_type="EPS", family="SD15"):
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models
    cfg = getattr(comfy.supported_models, family)({"disable_unet_model_creation": True})
    base = comfy.model_base.BaseModel(cfg, model_type=comfy.model_base.ModelType[model_type],
                                      device=torch.device("cpu"))
    base.diffusion_model = AnalyticUNet()
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(base, load_device=cpu, offload_device=cpu)


def comfy_sample(model, sampler, sigmas, noise, latent=None, seed=0, callback=None):
    """SamplerCustom's code path (comfy.sample.sample_custom), returned in the model's latent space."""
    import comfy.sample
    ctx = torch.zeros(1, 77, 768)
    latent = torch.zeros_like(noise) if latent is None else latent
    out = comfy.sample.sample_custom(model, noise, 1.0, sampler, sigmas, [[ctx, {}]], [[ctx, {}]],
                                     model.model.process_latent_out(latent), seed=seed, callback=callback,
                                     disable_pbar=True)
    return model.model.process_latent_in(out)


def core_noise(like, seed):
    """The stream of unit Gaussians core's own stochastic samplers draw for the prompt's ``seed``: ComfyUI's
    ``default_noise_sampler`` (since 0.7 seeded with seed + 1 on the CPU, so not the start noise again)."""
    import comfy.k_diffusion.sampling
    return comfy.k_diffusion.sampling.default_noise_sampler(like, seed=seed)


def diffusers_tcd(model, timesteps, eta, start, seed, prediction_type="epsilon"):
    """diffusers' TCDScheduler loop on the same analytic UNet; start is the DDPM-space start sample. Its step
    noise (``randn_tensor`` in scheduling_tcd) is drawn from core's noise stream for ``seed``: the golden is
    diffusers' TCD with the noise ComfyUI's samplers inject."""
    from unittest import mock

    import diffusers.schedulers.scheduling_tcd as scheduling_tcd
    sch = TCDScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                       set_alpha_to_one=False, prediction_type=prediction_type)
    sch.set_timesteps(timesteps=timesteps)
    draw = core_noise(start, seed)
    unet = model.model.diffusion_model
    sample = start.clone()
    with mock.patch.object(scheduling_tcd, "randn_tensor", lambda shape, **kw: draw(None, None).reshape(shape)):
        for t in sch.timesteps:
            out = unet(sample, torch.tensor([float(t)]))
            sample = sch.step(out, t, sample, eta=eta).prev_sample
    return sample, sch


def close(ours, ref, tol=1e-5):
    err = ((ours - ref).abs() / ref.abs().clamp(min=1.0)).max().item()
    assert err <= tol, f"max scaled error {err:.3g} > {tol}"


@pytest.mark.parametrize("steps", [1, 2, 4, 8])
@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_ksampler_path_equals_diffusers(pack, steps, eta):
    S = pack.nodes.sampling
    model = make_model()
    sigmas, = S.HyperSDScheduler().get_sigmas(model, steps, 1.0, 999)
    sampler, = S.HyperSDTCDSampler().get_sampler(eta)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(steps))
    ours = comfy_sample(model, sampler, sigmas, noise, seed=42)
    assert model.model.diffusion_model.calls == steps  # NFE = steps at cfg 1
    ref, sch = diffusers_tcd(model, pack.samplers.schedules.trailing_timesteps(steps), eta, noise, seed=42)
    close(ours, ref)


def test_v_prediction_model(pack):
    S = pack.nodes.sampling
    model = make_model("V_PREDICTION")
    sigmas, = S.HyperSDScheduler().get_sigmas(model, 4, 1.0, 999)
    sampler, = S.HyperSDTCDSampler().get_sampler(0.3)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    ref, _ = diffusers_tcd(model, [999, 749, 499, 249], 0.3, noise, seed=1, prediction_type="v_prediction")
    close(comfy_sample(model, sampler, sigmas, noise, seed=1), ref)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_start_at_800_uses_diffusers_unit_variance_noise(pack, eta):
    """Text-to-image from t=800 starts from unit-variance DDPM noise, as diffusers does (ComfyUI: 2 % off)."""
    S = pack.nodes.sampling
    model = make_model()
    sigmas, = S.HyperSDScheduler().get_sigmas(model, 1, 1.0, 800)
    assert [round(float(s), 4) for s in sigmas] == [round(float(model.model.model_sampling.sigma(
        torch.tensor(800.0))), 4), 0.0]
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    ours = comfy_sample(model, S.HyperSDTCDSampler().get_sampler(eta)[0], sigmas, noise)
    ref, _ = diffusers_tcd(model, [800], eta, noise, seed=0)
    close(ours, ref)
    euler = comfy_sample(model, __import__("comfy.samplers").samplers.ksampler("euler"), sigmas, noise)
    assert ((euler - ref).abs().max() / ref.abs().max()).item() > 1e-3  # core's start differs measurably


def test_img2img_keeps_comfy_start_and_diffusers_timesteps(pack):
    S = pack.nodes.sampling
    model = make_model()
    sigmas, = S.HyperSDScheduler().get_sigmas(model, 4, 0.5, 999)
    assert len(sigmas) == 3  # [sigma(499), sigma(249), 0]
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(6))
    ours = comfy_sample(model, S.HyperSDTCDSampler().get_sampler(0.3)[0], sigmas, noise, latent=latent, seed=9)
    sch = TCDScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", set_alpha_to_one=False)
    start = sch.add_noise(latent, noise, torch.tensor([499]))
    ref, _ = diffusers_tcd(model, [499, 249], 0.3, start, seed=9)
    close(ours, ref)


def test_flow_model_eta0_is_core_euler_exactly(pack):
    import comfy.samplers
    S = pack.nodes.sampling
    model = make_model("FLOW", "SD3")
    sigmas, = S.HyperSDScheduler().get_sigmas(model, 4, 1.0, 999)
    assert float(sigmas[0]) == 1.0
    noise = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(7))
    ours = comfy_sample(model, S.HyperSDTCDSampler().get_sampler(0.0)[0], sigmas, noise)
    core = comfy_sample(model, comfy.samplers.ksampler("euler"), sigmas, noise)
    assert torch.equal(ours, core)
    stochastic = comfy_sample(model, S.HyperSDTCDSampler().get_sampler(0.5)[0], sigmas, noise, seed=3)
    assert torch.isfinite(stochastic).all() and not torch.equal(stochastic, core)


def test_unsupported_model_type_is_named(pack):
    S = pack.nodes.sampling
    model = make_model("EDM")
    sampler, = S.HyperSDTCDSampler().get_sampler(0.3)
    with pytest.raises(S.UnsupportedModelError, match="ModelSamplingContinuousEDM"):
        comfy_sample(model, sampler, torch.tensor([10.0, 1.0, 0.0]), torch.randn(1, 4, 8, 8))


def test_ksampler_dropdown_tcd_and_trailing(pack):
    """KSampler's own path (scheduler names -> calculate_sigmas, sampler name -> sampler_object) against
    diffusers: DDIM trailing / TCDScheduler timesteps and TCDScheduler's trajectory at eta 0.3."""
    import comfy.samplers
    from diffusers import DDIMScheduler
    S = pack.nodes.sampling
    assert "tcd" in comfy.samplers.KSampler.SAMPLERS
    assert {"trailing", "tcd"} <= set(comfy.samplers.KSampler.SCHEDULERS)
    model = make_model()
    ms = model.get_model_object("model_sampling")
    for steps in (3, 4, 7):
        ddim = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                             timestep_spacing="trailing", set_alpha_to_one=False)
        ddim.set_timesteps(steps)
        trailing = comfy.samplers.calculate_sigmas(ms, "trailing", steps).cpu()
        assert [int(ms.timestep(s)) for s in trailing[:-1]] == [int(t) for t in ddim.timesteps]
        assert float(trailing[-1]) == 0.0
        tcd_sched = TCDScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
        tcd_sched.set_timesteps(steps)
        tcd_sigmas = comfy.samplers.calculate_sigmas(ms, "tcd", steps).cpu()
        assert [int(ms.timestep(s)) for s in tcd_sigmas[:-1]] == [int(t) for t in tcd_sched.timesteps]
    assert [int(ms.timestep(s)) for s in comfy.samplers.calculate_sigmas(ms, "trailing", 3)[:-1]] == [999, 666, 332]
    sigmas = comfy.samplers.calculate_sigmas(ms, "tcd", 4).cpu()
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(8))
    via_dropdown = comfy_sample(model, comfy.samplers.sampler_object("tcd"), sigmas, noise, seed=2)
    ref, _ = diffusers_tcd(model, [999, 759, 499, 259], 0.3, noise, seed=2)  # the dropdown's eta is 0.3
    close(via_dropdown, ref)
    assert S.register_ksampler_names() == []  # a second registration replaces nothing


def test_same_seed_same_result_other_seed_differs(pack):
    S = pack.nodes.sampling
    model = make_model()
    sigmas, = S.HyperSDScheduler().get_sigmas(model, 4, 1.0, 999)
    sampler, = S.HyperSDTCDSampler().get_sampler(0.5)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    a, b, c = (comfy_sample(model, sampler, sigmas, noise, seed=s) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_callback_every_step_and_denoise_zero(pack):
    S = pack.nodes.sampling
    model = make_model()
    sigmas, = S.HyperSDScheduler().get_sigmas(model, 8, 1.0, 999)
    seen = []
    comfy_sample(model, S.HyperSDTCDSampler().get_sampler(0.3)[0], sigmas, torch.randn(1, 4, 8, 8),
                 callback=lambda step, x0, x, total: seen.append((step, total)))
    assert seen == [(i, 8) for i in range(8)]
    empty, = S.HyperSDScheduler().get_sigmas(model, 4, 0.0, 999)
    assert empty.numel() == 0
    latent = torch.randn(1, 4, 8, 8)
    out = comfy_sample(model, S.HyperSDTCDSampler().get_sampler(0.3)[0], empty, torch.randn(1, 4, 8, 8),
                       latent=latent)
    assert torch.allclose(out, latent)


def test_bad_inputs_raise_typed_errors(pack):
    S = pack.nodes.sampling
    model = make_model()
    with pytest.raises(pack.samplers.schedules.ScheduleError, match="denoise 0.1 with 4 steps"):
        S.HyperSDScheduler().get_sigmas(model, 4, 0.1, 999)
    with pytest.raises(pack.samplers.tcd.SamplingError, match="eta 1.5"):
        S.HyperSDTCDSampler().get_sampler(1.5)
    sampler, = S.HyperSDTCDSampler().get_sampler(0.3)
    with pytest.raises(pack.samplers.tcd.SamplingError, match="decrease"):
        comfy_sample(model, sampler, torch.tensor([0.5, 1.0, 0.0]), torch.randn(1, 4, 8, 8))


def test_no_float64_tensor_is_created_while_sampling(pack):
    """Every tensor created during a whole sampling run is float32 or integer (Apple MPS rejects float64)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class DtypeSpy(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.dtypes = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in (out if isinstance(out, (tuple, list)) else (out,)):
                if isinstance(t, torch.Tensor):
                    self.dtypes.add(t.dtype)
            return out

    S = pack.nodes.sampling
    model = make_model()
    sigmas, = S.HyperSDScheduler().get_sigmas(model, 4, 1.0, 800)
    sampler, = S.HyperSDTCDSampler().get_sampler(1.0)
    noise = torch.randn(1, 4, 8, 8)
    with DtypeSpy() as spy:
        out = comfy_sample(model, sampler, sigmas, noise, seed=1)
    assert torch.float64 not in spy.dtypes, spy.dtypes
    assert torch.float32 in spy.dtypes and math.isfinite(out.abs().max().item())
