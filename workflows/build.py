"""Writes the shipped workflows (workflows/*.json, UI format) from the specs below, and their template thumbnails.

    python workflows/build.py [--server URL] [--no-thumbnails]
        # default: starts a ComfyUI from $COMFYUI_PATH for /object_info and the thumbnails

Thumbnails (workflows/<name>.jpg, what the frontend's template browser shows beside each workflow) are the
workflow's graph as ComfyUI's own page draws it, captured in chromium by tests/browser/thumbnails.mjs (needs node,
chromium and ``npm ci`` in tests/browser; without them the JSON files are written and the thumbnails left as they
are, with a message). The ComfyUI started here serves the newest frontend in .cache-frontend when there is one,
and empty stand-ins for the workflows' model files, so no node is drawn as missing its model.

Maintainer tool: the JSON files are committed; tests/test_workflows.py imports this module and checks that
the committed files equal what it builds, and runs them against a live server.
Widget values follow /object_info input order with a "fixed" marker after seed widgets, as the frontend
saves them; every node carries the registry id and version in ``properties`` (core nodes: comfy-core);
loaders list their model files in ``properties.models`` and the workflow in its top-level ``models``.
"""
import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import tomllib
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

if __package__:  # imported by the tests as part of the pack
    from ..core import catalog
    from .runner import client, convert as conversion, launcher
else:  # run as a script: its own folder is on sys.path, the catalog is loaded from its file
    from runner import client, convert as conversion, launcher
    _spec = importlib.util.spec_from_file_location("hypersd_catalog", REPO / "core" / "catalog.py")
    catalog = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(catalog)

PACK_VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
PACK_ID = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["name"]
COMFY_VERSION = "0.33.0"  # the main host: the shipped workflows are built against its /object_info
HF = "https://huggingface.co"
HYPER = f"{HF}/ByteDance/Hyper-SD/resolve/main/"
MODELS = {
    "sd_xl_base_1.0.safetensors": (f"{HF}/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors", "checkpoints"),
    "v1-5-pruned-emaonly-fp16.safetensors": (f"{HF}/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors", "checkpoints"),
    "flux1-dev.safetensors": (f"{HF}/black-forest-labs/FLUX.1-dev/resolve/main/flux1-dev.safetensors", "diffusion_models"),
    "ae.safetensors": (f"{HF}/black-forest-labs/FLUX.1-dev/resolve/main/ae.safetensors", "vae"),
    "clip_l.safetensors": (f"{HF}/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors", "text_encoders"),
    "t5xxl_fp16.safetensors": (f"{HF}/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors", "text_encoders"),
    "sd3_medium_incl_clips_t5xxlfp8.safetensors": (f"{HF}/stabilityai/stable-diffusion-3-medium/resolve/main/"
                                                   "sd3_medium_incl_clips_t5xxlfp8.safetensors", "checkpoints"),
}


def model_entry(name):
    if name.startswith("Hyper-"):
        folder = "checkpoints" if "Comfyui" in name else "diffusion_models" if "Unet" in name else "loras"
        return {"name": name, "url": HYPER + name, "directory": folder}
    url, folder = MODELS[name]
    return {"name": name, "url": url, "directory": folder}


