"""ComfyUI glue for the TCD sampler and the Hyper-SD Scheduler.

The math lives in ``samplers/`` (pure torch/NumPy); this module finds the model's sampling object, checks
what it is and how it measures time (``sampling_time``: SD1.5/SDXL discrete, SD3 t in [0, 1000], FLUX t in
[0, 1]; anything else is refused by name), checks that a flow model is of a family whose pipeline schedule
it knows (``check_flow_family``: FLUX.2 shares FLUX.1's sampling class but not its schedule), picks the
schedule and the sampler rule for it, applies diffusers' text-to-image start noise, hands the samplers
core's own noise sampler and LCM step, and registers sampler ``tcd`` and schedulers ``trailing`` / ``tcd``
in KSampler's dropdowns.
"""
import inspect
import logging
import math
from typing import NamedTuple

import torch

import comfy.k_diffusion.sampling
import comfy.model_sampling
import comfy.samplers

from ..core import catalog
from ..samplers import schedules, tcd
from . import categories
from .modelfiles import describe, model_family

log = logging.getLogger("HyperSD")

ETA_TOOLTIP = ("TCD's stochasticity, the paper's gamma: 0 = deterministic (DDIM / Euler), 1 = fully "
               "stochastic. 0.3 is diffusers' default; the unified 1-step LoRA's examples use 1.0 (eta has no "
               "effect at 1 step); lower eta keeps more detail at 4-8 steps.")


class UnsupportedModelError(TypeError):
    """The model's sampling class has no Hyper-SD rule (the message names the class)."""


class SamplingTime(NamedTuple):
    """How a model's sampling object measures time, found by ``sampling_time``.

    kind: "discrete" (SD1.5/SDXL: 1000 integer training timesteps), "sd3" (ComfyUI's
    ModelSamplingDiscreteFlow, t in [0, 1000]) or "flux" (ModelSamplingFlux, t in [0, 1]).
    scale: the model's timestep for flow time 1 (sigma 1 before the shift); 1000 for SD3, 1 for FLUX.
    """
    kind: str
    scale: float


def _own(ms, base, *methods):
    """``ms`` is a ``base`` whose ``methods`` are the base's own (not replaced by a subclass)."""
    return isinstance(ms, base) and all(getattr(type(ms), m) is getattr(base, m) for m in methods)


def describe_sampling(ms):
    """The sampling object's class and its bases, as a user can look them up (e.g. 'ModelSampling
    (ModelSamplingFlux, CONST)')."""
    bases = [c.__name__ for c in type(ms).__mro__[1:] if c not in (torch.nn.Module, object)]
    return f"{type(ms).__name__} ({', '.join(bases)})" if bases else type(ms).__name__


KNOWN_SAMPLING = ("ModelSamplingDiscrete with 1000 timesteps (SD1.5, SDXL), ModelSamplingDiscreteFlow with "
                  "multiplier 1000 (SD3) and ModelSamplingFlux (FLUX.1-dev)")


def _unsupported(ms, detail=""):
    return UnsupportedModelError(
        f"[Hyper-SD] the Hyper-SD schedules know {KNOWN_SAMPLING}; this model samples with "
        f"{describe_sampling(ms)}{detail}, which is not a Hyper-SD model family (a Hyper-SD schedule on it would "
        f"be silently wrong). Use a core scheduler for this model, or load an SD1.5/SDXL/SD3/FLUX.1-dev model.")


