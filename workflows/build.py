"""Writes the shipped workflows (workflows/*.json, UI format) from the specs below.

    python workflows/build.py [--server URL]   # default: starts a ComfyUI from $COMFYUI_PATH for /object_info

Maintainer tool: the JSON files are committed; tests/test_workflows.py imports this module and checks that
the committed files equal what it builds, and runs them against a live server.
Widget values follow /object_info input order with a "fixed" marker after seed widgets, as the frontend
saves them; every node carries the registry id and version in ``properties`` (core nodes: comfy-core);
loaders list their model files in ``properties.models`` and the workflow in its top-level ``models``.
"""
import argparse
import importlib.util
import json
import tomllib
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

if __package__:  # imported by the tests as part of the pack
    from ..core import catalog
    from . import run as runner
else:  # run as a script: its own folder is on sys.path, the catalog is loaded from its file
    import run as runner
    _spec = importlib.util.spec_from_file_location("hypersd_catalog", REPO / "core" / "catalog.py")
    catalog = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(catalog)

PACK_VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
PACK_ID = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["name"]
COMFY_VERSION = "0.3.64"
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

    HEIGHTS = {"CheckpointLoaderSimple": 98, "HyperSDUNetLoader": 210, "LoadImage": 314}  # the frontend's minimum
    WIDTHS = {"HyperSDUNetLoader": 400, "HyperSDLoraLoader": 340}

    def node(self, type_, widgets=None, pos=(0, 0), title=None, models=()):
        info = self.info[type_]
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        widgets = dict(widgets or {})
        values, sockets, widget_inputs = [], [], []
        for name, spec in specs.items():
            if runner.is_widget(spec):
                default = spec[1].get("default") if len(spec) > 1 and isinstance(spec[1], dict) else None
                if default is None and isinstance(spec[0], list):
                    default = spec[0][0] if spec[0] else ""
                values.append(widgets.pop(name, default))
                if runner.has_seed_control(name, spec):
                    values.append("fixed")
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
        node = {"id": len(self.nodes) + 1, "type": type_, "pos": list(pos), "size": [self.WIDTHS.get(type_, 320),
                                                           self.HEIGHTS.get(type_, 60 + 26 * len(specs))],
                "flags": {}, "order": 0, "mode": 0, "inputs": inputs,
                "outputs": [{"name": n, "type": t, "links": [], "slot_index": i}
                            for i, (n, t) in enumerate(zip(info["output_name"], info["output"]))],
                "properties": props, "widgets_values": values}
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node

    def note(self, text, pos):
        node = {"id": len(self.nodes) + 1, "type": "Note", "pos": list(pos), "size": [420, 260], "flags": {},
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
                "extra": {"ds": {"scale": 0.8, "offset": [40, 70]}, "frontendVersion": "1.27.10",
                          "node_versions": {"comfy-core": COMFY_VERSION, PACK_ID: PACK_VERSION}},
                "models": [model_entry(m) for m in self.models], "version": 0.4}

    def _topological(self):
        deps = {n["id"]: {l[1] for l in self.links if l[3] == n["id"]} for n in self.nodes}
        order, done = {}, set()
        while len(done) < len(deps):
            ready = sorted(i for i, d in deps.items() if i not in done and d <= done)
            for i in ready:
                order[i] = len(order)
                done.add(i)
        return order


NOTE_LORA = ("{title}\n\nThe Hyper-SD LoRA Loader picks the official file and feeds its recipe to the sampler: "
             "steps -> Hyper-SD Scheduler, cfg -> SamplerCustom, eta -> TCD Sampler. Missing files are "
             "downloaded from ByteDance/Hyper-SD (download: 'if missing').\n\nYou may change: the prompt, the seed, "
             "the size. {extra}\nKeep cfg at the loader's value (1.0 = no negative prompt) unless you use a CFG LoRA.")


