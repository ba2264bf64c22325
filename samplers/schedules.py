"""Hyper-SD timestep schedules, exactly as diffusers computes them.

Pure Python/NumPy: no ComfyUI import, no torch tensors. The node layer turns the integer timesteps
returned here into sigmas through the model's own sampling object (``model_sampling.sigma(t)``), so the
model sees exactly the integer timesteps it was distilled on.

Hyper-SD's N-step LoRAs were trained for DDIM with ``timestep_spacing="trailing"``
(diffusers ``DDIMScheduler.set_timesteps``)::

    step_ratio = num_train_timesteps / N
    t_i = round(num_train_timesteps - i * step_ratio) - 1        (NumPy round: half to even)

so N=4 gives 999, 749, 499, 249 and N=3 gives 999, 666, 332. ComfyUI's ``simple`` scheduler gives
999, 666, 333 for N=3 (off by one whenever N does not divide 1000), ``sgm_uniform`` gives fractional
timesteps, and ``normal``/``ddim_uniform`` use leading spacing: none reproduces the recipe.

A start timestep other than 999 (the one-step SDXL UNet starts at 800) generalises the same rule to the
interval [0, start]: ``t_i = round((start + 1) - i * (start + 1) / N) - 1``, which for start=999 is the
diffusers formula above, and for N=1 is exactly ``[start]`` (diffusers' ``timesteps=[800]``).

The unified 1-step LoRAs run diffusers' ``TCDScheduler`` with its own timesteps (``tcd_timesteps``: 4 steps
give 999, 759, 499, 259). ``comfyui_tcd_timesteps`` gives those JettHu/ComfyUI-TCD's node runs (ComfyUI's
schedulers on the same 50-point grid, KSampler's denoise rule) for the pack's stand-in of that node. Flow
models (SD3, FLUX) have continuous time: ``sd3_flow_times`` and ``flux_flow_times`` give each pipeline's
default schedule in unshifted flow time u in [0, 1]; the node layer turns u into the model's own timestep
unit and lets ``model_sampling.sigma`` apply the model's shift.
"""
import math
from fractions import Fraction

import numpy as np

NUM_TRAIN_TIMESTEPS = 1000
MAX_STEPS = 50  # the Hyper-SD Scheduler node's limit (the recipes use at most 16)
SPACINGS = ("trailing", "tcd")  # the Hyper-SD Scheduler's spacing choices (the catalog's ``spacing`` values)


class ScheduleError(ValueError):
    """A schedule request that cannot be honoured (the message names the value and the fix)."""


def trailing_timesteps(steps, start=NUM_TRAIN_TIMESTEPS - 1):
    """Integer timesteps of diffusers' DDIM ``trailing`` spacing, highest first.

    Args:
        steps: number of inference steps N (1 to 50; the Hyper-SD recipes use 1, 2, 4, 8, 12).
        start: the first (highest) timestep; 999 for every LoRA recipe, 800 for the one-step SDXL UNet.

    Returns:
        list of N distinct ints, strictly decreasing, the first equal to ``start``.
    """
    steps, start = int(steps), int(start)
    if not 1 <= start <= NUM_TRAIN_TIMESTEPS - 1:
        raise ScheduleError(
            f"start timestep {start} is outside 1..{NUM_TRAIN_TIMESTEPS - 1}: use 999 for the Hyper-SD LoRAs "
            f"or 800 for the one-step SDXL UNet")
    if not 1 <= steps <= start + 1:
        raise ScheduleError(
            f"steps {steps} is outside 1..{start + 1} for start timestep {start}: Hyper-SD is distilled for "
            f"1, 2, 4, 8 or 12 steps; set steps to one of those")
    # The same expression diffusers evaluates (float64 on the host, never on a device).
    span = start + 1
    step_ratio = span / steps
    timesteps = np.round(np.arange(span, 0, -step_ratio)).astype(np.int64) - 1
    return [int(t) for t in timesteps[:steps]]


def flux_flow_times(steps, max_steps=MAX_STEPS):
    """FluxPipeline's unshifted sigmas ``linspace(1, 1/N, N)`` (flow time in [0, 1], before the model's shift).

    FluxPipeline passes these to FlowMatchEulerDiscreteScheduler, which shifts them with the resolution's mu
    (ComfyUI: the ModelSamplingFlux node's shift, applied by ``model_sampling.sigma``).
    """
    steps = _check_flow_steps(steps, max_steps)
    return [float(u) for u in np.linspace(1.0, 1.0 / steps, steps).astype(np.float32)]