class Workflow:
    """A UI-format workflow under construction, typed against /object_info."""

    def __init__(self, object_info):
        self.info = object_info
        self.nodes, self.links, self.models = [], [], []

    #: Each node sized to its content: the frontend's own node.computeSize() (measured in the browser test on
    #: frontends 1.27.10 and 1.58.1, the larger of the two); prompt boxes wider for their text, Save Image
    #: taller for its preview.
    SIZES = {"CheckpointLoaderSimple": (210, 98), "HyperSDLoraLoader": (210, 214), "CLIPTextEncode": (400, 200),
             "HyperSDScheduler": (210, 134), "HyperSDTCDSampler": (210, 58), "EmptyLatentImage": (210, 106),
             "SamplerCustom": (211, 230), "VAEDecode": (140, 46), "SaveImage": (210, 270), "UNETLoader": (210, 82),
             "DualCLIPLoader": (210, 130), "VAELoader": (210, 58), "FluxGuidance": (210, 58),
             "EmptySD3LatentImage": (210, 106), "HyperSDUNetLoader": (261, 210), "LoadImage": (223, 326),
             "ImageScale": (210, 130), "VAEEncode": (140, 46), "PrimitiveInt": (210, 86),
             "ModelSamplingFlux": (210, 134)}

    def node(self, type_, widgets=None, pos=(0, 0), title=None, models=()):
        info = self.info[type_]
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        widgets = dict(widgets or {})
        values, sockets, widget_inputs = [], [], []
        for name, spec in specs.items():
            if conversion.is_widget(spec):
                default = spec[1].get("default") if len(spec) > 1 and isinstance(spec[1], dict) else None
                if default is None and isinstance(spec[0], list):
                    default = spec[0][0] if spec[0] else ""
                values.append(widgets.pop(name, default))
                values.extend(["fixed", ""][:conversion.control_widgets(name, spec)])  # control_after_generate
                widget_inputs.append({"name": name, "type": "COMBO" if isinstance(spec[0], list) else spec[0],
                                      "widget": {"name": name}, "link": None})
            else:
                sockets.append({"name": name, "type": spec[0], "link": None})
        inputs = sockets + widget_inputs  # the frontend's order: connections first, then widgets
        if widgets:
            raise KeyError(f"{type_} has no widget(s) {sorted(widgets)}")
        props = {"Node name for S&R": type_, "cnr_id": PACK_ID if info["python_module"].startswith("custom_nodes")
                 else "comfy-core", "ver": PACK_VERSION if info["python_module"].startswith("custom_nodes")
                 else COMFY_VERSION}
        if models:
            props["models"] = [model_entry(m) for m in models]
            self.models += [m for m in models if m not in self.models]
        node = {"id": len(self.nodes) + 1, "type": type_, "pos": list(pos), "size": list(self.SIZES.get(type_, (210, 60 + 26 * len(specs)))),
                "flags": {}, "order": 0, "mode": 0, "inputs": inputs,
                "outputs": [{"name": n, "type": t, "links": [], "slot_index": i}
                            for i, (n, t) in enumerate(zip(info["output_name"], info["output"]))],
                "properties": props, "widgets_values": values}
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node

    def note(self, text, pos, width=420):
        lines = sum(1 + len(par) * 7 // (width - 20) for par in text.split("\n"))  # ~7 px a character
        node = {"id": len(self.nodes) + 1, "type": "Note", "pos": list(pos), "size": [width, 20 + 17 * lines],
                "flags": {},
                "order": 0, "mode": 0, "inputs": [], "outputs": [], "title": "How to use",
                "properties": {}, "widgets_values": [text], "color": "#432", "bgcolor": "#653"}
        self.nodes.append(node)

    def link(self, src, output, dst, input_name):
        slot = output if isinstance(output, int) else \
            [o["name"] for o in src["outputs"]].index(output)
        target = [i for i, x in enumerate(dst["inputs"]) if x["name"] == input_name]
        if not target:
            raise KeyError(f"{dst['type']} has no input {input_name}")
        link_id = len(self.links) + 1
        typ = src["outputs"][slot]["type"]
        self.links.append([link_id, src["id"], slot, dst["id"], target[0], typ])
        src["outputs"][slot]["links"].append(link_id)
        dst["inputs"][target[0]]["link"] = link_id

    def to_json(self):
        order = self._topological()
        for node in self.nodes:
            node["order"] = order.get(node["id"], 0)
        return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps([n["type"] for n in self.nodes]))),
                "revision": 0, "last_node_id": len(self.nodes), "last_link_id": len(self.links),
                "nodes": self.nodes, "links": self.links, "groups": [], "config": {},
                "extra": {"ds": self._view(), "frontendVersion": "1.27.10",
                          "node_versions": {"comfy-core": COMFY_VERSION, PACK_ID: PACK_VERSION}},
                "models": [model_entry(m) for m in self.models], "version": 0.4}

    def _view(self, canvas=(1800, 900), margin=40):
        """The saved view (extra.ds): the whole graph, title bars included, in a 1920x1080 window's canvas."""
        x0 = min(n["pos"][0] for n in self.nodes)
        y0 = min(n["pos"][1] - 30 for n in self.nodes)
        x1 = max(n["pos"][0] + n["size"][0] for n in self.nodes)
        y1 = max(n["pos"][1] + n["size"][1] for n in self.nodes)
        scale = round(min(1.0, (canvas[0] - 2 * margin) / (x1 - x0), (canvas[1] - 2 * margin) / (y1 - y0)), 2)
        return {"scale": scale, "offset": [round(margin / scale - x0), round(margin / scale - y0)]}

    def _topological(self):
        deps = {n["id"]: {l[1] for l in self.links if l[3] == n["id"]} for n in self.nodes}
        order, done = {}, set()
        while len(done) < len(deps):
            ready = sorted(i for i, d in deps.items() if i not in done and d <= done)
            for i in ready:
                order[i] = len(order)
                done.add(i)
        return order


