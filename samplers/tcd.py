"""Trajectory Consistency Distillation (TCD) sampling, in ComfyUI's k-diffusion convention.

Pure torch: no ComfyUI import. The reference is diffusers' ``TCDScheduler.step`` (Zheng et al., 2024,
"Trajectory Consistency Distillation", arXiv 2402.19159); the tests compare against it step by step.

Notation (diffusers / the paper)            ComfyUI "k-space" (what this module computes in)
  alpha_bar_t = alphas_cumprod[t]             sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)
  x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps      x = x_t * sqrt(1 + sigma_t^2) = x0 + sigma_t eps
  the model's output (eps, v or x0)           the denoiser D(x, sigma) = predicted x0 (any parameterisation)

One TCD step from timestep t (noise level sigma) to the next timestep t' (sigma'):

1. Predict the clean sample and the noise:  x0_hat = D(x, sigma);  eps_hat = (x - x0_hat) / sigma.
2. Choose the intermediate timestep  s = floor((1 - eta) * t'), in float32 as torch does. ``eta`` is the
   paper's gamma: eta = 0 keeps s = t' (deterministic, DDIM); eta = 1 gives s = 0 (fully stochastic).
3. Move along the predicted trajectory to s:  x_s = x0_hat + sigma_s * eps_hat
   (diffusers' ``pred_noised_sample = sqrt(alpha_bar_s) x0_hat + sqrt(1 - alpha_bar_s) eps_hat``).
4. Re-noise from s back up to t':  x' = x_s + sqrt(sigma'^2 - sigma_s^2) z,  z ~ N(0, I)
   (diffusers' ``sqrt(alpha_bar_t'/alpha_bar_s) x_s + sqrt(1 - alpha_bar_t'/alpha_bar_s) z``), drawn only
   when eta > 0 and this is not the last step.
5. The last step (sigma' = 0, so t' = 0 and s = 0) returns diffusers' DDPM-space sample at s = 0:
   sqrt(alpha_bar_0) x0_hat + sqrt(1 - alpha_bar_0) eps_hat  -- NOT x0_hat (that is ~0.1 off on a unit
   latent). With one step, eta therefore has no effect.

Everything the loop needs (t', s, sigma_s, the noise factor) is computed once, on the host in float32,
from the sigmas actually given; so the sampler works with any SIGMAS (any scheduler, partial schedules,
img2img) and the step loop does tensor arithmetic only: one model call per step, no host-device sync,
no float64 tensor on the model's device. The noise of step 4 comes from the ``noise_sampler`` the caller passes
(the ComfyUI glue passes core's own ``default_noise_sampler``, seeded by the prompt's seed, as core's
stochastic samplers do), so this module holds no copy of core's seeding.

Flow-matching models (SD3/FLUX; ComfyUI ``CONST`` sampling, x = (1 - sigma) x0 + sigma noise) use the
continuous analogue, documented in ``sample_tcd_flow``.
"""
import math

import torch
from tqdm.auto import trange


class SamplingError(ValueError):
    """Bad SIGMAS or options for a sampler; the message names the value and the fix."""


def check_sigmas(sigmas):
    """Host-side list of the sigmas, after checking that they describe a schedule (once, before the loop)."""
    values = [float(s) for s in sigmas.detach().flatten().cpu().tolist()]
    if len(values) < 2:
        raise SamplingError(
            f"SIGMAS has {len(values)} value(s) {values}: a schedule needs a start and an end sigma "
            f"(e.g. Hyper-SD Scheduler gives [sigma(999), 0] for 1 step)")
    bad = [i for i in range(len(values) - 1) if not values[i + 1] < values[i]]
    if bad or values[-1] < 0 or any(math.isnan(v) for v in values):
        raise SamplingError(
            f"SIGMAS must decrease strictly towards 0, got {values[:8]}{' ...' if len(values) > 8 else ''}: "
            f"wire a scheduler's output (Hyper-SD Scheduler, BasicScheduler) or flip/split it correctly")
    return values


def check_noise_sampler(noise_sampler, eta):
    """A stochastic run (eta > 0) needs a noise sampler; the deterministic one draws nothing."""
    if noise_sampler is None and eta > 0:
        raise SamplingError(f"eta {eta} re-noises every step but no noise_sampler was given: pass "
                            f"noise_sampler(sigma, sigma_next) -> unit Gaussian like x (in ComfyUI, core's "
                            f"default_noise_sampler seeded by the prompt's seed)")
    return noise_sampler


def check_eta(eta):
    eta = float(eta)
    if not 0.0 <= eta <= 1.0:
        raise SamplingError(f"eta {eta} is outside 0..1: 0 = deterministic, 1 = fully stochastic "
                            f"(the paper's gamma); Hyper-SD recommends 0.3 to 1.0")
    return eta


def nearest_timesteps(sigmas, sigma_table):
    """Integer timestep of each sigma: nearest entry of the table in log-sigma (ComfyUI's ``timestep()``).

    sigma = 0 maps to t = 0, as diffusers uses t' = 0 after its last step.
    """
    log_table = sigma_table.log()
    sig = torch.as_tensor(sigmas, dtype=torch.float32)
    idx = (sig.clamp(min=torch.finfo(torch.float32).tiny).log()[:, None] - log_table[None, :]).abs().argmin(dim=1)
    return torch.where(sig > 0, idx, torch.zeros_like(idx))


