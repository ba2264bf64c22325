"""The pure sampling math against diffusers (the reference), on a fresh machine without ComfyUI.

Golden values come from running diffusers' TCDScheduler / DDIMScheduler in the test on the same
analytic "model"; nothing is copied from the pack's own output. The k-space wrapper below plays the role
of ComfyUI's model wrapper: x_ddpm = x / sqrt(1 + sigma^2), t = nearest timestep, denoised from the
model output by the parameterisation (ComfyUI's EPS / V_PREDICTION / X0 formulas, sigma_data = 1).
"""
import math

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
from diffusers import DDIMScheduler, TCDScheduler  # noqa: E402

from hypersd_pack.samplers import schedules, tcd  # noqa: E402

SD_BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
SHAPE = (2, 4, 8, 8)


def close(ours, ref, tol=1e-5):
    """|ours - ref| <= tol * max(1, |ref|), elementwise (the issue's float32 tolerance)."""
    err = (ours - ref).abs() / ref.abs().clamp(min=1.0)
    assert torch.isfinite(ours).all()
    assert err.max().item() <= tol, f"max scaled error {err.max().item():.3g} > {tol}"


def model_output(x_ddpm, t):
    """A fixed nonlinear 'UNet': depends on the sample and the timestep, O(1) outputs."""
    tt = float(t) / 1000.0
    return 0.7 * torch.tanh(x_ddpm * (1.0 + tt)) + 0.2 * math.sin(7 * tt) + 0.05 * x_ddpm.flip(-1)


def sigma_table(scheduler):
    a = scheduler.alphas_cumprod.to(torch.float32)
    return ((1 - a) / a) ** 0.5


def k_denoiser(scheduler, prediction_type):
    """ComfyUI-style denoiser D(x_k, sigma) around ``model_output`` with the scheduler's sigma table."""
    table = sigma_table(scheduler)

    def denoise(x, sigma_batch, **extra_args):  # ComfyUI passes extra_args (seed, model_options)
        sigma = float(sigma_batch[0])
        t = int((math.log(sigma) - table.log()).abs().argmin())
        x_in = x / math.sqrt(1.0 + sigma ** 2)
        out = model_output(x_in, t)
        if prediction_type == "epsilon":
            return x - out * sigma
        if prediction_type == "v_prediction":
            return x / (sigma ** 2 + 1) - out * sigma / math.sqrt(sigma ** 2 + 1)
        return out  # "sample": x0 prediction

    return denoise


def run_diffusers(scheduler, timesteps, eta, z, seed, **step_kw):
    g = torch.Generator().manual_seed(seed)
    sample = z.clone()
    for t in timesteps:
        out = model_output(sample, int(t))
        if isinstance(scheduler, TCDScheduler):
            sample = scheduler.step(out, t, sample, eta=eta, generator=g).prev_sample
        else:
            sample = scheduler.step(out, t, sample, eta=0.0, **step_kw).prev_sample
    return sample


def run_ours(scheduler, timesteps, eta, z, seed, prediction_type):
    table = sigma_table(scheduler)
    sigmas = torch.cat([table[torch.as_tensor([int(t) for t in timesteps])], torch.zeros(1)])
    g = torch.Generator().manual_seed(seed)
    calls = []
    x = z * math.sqrt(1.0 + float(sigmas[0]) ** 2)  # diffusers' unit-variance start, in k-space
    den = k_denoiser(scheduler, prediction_type)

    def counted(x, s):
        calls.append(float(s[0]))
        return den(x, s)

    out = tcd.sample_tcd(counted, x, sigmas, eta=eta, sigma_table=table, disable=True,
                         noise_sampler=lambda s, sn: torch.randn(z.shape, generator=g))
    assert len(calls) == len(timesteps)  # one model call per step
    return out


def tcd_scheduler(prediction_type="epsilon"):
    return TCDScheduler(**SD_BETAS, prediction_type=prediction_type, set_alpha_to_one=False)