def sd3_flow_times(steps, sigma_max, sigma_min, max_steps=MAX_STEPS):
    """StableDiffusion3Pipeline's default schedule in unshifted flow time: ``linspace(sigma_max, sigma_min, N)``.

    FlowMatchEulerDiscreteScheduler(shift).set_timesteps(N) spaces N points between its largest and smallest
    training sigma -- both already shifted (1.0 and shift(1/1000), about 0.003 at shift 3) -- and then shifts
    them again, so the last step sits near 0 (0.0089 at shift 3) and not at 1/N. Pass the model's own
    sigma(t) at the top and at one training step, so ModelSamplingSD3's shift is honoured.
    """
    steps = _check_flow_steps(steps, max_steps)
    top, bottom = float(sigma_max) * NUM_TRAIN_TIMESTEPS, float(sigma_min) * NUM_TRAIN_TIMESTEPS
    return [float(u) for u in np.linspace(top, bottom, steps) / NUM_TRAIN_TIMESTEPS]


def _check_flow_steps(steps, max_steps=MAX_STEPS):
    """``steps`` as an int, at least 1 and at most ``max_steps`` (None: no upper limit, for the step counts
    KSampler derives from its denoise)."""
    steps = int(steps)
    if steps < 1 or (max_steps is not None and steps > max_steps):
        allowed = f"outside 1..{max_steps}" if max_steps is not None else "below 1"
        raise ScheduleError(f"steps {steps} is {allowed}: the Hyper-SD3 LoRAs use 4, 8 or 16 steps, the Hyper-FLUX "
                            f"LoRAs 8 or 16")
    return steps


def flow_img2img_times(times, denoise):
    """The steps a flow img2img run of strength ``denoise`` keeps, as diffusers' flow pipelines do.

    StableDiffusion3Img2ImgPipeline and FluxImg2ImgPipeline (``get_timesteps``) skip the first
    ``int(N - min(N * strength, N))`` steps, which keeps the last ``N - int(N - N * strength)`` (one more than
    SD's ``int(N * strength)`` when N * strength is fractional; never none for strength > 0).
    """
    denoise = _check_denoise(denoise)
    if denoise == 0.0:
        return []
    n = len(times)
    skip = int(max(n - min(n * denoise, n), 0))
    return list(times[skip:])


def _check_denoise(denoise):
    denoise = float(denoise)
    if not 0.0 <= denoise <= 1.0:
        raise ScheduleError(f"denoise {denoise} is outside 0..1: use 1.0 for text-to-image, less for img2img")
    return denoise


def img2img_timesteps(timesteps, denoise):
    """The timesteps an img2img run of strength ``denoise`` keeps, diffusers' convention.

    diffusers' SD/SDXL img2img pipelines call ``set_timesteps(N)`` and keep the last
    ``int(N * strength)`` of them, so a Hyper-SD N-step LoRA still sees timesteps it was trained on
    (ComfyUI's ``BasicScheduler`` instead computes a longer schedule and keeps its tail).
    """
    denoise = _check_denoise(denoise)
    if denoise >= 1.0:
        return list(timesteps)
    keep = min(int(len(timesteps) * denoise), len(timesteps))
    if keep == 0:
        if denoise == 0.0:
            return []
        raise ScheduleError(
            f"denoise {denoise} with {len(timesteps)} steps keeps no step (diffusers keeps "
            f"int(steps x denoise) = 0 of them): raise denoise to at least {1.0 / len(timesteps):.3g} "
            f"or raise steps")
    return list(timesteps[len(timesteps) - keep:])


# --- TCD's own timesteps (diffusers TCDScheduler, the unified 1-step LoRAs' recipe) -------------------------
TCD_ORIGINAL_STEPS = 50  # diffusers TCDScheduler's original_inference_steps default
TCD_GRID_STRIDE = NUM_TRAIN_TIMESTEPS // TCD_ORIGINAL_STEPS  # 20: the grid is 19, 39, ..., 999


def _tcd_grid(steps, denoise):
    """The TCD distillation grid an img2img strength of ``denoise`` keeps (highest first), after checks."""
    steps, denoise = int(steps), float(denoise)
    if not 0.0 <= denoise <= 1.0:
        raise ScheduleError(f"denoise {denoise} is outside 0..1: use 1.0 for text-to-image, less for img2img")
    if not 1 <= steps <= TCD_ORIGINAL_STEPS:
        raise ScheduleError(f"steps {steps} is outside 1..{TCD_ORIGINAL_STEPS}: TCD picks its timesteps from a "
                            f"{TCD_ORIGINAL_STEPS}-step grid; the unified Hyper-SD LoRAs want 1 to 8")
    length = int(TCD_ORIGINAL_STEPS * denoise)
    if denoise > 0.0 and length < steps:
        raise ScheduleError(
            f"denoise {denoise} keeps {length} of TCD's {TCD_ORIGINAL_STEPS} grid timesteps, fewer than steps "
            f"{steps} (diffusers' TCDScheduler refuses this too): raise denoise to at least "
            f"{steps / TCD_ORIGINAL_STEPS:.2f} or lower steps to {max(length, 1)}")
    return [k * TCD_GRID_STRIDE - 1 for k in range(length, 0, -1)]