def sampling_time(ms):
    """The time scale of ComfyUI's sampling object ``ms``; UnsupportedModelError for any other class.

    Capability checks on ComfyUI's own classes (their ``sigma``/``timestep`` not replaced by a subclass),
    then, for flow models, a check that sigma(scale) is 1: a class whose time scale differs from the one its
    class implies is refused, never given a wrong schedule.
    """
    mods = comfy.model_sampling
    if isinstance(ms, mods.CONST):
        if _own(ms, mods.ModelSamplingFlux, "sigma", "timestep"):
            return _checked_flow(ms, SamplingTime("flux", 1.0))
        if _own(ms, mods.ModelSamplingDiscreteFlow, "sigma", "timestep"):
            multiplier = float(getattr(ms, "multiplier", float("nan")))
            if multiplier == schedules.NUM_TRAIN_TIMESTEPS:
                return _checked_flow(ms, SamplingTime("sd3", multiplier))
            raise _unsupported(ms, f" with multiplier {multiplier:g} (SD3 uses 1000; FLUX.1-schnell and AuraFlow "
                                   f"use 1)")
    elif _own(ms, mods.ModelSamplingDiscrete, "sigma", "timestep") and isinstance(ms, mods.EPS):
        count = len(ms.sigmas)
        if count == schedules.NUM_TRAIN_TIMESTEPS:
            return SamplingTime("discrete", 1.0)
        raise _unsupported(ms, f" with {count} training timesteps (Hyper-SD's schedules are on 1000)")
    raise _unsupported(ms)


def _checked_flow(ms, time):
    top = float(ms.sigma(torch.tensor(time.scale, dtype=torch.float32)))
    mid = float(ms.sigma(torch.tensor(time.scale / 2, dtype=torch.float32)))
    if not (math.isclose(top, 1.0, abs_tol=1e-6) and 0.0 < mid < 1.0):
        raise _unsupported(ms, f" (shift {getattr(ms, 'shift', '?')}): its sigma(t={time.scale:g}) is {top:.6g}, "
                               f"not 1, so its time scale or shift is not one a flow pipeline uses")
    return time


#: The flow families whose pipeline schedule the Hyper-SD Scheduler gives, by ``sampling_time`` kind. Other
#: models share these sampling classes (FLUX.2, Chroma and Qwen-Image sample like FLUX; HiDream, Lumina and WAN
#: like SD3) but not the schedules. A discrete model's DDIM trailing schedule follows from its own noise
#: schedule, so any 1000-step discrete model is placed.
FLOW_FAMILIES = {"flux": (catalog.FLUX,), "sd3": (catalog.SD3, "SD3.5 Large", "SD3.5 Medium", "SD3.5")}


def check_flow_family(model, time):
    """Refuse a flow model whose family has another pipeline schedule than the one its sampling class implies."""
    if time.kind == "discrete":
        return time
    family = model_family(model)
    if family not in FLOW_FAMILIES[time.kind]:
        raise UnsupportedModelError(
            f"[Hyper-SD] this model is {describe(model)} (ComfyUI's {type(model.model.model_config).__name__} "
            f"class). It samples like {time.kind.upper()}, but the Hyper-SD Scheduler's schedule for that is "
            f"{PIPELINES[time.kind]}, made for {' / '.join(FLOW_FAMILIES[time.kind])}: on this model it would be "
            f"silently wrong, and no Hyper-SD file is for it. Use the scheduler its own workflow uses (e.g. core's "
            f"BasicScheduler{', Flux2Scheduler' if family == 'FLUX.2' else ''}).")
    return time


def sampling_kind(model_sampling):
    """The TCD sampler's rule: 'discrete' (SD1.5/SDXL-style eps, v or x0 on an integer timestep grid) or
    'flow' (any CONST model: the flow rule works in sigma alone).

    Capability checks on ComfyUI's own sampling classes; anything else raises UnsupportedModelError.
    """
    ms = model_sampling
    if isinstance(ms, comfy.model_sampling.CONST):
        return "flow"
    if isinstance(ms, comfy.model_sampling.EPS) and _own(ms, comfy.model_sampling.ModelSamplingDiscrete,
                                                         "sigma", "timestep"):
        return "discrete"
    raise UnsupportedModelError(
        f"[Hyper-SD] the Hyper-SD TCD sampler supports discrete-time eps/v/x0 models (SD1.5, SDXL) and flow "
        f"models (SD3, FLUX); this model samples with {describe_sampling(ms)}. Use a core sampler for it.")