# Layout: columns read left to right -- loaders, prompts and latent, recipe nodes (scheduler, sampler), the
# sampler node, decode, save. The checkpoint's VAE runs to VAE Decode along a free lane at the top (y ~ 54);
# every other link joins neighbouring columns or crosses a column in a band kept free of nodes: the LoRA's
# links to the recipe nodes pass above the prompts, the prompts' and latent's links to the sampler pass below
# the recipe nodes. tests/test_browser.py measures it with the frontend's own geometry.
COLS = (0, 300, 600, 1090, 1390, 1690, 1920)
PROMPT_W = 400  # prompt boxes; the latent below them is right-aligned with them
LORA_Y, RECIPE_Y, PROMPT_Y = 450, 110, 740


NOTE_LORA = ("{title}\n\nThe Hyper-SD LoRA Loader picks the official file and feeds its recipe to the sampler: "
             "steps -> Hyper-SD Scheduler, cfg -> SamplerCustom, eta -> TCD Sampler. Missing files are "
             "downloaded from ByteDance/Hyper-SD (download: 'if missing').\n\nYou may change: the prompt, the seed, "
             "the size. {extra}\nKeep cfg at the loader's value (1.0 = no negative prompt) unless you use a CFG LoRA.")


def lora_workflow(info, family, label, lora_file, ckpt, size, steps=None, eta=None, cfg_lora=False,
                  img2img=False, title="", latent_type="EmptyLatentImage", note=None):
    w = Workflow(info)
    recipe = catalog.lookup(label)
    ck = w.node("CheckpointLoaderSimple", {"ckpt_name": ckpt}, (COLS[0], 0), models=[ckpt])
    # the strength widget holds the strength applied (the recipe's), as the canvas shows it (web/js/hypersd.js)
    lora = w.node("HyperSDLoraLoader", {"lora": label, "strength": recipe.strength, "strength_from": "recipe",
                                        "download": "if missing"}, (COLS[1], LORA_Y), models=[lora_file])
    w.link(ck, "MODEL", lora, "model")
    w.link(ck, "CLIP", lora, "clip")
    pos = w.node("CLIPTextEncode", {"text": "a lighthouse on a cliff at sunset, detailed, cinematic"},
                 (COLS[2], PROMPT_Y), title="Positive prompt")
    neg = w.node("CLIPTextEncode", {"text": "blurry, low quality" if cfg_lora else ""}, (COLS[2], PROMPT_Y + 250),
                 title="Negative prompt (used only when cfg > 1)")
    w.link(lora, "CLIP", pos, "clip")
    w.link(lora, "CLIP", neg, "clip")
    sched = w.node("HyperSDScheduler", {"steps": steps or recipe.steps, "denoise": 0.75 if img2img else 1.0,
                                        "start_timestep": 999, "spacing": recipe.spacing}, (COLS[3], RECIPE_Y))
    w.link(lora, "MODEL", sched, "model")
    tcd = w.node("HyperSDTCDSampler", {"eta": recipe.eta if eta is None else eta}, (COLS[3], RECIPE_Y + 220))
    if steps is None:
        w.link(lora, "steps", sched, "steps")
    if eta is None:
        w.link(lora, "eta", tcd, "eta")
    if img2img:
        # the image chain sits above the VAE lane: Load Image -> Upscale Image -> VAE Encode (recipe column,
        # next to the sampler), the checkpoint's VAE reaching it above the LoRA and the prompts
        load = w.node("LoadImage", {"image": "example.png"}, (COLS[1], -600))
        w.nodes[-1]["widgets_values"].append("image")  # the frontend's upload widget
        scale = w.node("ImageScale", {"upscale_method": "lanczos", "width": size, "height": size,
                                      "crop": "center"}, (COLS[2], -450))
        w.link(load, "IMAGE", scale, "image")
        enc = w.node("VAEEncode", {}, (COLS[3], -150))
        w.link(scale, "IMAGE", enc, "pixels")
        w.link(ck, "VAE", enc, "vae")
        latent = enc
    else:
        latent = w.node(latent_type, {"width": size, "height": size, "batch_size": 1},
                        (COLS[2] + PROMPT_W - Workflow.SIZES[latent_type][0], PROMPT_Y + 500))
    sample = w.node("SamplerCustom", {"add_noise": True, "noise_seed": 42, "cfg": recipe.cfg}, (COLS[4], LORA_Y))
    w.link(lora, "MODEL", sample, "model")
    w.link(lora, "cfg", sample, "cfg")
    w.link(pos, 0, sample, "positive")
    w.link(neg, 0, sample, "negative")
    w.link(tcd, 0, sample, "sampler")
    w.link(sched, 0, sample, "sigmas")
    w.link(latent, "LATENT", sample, "latent_image")
    dec = w.node("VAEDecode", {}, (COLS[5], 20))
    w.link(sample, 0, dec, "samples")
    w.link(ck, "VAE", dec, "vae")
    save = w.node("SaveImage", {"filename_prefix": "hyper-sd"}, (COLS[6], 20))
    w.link(dec, 0, save, "images")
    extra = {
        "unified": "eta (TCD Sampler): 1.0 as in the official example; it has no effect at 1 step. The unified "
                   "LoRA also works at 2-8 steps (Hyper-SD Scheduler steps; its spacing 'tcd' keeps TCDScheduler's "
                   "timesteps, the official recipe): lower eta (e.g. 0.3) keeps more detail there.",
        "img2img": "denoise (Hyper-SD Scheduler): 0.75 keeps the last 3 of the 4 trailing timesteps (diffusers' "
                   "img2img rule); lower keeps more of the input image. Load your image in Load Image; Upscale "
                   "Image sets the size (1024 for SDXL).",
        "cfg": "cfg comes from the loader (5.0); 5-8 works, and the negative prompt is used.",
        "nstep": "steps and eta come from the loader (N steps, eta 0 = DDIM trailing, the recipe); a higher "
                 "eta (0.3) adds variation.",
        "sd3": f"cfg comes from the loader ({catalog.lookup(label).cfg:g}, the recipe of this file), the LoRA strength "
               "0.125, and the Hyper-SD Scheduler gives SD3's own flow schedule (shift 3.0); the negative prompt is "
               "used.",
    }[note or ("unified" if eta is not None else "img2img" if img2img else "cfg" if cfg_lora else "nstep")]
    w.note(NOTE_LORA.format(title=title, extra=extra), (COLS[0], 150), width=Workflow.SIZES["CheckpointLoaderSimple"][0])
    return w


