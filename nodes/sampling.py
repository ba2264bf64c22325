"""ComfyUI glue for the TCD sampler and the Hyper-SD trailing scheduler.

The math lives in ``samplers/`` (pure torch); this module finds the model's sampling object, picks the
rule for its kind (discrete eps/v/x0, or flow), applies diffusers' text-to-image start noise, and
registers ``tcd`` / ``trailing`` in KSampler's dropdowns.
"""
import logging
import math

import torch

import comfy.k_diffusion.sampling
import comfy.model_sampling
import comfy.samplers

from ..samplers import lcm, schedules, tcd

log = logging.getLogger("HyperSD")

ETA_TOOLTIP = ("TCD's stochasticity, the paper's gamma: 0 = deterministic (DDIM / Euler), 1 = fully "
               "stochastic. 0.3 is diffusers' default; the unified 1-step LoRA's examples use 1.0 (eta has no "
               "effect at 1 step); lower eta keeps more detail at 4-8 steps.")


class UnsupportedModelError(TypeError):
    """The model's sampling type has no TCD rule."""


def sampling_kind(model_sampling):
    """'discrete' (SD1.5/SDXL-style eps, v or x0 on an integer timestep grid) or 'flow' (SD3/FLUX).

    Capability checks on ComfyUI's own sampling classes; anything else raises UnsupportedModelError.
    """
    ms = model_sampling
    if isinstance(ms, comfy.model_sampling.CONST):
        return "flow"
    if (isinstance(ms, comfy.model_sampling.ModelSamplingDiscrete) and isinstance(ms, comfy.model_sampling.EPS)
            and type(ms).timestep is comfy.model_sampling.ModelSamplingDiscrete.timestep):
        return "discrete"
    kinds = ", ".join(c.__name__ for c in type(ms).__mro__[1:-2])
    raise UnsupportedModelError(
        f"the Hyper-SD TCD sampler supports discrete-time eps/v/x0 models (SD1.5, SDXL) and flow models "
        f"(SD3, FLUX); this model samples with {type(ms).__name__} ({kinds}). Use a core sampler for it.")


def _is_text_to_image(model, sigmas, model_sampling):
    """True when the start latent is empty and sigma0 is below sigma_max (where ComfyUI's noise is z*sigma0)."""
    latent = getattr(model, "latent_image", None)
    if latent is None:
        return False
    sigma0, sigma_max = float(sigmas[0]), float(model_sampling.sigma_max)
    if sigma0 >= sigma_max or math.isclose(sigma0, sigma_max, rel_tol=1e-5):
        return False
    return not bool(torch.any(latent))


@torch.no_grad()
def sample_tcd(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None, eta=0.3):
    """KSAMPLER function: TCD with ``eta`` on whatever SIGMAS it is given (see samplers/tcd.py)."""
    ms = model.inner_model.inner_model.model_sampling
    if sampling_kind(ms) == "flow":
        return tcd.sample_tcd_flow(model, x, sigmas, extra_args, callback, disable, noise_sampler, eta=eta)
    if len(sigmas) > 1 and _is_text_to_image(model, sigmas, ms):
        x = tcd.unit_variance_start(x, sigmas[0])
    return tcd.sample_tcd(model, x, sigmas, extra_args, callback, disable, noise_sampler, eta=eta,
                          sigma_table=ms.sigmas)


@torch.no_grad()
def sample_lcm_unit_start(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """KSAMPLER function for the one-step SDXL UNet: diffusers' LCM recipe (x0 prediction) from
    unit-variance noise (see samplers/lcm.py)."""
    ms = model.inner_model.inner_model.model_sampling
    if sampling_kind(ms) != "discrete":
        raise UnsupportedModelError(f"the one-step UNet sampler is for SDXL (discrete eps) models; this model "
                                    f"samples with {type(ms).__name__}")
    if len(sigmas) > 1 and _is_text_to_image(model, sigmas, ms):
        x = tcd.unit_variance_start(x, sigmas[0])
    return lcm.sample_lcm(model, x, sigmas, extra_args, callback, disable, noise_sampler)


def hyper_sd_sigmas(model_sampling, steps, denoise=1.0, start=schedules.NUM_TRAIN_TIMESTEPS - 1):
    """SIGMAS at diffusers' trailing timesteps (img2img: the last int(steps * denoise) of them), then 0."""
    if sampling_kind(model_sampling) == "flow":
        timesteps = schedules.flow_timesteps(steps, start)
    else:
        timesteps = schedules.trailing_timesteps(steps, start)
    timesteps = schedules.img2img_timesteps(timesteps, denoise)
    if not timesteps:
        return torch.FloatTensor([])
    t = torch.tensor(timesteps, dtype=torch.float32)
    sigmas = model_sampling.sigma(t).to("cpu", torch.float32)
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def trailing_scheduler(model_sampling, steps):
    """KSampler scheduler ``trailing``: Hyper-SD's schedule from t=999 (KSampler applies its own denoise)."""
    return hyper_sd_sigmas(model_sampling, steps)


class HyperSDTCDSampler:
    DESCRIPTION = ("TCD sampler (Trajectory Consistency Distillation) for Hyper-SD, numerically equal to "
                   "diffusers' TCDScheduler. Works with any SIGMAS; at eta 0 on the Hyper-SD Scheduler it is "
                   "DDIM 'trailing', the N-step LoRAs' recipe. Wire into SamplerCustom / SamplerCustomAdvanced.")
    CATEGORY = "sampling/custom_sampling/samplers"
    RETURN_TYPES = ("SAMPLER",)
    OUTPUT_TOOLTIPS = ("The TCD sampler, for SamplerCustom's or SamplerCustomAdvanced's sampler input.",)
    FUNCTION = "get_sampler"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "eta": ("FLOAT", {"default": 0.3, "min": 0.0, "max": 1.0, "step": 0.01, "round": False,
                              "tooltip": ETA_TOOLTIP}),
        }}

    def get_sampler(self, eta):
        return (comfy.samplers.KSAMPLER(sample_tcd, {"eta": tcd.check_eta(eta)}),)