def _is_text_to_image(model, sigmas, model_sampling):
    """True when the start latent is empty and sigma0 is below sigma_max (where ComfyUI's noise is z*sigma0)."""
    latent = getattr(model, "latent_image", None)
    if latent is None:
        return False
    sigma0, sigma_max = float(sigmas[0]), float(model_sampling.sigma_max)
    if sigma0 >= sigma_max or math.isclose(sigma0, sigma_max, rel_tol=1e-5):
        return False
    return not bool(torch.any(latent))


def core_noise_sampler(x, extra_args, noise_sampler=None):
    """The noise sampler core's own stochastic samplers use: ``default_noise_sampler`` seeded by the prompt's
    seed (``extra_args["seed"]``), unless the caller passed one. Taken from the host, so its seeding is core's on
    every version (since 0.7 it seeds with seed + 1 on the CPU, so the first injected noise is not the start
    noise again)."""
    if noise_sampler is not None:
        return noise_sampler
    seed = (extra_args or {}).get("seed", None)
    return comfy.k_diffusion.sampling.default_noise_sampler(x, seed=seed)


@torch.no_grad()
def sample_tcd(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None, eta=0.3):
    """KSAMPLER function: TCD with ``eta`` on whatever SIGMAS it is given (see samplers/tcd.py)."""
    ms = model.inner_model.inner_model.model_sampling
    noise_sampler = core_noise_sampler(x, extra_args, noise_sampler) if eta > 0 else noise_sampler
    if sampling_kind(ms) == "flow":
        return tcd.sample_tcd_flow(model, x, sigmas, extra_args, callback, disable, noise_sampler, eta=eta)
    if len(sigmas) > 1 and _is_text_to_image(model, sigmas, ms):
        x = tcd.unit_variance_start(x, sigmas[0])
    return tcd.sample_tcd(model, x, sigmas, extra_args, callback, disable, noise_sampler, eta=eta,
                          sigma_table=ms.sigmas)