def unet_workflow(info, size):
    w = Workflow(info)
    unet = w.node("HyperSDUNetLoader", {"unet": "SDXL · one-step UNet (ComfyUI checkpoint, fp16)",
                                        "download": "if missing", "base_checkpoint": "none",
                                        "start_timestep": 800}, (0, 0),
                  models=["Hyper-SDXL-1step-Unet-Comfyui.fp16.safetensors"])
    # the loader's links to the sampler pass above the prompt and latent; its VAE runs at the top to VAE Decode
    pos = w.node("CLIPTextEncode", {"text": "a red fox in fresh snow, golden hour, detailed"}, (460, 400),
                 title="Positive prompt")
    w.link(unet, "CLIP", pos, "clip")
    latent = w.node("EmptyLatentImage", {"width": size, "height": size, "batch_size": 1},
                    (460 + PROMPT_W - Workflow.SIZES["EmptyLatentImage"][0], 660))
    sample = w.node("SamplerCustom", {"add_noise": True, "noise_seed": 42, "cfg": 1.0}, (920, 220))
    w.link(unet, "MODEL", sample, "model")
    w.link(pos, 0, sample, "positive")
    w.link(pos, 0, sample, "negative")
    w.link(unet, "SAMPLER", sample, "sampler")
    w.link(unet, "SIGMAS", sample, "sigmas")
    w.link(latent, 0, sample, "latent_image")
    dec = w.node("VAEDecode", {}, (1220, 20))
    w.link(sample, 0, dec, "samples")
    w.link(unet, "VAE", dec, "vae")
    save = w.node("SaveImage", {"filename_prefix": "hyper-sdxl-1step-unet"}, (1430, 20))
    w.link(dec, 0, save, "images")
    w.note("Hyper-SDXL one-step UNet\n\nOne model call at t=800 from unit-variance noise, as the official recipe "
           "(diffusers LCMScheduler, timesteps=[800]). The loader outputs the SAMPLER and SIGMAS: keep cfg 1.0.\n\n"
           "You may change: the prompt, the seed, the size; start_timestep (lower for img2img with a VAE Encode "
           "latent). For the bare diffusers UNet file, choose an SDXL checkpoint in base_checkpoint for CLIP/VAE.",
           (0, 300), width=Workflow.SIZES["HyperSDUNetLoader"][0])
    return w


