"""The official Hyper-SD files and their recipes: one data table.

Source: the model card and file list of ``ByteDance/Hyper-SD`` on Hugging Face (branch main) and the
Hyper-SD paper (arXiv 2404.13686). Every node reads this table; no recipe value lives anywhere else.
Importable without ComfyUI.

Recipe columns, in ComfyUI terms:
  steps     the step count the file was distilled for (the unified 1-step LoRAs work for 1 to 8).
  cfg       ComfyUI's cfg: 1.0 means diffusers' guidance_scale 0 (no negative prompt), the CFG LoRAs want
            5 to 8 (SD1.5/SDXL) or 3/5/7 (SD3). FLUX.1-dev's 3.5 is its distilled guidance (FluxGuidance
            node, 3.5 is ComfyUI's default), so its cfg stays 1.0.
  strength  LoRA strength: 1.0, except 0.125 for the SD3 and FLUX LoRAs.
  sampler   "tcd" (the unified LoRAs), "trailing" (DDIM trailing = the pack's TCD sampler at eta 0 on the
            Hyper-SD Scheduler), "flow_euler" (SD3/FLUX: Euler = the TCD sampler's flow rule at eta 0),
            "lcm_800" (the one-step UNet: one x0 prediction from t=800).
  eta       the TCD eta (the paper's gamma) the recipe implies: 1.0 in the official unified-LoRA example,
            0.0 for deterministic DDIM/Euler recipes.
  start     the first timestep: 999, or 800 for the one-step UNet.
  spacing   the Hyper-SD Scheduler's ``spacing`` input the recipe wants: "tcd" (the unified LoRAs:
            diffusers' TCDScheduler timesteps, 999, 759, 499, 259 at 4 steps) or "trailing" (everything
            else: DDIM trailing on SD1.5/SDXL; on SD3/FLUX the scheduler's "trailing" is the family pipeline's
            own schedule, StableDiffusion3Pipeline's / FluxPipeline's, so flow files say "trailing" too).
"""
from dataclasses import dataclass

REPO_ID = "ByteDance/Hyper-SD"
REVISION = "main"

SD15, SDXL, SD3, FLUX = "SD1.5", "SDXL", "SD3", "FLUX.1-dev"
FAMILIES = (SD15, SDXL, SD3, FLUX)


@dataclass(frozen=True)
class HyperSDFile:
    filename: str
    family: str
    kind: str  # "unified", "n-step", "cfg", "unet", "checkpoint"
    label: str
    folder: str  # ComfyUI folder_paths key the file belongs in
    steps: int
    cfg: float
    strength: float
    sampler: str
    eta: float
    start: int
    approx_bytes: int
    spacing: str = "trailing"  # "tcd" | "trailing": the Hyper-SD Scheduler's spacing input (see above)

    @property
    def url(self):
        return f"https://huggingface.co/{REPO_ID}/resolve/{REVISION}/{self.filename}"


_MB = 1_000_000


def _lora(family, filename, kind, label, steps, cfg, strength, sampler, eta, size_mb):
    return HyperSDFile(filename, family, kind, label, "loras", steps, cfg, strength, sampler, eta, 999,
                       size_mb * _MB, spacing="tcd" if kind == "unified" else "trailing")