@torch.no_grad()
def sample_lcm_unit_start(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """KSAMPLER function for the one-step SDXL UNet: diffusers' ``LCMScheduler(timesteps=[800])``, which is
    core's ``sample_lcm`` (x0 prediction, re-noised to the next sigma) started from diffusers' unit-variance
    noise instead of core's z * sigma0 (``tcd.unit_variance_start``). LCM's boundary condition
    c_skip = 0.25 / ((10 t)^2 + 0.25) is 4e-9 at t=800, so core's step, which omits it, is diffusers' step."""
    ms = model.inner_model.inner_model.model_sampling
    if sampling_kind(ms) != "discrete":
        raise UnsupportedModelError(f"the one-step UNet sampler is for SDXL (discrete eps) models; this model "
                                    f"samples with {type(ms).__name__}")
    tcd.check_sigmas(sigmas)
    if len(sigmas) > 1 and _is_text_to_image(model, sigmas, ms):
        x = tcd.unit_variance_start(x, sigmas[0])
    return comfy.k_diffusion.sampling.sample_lcm(model, x, sigmas, extra_args=extra_args, callback=callback,
                                                 disable=disable, noise_sampler=noise_sampler)


PIPELINES = {"sd3": "StableDiffusion3Pipeline (FlowMatchEulerDiscreteScheduler with the model's shift)",
             "flux": "FluxPipeline (sigmas linspace(1, 1/N, N), shifted by the model's ModelSamplingFlux mu)"}


def hyper_sd_sigmas(model_sampling, steps, denoise=1.0, start=schedules.NUM_TRAIN_TIMESTEPS - 1,
                    spacing="trailing", max_flow_steps=schedules.MAX_STEPS):
    """SIGMAS of the Hyper-SD recipe for this model's family, then 0.

    SD1.5/SDXL: diffusers' DDIM trailing timesteps (``spacing="trailing"``, img2img keeps the last
    int(steps * denoise)) or TCDScheduler's (``"tcd"``, img2img = ``set_timesteps(steps, strength=denoise)``).
    SD3/FLUX: the pipeline's default schedule (see PIPELINES), img2img as diffusers' flow img2img pipelines.
    Timesteps become sigmas through the model's own ``sigma(t)`` (its shift included). ``max_flow_steps``
    caps a flow schedule's length (the node's range; None for KSampler's int(steps / denoise)).
    """
    ms = model_sampling
    time = sampling_time(ms)
    if spacing not in schedules.SPACINGS:
        raise schedules.ScheduleError(f"spacing {spacing!r} is not one of {', '.join(schedules.SPACINGS)}")
    if time.kind == "discrete":
        timesteps = _discrete_timesteps(steps, denoise, start, spacing)
    else:
        timesteps = [u * time.scale for u in _flow_times(ms, time, steps, denoise, start, spacing,
                                                         max_flow_steps)]
    if not timesteps:
        return torch.FloatTensor([])
    sigmas = ms.sigma(torch.tensor(timesteps, dtype=torch.float32)).to("cpu", torch.float32)
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def _discrete_timesteps(steps, denoise, start, spacing):
    if spacing == "trailing":
        return schedules.img2img_timesteps(schedules.trailing_timesteps(steps, start), denoise)
    if int(start) != schedules.NUM_TRAIN_TIMESTEPS - 1:
        raise schedules.ScheduleError(
            f"start_timestep {start} with spacing 'tcd': TCDScheduler's timesteps (the unified LoRAs' recipe) "
            f"start at 999; set start_timestep to 999, or use spacing 'trailing' (800 is for the one-step UNet)")
    if float(denoise) == 0.0:
        return []
    return schedules.tcd_timesteps(steps, denoise)


def _flow_times(ms, time, steps, denoise, start, spacing, max_steps=schedules.MAX_STEPS):
    """The flow pipeline's schedule in unshifted flow time u in [0, 1] (the model's timestep is u * scale)."""
    if spacing != "trailing":
        raise schedules.ScheduleError(
            f"spacing {spacing!r} is TCDScheduler's timesteps for the unified SD1.5/SDXL LoRAs; this is a flow model "
            f"({time.kind.upper()}): use spacing 'trailing', which gives {PIPELINES[time.kind]}'s schedule")
    if int(start) != schedules.NUM_TRAIN_TIMESTEPS - 1:
        raise schedules.ScheduleError(
            f"start_timestep {start} on a flow model ({time.kind.upper()}): flow schedules start at sigma 1; "
            f"set start_timestep to 999 (other values are for the one-step SDXL UNet)")
    if time.kind == "flux":
        times = schedules.flux_flow_times(steps, max_steps)
    else:
        def at(u):
            return float(ms.sigma(torch.tensor(u * time.scale, dtype=torch.float32)))
        times = schedules.sd3_flow_times(steps, at(1.0), at(1.0 / schedules.NUM_TRAIN_TIMESTEPS), max_steps)
    return schedules.flow_img2img_times(times, denoise)


def trailing_scheduler(model_sampling, steps):
    """KSampler scheduler ``trailing``: the Hyper-SD Scheduler's default. KSampler applies its own denoise (see
    ``ksampler_sigmas``)."""
    return ksampler_sigmas(model_sampling, steps, "trailing")


def tcd_scheduler(model_sampling, steps):
    """KSampler scheduler ``tcd``: TCDScheduler's timesteps, the unified LoRAs' recipe (SD1.5/SDXL)."""
    return ksampler_sigmas(model_sampling, steps, "tcd")


# How many distinct timesteps a schedule of each kind has (flow schedules are continuous: no limit).
KSAMPLER_LIMITS = {("discrete", "trailing"): schedules.NUM_TRAIN_TIMESTEPS,
                   ("discrete", "tcd"): schedules.TCD_ORIGINAL_STEPS}


def ksampler_sigmas(model_sampling, count, spacing):
    """SIGMAS of a KSampler scheduler (``trailing`` / ``tcd``) for the step count KSampler asks for.

    Below denoise 1, KSampler (and BasicScheduler) ask a scheduler for ``int(steps / denoise)`` steps and
    keep the last ``steps + 1`` sigmas, one more step when the sampler drops the next-to-last sigma (dpm_2,
    uni_pc, ...): the full-length Hyper-SD schedule is given, as core's schedulers give theirs. A count
    beyond the schedule's distinct timesteps (50 on TCD's grid, 1000 for DDIM trailing) is refused in the
    user's own numbers, steps and denoise.
    """
    time = sampling_time(model_sampling)
    limit = KSAMPLER_LIMITS.get((time.kind, spacing))
    if limit is not None and int(count) > limit:
        raise schedules.ScheduleError(_too_many_steps(int(count), spacing, limit, ksampler_request(int(count))))
    return hyper_sd_sigmas(model_sampling, count, spacing=spacing, max_flow_steps=None)


def ksampler_request(count):
    """(steps, denoise) of the KSampler or BasicScheduler call that asked a scheduler for ``count`` steps, or
    None. ComfyUI's scheduler interface passes the count alone; the caller's own ``steps`` and ``denoise``
    are read from its frame (read-only, and only to word an error): a caller whose int(steps / denoise),
    or steps at denoise 1, is ``count`` or ``count - 1`` (a sampler that drops the next-to-last sigma)."""
    frame = inspect.currentframe()
    try:
        frame = frame.f_back
        for _ in range(12):
            if frame is None:
                return None
            found = _steps_and_denoise(frame.f_locals)
            if found is not None and _asked(*found) in (count, count - 1):
                return found
            frame = frame.f_back
        return None
    finally:
        del frame


def _steps_and_denoise(names):
    if "steps" not in names or "denoise" not in names:
        return None
    steps, denoise = names["steps"], names["denoise"]
    if denoise is None:
        denoise = 1.0  # KSampler(denoise=None)
    if isinstance(steps, bool) or not isinstance(steps, int) or isinstance(denoise, bool) \
            or not isinstance(denoise, (int, float)) or not 0.0 < denoise <= 1.0:
        return None
    return steps, float(denoise)


def _asked(steps, denoise):
    """The count KSampler asks its scheduler for (comfy.samplers.KSampler.set_steps, BasicScheduler)."""
    return steps if denoise > 0.9999 else int(steps / denoise)


def _too_many_steps(count, spacing, limit, request):
    what = {"tcd": f"takes its timesteps from TCD's {limit}-step grid",
            "trailing": f"has {limit} distinct timesteps (DDIM trailing)"}[spacing]
    head = f"[Hyper-SD] the '{spacing}' scheduler {what}"
    if request is None:
        return (f"{head}, but was asked for {count} steps. With denoise below 1, KSampler asks its scheduler for "
                f"int(steps / denoise) steps and keeps the last ones: keep steps / denoise at most {limit}.")
    steps, denoise = request
    asked, extra = _asked(steps, denoise), count - _asked(steps, denoise)
    text = f"int({steps} / {denoise:g}) = {asked}" if denoise <= 0.9999 else f"{steps}"
    text += f" + 1 = {count} steps (the sampler drops the next-to-last sigma, as dpm_2 and uni_pc do)" if extra \
        else " steps"
    fixes = []
    lowest = next((k / 100 for k in range(1, 101) if _asked(steps, k / 100) + extra <= limit), None)
    if lowest is not None and lowest > denoise:
        fixes.append(f"raise denoise to at least {lowest:g}")
    fewer = max((n for n in range(1, steps) if _asked(n, denoise) + extra <= limit), default=None)
    if fewer is not None:
        fixes.append(f"lower steps to {fewer}")
    if spacing == "tcd" and denoise <= 0.9999:
        fixes.append("for img2img with TCD's own strength rule use the Hyper-SD Scheduler (spacing 'tcd', its "
                     "denoise) with SamplerCustom")
    fixes.append("use another sampler" if extra else "use another scheduler")
    return (f"{head}: steps {steps} at denoise {denoise:g} asks it for {text}; KSampler runs that many and "
            f"keeps the last {steps}. To fix: {'; or '.join(fixes)}.")


class HyperSDTCDSampler:
    DESCRIPTION = ("TCD sampler (Trajectory Consistency Distillation) for Hyper-SD, numerically equal to "
                   "diffusers' TCDScheduler. Works with any SIGMAS; at eta 0 on the Hyper-SD Scheduler it is "
                   "DDIM 'trailing', the N-step LoRAs' recipe. Wire into SamplerCustom / SamplerCustomAdvanced.")
    CATEGORY = categories.core_category("samplers")
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


SPACING_TOOLTIP = (
    "SD1.5/SDXL timesteps. 'trailing': diffusers' DDIM trailing (4 steps: 999, 749, 499, 249), the N-step and CFG "
    "LoRAs' and the one-step UNet's recipe. 'tcd': diffusers' TCDScheduler timesteps (4 steps: 999, 759, 499, "
    "259), the unified 1-step LoRAs' recipe at any step count. SD3/FLUX take 'trailing', which there is the "
    "pipeline's own schedule. Missing in workflows saved before this input existed: 'trailing'.")


class HyperSDScheduler:
    DESCRIPTION = (
        "The official Hyper-SD schedule for the model's family. SD1.5/SDXL: diffusers' DDIM 'trailing' timesteps "
        "(999, 749, 499, 249 for 4 steps; core 'simple' misses by one at 3, 6, 7 ... steps) or, with spacing "
        "'tcd', TCDScheduler's (999, 759, 499, 259), the unified LoRAs' recipe; start at 800 for the one-step "
        "SDXL UNet. SD3: StableDiffusion3Pipeline's default, FlowMatchEulerDiscreteScheduler(shift 3, or the "
        "shift ModelSamplingSD3 sets), 4 steps: 1.0, 0.8577, 0.6022, 0.0089 (the near-zero last step is what "
        "the released recipe ran). FLUX: FluxPipeline's sigmas linspace(1, 1/N, N) shifted by the model's "
        "ModelSamplingFlux (wire it with the image size; 1024x1024 by default). After a run the node shows the "
        "timesteps and sigmas it produced and, on SD3/FLUX, the shift.")
    CATEGORY = categories.core_category("schedulers")
    RETURN_TYPES = ("SIGMAS",)
    OUTPUT_TOOLTIPS = ("The recipe's sigmas followed by 0, for SamplerCustom's sigmas input.",)
    FUNCTION = "schedule"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model to sample; its own sampling object (noise schedule, shift) "
                                           "turns timesteps into sigmas."}),
            "steps": ("INT", {"default": 4, "min": 1, "max": schedules.MAX_STEPS,
                              "tooltip": "Number of steps: the step count of the Hyper-SD file (1, 2, 4, 8, 12; "
                                         "SD3 4/8/16, FLUX 8/16; the unified 1-step LoRA works for 1 to 8)."}),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                  "tooltip": "1.0 for text-to-image. Below 1 (img2img), as diffusers: 'trailing' "
                                             "keeps the last int(steps x denoise) timesteps, so an N-step LoRA "
                                             "still sees its own; 'tcd' is TCDScheduler.set_timesteps(steps, "
                                             "strength=denoise); SD3/FLUX keep the last steps - int(steps - "
                                             "steps x denoise) like their img2img pipelines. 0 returns the latent "
                                             "unchanged."}),
            "start_timestep": ("INT", {"default": 999, "min": 1, "max": 999,
                                       "tooltip": "The first timestep: 999 for the LoRAs, 800 for the one-step "
                                                  "SDXL UNet (1 step at 800 gives sigma(800), 0). SD3/FLUX and "
                                                  "spacing 'tcd' need 999."}),
        }, "optional": {
            # Optional and last: workflows saved without it keep their widget order and load as 'trailing'.
            "spacing": (list(schedules.SPACINGS), {"default": "trailing", "tooltip": SPACING_TOOLTIP}),
        }}

    def schedule(self, model, steps, denoise, start_timestep, spacing="trailing"):
        """The node's function: ``get_sigmas``, plus the schedule shown on the node (its ``ui`` output)."""
        (sigmas,) = self.get_sigmas(model, steps, denoise, start_timestep, spacing)
        shown = schedule_display(model.get_model_object("model_sampling"), sigmas, spacing)
        return {"ui": {"hypersd_schedule": [shown]}, "result": (sigmas,)}

    def get_sigmas(self, model, steps, denoise, start_timestep, spacing="trailing"):
        ms = model.get_model_object("model_sampling")
        check_flow_family(model, sampling_time(ms))
        return (hyper_sd_sigmas(ms, steps, denoise, start_timestep, spacing),)