def flux_workflow(info, size, steps):
    w = Workflow(info)
    label, lora_file = f"FLUX.1-dev · {steps} steps", f"Hyper-FLUX.1-dev-{steps}steps-lora.safetensors"
    unet = w.node("UNETLoader", {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}, (COLS[0], 130),
                  models=["flux1-dev.safetensors"])
    clip = w.node("DualCLIPLoader", {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl_fp16.safetensors",
                                     "type": "flux"}, (COLS[0], 290),
                  models=["clip_l.safetensors", "t5xxl_fp16.safetensors"])
    vae = w.node("VAELoader", {"vae_name": "ae.safetensors"}, (COLS[0], 0), models=["ae.safetensors"])
    lora = w.node("HyperSDLoraLoader", {"lora": label, "strength": catalog.lookup(label).strength,
                                        "strength_from": "recipe", "download": "if missing"},
                  (COLS[1], LORA_Y), models=[lora_file])
    # Width and Height sit below the loader, clear of the prompt: they feed the latent and ModelSamplingFlux.
    width = w.node("PrimitiveInt", {"value": size}, (COLS[1], PROMPT_Y + 280), title="Width")
    height = w.node("PrimitiveInt", {"value": size}, (COLS[1], PROMPT_Y + 400), title="Height")
    w.link(unet, 0, lora, "model")
    w.link(clip, 0, lora, "clip")
    # ModelSamplingFlux above the prompt in the prompts' column: its model goes straight right to the scheduler.
    shift = w.node("ModelSamplingFlux", {"max_shift": 1.15, "base_shift": 0.5, "width": size, "height": size},
                   (COLS[2], RECIPE_Y))
    w.link(lora, "MODEL", shift, "model")
    pos = w.node("CLIPTextEncode", {"text": "a lighthouse on a cliff at sunset, detailed, cinematic"},
                 (COLS[2], PROMPT_Y), title="Positive prompt")
    w.link(lora, "CLIP", pos, "clip")
    guide = w.node("FluxGuidance", {"guidance": 3.5}, (COLS[3], PROMPT_Y))
    w.link(pos, 0, guide, "conditioning")
    sched = w.node("HyperSDScheduler", {"steps": steps, "denoise": 1.0, "start_timestep": 999}, (COLS[3], RECIPE_Y))
    w.link(shift, 0, sched, "model")
    w.link(lora, "steps", sched, "steps")
    # The sampler node in the prompts' column, below the loader's outgoing links (the scheduler's column then
    # holds the scheduler and the guidance only, so the shifted model's link to SamplerCustom runs free).
    tcd = w.node("HyperSDTCDSampler", {"eta": 0.0}, (COLS[2], LORA_Y + 150))
    w.link(lora, "eta", tcd, "eta")
    latent = w.node("EmptySD3LatentImage", {"width": size, "height": size, "batch_size": 1},
                    (COLS[3], PROMPT_Y + 200))
    for prim, name in ((width, "width"), (height, "height")):
        w.link(prim, 0, shift, name)
        w.link(prim, 0, latent, name)
    sample = w.node("SamplerCustom", {"add_noise": True, "noise_seed": 42, "cfg": 1.0}, (COLS[4], LORA_Y))
    w.link(shift, 0, sample, "model")
    w.link(lora, "cfg", sample, "cfg")
    w.link(guide, 0, sample, "positive")
    w.link(guide, 0, sample, "negative")
    w.link(tcd, 0, sample, "sampler")
    w.link(sched, 0, sample, "sigmas")
    w.link(latent, 0, sample, "latent_image")
    dec = w.node("VAEDecode", {}, (COLS[5], 0))
    w.link(sample, 0, dec, "samples")
    w.link(vae, 0, dec, "vae")
    save = w.node("SaveImage", {"filename_prefix": "hyper-flux"}, (COLS[6], 0))
    w.link(dec, 0, save, "images")
    w.note(f"Hyper-FLUX.1-dev {steps} steps\n\nThe loader applies the LoRA at the recipe's strength 0.125 and outputs "
           f"{steps} steps, cfg 1.0 and eta 0: the TCD sampler at eta 0 on a flow model is exactly core Euler, the "
           "recipe. FLUX's guidance 3.5 is the FluxGuidance node. Width and Height feed both the latent and "
           "ModelSamplingFlux, whose resolution-dependent shift is FluxPipeline's, so every size gets diffusers' "
           "schedule.\n\nYou may change: the prompt, the seed, Width and Height (multiples of 16), the guidance "
           "(3-4).", (COLS[0], 500), width=Workflow.SIZES["UNETLoader"][0])
    return w