class HyperSDScheduler:
    DESCRIPTION = ("Hyper-SD's schedule: exactly diffusers' DDIM 'trailing' timesteps (999, 749, 499, 249 for "
                   "4 steps), which core 'simple' misses by one at 3, 6, 7 ... steps. Start at 800 for the "
                   "one-step SDXL UNet. For flow models (SD3/FLUX) it gives sigmas 1, 1-1/N, ... with the "
                   "model's shift.")
    CATEGORY = "sampling/custom_sampling/schedulers"
    RETURN_TYPES = ("SIGMAS",)
    OUTPUT_TOOLTIPS = ("Sigmas at the trailing timesteps followed by 0, for SamplerCustom's sigmas input.",)
    FUNCTION = "get_sigmas"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model to sample; its own noise schedule turns timesteps into "
                                           "sigmas."}),
            "steps": ("INT", {"default": 4, "min": 1, "max": schedules.MAX_STEPS,
                              "tooltip": "Number of steps: use the step count of the Hyper-SD file (1, 2, 4, 8, "
                                         "12; the unified 1-step LoRA works for 1 to 8)."}),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                  "tooltip": "1.0 for text-to-image. Below 1 (img2img) keeps the last "
                                             "int(steps x denoise) trailing timesteps, diffusers' img2img "
                                             "convention, so an N-step LoRA still sees the timesteps it was "
                                             "trained on. 0 returns the latent unchanged."}),
            "start_timestep": ("INT", {"default": 999, "min": 1, "max": 999,
                                       "tooltip": "The first timestep: 999 for the LoRAs, 800 for the one-step "
                                                  "SDXL UNet (1 step at 800 gives sigma(800), 0)."}),
        }}

    def get_sigmas(self, model, steps, denoise, start_timestep):
        return (hyper_sd_sigmas(model.get_model_object("model_sampling"), steps, denoise, start_timestep),)


def register_ksampler_names():
    """Add sampler ``tcd`` and scheduler ``trailing`` to KSampler's dropdowns; never replace a name."""
    added = []
    if "tcd" in comfy.samplers.KSAMPLER_NAMES or hasattr(comfy.k_diffusion.sampling, "sample_tcd"):
        log.warning("[Hyper-SD] a sampler named 'tcd' already exists (another pack?); not replacing it. "
                    "Use the Hyper-SD TCD Sampler node instead.")
    else:
        comfy.k_diffusion.sampling.sample_tcd = sample_tcd
        comfy.samplers.KSAMPLER_NAMES.append("tcd")
        if "tcd" not in comfy.samplers.SAMPLER_NAMES:
            comfy.samplers.SAMPLER_NAMES.append("tcd")
        added.append("sampler 'tcd'")
    handlers = getattr(comfy.samplers, "SCHEDULER_HANDLERS", None)
    if handlers is None:
        log.warning("[Hyper-SD] this ComfyUI has no scheduler registry (SCHEDULER_HANDLERS); the 'trailing' "
                    "scheduler is only available as the Hyper-SD Scheduler node.")
    elif "trailing" in handlers or "trailing" in comfy.samplers.SCHEDULER_NAMES:
        log.warning("[Hyper-SD] a scheduler named 'trailing' already exists (another pack?); not replacing it. "
                    "Use the Hyper-SD Scheduler node instead.")
    else:
        handlers["trailing"] = comfy.samplers.SchedulerHandler(trailing_scheduler, use_ms=True)
        comfy.samplers.SCHEDULER_NAMES.append("trailing")
        added.append("scheduler 'trailing'")
    if added:
        log.info("[Hyper-SD] added to KSampler: %s", ", ".join(added))
    return added


NODE_CLASS_MAPPINGS = {
    "HyperSDTCDSampler": HyperSDTCDSampler,
    "HyperSDScheduler": HyperSDScheduler,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "HyperSDTCDSampler": "Hyper-SD TCD Sampler",
    "HyperSDScheduler": "Hyper-SD Scheduler",
}
