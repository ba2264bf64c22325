"""KSampler's ``trailing`` and ``tcd`` schedulers with denoise below 1, on ComfyUI's own call paths.

Below denoise 1 ComfyUI's KSampler (``comfy.samplers.KSampler.set_steps``, reached from the KSampler node's
``nodes.common_ksampler``) and the BasicScheduler node ask the scheduler for ``int(steps / denoise)`` steps
and keep the last ``steps + 1`` sigmas. The pack's schedulers give that full-length schedule, as core's
do; golden values: diffusers' DDIMScheduler (trailing), TCDScheduler and the flow pipelines' schedulers
for that step count, tail taken. Where the count exceeds what a schedule has (TCD's 50-point grid, 1000
DDIM timesteps), the error names the user's own steps and denoise. Models: ComfyUI's real model classes
with analytic networks (tests/test_host_sampling.py, tests/test_flow_schedules.py). Skipped without
ComfyUI (COMFYUI_PATH).
"""
import pytest
import torch

pytestmark = pytest.mark.every_host  # also run on the oldest supported host (.ci/run)

pytest.importorskip("diffusers")
from diffusers import DDIMScheduler, TCDScheduler  # noqa: E402
from test_flow_schedules import (SD_BETAS, assert_sigmas, diffusers_flux_sigmas, diffusers_sd3,  # noqa: E402
                                 flux_at, ms_of, sd3_model)
from test_host_sampling import make_model  # noqa: E402

from hypersd_pack.samplers import schedules  # noqa: E402

CPU = torch.device("cpu")
CTX = torch.zeros(1, 77, 768)


@pytest.fixture(scope="module")
def pack(comfy_host):
    return comfy_host


def ksampler(model, scheduler, steps, denoise, sampler="euler"):
    import comfy.samplers
    return comfy.samplers.KSampler(model, steps=steps, device=CPU, sampler=sampler, scheduler=scheduler,
                                   denoise=denoise)


def basic_scheduler(model, scheduler, steps, denoise):
    """The BasicScheduler node (V3 ``execute`` on 0.33, ``get_sigmas`` on 0.3.64)."""
    from comfy_extras.nodes_custom_sampler import BasicScheduler
    out = BasicScheduler().get_sigmas(model, scheduler, steps, denoise)
    return out[0] if isinstance(out, tuple) else out.result[0]


def diffusers_tail(scheduler, count, steps, model):
    """diffusers' ``count``-step timesteps, the last ``steps`` of them, as the model's sigmas, then 0."""
    scheduler.set_timesteps(count)
    tail = scheduler.timesteps[-steps:].tolist()
    ms = ms_of(model)
    return tail, torch.cat([ms.sigma(torch.tensor(tail, dtype=torch.float32)), torch.zeros(1)])


@pytest.mark.parametrize("steps,denoise", [(4, 0.6), (4, 0.3), (8, 0.5), (1, 0.5), (2, 0.05), (12, 0.9)])
@pytest.mark.parametrize("scheduler", ["trailing", "tcd"])
def test_discrete_tail_of_int_steps_over_denoise(pack, scheduler, steps, denoise):
    model = make_model()
    count = int(steps / denoise)
    reference = (DDIMScheduler(**SD_BETAS, timestep_spacing="trailing") if scheduler == "trailing"
                 else TCDScheduler(**SD_BETAS))
    tail, expected = diffusers_tail(reference, count, steps, model)
    for sigmas in (ksampler(model, scheduler, steps, denoise).sigmas, basic_scheduler(model, scheduler, steps,
                                                                                      denoise)):
        assert [int(t) for t in ms_of(model).timestep(sigmas[:-1])] == tail
        assert_sigmas(sigmas, expected, tol=1e-6 * float(expected[0]))


@pytest.mark.parametrize("family,steps,denoise", [("SD3", 16, 0.3), ("SD3", 4, 0.05), ("FLUX", 16, 0.3),
                                                  ("FLUX", 8, 0.1)])