def build_all(info):
    sd15, sdxl = "v1-5-pruned-emaonly-fp16.safetensors", "sd_xl_base_1.0.safetensors"
    specs = {
        "hyper-sdxl-1step-unified-tcd": lambda: lora_workflow(info, "SDXL", "SDXL · 1 step (unified, TCD)",
                                                              "Hyper-SDXL-1step-lora.safetensors", sdxl, 1024,
                                                              steps=1, eta=1.0, title="Hyper-SDXL 1 step, unified LoRA (TCD)"),
        "hyper-sd15-1step-unified-tcd": lambda: lora_workflow(info, "SD1.5", "SD1.5 · 1 step (unified, TCD)",
                                                              "Hyper-SD15-1step-lora.safetensors", sd15, 512,
                                                              steps=1, eta=1.0, title="Hyper-SD1.5 1 step, unified LoRA (TCD)"),
        "hyper-sdxl-1step-unet": lambda: unet_workflow(info, 1024),
        "hyper-sdxl-4step-img2img": lambda: lora_workflow(info, "SDXL", "SDXL · 4 steps",
                                                          "Hyper-SDXL-4steps-lora.safetensors", sdxl, 1024,
                                                          img2img=True, title="Hyper-SDXL 4 steps, img2img"),
        "hyper-sdxl-8step-cfg-lora": lambda: lora_workflow(info, "SDXL", "SDXL · 8 steps CFG",
                                                           "Hyper-SDXL-8steps-CFG-lora.safetensors", sdxl, 1024,
                                                           cfg_lora=True, title="Hyper-SDXL 8 steps, CFG LoRA"),
    }
    for n in (8, 16):
        specs[f"hyper-flux1-dev-{n}step-lora"] = lambda n=n: flux_workflow(info, 1024, n)
    for n in (4, 8, 16):
        specs[f"hyper-sd3-{n}step-cfg-lora"] = (lambda n=n: lora_workflow(
            info, "SD3", f"SD3 · {n} steps CFG", f"Hyper-SD3-{n}steps-CFG-lora.safetensors",
            "sd3_medium_incl_clips_t5xxlfp8.safetensors", 1024, cfg_lora=True, latent_type="EmptySD3LatentImage",
            note="sd3", title=f"Hyper-SD3 {n} steps, CFG LoRA"))
    for n in (2, 4, 8):
        specs[f"hyper-sdxl-{n}step-lora"] = (lambda n=n: lora_workflow(
            info, "SDXL", f"SDXL · {n} steps", f"Hyper-SDXL-{n}steps-lora.safetensors", sdxl, 1024,
            title=f"Hyper-SDXL {n} steps"))
        specs[f"hyper-sd15-{n}step-lora"] = (lambda n=n: lora_workflow(
            info, "SD1.5", f"SD1.5 · {n} steps", f"Hyper-SD15-{n}steps-lora.safetensors", sd15, 512,
            title=f"Hyper-SD1.5 {n} steps"))
    return {name: make().to_json() for name, make in specs.items()}


