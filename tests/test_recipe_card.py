"""Every official file's recipe, pinned to ByteDance's model card (huggingface.co/ByteDance/Hyper-SD, README).

CARD below is written from the model card, not read from core/catalog.py: each row quotes the card's lines
it comes from. The tests compare it with the catalog, with what the loader nodes output and apply, with
the timesteps the catalog's spacing gives (diffusers' own schedulers for the card's scheduler), and with
the recipe table of the help pages (web/docs/*.md, which tests/test_node_docs.py regenerates from the
catalog: regenerating it after a catalog change does not hide the change from this file).

From card to ComfyUI terms (diffusers' semantics, not a choice of this pack):
- cfg: diffusers runs classifier-free guidance only when guidance_scale > 1, so guidance_scale 0 is
  ComfyUI's cfg 1.0 (no negative prompt). FluxPipeline's guidance_scale feeds FLUX.1-dev's distilled
  guidance embedding (no CFG pass): ComfyUI's cfg 1.0 with the FluxGuidance node at that value.
- LoRA scale: ``pipe.fuse_lora()`` fuses at 1.0, ``fuse_lora(lora_scale=0.125)`` at 0.125.
- eta: the N-step and CFG LoRAs run DDIMScheduler, whose pipeline eta defaults to 0.0 (deterministic
  DDIM, the pack's TCD sampler at eta 0); SD3/FLUX run FlowMatchEulerDiscreteScheduler (Euler: eta 0).
"""
import dataclasses
import re
from pathlib import Path

import pytest

from hypersd_pack.core import catalog
from hypersd_pack.samplers import schedules

pytestmark = pytest.mark.every_host  # also run on the oldest supported host (.ci/run)

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "web" / "docs"

# The card's schedulers, and what each is in the pack: (catalog sampler, Hyper-SD Scheduler spacing).
DDIM_TRAILING = "DDIMScheduler, timestep_spacing='trailing'"
TCD = "TCDScheduler"
LCM_800 = "LCMScheduler, timesteps=[800]"
PIPELINE = "the pipeline's default scheduler (FlowMatchEulerDiscreteScheduler)"
PACK_SAMPLING = {DDIM_TRAILING: ("trailing", "trailing"), TCD: ("tcd", "tcd"), LCM_800: ("lcm_800", "trailing"),
                 PIPELINE: ("flow_euler", "trailing")}


@dataclasses.dataclass(frozen=True)
class Card:
    family: str
    steps: int
    guidance: float  # diffusers' guidance_scale
    lora_scale: float | None  # None: not a LoRA
    scheduler: str
    eta: float
    start: int = 999  # the first timestep


# SD1.5 / SDXL N-step LoRAs. Card, "#### 2-Steps, 4-Steps, 8-steps LoRA" (SDXL and SD1.5 sections):
#   "Take the 2-steps LoRA as an example, you can also use other LoRAs for the corresponding inference steps
#    setting."
#   pipe.fuse_lora()
#   # Ensure ddim scheduler timestep spacing set as trailing !!!
#   pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
#   image=pipe(prompt=prompt, num_inference_steps=2, guidance_scale=0).images[0]
# (no eta passed: the pipeline's eta=0.0)
def _n_step(family, steps):
    return Card(family, steps, 0.0, 1.0, DDIM_TRAILING, 0.0)


# Unified 1-step LoRAs. Card, "#### Unified LoRA (support 1 to 8 steps inference)":
#   pipe.fuse_lora()
#   # Use TCD scheduler to achieve better image quality
#   pipe.scheduler = TCDScheduler.from_config(pipe.scheduler.config)
#   # Lower eta results in more detail for multi-steps inference
#   eta=1.0
#   image=pipe(prompt=prompt, num_inference_steps=1, guidance_scale=0, eta=eta).images[0]
def _unified(family):
    return Card(family, 1, 0.0, 1.0, TCD, 1.0)