def test_flow_tail_of_int_steps_over_denoise(pack, family, steps, denoise):
    """int(steps / denoise) above the Hyper-SD Scheduler node's 50 (53, 80): the pipeline's schedule of that
    length, as StableDiffusion3Pipeline / FluxPipeline would run it."""
    count = int(steps / denoise)
    assert count > schedules.MAX_STEPS
    if family == "SD3":
        model, reference = sd3_model(), diffusers_sd3(count).sigmas
    else:
        model, reference = flux_at(512, 512), diffusers_flux_sigmas(count, 512, 512).sigmas
    expected = reference[-(steps + 1):]
    assert_sigmas(ksampler(model, "trailing", steps, denoise).sigmas, expected)
    assert_sigmas(basic_scheduler(model, "trailing", steps, denoise), expected)


def test_tcd_beyond_its_grid_says_so_in_the_users_numbers(pack):
    """4 steps at denoise 0.06: int(4 / 0.06) = 66 steps on a 50-point grid cannot be honoured (the tail
    would repeat grid timesteps); the message speaks of steps 4 and denoise 0.06, and how to fix them."""
    model = make_model()
    for make in (lambda: ksampler(model, "tcd", 4, 0.06), lambda: basic_scheduler(model, "tcd", 4, 0.06)):
        with pytest.raises(schedules.ScheduleError) as err:
            make()
        msg = str(err.value)
        for part in ("'tcd' scheduler", "50-step grid", "steps 4 at denoise 0.06", "int(4 / 0.06) = 66",
                     "raise denoise to at least 0.08", "lower steps to 3", "Hyper-SD Scheduler"):
            assert part in msg, (part, msg)
        assert "steps 66" not in msg


def test_sampler_dropping_a_sigma_is_counted(pack):
    """dpm_2 drops the next-to-last sigma, so KSampler asks for one more step: 50 tcd steps become 51."""
    with pytest.raises(schedules.ScheduleError, match=r"steps 50 at denoise 1 asks it for 50 \+ 1 = 51 steps \(the "
                                                      r"sampler drops the next-to-last sigma.* lower steps to 49; "
                                                      r"or use another sampler\.$"):
        ksampler(make_model(), "tcd", 50, 1.0, sampler="dpm_2")


def test_trailing_beyond_1000_timesteps(pack):
    with pytest.raises(schedules.ScheduleError, match=r"1000 distinct timesteps .* steps 20 at denoise 0.01 "
                                                      r"asks it for int\(20 / 0.01\) = 2000"):
        ksampler(make_model(), "trailing", 20, 0.01)


def test_without_a_known_caller_the_count_and_the_rule(pack):
    """Called directly (no KSampler or BasicScheduler above it): the count, and the rule that produced it."""
    with pytest.raises(schedules.ScheduleError, match=r"asked for 66 steps\. With denoise below 1, KSampler asks "
                                                      r"its scheduler for int\(steps / denoise\)"):
        pack.nodes.sampling.tcd_scheduler(ms_of(make_model()), 66)


def test_ksampler_node_call_path(pack):
    """The KSampler node's function (nodes.common_ksampler): img2img at denoise 0.6 with sampler and
    scheduler 'tcd' runs the tail of 6 TCD steps; 4 steps at 0.06 fails with the user's numbers."""
    import nodes
    model = make_model()
    latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))}
    cond = [[CTX, {}]]
    seen = []
    model.model.diffusion_model.forward = _recording(model.model.diffusion_model.forward, seen)
    (out,) = nodes.common_ksampler(model, 7, 4, 1.0, "tcd", "tcd", cond, cond, latent, denoise=0.6)
    assert seen == [679, 499, 339, 179]  # TCDScheduler(6 steps): 999, 839, 679, 499, 339, 179
    assert torch.isfinite(out["samples"]).all() and not torch.allclose(out["samples"], latent["samples"])
    with pytest.raises(schedules.ScheduleError, match="steps 4 at denoise 0.06"):
        nodes.common_ksampler(model, 7, 4, 1.0, "tcd", "tcd", cond, cond, latent, denoise=0.06)


def _recording(forward, seen):
    def record(x, t, *args, **kwargs):
        seen.append(round(float(t[0])))
        return forward(x, t, *args, **kwargs)
    return record