THUMBNAIL_SIZE = (640, 480)
THUMBNAIL_SCRIPT = REPO / "tests" / "browser" / "thumbnails.mjs"
# the page as a returning user has it: no first-run template browser, no minimap or canvas info
THUMBNAIL_SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False, "Comfy.Graph.CanvasInfo": False,
                      "Comfy.Graph.CanvasMenu": False,
                      "Comfy.Workflow.WorkflowTabsPosition": "Sidebar"}


def newest_frontend():
    found = sorted((REPO / ".cache-frontend").glob("*/comfyui_frontend_package/static"),
                   key=lambda p: [int(x) for x in p.parents[1].name.split(".") if x.isdigit()])
    root = os.environ.get("HYPERSD_FRONTEND_ROOT") or (found[-1] if found else None)
    return Path(root) if root and (Path(root) / "index.html").is_file() else None


def thumbnail_server_args(tmp):
    """ComfyUI arguments for the capture: the newest frontend, the settings above, an input folder with ComfyUI's
    example image, and empty files under every model name the workflows use (the frontend then marks none as
    missing; nothing is loaded)."""
    models = tmp / "models"
    for name, (_, folder) in MODELS.items():
        (models / folder).mkdir(parents=True, exist_ok=True)
        (models / folder / name).touch()
    for entry in catalog.CATALOG:
        (models / entry.folder).mkdir(parents=True, exist_ok=True)
        (models / entry.folder / entry.filename).touch()
    yaml = tmp / "models.yaml"
    yaml.write_text("hypersd_thumbnails:\n  base_path: " + json.dumps(str(models)) + "\n" + "".join(
        f"  {folder}: {folder}\n" for folder in sorted({f for _, f in MODELS.values()} | {e.folder for e in catalog.CATALOG})))
    (tmp / "user" / "default").mkdir(parents=True)
    (tmp / "user" / "default" / "comfy.settings.json").write_text(json.dumps(THUMBNAIL_SETTINGS))
    (tmp / "input").mkdir()
    args = ["--extra-model-paths-config", str(yaml), "--user-directory", str(tmp / "user"),
            "--input-directory", str(tmp / "input")]
    example = launcher.comfyui_path() / "input" / "example.png"
    if example.is_file():
        shutil.copy(example, tmp / "input" / "example.png")
    frontend = newest_frontend()
    return args + (["--front-end-root", str(frontend)] if frontend else [])