def lora_workflow(info, family, label, lora_file, ckpt, size, steps=None, eta=None, cfg_lora=False,
                  img2img=False, title="", latent_type="EmptyLatentImage", note=None):
    w = Workflow(info)
    ck = w.node("CheckpointLoaderSimple", {"ckpt_name": ckpt}, (0, 0), models=[ckpt])
    lora = w.node("HyperSDLoraLoader", {"lora": label, "strength": -1.0, "download": "if missing"}, (360, 0),
                  models=[lora_file])
    w.link(ck, "MODEL", lora, "model")
    w.link(ck, "CLIP", lora, "clip")
    pos = w.node("CLIPTextEncode", {"text": "a lighthouse on a cliff at sunset, detailed, cinematic"}, (720, 0),
                 title="Positive prompt")
    neg = w.node("CLIPTextEncode", {"text": "blurry, low quality" if cfg_lora else ""}, (720, 220),
                 title="Negative prompt (used only when cfg > 1)")
    w.link(lora, "CLIP", pos, "clip")
    w.link(lora, "CLIP", neg, "clip")
    recipe = catalog.lookup(label)
    sched = w.node("HyperSDScheduler", {"steps": steps or recipe.steps, "denoise": 0.75 if img2img else 1.0,
                                        "start_timestep": 999}, (360, 330))
    w.link(lora, "MODEL", sched, "model")
    tcd = w.node("HyperSDTCDSampler", {"eta": recipe.eta if eta is None else eta}, (360, 560))
    if steps is None:
        w.link(lora, "steps", sched, "steps")
    if eta is None:
        w.link(lora, "eta", tcd, "eta")
    if img2img:
        load = w.node("LoadImage", {"image": "example.png"}, (0, 400))
        w.nodes[-1]["widgets_values"].append("image")  # the frontend's upload widget
        scale = w.node("ImageScale", {"upscale_method": "lanczos", "width": size, "height": size,
                                      "crop": "center"}, (0, 760))
        w.link(load, "IMAGE", scale, "image")
        enc = w.node("VAEEncode", {}, (0, 1020))
        w.link(scale, "IMAGE", enc, "pixels")
        w.link(ck, "VAE", enc, "vae")
        latent = enc
    else:
        latent = w.node(latent_type, {"width": size, "height": size, "batch_size": 1}, (0, 400))
    sample = w.node("SamplerCustom", {"add_noise": True, "noise_seed": 42, "cfg": recipe.cfg}, (1080, 0))
    w.link(lora, "MODEL", sample, "model")
    w.link(lora, "cfg", sample, "cfg")
    w.link(pos, 0, sample, "positive")
    w.link(neg, 0, sample, "negative")
    w.link(tcd, 0, sample, "sampler")
    w.link(sched, 0, sample, "sigmas")
    w.link(latent, "LATENT", sample, "latent_image")
    dec = w.node("VAEDecode", {}, (1440, 0))
    w.link(sample, 0, dec, "samples")
    w.link(ck, "VAE", dec, "vae")
    save = w.node("SaveImage", {"filename_prefix": "hyper-sd"}, (1820, 0))
    w.link(dec, 0, save, "images")
    extra = {
        "unified": "eta (TCD Sampler): 1.0 as in the official example; it has no effect at 1 step. The unified "
                   "LoRA also works at 2-8 steps (Hyper-SD Scheduler steps): lower eta (e.g. 0.3) keeps more "
                   "detail there.",
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
    w.note(NOTE_LORA.format(title=title, extra=extra), (1080, 420))
    return w


def unet_workflow(info, size):
    w = Workflow(info)
    unet = w.node("HyperSDUNetLoader", {"unet": "SDXL · one-step UNet (ComfyUI checkpoint, fp16)",
                                        "download": "if missing", "base_checkpoint": "none",
                                        "start_timestep": 800}, (0, 0),
                  models=["Hyper-SDXL-1step-Unet-Comfyui.fp16.safetensors"])
    pos = w.node("CLIPTextEncode", {"text": "a red fox in fresh snow, golden hour, detailed"}, (460, 0),
                 title="Positive prompt")
    w.link(unet, "CLIP", pos, "clip")
    latent = w.node("EmptyLatentImage", {"width": size, "height": size, "batch_size": 1}, (460, 260))
    sample = w.node("SamplerCustom", {"add_noise": True, "noise_seed": 42, "cfg": 1.0}, (840, 0))
    w.link(unet, "MODEL", sample, "model")
    w.link(pos, 0, sample, "positive")
    w.link(pos, 0, sample, "negative")
    w.link(unet, "SAMPLER", sample, "sampler")
    w.link(unet, "SIGMAS", sample, "sigmas")
    w.link(latent, 0, sample, "latent_image")
    dec = w.node("VAEDecode", {}, (1220, 0))
    w.link(sample, 0, dec, "samples")
    w.link(unet, "VAE", dec, "vae")
    save = w.node("SaveImage", {"filename_prefix": "hyper-sdxl-1step-unet"}, (1600, 0))
    w.link(dec, 0, save, "images")
    w.note("Hyper-SDXL one-step UNet\n\nOne model call at t=800 from unit-variance noise, as the official recipe "
           "(diffusers LCMScheduler, timesteps=[800]). The loader outputs the SAMPLER and SIGMAS: keep cfg 1.0.\n\n"
           "You may change: the prompt, the seed, the size; start_timestep (lower for img2img with a VAE Encode "
           "latent). For the bare diffusers UNet file, choose an SDXL checkpoint in base_checkpoint for CLIP/VAE.",
           (840, 460))
    return w


def flux_workflow(info, size, steps):
    w = Workflow(info)
    label, lora_file = f"FLUX.1-dev · {steps} steps", f"Hyper-FLUX.1-dev-{steps}steps-lora.safetensors"
    unet = w.node("UNETLoader", {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}, (0, 0),
                  models=["flux1-dev.safetensors"])
    clip = w.node("DualCLIPLoader", {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl_fp16.safetensors",
                                     "type": "flux"}, (0, 160), models=["clip_l.safetensors", "t5xxl_fp16.safetensors"])
    vae = w.node("VAELoader", {"vae_name": "ae.safetensors"}, (0, 360), models=["ae.safetensors"])
    width = w.node("PrimitiveInt", {"value": size}, (0, 480), title="Width")
    height = w.node("PrimitiveInt", {"value": size}, (0, 600), title="Height")
    lora = w.node("HyperSDLoraLoader", {"lora": label, "strength": -1.0, "download": "if missing"},
                  (360, 0), models=[lora_file])
    w.link(unet, 0, lora, "model")
    w.link(clip, 0, lora, "clip")
    shift = w.node("ModelSamplingFlux", {"max_shift": 1.15, "base_shift": 0.5, "width": size, "height": size},
                   (360, 330))
    w.link(lora, "MODEL", shift, "model")
    pos = w.node("CLIPTextEncode", {"text": "a lighthouse on a cliff at sunset, detailed, cinematic"}, (720, 0),
                 title="Positive prompt")
    w.link(lora, "CLIP", pos, "clip")
    guide = w.node("FluxGuidance", {"guidance": 3.5}, (720, 220))
    w.link(pos, 0, guide, "conditioning")
    sched = w.node("HyperSDScheduler", {"steps": steps, "denoise": 1.0, "start_timestep": 999}, (360, 560))
    w.link(shift, 0, sched, "model")
    w.link(lora, "steps", sched, "steps")
    tcd = w.node("HyperSDTCDSampler", {"eta": 0.0}, (360, 790))
    w.link(lora, "eta", tcd, "eta")
    latent = w.node("EmptySD3LatentImage", {"width": size, "height": size, "batch_size": 1}, (720, 400))
    for prim, name in ((width, "width"), (height, "height")):
        w.link(prim, 0, shift, name)
        w.link(prim, 0, latent, name)
    sample = w.node("SamplerCustom", {"add_noise": True, "noise_seed": 42, "cfg": 1.0}, (1080, 0))
    w.link(shift, 0, sample, "model")
    w.link(lora, "cfg", sample, "cfg")
    w.link(guide, 0, sample, "positive")
    w.link(guide, 0, sample, "negative")
    w.link(tcd, 0, sample, "sampler")
    w.link(sched, 0, sample, "sigmas")
    w.link(latent, 0, sample, "latent_image")
    dec = w.node("VAEDecode", {}, (1440, 0))
    w.link(sample, 0, dec, "samples")
    w.link(vae, 0, dec, "vae")
    save = w.node("SaveImage", {"filename_prefix": "hyper-flux"}, (1820, 0))
    w.link(dec, 0, save, "images")
    w.note(f"Hyper-FLUX.1-dev {steps} steps\n\nThe loader applies the LoRA at the recipe's strength 0.125 and outputs "
           f"{steps} steps, cfg 1.0 and eta 0: the TCD sampler at eta 0 on a flow model is exactly core Euler, the "
           "recipe. FLUX's guidance 3.5 is the FluxGuidance node. Width and Height feed both the latent and "
           "ModelSamplingFlux, whose resolution-dependent shift is FluxPipeline's, so every size gets diffusers' "
           "schedule.\n\nYou may change: the prompt, the seed, Width and Height (multiples of 16), the guidance "
           "(3-4).", (1080, 420))
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


def main(argv=None):
    ap = argparse.ArgumentParser(description="Write workflows/*.json from the specs in this file.")
    ap.add_argument("--server", help="a running ComfyUI with this pack (default: start one from $COMFYUI_PATH)")
    args = ap.parse_args(argv)
    proc = None
    try:
        if args.server:
            server = runner.Server(args.server)
        else:
            server, proc = runner.start_server(runner.comfyui_path(), print)
        info = server.get("/object_info", timeout=120)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    for name, wf in build_all(info).items():
        path = REPO / "workflows" / f"{name}.json"
        path.write_text(json.dumps(wf, indent=1, ensure_ascii=False) + "\n")
        print(path)


if __name__ == "__main__":
    main()