def tcd_plan(sigmas, sigma_table, eta):
    """Per-step constants of TCD for the given sigmas: list of (sigma, sigma_s, noise_factor, last).

    ``sigma_table`` is the model's float32 sigma for every integer timestep 0..T-1 (ComfyUI's
    ``model_sampling.sigmas``). Computed on the host, once.
    """
    values = check_sigmas(sigmas)
    eta = check_eta(eta)
    table = sigma_table.detach().to("cpu", torch.float32)
    t_next = nearest_timesteps(values[1:], table)
    # Step 2: s = floor((1 - eta) * t') in float32, exactly as diffusers (torch.floor on a float32 product).
    s = torch.floor(torch.tensor(1.0 - eta, dtype=torch.float32) * t_next.to(torch.float32)).long()
    sigma_s = table[s].tolist()
    plan = []
    for i, (sigma, sigma_next) in enumerate(zip(values[:-1], values[1:])):
        last = sigma_next == 0.0
        noise = 0.0 if last else math.sqrt(max(sigma_next ** 2 - sigma_s[i] ** 2, 0.0))
        plan.append((sigma, sigma_s[i], noise, last))
    return plan


@torch.no_grad()
def sample_tcd(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None,
               eta=0.3, sigma_table=None):
    """TCD for discrete-time eps/v/x0 models (SD1.5, SDXL), k-diffusion convention.

    Args:
        model: the denoiser, ``model(x, sigma * s_in, **extra_args)`` -> predicted x0.
        x: the start latent in k-space (noise already scaled to ``sigmas[0]``).
        sigmas: the schedule, strictly decreasing; a last value of 0 ends the trajectory (step 5).
        noise_sampler: ``noise_sampler(sigma, sigma_next)`` -> unit Gaussian like x; required when eta > 0 (in
            ComfyUI: core's ``default_noise_sampler`` seeded by the prompt's seed, as core's samplers draw theirs).
        eta: the paper's gamma, 0 = deterministic (DDIM), 1 = fully stochastic.
        sigma_table: float32 sigma for each integer training timestep (``model_sampling.sigmas``).
    """
    if sigma_table is None:
        raise SamplingError("sample_tcd needs the model's sigma table (model_sampling.sigmas)")
    extra_args = {} if extra_args is None else extra_args
    plan = tcd_plan(sigmas, sigma_table, eta)
    stochastic = eta > 0
    check_noise_sampler(noise_sampler, eta)
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(plan), disable=disable):
        sigma, sigma_s, noise_factor, last = plan[i]
        # Step 1: one model call.
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        eps = (x - denoised) / sigma
        # Step 3: along the trajectory to s.
        x = denoised + sigma_s * eps
        if last:
            # Step 5: the DDPM-space sample at s = 0 (sigma' = 0 makes k-space and DDPM space coincide).
            x = x * (1.0 / math.sqrt(1.0 + sigma_s ** 2))
        elif stochastic:
            # Step 4: re-noise to t' (drawn even when the factor is 0, to keep diffusers' random stream).
            x = x + noise_factor * noise_sampler(sigmas[i], sigmas[i + 1])
    return x


@torch.no_grad()
def sample_tcd_flow(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None,
                    eta=0.3):
    """TCD's rule for flow-matching models (SD3, FLUX; x = (1 - sigma) x0 + sigma noise).

    Continuous time has no integer grid, so step 2 becomes sigma_s = (1 - eta) * sigma'. Then:

    3. x_s = x + (sigma_s - sigma) * d with d = (x - x0_hat) / sigma: the flow's straight line to sigma_s
       (for eta = 0 this is exactly ComfyUI's ``euler`` step, and it is computed the same way).
    4. Re-noise from sigma_s to sigma':  x' = a x_s + sqrt(sigma'^2 - (a sigma_s)^2) z,
       a = (1 - sigma') / (1 - sigma_s), which keeps x' = (1 - sigma') x0 + sigma' noise in distribution.
    5. The last step (sigma' = 0) returns x0_hat, as Euler does.
    """
    extra_args = {} if extra_args is None else extra_args
    values = check_sigmas(sigmas)
    eta = check_eta(eta)
    plan = []
    for sigma, sigma_next in zip(values[:-1], values[1:]):
        sigma_s = (1.0 - eta) * sigma_next
        scale = (1.0 - sigma_next) / (1.0 - sigma_s)
        noise = math.sqrt(max(sigma_next ** 2 - (scale * sigma_s) ** 2, 0.0))
        plan.append((sigma_s, scale, noise, eta > 0 and sigma_next > 0))
    check_noise_sampler(noise_sampler, eta)
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(plan), disable=disable):
        sigma_s, scale, noise_factor, stochastic = plan[i]
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        d = (x - denoised) / sigmas[i]
        if stochastic:
            x = scale * (x + d * (sigma_s - sigmas[i])) + noise_factor * noise_sampler(sigmas[i], sigmas[i + 1])
        else:
            x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


def unit_variance_start(x, sigma0):
    """Rescale text-to-image start noise from ComfyUI's z*sigma0 to diffusers' z*sqrt(1 + sigma0^2).

    diffusers starts every text-to-image schedule from unit-variance noise in DDPM space, also one that
    begins below sigma_max (t=800 for the one-step UNet); ComfyUI scales by sqrt(1 + sigma0^2) only when
    sigma0 is sigma_max, by sigma0 otherwise (about 2 % off at t=800).
    """
    sigma0 = float(sigma0)
    return x * (math.sqrt(1.0 + sigma0 ** 2) / sigma0)