# CFG-preserved LoRAs. Card, News:
#   "Apr.30, 2024. Our 8-Steps CFG-Preserved Hyper-SDXL-8steps-CFG-LoRA and Hyper-SD15-8steps-CFG-LoRA is
#    available now(support 5~8 guidance scales), we strongly recommend making the 8-step CFGLora a standard
#    configuration for all SDXL and SD15 models!!!"
#   "May.13, 2024. The 12-Steps CFG-Preserved Hyper-SDXL-12steps-CFG-LoRA and Hyper-SD15-12steps-CFG-LoRA is
#    also available now(support 5~8 guidance scales)"
# The card gives a range; the pinned value is its low end, 5.0 (CFG_RANGE checks the range too). Scheduler
# and LoRA scale: the N-step LoRAs' usage ("you can also use other LoRAs for the corresponding inference
# steps setting": DDIM trailing, fuse_lora() at 1.0).
CFG_RANGE = (5.0, 8.0)


def _cfg(family, steps):
    return Card(family, steps, 5.0, 1.0, DDIM_TRAILING, 0.0)


# SD3 CFG LoRAs. Card, News:
#   "Aug.19, 2024. SD3-related CFG LoRAs are available now! We recommend setting guidance scale to 3.0/5.0/7.0
#    at 4/8/16-steps. Don't forget to fuse lora with a relatively small scale (e.g. 0.125 that is adaptive
#    with training) before inference with diffusers."
# Card, "### SD3-related models": pipe.fuse_lora(lora_scale=0.125) ...
#   image=pipe(prompt="a photo of a cat", num_inference_steps=8, guidance_scale=5.0).images[0]
# (StableDiffusion3Pipeline with no scheduler set: its default)
def _sd3(steps, guidance):
    return Card(catalog.SD3, steps, guidance, 0.125, PIPELINE, 0.0)


# FLUX.1-dev LoRAs. Card, "### FLUX.1-dev-related models":
#   # Take 8-steps lora as an example
#   ckpt_name = "Hyper-FLUX.1-dev-8steps-lora.safetensors"
#   pipe.fuse_lora(lora_scale=0.125)
#   image=pipe(prompt="a photo of a cat", num_inference_steps=8, guidance_scale=3.5).images[0]
# (FluxPipeline with no scheduler set: its default; the 16-step file "as an example" the same at 16 steps)
def _flux(steps):
    return Card(catalog.FLUX, steps, 3.5, 0.125, PIPELINE, 0.0)


# The one-step SDXL UNet. Card, "#### 1-step SDXL Unet" ("Only for the single step inference."):
#   ckpt_name = "Hyper-SDXL-1step-Unet.safetensors"
#   pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
#   # Set start timesteps to 800 in the one-step inference to get better results
#   image=pipe(prompt=prompt, num_inference_steps=1, guidance_scale=0, timesteps=[800]).images[0]
# Card, "## Comfyui Usage": "Hyper-SDXL-1step-Unet-Comfyui.fp16.safetensors: text-to-image workflow ...
#   Please install our scheduler folder ... to enable sampling from 800 timestep instead of 999."
UNET = Card(catalog.SDXL, 1, 0.0, None, LCM_800, 0.0, start=800)

CARD = {
    "Hyper-SD15-1step-lora.safetensors": _unified(catalog.SD15),
    "Hyper-SD15-2steps-lora.safetensors": _n_step(catalog.SD15, 2),
    "Hyper-SD15-4steps-lora.safetensors": _n_step(catalog.SD15, 4),
    "Hyper-SD15-8steps-lora.safetensors": _n_step(catalog.SD15, 8),
    "Hyper-SD15-8steps-CFG-lora.safetensors": _cfg(catalog.SD15, 8),
    "Hyper-SD15-12steps-CFG-lora.safetensors": _cfg(catalog.SD15, 12),
    "Hyper-SDXL-1step-lora.safetensors": _unified(catalog.SDXL),
    "Hyper-SDXL-2steps-lora.safetensors": _n_step(catalog.SDXL, 2),
    "Hyper-SDXL-4steps-lora.safetensors": _n_step(catalog.SDXL, 4),
    "Hyper-SDXL-8steps-lora.safetensors": _n_step(catalog.SDXL, 8),
    "Hyper-SDXL-8steps-CFG-lora.safetensors": _cfg(catalog.SDXL, 8),
    "Hyper-SDXL-12steps-CFG-lora.safetensors": _cfg(catalog.SDXL, 12),
    "Hyper-SD3-4steps-CFG-lora.safetensors": _sd3(4, 3.0),
    "Hyper-SD3-8steps-CFG-lora.safetensors": _sd3(8, 5.0),
    "Hyper-SD3-16steps-CFG-lora.safetensors": _sd3(16, 7.0),
    "Hyper-FLUX.1-dev-8steps-lora.safetensors": _flux(8),
    "Hyper-FLUX.1-dev-16steps-lora.safetensors": _flux(16),
    "Hyper-SDXL-1step-Unet-Comfyui.fp16.safetensors": UNET,
    "Hyper-SDXL-1step-Unet.safetensors": UNET,
}
LORAS = [name for name, card in CARD.items() if card.lora_scale is not None]