@pytest.mark.parametrize("steps", [1, 2, 4, 8])
@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("spacing", ["tcd-default", "trailing"])
def test_tcd_trajectory_matches_diffusers(steps, eta, spacing):
    sch = tcd_scheduler()
    if spacing == "trailing":
        sch.set_timesteps(timesteps=schedules.trailing_timesteps(steps))
    else:
        sch.set_timesteps(steps)
    ts = [int(t) for t in sch.timesteps]
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    ref = run_diffusers(sch, ts, eta, z, seed=7)
    ours = run_ours(sch, ts, eta, z, seed=7, prediction_type="epsilon")
    close(ours, ref)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_tcd_other_parameterisations(prediction_type, eta):
    sch = tcd_scheduler(prediction_type)
    sch.set_timesteps(4)
    ts = [int(t) for t in sch.timesteps]
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    ref = run_diffusers(sch, ts, eta, z, seed=3)
    close(run_ours(sch, ts, eta, z, seed=3, prediction_type=prediction_type), ref)


@pytest.mark.parametrize("custom", [[800], [999]])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_tcd_custom_timesteps(custom, eta):
    sch = tcd_scheduler()
    sch.set_timesteps(timesteps=custom)
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(4))
    ref = run_diffusers(sch, custom, eta, z, seed=5)
    close(run_ours(sch, custom, eta, z, seed=5, prediction_type="epsilon"), ref)


def test_one_step_returns_ddpm_sample_at_s0_not_x0():
    """The last step returns sqrt(a0) x0 + sqrt(1 - a0) eps (closed form here), which is not x0."""
    sch = tcd_scheduler()
    sch.set_timesteps(timesteps=[999])
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(6))
    ours = run_ours(sch, [999], 0.0, z, seed=0, prediction_type="epsilon")
    a = sch.alphas_cumprod
    eps = model_output(z, 999)
    x0 = (z - (1 - a[999]).sqrt() * eps) / a[999].sqrt()
    close(ours, a[0].sqrt() * x0 + (1 - a[0]).sqrt() * eps)
    assert (ours - x0).abs().max().item() > 0.01


@pytest.mark.parametrize("ours_eta,ref_eta", [(0.0, 1.0), (1.0, 0.0), (0.3, 1.0)])
def test_eta_has_no_effect_at_one_step(ours_eta, ref_eta):
    """At one step diffusers' result does not depend on eta (nor on the generator): ours at one eta equals
    diffusers' at another, with different seeds."""
    sch = tcd_scheduler()
    sch.set_timesteps(1)
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(8))
    ref = run_diffusers(sch, [999], ref_eta, z, seed=5)
    close(run_ours(sch, [999], ours_eta, z, seed=1, prediction_type="epsilon"), ref)


@pytest.mark.parametrize("steps", list(range(1, 51)))
def test_trailing_timesteps_equal_diffusers_ddim(steps):
    ddim = DDIMScheduler(**SD_BETAS, timestep_spacing="trailing", set_alpha_to_one=False, clip_sample=False)
    ddim.set_timesteps(steps)
    assert schedules.trailing_timesteps(steps) == [int(t) for t in ddim.timesteps]


def test_trailing_start_timestep():
    assert schedules.trailing_timesteps(1, start=800) == [800]
    assert schedules.trailing_timesteps(4) == [999, 749, 499, 249]
    assert schedules.trailing_timesteps(3) == [999, 666, 332]


@pytest.mark.parametrize("steps", [1, 2, 4, 8, 12])
@pytest.mark.parametrize("strength", [0.1, 0.3, 0.5, 0.75, 0.8, 1.0])
def test_img2img_timesteps_equal_diffusers_pipeline(steps, strength):
    pipe_mod = pytest.importorskip("diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img")
    ddim = DDIMScheduler(**SD_BETAS, timestep_spacing="trailing", set_alpha_to_one=False, clip_sample=False)
    ddim.set_timesteps(steps)
    fake_pipe = type("P", (), {"scheduler": ddim})()
    ref, n = pipe_mod.StableDiffusionImg2ImgPipeline.get_timesteps(fake_pipe, steps, strength, "cpu")
    trailing = schedules.trailing_timesteps(steps)
    if n == 0:
        with pytest.raises(schedules.ScheduleError, match="keeps no step"):
            schedules.img2img_timesteps(trailing, strength)
    else:
        assert schedules.img2img_timesteps(trailing, strength) == [int(t) for t in ref]