CATALOG = (
    _lora(SD15, "Hyper-SD15-1step-lora.safetensors", "unified", "SD1.5 · 1 step (unified, TCD)", 1, 1.0, 1.0, "tcd", 1.0, 269),
    _lora(SD15, "Hyper-SD15-2steps-lora.safetensors", "n-step", "SD1.5 · 2 steps", 2, 1.0, 1.0, "trailing", 0.0, 269),
    _lora(SD15, "Hyper-SD15-4steps-lora.safetensors", "n-step", "SD1.5 · 4 steps", 4, 1.0, 1.0, "trailing", 0.0, 269),
    _lora(SD15, "Hyper-SD15-8steps-lora.safetensors", "n-step", "SD1.5 · 8 steps", 8, 1.0, 1.0, "trailing", 0.0, 269),
    _lora(SD15, "Hyper-SD15-8steps-CFG-lora.safetensors", "cfg", "SD1.5 · 8 steps CFG", 8, 5.0, 1.0, "trailing", 0.0, 269),
    _lora(SD15, "Hyper-SD15-12steps-CFG-lora.safetensors", "cfg", "SD1.5 · 12 steps CFG", 12, 5.0, 1.0, "trailing", 0.0, 269),
    _lora(SDXL, "Hyper-SDXL-1step-lora.safetensors", "unified", "SDXL · 1 step (unified, TCD)", 1, 1.0, 1.0, "tcd", 1.0, 787),
    _lora(SDXL, "Hyper-SDXL-2steps-lora.safetensors", "n-step", "SDXL · 2 steps", 2, 1.0, 1.0, "trailing", 0.0, 787),
    _lora(SDXL, "Hyper-SDXL-4steps-lora.safetensors", "n-step", "SDXL · 4 steps", 4, 1.0, 1.0, "trailing", 0.0, 787),
    _lora(SDXL, "Hyper-SDXL-8steps-lora.safetensors", "n-step", "SDXL · 8 steps", 8, 1.0, 1.0, "trailing", 0.0, 787),
    _lora(SDXL, "Hyper-SDXL-8steps-CFG-lora.safetensors", "cfg", "SDXL · 8 steps CFG", 8, 5.0, 1.0, "trailing", 0.0, 787),
    _lora(SDXL, "Hyper-SDXL-12steps-CFG-lora.safetensors", "cfg", "SDXL · 12 steps CFG", 12, 5.0, 1.0, "trailing", 0.0, 787),
    _lora(SD3, "Hyper-SD3-4steps-CFG-lora.safetensors", "cfg", "SD3 · 4 steps CFG", 4, 3.0, 0.125, "flow_euler", 0.0, 472),
    _lora(SD3, "Hyper-SD3-8steps-CFG-lora.safetensors", "cfg", "SD3 · 8 steps CFG", 8, 5.0, 0.125, "flow_euler", 0.0, 472),
    _lora(SD3, "Hyper-SD3-16steps-CFG-lora.safetensors", "cfg", "SD3 · 16 steps CFG", 16, 7.0, 0.125, "flow_euler", 0.0, 472),
    _lora(FLUX, "Hyper-FLUX.1-dev-8steps-lora.safetensors", "n-step", "FLUX.1-dev · 8 steps", 8, 1.0, 0.125, "flow_euler", 0.0, 1390),
    _lora(FLUX, "Hyper-FLUX.1-dev-16steps-lora.safetensors", "n-step", "FLUX.1-dev · 16 steps", 16, 1.0, 0.125, "flow_euler", 0.0, 1390),
    HyperSDFile("Hyper-SDXL-1step-Unet-Comfyui.fp16.safetensors", SDXL, "checkpoint",
                "SDXL · one-step UNet (ComfyUI checkpoint, fp16)", "checkpoints", 1, 1.0, 1.0, "lcm_800", 0.0, 800,
                6_940 * _MB),
    HyperSDFile("Hyper-SDXL-1step-Unet.safetensors", SDXL, "unet",
                "SDXL · one-step UNet (diffusers, fp32)", "diffusion_models", 1, 1.0, 1.0, "lcm_800", 0.0, 800,
                10_300 * _MB),
)

BY_FILENAME = {f.filename: f for f in CATALOG}
BY_LABEL = {f.label: f for f in CATALOG}
LORAS = tuple(f for f in CATALOG if f.folder == "loras")
UNETS = tuple(f for f in CATALOG if f.kind in ("unet", "checkpoint"))


def lookup(label_or_filename):
    """The catalog entry for a label or official file name; KeyError listing the choices otherwise."""
    entry = BY_LABEL.get(label_or_filename) or BY_FILENAME.get(label_or_filename)
    if entry is None:
        raise KeyError(f"{label_or_filename!r} is not an official Hyper-SD file; choose one of: "
                       + ", ".join(f.label for f in CATALOG))
    return entry