def comfy_cfg(card):
    """ComfyUI's cfg for the card's guidance_scale (see the module docstring)."""
    if card.family == catalog.FLUX or card.guidance <= 1.0:
        return 1.0
    return card.guidance


def mismatches(entry, card):
    """The recipe fields where a catalog entry differs from the card: {field: (catalog, card)}."""
    sampler, spacing = PACK_SAMPLING[card.scheduler]
    expected = {"family": card.family, "steps": card.steps, "cfg": comfy_cfg(card), "sampler": sampler,
                "spacing": spacing, "eta": card.eta, "start": card.start,
                "folder": "loras" if card.lora_scale is not None else entry.folder}
    if card.lora_scale is not None:
        expected["strength"] = card.lora_scale
    return {k: (getattr(entry, k), v) for k, v in expected.items() if getattr(entry, k) != v}


def test_every_official_file_is_pinned():
    """17 LoRAs and the 2 one-step UNet files: the catalog holds exactly the card's files."""
    assert len(CARD) == 19 and len(LORAS) == 17
    assert [f.filename for f in catalog.CATALOG] == list(CARD)


@pytest.mark.parametrize("filename", list(CARD))
def test_catalog_recipe_is_the_cards(filename):
    card = CARD[filename]
    assert mismatches(catalog.BY_FILENAME[filename], card) == {}
    if "CFG" in filename and card.family != catalog.SD3:
        assert CFG_RANGE[0] <= comfy_cfg(card) <= CFG_RANGE[1]


def test_a_changed_recipe_value_is_caught():
    """The check itself: SDXL 8-step CFG's cfg moved from 5.0 to 6.0 (inside the card's 5~8, so only the
    pinned value catches it), a strength, an eta and a step count."""
    entry = catalog.BY_FILENAME["Hyper-SDXL-8steps-CFG-lora.safetensors"]
    assert mismatches(dataclasses.replace(entry, cfg=6.0), CARD[entry.filename]) == {"cfg": (6.0, 5.0)}
    flux = catalog.BY_FILENAME["Hyper-FLUX.1-dev-8steps-lora.safetensors"]
    assert mismatches(dataclasses.replace(flux, strength=1.0), CARD[flux.filename]) == {"strength": (1.0, 0.125)}
    unified = catalog.BY_FILENAME["Hyper-SD15-1step-lora.safetensors"]
    assert "eta" in mismatches(dataclasses.replace(unified, eta=0.3), CARD[unified.filename])
    assert "steps" in mismatches(dataclasses.replace(entry, steps=12), CARD[entry.filename])