@pytest.mark.parametrize("steps", [1, 2, 4, 5, 8, 10, 20, 25])
def test_eta0_equals_ddim_trailing(steps):
    """TCD at eta 0 on trailing timesteps is DDIM trailing (set_alpha_to_one=False, as SD/SDXL ship).

    Exact when N divides 1000; otherwise DDIM's own prev_timestep (t - 1000 // N) is not the next
    trailing timestep (N=3: 666 -> 333, then the model is called at 332).
    """
    ddim = DDIMScheduler(**SD_BETAS, timestep_spacing="trailing", set_alpha_to_one=False, clip_sample=False)
    ddim.set_timesteps(steps)
    ts = [int(t) for t in ddim.timesteps]
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(9))
    ref = run_diffusers(ddim, ts, 0.0, z, seed=0)
    close(run_ours(tcd_scheduler(), ts, 0.0, z, seed=0, prediction_type="epsilon"), ref)


def test_schedule_errors_name_the_value_and_fix():
    with pytest.raises(schedules.ScheduleError, match="steps 0"):
        schedules.trailing_timesteps(0)
    with pytest.raises(schedules.ScheduleError, match="steps 1001"):
        schedules.trailing_timesteps(1001)
    with pytest.raises(schedules.ScheduleError, match="steps 3 is outside 1..2"):
        schedules.trailing_timesteps(3, start=1)
    with pytest.raises(schedules.ScheduleError, match="start timestep 1000"):
        schedules.trailing_timesteps(4, start=1000)
    with pytest.raises(schedules.ScheduleError, match="denoise -1"):
        schedules.img2img_timesteps([999], -1)
    assert schedules.img2img_timesteps([999, 499], 0.0) == []


@pytest.mark.parametrize("sigmas,match", [
    ([], "0 value"), ([14.6], "1 value"), ([1.0, 2.0, 0.0], "decrease"), ([3.0, 1.0, 1.0], "decrease"),
    ([2.0, -1.0], "decrease")])
def test_bad_sigmas_raise(sigmas, match):
    table = sigma_table(tcd_scheduler())
    with pytest.raises(tcd.SamplingError, match=match):
        tcd.sample_tcd(lambda x, s: x, torch.zeros(1, 4, 2, 2), torch.tensor(sigmas), sigma_table=table)


@pytest.mark.parametrize("eta", [-0.1, 1.5])
def test_bad_eta_raises(eta):
    table = sigma_table(tcd_scheduler())
    with pytest.raises(tcd.SamplingError, match=f"eta {eta}"):
        tcd.sample_tcd(lambda x, s: x, torch.zeros(1, 4, 2, 2), torch.tensor([1.0, 0.0]), eta=eta, sigma_table=table)


