"""The one-step SDXL UNet's recipe: diffusers' LCMScheduler, in ComfyUI's k-diffusion convention.

Pure torch: no ComfyUI import. ``Hyper-SDXL-1step-Unet`` is run in diffusers with
``LCMScheduler`` and ``timesteps=[800]``: one model call at t=800 on unit-variance noise, returning the
model's x0 prediction. Per step, from sigma to sigma':

1. x0_hat = D(x, sigma) (one model call).
   diffusers applies LCM's boundary condition ``c_out * x0_hat + c_skip * x_t`` with
   c_skip = 0.25 / ((10 t)^2 + 0.25): 4e-9 at t=800, so it is left out (well inside float32 noise of the
   UNet itself).
2. sigma' = 0: return x0_hat. Otherwise re-noise: x' = x0_hat + sigma' z, z ~ N(0, I) (diffusers'
   ``sqrt(alpha_bar') x0_hat + sqrt(1 - alpha_bar') z`` in k-space).

The start noise (diffusers' unit variance at t=800 instead of ComfyUI's z * sigma0) is the node layer's
job, as for TCD (``tcd.unit_variance_start``).
"""
import torch
from tqdm.auto import trange

from .noise import seeded_noise_sampler
from .tcd import check_sigmas


@torch.no_grad()
def sample_lcm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    extra_args = {} if extra_args is None else extra_args
    values = check_sigmas(sigmas)
    if noise_sampler is None and len(values) > 2:
        noise_sampler = seeded_noise_sampler(x, extra_args.get("seed", None))
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(values) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = denoised
        if values[i + 1] > 0:
            x = x + values[i + 1] * noise_sampler(sigmas[i], sigmas[i + 1])
    return x