@pytest.mark.parametrize("filename", [n for n, c in CARD.items() if c.family in (catalog.SD15, catalog.SDXL)])
def test_catalog_spacing_gives_the_cards_timesteps(filename):
    """SD1.5/SDXL: the timesteps of the catalog's spacing and start are those of the card's scheduler,
    computed by diffusers (flow families: tests/test_flow_schedules.py holds the pipelines' schedules)."""
    pytest.importorskip("diffusers")
    from diffusers import DDIMScheduler, LCMScheduler, TCDScheduler
    betas = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    card, entry = CARD[filename], catalog.BY_FILENAME[filename]
    if card.scheduler == DDIM_TRAILING:
        ref = DDIMScheduler(**betas, timestep_spacing="trailing")
        ref.set_timesteps(card.steps)
        ours = schedules.trailing_timesteps(entry.steps, entry.start)
    elif card.scheduler == TCD:
        ref = TCDScheduler(**betas)
        ref.set_timesteps(card.steps)
        ours = schedules.tcd_timesteps(entry.steps)
    else:
        ref = LCMScheduler(**betas)
        ref.set_timesteps(timesteps=[card.start])
        ours = schedules.trailing_timesteps(entry.steps, entry.start)
    assert ours == ref.timesteps.tolist()


# --- the help pages' recipe table (generated from the catalog by tests/test_node_docs.py) ------------------
def page_rows(page):
    """{file: (steps, cfg, LoRA strength or None, eta or None)} of a help page's recipe table."""
    text = page.read_text(encoding="utf-8")
    block = re.search(r"<!-- recipe-table:[^\n]*-->\n(.*?)\n<!-- /recipe-table -->", text, re.S)
    assert block, f"{page.name}: no recipe table"
    rows = {}
    for line in block.group(1).splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        optional = [None if c == "–" else float(c) for c in (cells[5], cells[7])]
        rows[cells[0]] = (int(cells[3]), float(cells[4]), *optional)
    return rows


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.stem)
def test_help_page_table_is_the_cards(page):
    expected = {name: (c.steps, comfy_cfg(c), c.lora_scale, c.eta if c.lora_scale is not None else None)
                for name, c in CARD.items()}
    assert page_rows(page) == expected


# --- what the loader nodes output and apply ----------------------------------------------------------------
@pytest.fixture(scope="module")
def pack(comfy_host):
    return comfy_host


@pytest.mark.parametrize("filename", LORAS)
def test_lora_loader_outputs_and_applies_the_cards_recipe(pack, filename, monkeypatch, tmp_path):
    """HyperSDLoraLoader.load at strength_from 'recipe': its steps, cfg and eta outputs, and the strength it
    hands to ComfyUI's load_lora_for_models. Finding, reading and fitting the file are replaced here (they
    have their own tests in tests/test_lora_loader.py): only the recipe path runs for real."""
    import comfy.sd
    lora = pack.nodes.lora
    card = CARD[filename]
    applied = []
    monkeypatch.setattr(lora, "model_family", lambda model: card.family)
    monkeypatch.setattr(lora.files, "locate", lambda entry, download, **kw: tmp_path / entry.filename)
    monkeypatch.setattr(lora, "read_safetensors", lambda path: {})
    monkeypatch.setattr(lora, "prepare_lora", lambda sd, model, clip, path, family: sd)
    monkeypatch.setattr(comfy.sd, "load_lora_for_models",
                        lambda model, clip, sd, s_model, s_clip: applied.append((s_model, s_clip)) or (model, clip))
    monkeypatch.setattr(lora, "patches_added", lambda before, after: 0)  # the stand-ins are no ModelPatchers
    label = catalog.BY_FILENAME[filename].label
    for name in (label, filename):  # by its label (the UI) and by its file name (API prompts)
        model, clip, steps, cfg, eta = lora.HyperSDLoraLoader().load("MODEL", name, 1.0, "never", clip="CLIP",
                                                                     strength_from="recipe")
        assert (model, clip, steps, cfg, eta) == ("MODEL", "CLIP", card.steps, comfy_cfg(card), card.eta)
    assert applied == [(card.lora_scale, card.lora_scale)] * 2


def test_unet_loader_starts_at_the_cards_timestep(pack):
    """The one-step UNet loader's start_timestep default is the card's timesteps=[800]."""
    spec = pack.nodes.unet.HyperSDUNetLoader.INPUT_TYPES()["required"]["start_timestep"]
    assert spec[1]["default"] == UNET.start == 800
    assert {f.filename for f in catalog.UNETS} == {n for n, c in CARD.items() if c.lora_scale is None}