@pytest.mark.parametrize("flow", [False, True])
def test_stochastic_run_needs_a_noise_sampler(flow):
    """The pure sampler draws no noise of its own (the ComfyUI glue passes core's seeded noise sampler, see
    test_host_sampling.py): eta > 0 without a noise_sampler is refused by name, eta 0 needs none."""
    table = sigma_table(tcd_scheduler())
    sigmas = torch.cat([table[[999, 499]], torch.zeros(1)]) if not flow else torch.tensor([1.0, 0.5, 0.0])
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    den = k_denoiser(tcd_scheduler(), "epsilon") if not flow else (lambda x, s, **kw: x * 0.5)
    run = (lambda eta: tcd.sample_tcd_flow(den, x, sigmas, eta=eta, disable=True)) if flow else \
        (lambda eta: tcd.sample_tcd(den, x, sigmas, eta=eta, sigma_table=table, disable=True))
    with pytest.raises(tcd.SamplingError, match="eta 0.3 re-noises every step but no noise_sampler"):
        run(0.3)
    assert torch.isfinite(run(0.0)).all()


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_unit_variance_start_matches_diffusers_at_800(eta):
    """ComfyUI starts text-to-image below sigma_max from z * sigma0; ``unit_variance_start`` turns that into
    diffusers' start (randn * init_noise_sigma in DDPM space): checked through a whole run from t=800."""
    sch = tcd_scheduler()
    sch.set_timesteps(timesteps=[800, 400])
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(10))
    ref = run_diffusers(sch, [800, 400], eta, z * sch.init_noise_sigma, seed=3)
    table = sigma_table(sch)
    sigmas = torch.cat([table[[800, 400]], torch.zeros(1)])
    g = torch.Generator().manual_seed(3)
    run = lambda x: tcd.sample_tcd(k_denoiser(sch, "epsilon"), x, sigmas, eta=eta, sigma_table=table,  # noqa: E731
                                   disable=True, noise_sampler=lambda s, sn: torch.randn(SHAPE, generator=g))
    comfy_start = z * float(sigmas[0])
    close(run(tcd.unit_variance_start(comfy_start, sigmas[0])), ref)
    g.manual_seed(3)
    assert (run(comfy_start) - ref).abs().max().item() > 1e-3  # ComfyUI's own start is measurably off


@pytest.mark.parametrize("steps", list(range(1, 51)))
def test_tcd_timesteps_equal_tcd_scheduler(steps):
    sch = tcd_scheduler()
    sch.set_timesteps(steps)
    assert schedules.tcd_timesteps(steps) == [int(t) for t in sch.timesteps]


def test_tcd_timesteps_issue_values():
    assert schedules.tcd_timesteps(4) == [999, 759, 499, 259]
    assert schedules.tcd_timesteps(8) == [999, 879, 759, 639, 499, 379, 259, 139]


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 7, 8, 10, 16])
@pytest.mark.parametrize("strength", [0.05, 0.1, 0.125, 0.3, 0.5, 0.6, 0.7, 0.75, 0.9, 1.0])
def test_flow_img2img_times_equal_diffusers_flow_pipelines(steps, strength):
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux_img2img import FluxImg2ImgPipeline
    from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3_img2img import \
        StableDiffusion3Img2ImgPipeline
    sch = FlowMatchEulerDiscreteScheduler(shift=3.0)
    sch.set_timesteps(steps)
    pipe = type("P", (), {"scheduler": sch})()
    full = [float(t) for t in sch.timesteps]
    for pipeline in (StableDiffusion3Img2ImgPipeline, FluxImg2ImgPipeline):
        ref, n = pipeline.get_timesteps(pipe, steps, strength, "cpu")
        assert schedules.flow_img2img_times(full, strength) == [float(t) for t in ref]
        assert n == len(ref)


@pytest.mark.parametrize("steps", list(range(1, 17)))
def test_sd3_flow_times_equal_flow_match_scheduler_unshifted(steps):
    """At shift 1 the scheduler's sigmas are its unshifted times: linspace(1, sigma_min, N)."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    sch = FlowMatchEulerDiscreteScheduler(shift=1.0)
    sch.set_timesteps(steps)
    ours = schedules.sd3_flow_times(steps, sch.sigma_max, sch.sigma_min)
    close(torch.tensor(ours, dtype=torch.float32), sch.sigmas[:-1], tol=1e-7)


def test_flow_renoise_keeps_the_marginal():
    """With a perfect denoiser of a point mass, x' = (1 - sigma') x0 + sigma' z in distribution."""
    c = 0.5
    x0 = torch.full((200_000,), c)
    sigma = 0.8
    x = (1 - sigma) * x0 + sigma * torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    out = tcd.sample_tcd_flow(lambda x, s, **kw: torch.full_like(x, c), x, torch.tensor([0.8, 0.4]), eta=0.7,
                              disable=True, noise_sampler=lambda s, sn: torch.randn(x.shape, generator=g))
    assert abs(out.mean().item() - (1 - 0.4) * c) < 0.01
    assert abs(out.std().item() - 0.4) < 0.01