_SCHEDULE_NAMES = {"discrete": "SD1.5/SDXL", "sd3": "SD3", "flux": "FLUX"}


def schedule_display(ms, sigmas, spacing):
    """What the Hyper-SD Scheduler produced, as the node shows it: the timesteps (the model's own ``timestep(σ)``:
    integer training timesteps on SD1.5/SDXL, σ·1000 on flow models as diffusers counts them), the sigmas and,
    on flow models, the shift the model's sampling object applied (FLUX: ModelSamplingFlux's mu)."""
    time = sampling_time(ms)
    body = sigmas[:-1] if len(sigmas) else sigmas
    if time.kind == "discrete":
        timesteps = [int(round(float(t))) for t in ms.timestep(body)] if len(body) else []
        shift = None
    else:
        timesteps = [round(float(x) * schedules.NUM_TRAIN_TIMESTEPS, 3) for x in body]
        shift = round(float(ms.shift), 6)
    data = {"model": _SCHEDULE_NAMES[time.kind], "spacing": spacing if time.kind == "discrete" else "trailing",
            "steps": len(body), "timesteps": timesteps, "sigmas": [round(float(x), 6) for x in sigmas],
            "shift": shift}
    data["text"] = schedule_text(data)
    return data


def _numbers(values, fmt):
    items = [fmt(v) for v in values]
    return ", ".join(items if len(items) <= 12 else items[:8] + ["…"] + items[-3:])