def tcd_timesteps(steps, denoise=1.0):
    """diffusers ``TCDScheduler.set_timesteps(steps, strength=denoise)`` (original_inference_steps 50).

    The grid is 999, 979, ..., 19; ``strength`` keeps its lowest ``int(50 * denoise)`` points and the
    schedule takes ``steps`` of them at evenly spaced indices (``floor(linspace(0, L, steps))``):
    t_i = 999 - 20 * floor(i * 50 / steps) at denoise 1 (4 steps: 999, 759, 499, 259). denoise 0 gives no
    timestep (the latent passes unchanged).
    """
    grid = _tcd_grid(steps, denoise)
    if not grid:
        return []
    index = np.floor(np.linspace(0, len(grid), num=int(steps), endpoint=False)).astype(np.int64)
    return [int(grid[i]) for i in index]


COMFYUI_TCD_SCHEDULERS = ("simple", "sgm_uniform")  # JettHu/ComfyUI-TCD's node's choices, in its order


def comfyui_tcd_timesteps(steps, denoise=1.0, scheduler="simple"):
    """The grid timesteps JettHu/ComfyUI-TCD's node makes its model run at, first to last (no final 0).

    That node runs ComfyUI's own scheduler on a 50-point distilled grid (timesteps 19, 39, ..., 999) and
    applies denoise the way ComfyUI's KSampler does: ``total = int(steps / denoise)`` steps, of which it
    keeps the last ``steps``. Step x of ``total`` lands on grid index (0 = timestep 19, 49 = timestep 999):

    - ``simple``: ``49 - int(x * (50 / total))``, ComfyUI's simple_scheduler, evaluated as the same float64
      expression so the floor falls where ComfyUI's does;
    - ``sgm_uniform``: the time 999 - 980 x / total, whose interpolated sigma the model snaps to the
      nearest grid point: index ``49 (total - x) / total`` rounded in exact rational arithmetic. At an
      exact half both grid points are equally near and ComfyUI's ``timestep()`` (an argmin, which returns
      the first minimum) takes the lower one: so does this function. ComfyUI-TCD computes that half in
      float32 (an interpolated sigma, then its log), so its pick there depends on the machine's rounding.

    When total exceeds the grid (denoise below steps / 50, or sgm_uniform at 50 steps) the schedule
    repeats a timestep, as ComfyUI-TCD's does. denoise 0 gives no timestep (the latent passes unchanged).
    """
    steps, denoise = _check_comfyui_tcd(steps, denoise, scheduler)
    if denoise == 0.0:
        return []
    total = int(steps / denoise)  # ComfyUI's expression (KSampler.set_steps, ComfyUI-TCD's patch)
    top = TCD_ORIGINAL_STEPS - 1
    if scheduler == "simple":
        ratio = TCD_ORIGINAL_STEPS / total  # simple_scheduler's ``ss``
        index = [top - int(x * ratio) for x in range(total - steps, total)]
    else:
        index = [math.ceil(Fraction(top * (total - x), total) - Fraction(1, 2)) for x in range(total - steps, total)]
    return [k * TCD_GRID_STRIDE + TCD_GRID_STRIDE - 1 for k in index]


def _check_comfyui_tcd(steps, denoise, scheduler):
    steps, denoise = int(steps), float(denoise)
    if scheduler not in COMFYUI_TCD_SCHEDULERS:
        raise ScheduleError(f"scheduler {scheduler!r} is not one of {', '.join(COMFYUI_TCD_SCHEDULERS)} (the "
                            f"choices of ComfyUI-TCD's node)")
    if not 1 <= steps <= TCD_ORIGINAL_STEPS:
        raise ScheduleError(f"steps {steps} is outside 1..{TCD_ORIGINAL_STEPS} (the range of ComfyUI-TCD's node); "
                            f"the unified Hyper-SD LoRAs want 1 to 8")
    if not 0.0 <= denoise <= 1.0:
        raise ScheduleError(f"denoise {denoise} is outside 0..1: use 1.0 for text-to-image, less for img2img")
    return steps, denoise