def browser_tools():
    """(node, chromium) when the capture can run, else a sentence saying what is missing."""
    node = shutil.which("node")
    chromium = next((c for c in (os.environ.get("HYPERSD_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                                 shutil.which("chromium-browser"), shutil.which("google-chrome")) if c and Path(c).is_file()),
                    None)
    playwright = THUMBNAIL_SCRIPT.parent / "node_modules" / "playwright-core" / "package.json"
    missing = [what for what, ok in (("node", node), ("chromium", chromium), ("npm ci in tests/browser",
                                                                             playwright.is_file())) if not ok]
    return (node, chromium) if not missing else "needs " + ", ".join(missing)


def capture_thumbnails(url, names, tmp):
    """workflows/<name>.jpg for each name, captured from the canvas of the server at ``url``; the paths written."""
    tools = browser_tools()
    if isinstance(tools, str):
        print(f"thumbnails not regenerated ({tools}); the committed workflows/*.jpg are kept")
        return []
    node, chromium = tools
    config = tmp / "thumbnails.json"
    config.write_text(json.dumps({"url": url, "chromium": chromium, "size": list(THUMBNAIL_SIZE), "timeout_ms": 60000,
                                  "workflows": [{"name": n, "path": str(REPO / "workflows" / f"{n}.json"),
                                                 "out": str(REPO / "workflows" / f"{n}.jpg")} for n in names]}))
    proc = subprocess.run([node, str(THUMBNAIL_SCRIPT), str(config)], cwd=str(THUMBNAIL_SCRIPT.parent),
                          capture_output=True, text=True, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {"fatal": "script", "message": proc.stderr[-2000:]}
    if result.get("fatal"):
        raise SystemExit(f"thumbnail capture failed ({result['fatal']}): {result.get('message', '')}")
    return result["written"]


def main(argv=None):
    ap = argparse.ArgumentParser(description="Write workflows/*.json from the specs in this file, and their "
                                             "thumbnails workflows/*.jpg.")
    ap.add_argument("--server", help="a running ComfyUI with this pack (default: start one from $COMFYUI_PATH)")
    ap.add_argument("--no-thumbnails", action="store_true", help="write the JSON files only")
    args = ap.parse_args(argv)
    proc = None
    with tempfile.TemporaryDirectory(prefix="hypersd-build-") as tmp:
        try:
            if args.server:
                server = client.Server(args.server)
            else:
                extra = [] if args.no_thumbnails else thumbnail_server_args(Path(tmp))
                server, proc = launcher.start_server(launcher.comfyui_path(), print, comfy_args=extra)
            info = server.get("/object_info", timeout=120)
            built = build_all(info)
            for name, wf in built.items():
                path = REPO / "workflows" / f"{name}.json"
                path.write_text(json.dumps(wf, indent=1, ensure_ascii=False) + "\n")
                print(path)
            if not args.no_thumbnails:
                for path in capture_thumbnails(server.url, sorted(built), Path(tmp)):
                    print(path)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
