"""Nodes under the ids of two other packs, so workflows saved with them open and run with this pack alone.

- ``HyperSDXL1StepUnetScheduler``: ByteDance's node for the one-step SDXL UNet (the official ComfyUI
  workflow's scheduler; also fofr/ComfyUI-HyperSDXL1StepUnetScheduler). Inputs model and steps; SIGMAS
  = [sigma(800), 0]; steps is ignored, as in the original.
- ``TCDModelSamplingDiscrete``: JettHu/ComfyUI-TCD's node. Inputs model, steps, scheduler (simple |
  sgm_uniform), denoise, eta; outputs MODEL, SAMPLER, SIGMAS for SamplerCustom.

Same ids, input names, order, defaults, ranges and return types as the originals, so a saved workflow's
widget values land where they did. The math is this pack's: TCD's own timesteps (diffusers'
TCDScheduler) through the model's own ``model_sampling.sigma(t)``, and the pack's TCD sampler. Where that
differs from ComfyUI-TCD on purpose, the README and tests/test_compat.py name it.

An id another pack already provides is left to that pack: ComfyUI imports custom-node folders in
``os.listdir`` order (no sorting; the file system decides) and a later pack's mapping replaces an earlier
one's. So: at import, ids already in ComfyUI's ``nodes.NODE_CLASS_MAPPINGS`` are not registered; after
every pack has loaded (the server's start-up), ids a later pack replaced are logged with that pack's
name, and this pack's display name for them is withdrawn.
"""
import logging
import sys

import torch

import comfy.samplers

from ..samplers import schedules, tcd
from . import categories
from .sampling import ETA_TOOLTIP, UnsupportedModelError, sample_tcd, sampling_kind

log = logging.getLogger("HyperSD")

UNET_TIMESTEP = 800  # the one-step SDXL UNet's single timestep (diffusers' LCMScheduler(timesteps=[800]))


def _sigmas(model_sampling, timesteps):
    """sigma(t) for each integer timestep through the model's own sampling object, then 0 (float32, CPU)."""
    if not timesteps:
        return torch.FloatTensor([])
    sigmas = model_sampling.sigma(torch.tensor(timesteps, dtype=torch.float32)).to("cpu", torch.float32)
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def _discrete_sampling(model, node_id):
    ms = model.get_model_object("model_sampling")
    try:
        kind = sampling_kind(ms)
    except UnsupportedModelError as e:
        raise UnsupportedModelError(f"{node_id}: {e}") from None
    if kind != "discrete":
        raise UnsupportedModelError(
            f"{node_id} is for discrete-time SD1.5/SDXL models; this model samples with {type(ms).__name__} "
            f"(a flow model). Use the Hyper-SD Scheduler and Hyper-SD TCD Sampler nodes for SD3/FLUX.")
    return ms


class HyperSDXL1StepUnetScheduler:
    DESCRIPTION = ("Stands in for ByteDance's HyperSDXL1StepUnetScheduler node (the official one-step SDXL UNet "
                   "workflow): SIGMAS = sigma(800), 0 on the model's own noise schedule, the same as the "
                   "original. 'steps' is ignored, as there. Provided by the Hyper-SD pack when no other pack "
                   "has this node.")
    CATEGORY = categories.core_category("schedulers")
    RETURN_TYPES = ("SIGMAS",)
    OUTPUT_TOOLTIPS = ("[sigma(800), 0]: one step from t=800, for SamplerCustom's sigmas input.",)
    FUNCTION = "get_sigmas"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The one-step SDXL UNet (or any SD1.5/SDXL model): its noise schedule "
                                           "turns t=800 into a sigma."}),
            "steps": ("INT", {"default": 1, "min": 1, "max": 10,
                              "tooltip": "Ignored (kept so saved workflows load): the one-step UNet always takes "
                                         "one step from t=800."}),
        }}

    def get_sigmas(self, model, steps):
        ms = _discrete_sampling(model, "HyperSDXL1StepUnetScheduler")
        return (_sigmas(ms, [UNET_TIMESTEP]),)


TCD_SCHEDULERS = ("simple", "sgm_uniform")  # ComfyUI-TCD's choices, in its order


def tcd_schedule(steps, scheduler, denoise):
    """The integer timesteps of the compat TCD node: diffusers' TCDScheduler ('simple') or the grid spaced
    like sgm_uniform."""
    if scheduler == "simple":
        return schedules.tcd_timesteps(steps, denoise)
    if scheduler == "sgm_uniform":
        return schedules.tcd_sgm_uniform_timesteps(steps, denoise)
    raise schedules.ScheduleError(f"scheduler {scheduler!r} is not one of {', '.join(TCD_SCHEDULERS)} "
                                  f"(the choices of ComfyUI-TCD's node)")