def schedule_text(d):
    head = f"{d['model']} · {d['steps']} steps"
    if d["model"] == "SD1.5/SDXL":
        head += f" · {d['spacing']}"
    elif d["model"] == "FLUX":
        head += f" · shift (mu) {d['shift']:.4g}"
    else:
        head += f" · shift {d['shift']:g}"
    return "\n".join([head, "timesteps: " + _numbers(d["timesteps"], lambda t: f"{t:g}"),
                      "sigmas: " + _numbers(d["sigmas"], lambda x: f"{x:.4g}")])


def _register_scheduler(name, function, added):
    handlers = getattr(comfy.samplers, "SCHEDULER_HANDLERS", None)
    if handlers is None:
        log.warning("[Hyper-SD] this ComfyUI has no scheduler registry (SCHEDULER_HANDLERS); the '%s' scheduler "
                    "is only available as the Hyper-SD Scheduler node.", name)
    elif name in handlers or name in comfy.samplers.SCHEDULER_NAMES:
        log.warning("[Hyper-SD] a scheduler named '%s' already exists (another pack?); not replacing it. Use the "
                    "Hyper-SD Scheduler node instead.", name)
    else:
        handlers[name] = comfy.samplers.SchedulerHandler(function, use_ms=True)
        comfy.samplers.SCHEDULER_NAMES.append(name)
        added.append(f"scheduler '{name}'")


def register_ksampler_names():
    """Add sampler ``tcd`` and schedulers ``trailing`` and ``tcd`` to KSampler's dropdowns; never replace a
    name."""
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
    _register_scheduler("trailing", trailing_scheduler, added)
    _register_scheduler("tcd", tcd_scheduler, added)
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