class TCDModelSamplingDiscrete:
    DESCRIPTION = ("Stands in for JettHu/ComfyUI-TCD's node of the same name: TCD's own timesteps (diffusers' "
                   "TCDScheduler: 4 steps = 999, 759, 499, 259) as SIGMAS, and the Hyper-SD TCD sampler. Wire "
                   "MODEL, SAMPLER and SIGMAS into SamplerCustom. MODEL is the input model, unchanged. Provided "
                   "by the Hyper-SD pack when no other pack has this node.")
    CATEGORY = categories.core_category("model_patches")  # the original's "advanced/model" on 0.3.64
    RETURN_TYPES = ("MODEL", "SAMPLER", "SIGMAS")
    OUTPUT_TOOLTIPS = (
        "The input model, unchanged (its own noise schedule gives the sigmas).",
        "The TCD sampler at this eta (the Hyper-SD TCD Sampler), for SamplerCustom's sampler input.",
        "Sigmas at TCD's timesteps followed by 0, for SamplerCustom's sigmas input.",
    )
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "An SD1.5 or SDXL model, e.g. with the unified Hyper-SD 1-step LoRA "
                                           "(or the TCD LoRA) applied."}),
            "steps": ("INT", {"default": 4, "min": 1, "max": 50,
                              "tooltip": "Number of steps, picked from TCD's 50-step grid (999, 979, ..., 19). "
                                         "The unified Hyper-SD LoRAs work for 1 to 8."}),
            "scheduler": (list(TCD_SCHEDULERS), {
                "tooltip": "simple = diffusers' TCDScheduler timesteps (the recipe). sgm_uniform = evenly spaced "
                           "in time from 999 to 19, each rounded to the grid (the timesteps ComfyUI-TCD's model "
                           "sees with sgm_uniform)."}),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                  "tooltip": "1.0 for text-to-image. Below 1 (img2img): diffusers' TCD strength, "
                                             "steps timesteps from the lowest int(50 x denoise) grid points. 0 "
                                             "returns the latent unchanged."}),
            "eta": ("FLOAT", {"default": 0.3, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": ETA_TOOLTIP}),
        }}

    def patch(self, model, steps=4, scheduler="simple", denoise=1.0, eta=0.3):
        ms = _discrete_sampling(model, "TCDModelSamplingDiscrete")
        sigmas = _sigmas(ms, tcd_schedule(steps, scheduler, denoise))
        sampler = comfy.samplers.KSAMPLER(sample_tcd, {"eta": tcd.check_eta(eta)})
        return (model, sampler, sigmas)


COMPAT_NODES = {
    # id: (class, display name, the pack it stands in for)
    "HyperSDXL1StepUnetScheduler": (HyperSDXL1StepUnetScheduler, "HyperSDXL 1-Step UNet Scheduler (Hyper-SD)",
                                    "ByteDance's ComfyUI-HyperSDXL1StepUnetScheduler"),
    "TCDModelSamplingDiscrete": (TCDModelSamplingDiscrete, "TCD Model Sampling Discrete (Hyper-SD)",
                                 "JettHu/ComfyUI-TCD"),
}


def provider(cls):
    """Where a node class comes from, as ComfyUI records it ('custom_nodes.<pack folder>'), else its module."""
    return getattr(cls, "RELATIVE_PYTHON_MODULE", None) or getattr(cls, "__module__", repr(cls))


def comfy_node_mappings():
    """ComfyUI's global (NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS), or empty dicts outside ComfyUI."""
    nodes = sys.modules.get("nodes")
    classes = getattr(nodes, "NODE_CLASS_MAPPINGS", None)
    names = getattr(nodes, "NODE_DISPLAY_NAME_MAPPINGS", None)
    if not isinstance(classes, dict) or not isinstance(names, dict):
        return {}, {}
    return classes, names


def mappings(existing=None):
    """(NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS) of the compat ids no pack loaded earlier provides;
    each id left to another pack is logged with that pack's name."""
    existing = comfy_node_mappings()[0] if existing is None else existing
    classes, names = {}, {}
    for node_id, (cls, display, original) in COMPAT_NODES.items():
        other = existing.get(node_id)
        if other is not None and other is not cls:
            log.info("[Hyper-SD] %s is already provided by %s: that node is used; this pack's stand-in for %s is "
                     "not registered.", node_id, provider(other), original)
            continue
        classes[node_id] = cls
        names[node_id] = display
    return classes, names


def check_replaced(registered, classes=None, names=None):
    """After every pack has loaded: log each compat id a later pack replaced, naming it, and withdraw this
    pack's display name for it (the replacing node keeps its own, or its id). Returns the replaced ids."""
    if classes is None or names is None:
        classes, names = comfy_node_mappings()
    replaced = []
    for node_id in registered:
        cls, display, original = COMPAT_NODES[node_id]
        other = classes.get(node_id)
        if other is None or other is cls:
            continue
        replaced.append(node_id)
        log.info("[Hyper-SD] %s is provided by %s (loaded after this pack), whose node ComfyUI uses instead of "
                 "this pack's stand-in for %s.", node_id, provider(other), original)
        if names.get(node_id) == display:
            del names[node_id]
    return replaced


def check_replaced_at_startup(registered):
    """Run ``check_replaced`` when ComfyUI's web server starts (after all custom nodes are imported); a
    no-op outside a ComfyUI server."""
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    app = getattr(instance, "app", None)
    if app is None or not registered:
        return False

    async def _check(_app):
        check_replaced(registered)

    try:
        app.on_startup.append(_check)
    except RuntimeError:  # the server is already running (a pack loaded late): every pack is in
        check_replaced(registered)
    return True
