"""In the real frontend (chromium, headless, tests/browser/open_help.mjs and node_ui.mjs): a node's help shows this
pack's page, workflows made for ComfyUI-TCD open with this pack alone, and the pack's nodes show what they did.

One ComfyUI server per frontend, with the pack, the random SD1.5 checkpoint (tests/models.py) and a kohya test LoRA
under two official SD1.5 names; where the host builds them, the reduced FLUX.1-dev (tests/flow_models.py) with a
PEFT LoRA over all its layers, and, with the ``gguf`` package and the ComfyUI-GGUF snapshot, the same model as Q8_0
GGUF behind city96/ComfyUI-GGUF. One browser page runs, in order:

* help: for three nodes (a pack node and the two stand-ins) the script puts the node on the canvas, selects it and
  clicks the selection toolbox's Info button; the help panel must show the page from web/docs (its heading, the
  eta section, the recipe table), fetched from /extensions/<pack folder>/docs/;
* ComfyUI-TCD's own example workflows (embedded in the PNGs of its examples/ folder): every node of a known class,
  no missing-node dialog, the TCD node's widget values under ComfyUI-TCD's input names;
* the loader's strength widget while strength_from is 'recipe' (shipped FLUX and SDXL workflows, one saved before
  strength_from existed, then the user's edits), checked against what the Queue button sends;
* runs queued from the page: the SD1.5 4-step workflow at 64x64 (then spacing 'tcd', then the 2-step file), FLUX
  fp8 through ModelSamplingFlux at 1024 and 512, FLUX GGUF; after each, the loader's and the scheduler's panels,
  against diffusers' schedulers and the test files' own layer counts;
* the Comfy.Locale setting switched to Chinese and French: a new loader's title and input labels and its help
  page in that language (last: it changes the page's locale).

Runs on every frontend of tests/frontends.py (the host's pinned one, the newest, $HYPERSD_EXTRA_FRONTENDS). The
pinned frontend's run refreshes the README pictures in docs/ (HYPERSD_UPDATE_DOCS=1, or a missing file). Skipped
with a message without ComfyUI (COMFYUI_PATH), chromium, node, tests/browser/node_modules or the upstream snapshot.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

import frontends
from host import PACK_FOLDER, ComfyServer, require_comfyui
from test_browser import require_browser
from test_compat import TCD_ID, UNET_ID, unpack_comfyui_tcd

pytestmark = pytest.mark.every_host  # also on 0.3.64 with its frontend 1.27.10 (.ci/run)

REPO = Path(__file__).resolve().parents[1]
BROWSER_DIR = REPO / "tests" / "browser"
SCRIPT = BROWSER_DIR / "open_help.mjs"
DOCS = REPO / "web" / "docs"
HELP_NODES = ("HyperSDTCDSampler", TCD_ID, UNET_ID)
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False, "Comfy.Graph.CanvasInfo": False,
            "Comfy.Canvas.SelectionToolbox": True, "Comfy.Workflow.ShowMissingNodesWarning": True,
            "Comfy.Workflow.ShowMissingModelsWarning": True, "Comfy.Validation.Workflows": True}
MISSING_NODES_DIALOG = "global-load-workflow-warning"


def comfyui_tcd_workflows(dest):
    """ComfyUI-TCD's example workflows: the UI-format JSON its example PNGs carry (the frontend's own save)."""
    from PIL import Image
    folder = unpack_comfyui_tcd(dest / "upstream")
    out = []
    for png in sorted((folder / "examples").glob("*.png")):
        with Image.open(png) as im:
            text = im.info.get("workflow")
        if text:
            path = dest / f"{png.stem}.json"
            path.write_text(text)
            out.append({"name": png.stem, "path": str(path)})
    assert out, f"no workflow embedded in {folder / 'examples'}"
    return out


@pytest.fixture(scope="module", params=frontends.frontend_ids())
def report(request, tmp_path_factory):
    require_comfyui()
    chromium, node = require_browser()
    _, root = frontends.resolve(request.param)
    base = tmp_path_factory.mktemp(f"comfy-help-{request.param}")
    workflows = comfyui_tcd_workflows(base)
    settings = base / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps(SETTINGS))
    shots = Path(os.environ.get("HYPERSD_ARTIFACTS") or REPO / "artifacts").expanduser() / "help" / request.param
    shots.mkdir(parents=True, exist_ok=True)
    server = ComfyServer(base)
    if root is not None:
        server.extra_args = ("--front-end-root", str(root))
    models = add_models(server)
    server.start()
    try:
        config = base / "help.json"
        config.write_text(json.dumps({
            "url": server.url, "chromium": chromium, "outdir": str(shots), "viewport": [1600, 1000],
            "timeout_ms": 60000, "workflows": workflows,
            "help": [{"type": t, "expect": first_heading(t)} for t in HELP_NODES],
            "strength": strength_cases(base), "runs": run_cases(base, server.object_info(), models),
            "run_timeout_ms": 240000,
            "locales": [{"locale": lang, "type": "HyperSDLoraLoader", "expect_title": translated_title(lang),
                         "expect_heading": first_heading("HyperSDLoraLoader", lang)} for lang in LOCALES]}))
        proc = subprocess.run([node, str(SCRIPT), str(config)], cwd=str(BROWSER_DIR), capture_output=True,
                              text=True, timeout=900)
    finally:
        server.stop()
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, f"browser script failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    result = json.loads(lines[-1])
    if result.get("fatal") in ("no-playwright", "launch"):
        pytest.skip(f"the browser cannot be had here ({result['fatal']}): {result.get('message', '')[:500]}")
    assert not result.get("fatal"), result.get("message")
    result["models"] = models
    result["server_log"] = server.log()[-6000:]
    (shots / "report.json").write_text(json.dumps(result, indent=1))
    if request.param == "pinned":
        keep_docs_screenshots(result)
    return result


#: README pictures taken from the pinned frontend's run: (run or locale, step, file in docs/)
DOCS_SHOTS = (("sd15-4step", "2-step file", "screenshot-node-display.png"),
              ("flux-fp8", "512", "screenshot-flux-schedule.png"),
              ("locale", "fr", "screenshot-help-fr.png"))


def keep_docs_screenshots(result):
    """Copy the README's pictures into docs/ when HYPERSD_UPDATE_DOCS=1 or when one is missing."""
    import shutil
    found = {(r["name"], s["label"]): s.get("screenshot") for r in result.get("runs", []) for s in r["steps"]}
    found.update({("locale", e["locale"]): e.get("screenshot") for e in result.get("locales", {}).get("entries", [])})
    for run, step, name in DOCS_SHOTS:
        shot, dest = found.get((run, step)), REPO / "docs" / name
        if shot and Path(shot).is_file() and (os.environ.get("HYPERSD_UPDATE_DOCS") == "1" or not dest.exists()):
            shutil.copy(shot, dest)


# ------------------------------------------------------------------------------ what the nodes show: set-up

SD15_CKPT = "random-sd15.safetensors"
FLUX_UNET = "flux1-dev-reduced.safetensors"
FLUX_GGUF = "flux1-dev-reduced-Q8_0.gguf"
SD15_FILES = {"SD1.5 · 4 steps": "Hyper-SD15-4steps-lora.safetensors",
              "SD1.5 · 2 steps": "Hyper-SD15-2steps-lora.safetensors"}
FLUX_LABEL, FLUX_FILE = "FLUX.1-dev · 8 steps", "Hyper-FLUX.1-dev-8steps-lora.safetensors"
LOCALES = ("zh", "fr")  # one CJK and one Latin-script page (the README's picture: this machine has no CJK font)


def add_models(server):
    """The random SD1.5 checkpoint and a kohya test LoRA under two official SD1.5 names; where the host builds it,
    the reduced FLUX.1-dev file and a PEFT LoRA over all its layers. Returns what each file holds."""
    import loras
    from host import import_comfy
    import_comfy()
    import models
    server.add_model("checkpoints", models.sd15_checkpoint(), SD15_CKPT)
    server.models_dir("loras").mkdir(parents=True, exist_ok=True)
    lora = loras.make_lora(loras.SD15_LAYERS, "kohya", seed=21)
    for name in SD15_FILES.values():
        loras.write(server.models_dir("loras") / name, lora)
    out = {"sd15": {"unet": len(lora.unet_parts()), "text": len(lora.text_parts())}, "flux": None}
    try:
        import flow_loras
        import flow_models
        unet = flow_models.flux_dev_unet()
    except Exception as e:  # noqa: BLE001 -- a host whose FLUX classes the builder does not know yet
        out["flux_missing"] = f"{type(e).__name__}: {e}"[:500]
        return out
    server.add_model("diffusion_models", unet, FLUX_UNET)
    targets = flow_loras.flux_targets(3072, flow_models.FLUX_DEPTH, flow_models.FLUX_SINGLE)
    loras.write(server.models_dir("loras") / FLUX_FILE, flow_loras.make_lora(targets))
    out["flux"] = {"transformer": len(targets)}
    out["gguf"] = add_gguf(server)
    return out


def add_gguf(server):
    """city96/ComfyUI-GGUF (the upstream snapshot) in the server's custom_nodes and the reduced FLUX.1-dev as Q8_0
    GGUF, where the ``gguf`` package and the snapshot are there; else the reason."""
    import importlib.util
    import flow_models
    from test_flux_quantized import UNPACK, UPSTREAM
    if importlib.util.find_spec("gguf") is None:
        return "no 'gguf' package (requirements-test.txt)"
    if not list(UPSTREAM.glob("ComfyUI-GGUF-*.tar.gz")) or not UNPACK.exists():
        return f"no ComfyUI-GGUF snapshot in {UPSTREAM}"
    subprocess.run([str(UNPACK), "ComfyUI-GGUF", str(server.base / "custom_nodes")], check=True, capture_output=True)
    server.add_model("diffusion_models", flow_models.flux_dev_gguf("Q8_0"), FLUX_GGUF)
    return None


def shipped(name):
    return json.loads((REPO / "workflows" / f"{name}.json").read_text())


def write(base, name, wf):
    path = base / f"{name}.json"
    path.write_text(json.dumps(wf))
    return str(path)


def strength_cases(base):
    """The loader's strength on the shipped FLUX and SDXL workflows, the user's edits, and a FLUX workflow saved
    before strength_from existed (three widget values, strength -1)."""
    old = shipped("hyper-flux1-dev-8step-lora")
    loader = next(n for n in old["nodes"] if n["type"] == "HyperSDLoraLoader")
    loader["widgets_values"] = [loader["widgets_values"][0], -1, loader["widgets_values"][2]]
    loader["inputs"] = [i for i in loader["inputs"] if i["name"] != "strength_from"]
    return [
        {"name": "flux", "path": str(REPO / "workflows" / "hyper-flux1-dev-8step-lora.json"), "screenshot": True},
        {"name": "flux-saved-before-strength_from", "path": write(base, "flux-old", old)},
        {"name": "sdxl", "path": str(REPO / "workflows" / "hyper-sdxl-4step-lora.json"), "steps": [
            {"label": "SD3 file", "set": {"lora": "SD3 · 4 steps CFG"}},
            {"label": "SDXL 8-step file", "set": {"lora": "SDXL · 8 steps"}},
            {"label": "custom 0.8", "set": {"strength_from": "custom", "strength": 0.8}},
            {"label": "FLUX file, custom", "set": {"lora": FLUX_LABEL}},
            {"label": "back to recipe", "set": {"strength_from": "recipe"}},
            {"label": "typed 0.5 under recipe", "set": {"strength": 0.5}},
        ]},
    ]


def run_cases(base, info, models):
    """The SD1.5 4-step workflow at 64x64 on the random SD1.5 (then spacing 'tcd', then the 2-step file); where
    the host has it, FLUX.1-dev fp8 -> the loader -> ModelSamplingFlux -> the scheduler -> PreviewAny at 1024 and
    512."""
    wf = shipped("hyper-sd15-4step-lora")
    for n in wf["nodes"]:
        n.get("properties", {}).pop("models", None)
        if n["type"] == "CheckpointLoaderSimple":
            n["widgets_values"][0] = SD15_CKPT
        if n["type"] == "EmptyLatentImage":
            n["widgets_values"][:2] = [64, 64]
    wf["models"] = []
    cases = [{"name": "sd15-4step", "path": write(base, "sd15-4step-64", wf), "steps": [
        {"label": "recipe"},
        {"label": "spacing tcd", "edits": [{"type": "HyperSDScheduler", "widget": "spacing", "value": "tcd"}]},
        {"label": "2-step file", "screenshot": ["HyperSDLoraLoader", "HyperSDScheduler"],
         "edits": [{"type": "HyperSDLoraLoader", "widget": "lora", "value": "SD1.5 · 2 steps"}]},
    ]}]
    if models["flux"] is not None:
        cases.append({"name": "flux-fp8", "path": write(base, "flux-fp8", flux_graph(info)), "steps": [
            {"label": "1024"},
            {"label": "512", "screenshot": ["HyperSDLoraLoader", "ModelSamplingFlux", "HyperSDScheduler"], "edits": [{"type": "ModelSamplingFlux", "widget": w, "value": 512}
                                       for w in ("width", "height")]},
        ]})
    if models["flux"] is not None and models.get("gguf") is None:
        cases.append({"name": "flux-gguf", "path": write(base, "flux-gguf", flux_graph(info, gguf=True)),
                      "steps": [{"label": "1024"}]})
    return cases


def flux_graph(info, gguf=False):
    """UNETLoader (fp8_e4m3fn) or ComfyUI-GGUF's UnetLoaderGGUF -> Hyper-SD LoRA Loader -> ModelSamplingFlux ->
    Hyper-SD Scheduler -> PreviewAny."""
    from hypersd_pack.workflows import build
    w = build.Workflow(info)
    unet = (w.node("UnetLoaderGGUF", {"unet_name": FLUX_GGUF}, (0, 0)) if gguf else
            w.node("UNETLoader", {"unet_name": FLUX_UNET, "weight_dtype": "fp8_e4m3fn"}, (0, 0)))
    lora = w.node("HyperSDLoraLoader", {"lora": FLUX_LABEL, "strength_from": "recipe", "download": "never"},
                  (300, 0))
    shift = w.node("ModelSamplingFlux", {"max_shift": 1.15, "base_shift": 0.5, "width": 1024, "height": 1024},
                   (600, 0))
    sched = w.node("HyperSDScheduler", {"steps": 8, "denoise": 1.0, "start_timestep": 999}, (900, 0))
    show = w.node("PreviewAny", {}, (1200, 0))
    w.link(unet, 0, lora, "model")
    w.link(lora, "MODEL", shift, "model")
    w.link(shift, 0, sched, "model")
    w.link(sched, 0, show, "source")
    return w.to_json()


def translated_title(lang, node_id="HyperSDLoraLoader"):
    return json.loads((REPO / "locales" / lang / "main.json").read_text(encoding="utf-8"))["nodeDefs"][node_id][
        "display_name"]


def first_heading(node_id, locale=None):
    page = DOCS / f"{node_id}.md" if locale is None else DOCS / node_id / f"{locale}.md"
    return page.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()


@pytest.mark.parametrize("node_id", HELP_NODES)
def test_node_help_shows_the_packs_page(report, node_id):
    entry = next(e for e in report["help"] if e["type"] == node_id)
    assert not entry.get("error"), f"{entry['error']}\nrequests: {entry.get('doc_requests')}\n{entry.get('body')}"
    panel = entry["panel"]
    assert panel, "no help panel with the page's 'What eta means' section"
    assert first_heading(node_id) in panel["text"] and "What eta means" in panel["headings"], panel["headings"]
    text = panel["text"]
    for phrase in ("What eta means", "Inputs", "Outputs", "Hyper-SDXL-4steps-lora.safetensors", "SDXL · 4 steps"):
        assert phrase in text, f"{phrase!r} not in the help panel:\n{text[:2000]}"
    assert not entry["page_errors"], entry["page_errors"]
    served = [r for r in entry["doc_requests"] if r.startswith("200 ")]
    assert f"200 /extensions/{PACK_FOLDER}/docs/{node_id}.md" in served, entry["doc_requests"]


@pytest.mark.parametrize("index", [0, 1])
def test_comfyui_tcd_workflows_open_with_this_pack_alone(report, index):
    assert len(report["workflows"]) == 2
    entry = report["workflows"][index]
    assert not entry.get("error") and not entry.get("load_error"), entry
    assert not [d for d in entry["dialogs"] if d["key"] == MISSING_NODES_DIALOG], entry["dialogs"]
    assert not any("missing" in t.lower() for t in entry["toasts"]), entry["toasts"]
    unknown = [(n["id"], n["type"]) for n in entry["nodes"] if not n["registered"]]
    assert not unknown, unknown
    (tcd,) = [n for n in entry["nodes"] if n["type"] == TCD_ID]
    widgets = {w["name"]: w["value"] for w in tcd["widgets"]}
    assert list(widgets) == ["steps", "scheduler", "denoise", "eta"]
    assert widgets["scheduler"] == "sgm_uniform" and widgets["denoise"] == 1 and widgets["eta"] == 0.3
    assert widgets["steps"] in (4, 30)
    assert not entry["page_errors"], entry["page_errors"]


# ------------------------------------------------------------------------------ what the nodes show: checks

def strength_case(report, name):
    entry = next(e for e in report["strength"] if e["name"] == name)
    assert not entry.get("error") and not entry.get("load_error"), entry
    return {s["label"]: s for s in entry["states"]}


def shown(state):
    """(strength, strength_from) as the widgets show them, checked against what the Queue button sends."""
    values, sent = state["values"], state["sent"]
    assert (sent["strength"], sent["strength_from"]) == (values["strength"], values["strength_from"]), state
    return values["strength"], values["strength_from"]


def test_loader_shows_the_recipes_strength_on_flux_and_sdxl(report):
    """With strength_from 'recipe' the strength widget holds the chosen file's recipe strength, the value that is
    applied (and sent), on opening a workflow and whenever the file changes; a value typed in is a custom one."""
    assert shown(strength_case(report, "flux")["opened"]) == (0.125, "recipe")
    assert shown(strength_case(report, "flux-saved-before-strength_from")["opened"]) == (0.125, "recipe")
    sdxl = strength_case(report, "sdxl")
    assert [(label, shown(state)) for label, state in sdxl.items()] == [
        ("opened", (1.0, "recipe")),
        ("SD3 file", (0.125, "recipe")),
        ("SDXL 8-step file", (1.0, "recipe")),
        ("custom 0.8", (0.8, "custom")),
        ("FLUX file, custom", (0.8, "custom")),
        ("back to recipe", (0.125, "recipe")),
        ("typed 0.5 under recipe", (0.5, "custom")),
    ]


def run_steps(report, name):
    run = next((r for r in report["runs"] if r["name"] == name), None)
    if run is None:
        pytest.skip(f"not run on this host: {report['models'].get('flux_missing')}")
    assert not run.get("error") and not run.get("load_error"), run
    for step in run["steps"]:
        assert step["status"] == "execution_success", f"{step['label']}: {step['error']}\n{report['server_log']}"
    return {s["label"]: s for s in run["steps"]}


def panel_text(step, kind):
    (node,) = step[kind]
    panel = node["panel"]
    assert panel and panel["visible"] and panel["serialize"] is False, node
    assert panel["shown_text"].strip().startswith(panel["text"].splitlines()[0]), panel
    return panel["text"].splitlines(), panel


def numbers(line):
    return [float(x) for x in line.split(":", 1)[1].replace("…", "").split(",") if x.strip()]


def diffusers_timesteps(spacing, steps):
    from diffusers import DDIMScheduler, TCDScheduler
    betas = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
    sch = DDIMScheduler(**betas, timestep_spacing="trailing") if spacing == "trailing" else TCDScheduler(**betas)
    sch.set_timesteps(steps)
    sigmas = [float(((1 - sch.alphas_cumprod[t]) / sch.alphas_cumprod[t]).sqrt()) for t in sch.timesteps]
    return [int(t) for t in sch.timesteps], sigmas + [0.0]


def test_loader_and_scheduler_show_what_the_sd15_run_did(report):
    """SD1.5 4-step workflow (random SD1.5, 64x64): the loader shows its file, where it was found, the recipe's
    strength, the layers patched of the file's (UNet, text encoder) and the recipe; the scheduler the timesteps and
    sigmas diffusers' DDIM trailing / TCD schedulers give, and they change with spacing and with the file's steps."""
    pytest.importorskip("diffusers")
    steps = run_steps(report, "sd15-4step")
    counts = report["models"]["sd15"]
    expected = {"recipe": ("trailing", 4, "Hyper-SD15-4steps-lora.safetensors"),
                "spacing tcd": ("tcd", 4, "Hyper-SD15-4steps-lora.safetensors"),
                "2-step file": ("tcd", 2, "Hyper-SD15-2steps-lora.safetensors")}
    for label, (spacing, n, file) in expected.items():
        lines, _ = panel_text(steps[label], "loaders")
        assert lines[0] == file and lines[1].startswith("found in ") and lines[1].endswith("loras"), lines
        assert lines[2:] == ["strength 1 (the recipe's)", f"UNet: {counts['unet']} of {counts['unet']} layers patched",
                             f"text encoder: {counts['text']} of {counts['text']} layers patched",
                             f"recipe out: {n} steps, cfg 1, eta 0, spacing trailing"], (label, lines)
        lines, panel = panel_text(steps[label], "schedulers")
        timesteps, sigmas = diffusers_timesteps(spacing, n)
        assert lines[0] == f"SD1.5/SDXL · {n} steps · {spacing}", (label, lines)
        assert numbers(lines[1]) == timesteps, (label, lines)
        assert numbers(lines[2]) == pytest.approx(sigmas, rel=6e-4), (label, lines)  # shown to 4 digits
        assert panel["plot_points"] == n + 1


def test_flux_fp8_loader_counts_and_the_shift_follows_the_size(report):
    """FLUX.1-dev loaded as fp8: the loader counts the layers the patcher took; the scheduler shows the shift
    ModelSamplingFlux set for the size (FluxPipeline's calculate_shift) and diffusers' timesteps, at 1024 and 512."""
    pytest.importorskip("diffusers")
    from diffusers.pipelines.flux import pipeline_flux
    from test_flow_schedules import diffusers_flux_sigmas
    steps = run_steps(report, "flux-fp8")
    layers = report["models"]["flux"]["transformer"]
    for label, size in (("1024", 1024), ("512", 512)):
        lines, _ = panel_text(steps[label], "loaders")
        assert lines[0] == FLUX_FILE and f"transformer: {layers} of {layers} layers patched" in lines, lines
        assert "strength 0.125 (the recipe's)" in lines
        lines, panel = panel_text(steps[label], "schedulers")
        mu = pipeline_flux.calculate_shift((size // 16) ** 2, 256, 4096, 0.5, 1.15)
        assert lines[0] == f"FLUX · 8 steps · shift (mu) {mu:.4g}", lines
        ref = diffusers_flux_sigmas(8, size, size)
        assert numbers(lines[1]) == pytest.approx(ref.timesteps.tolist(), abs=0.01)
        assert numbers(lines[2]) == pytest.approx(ref.sigmas.tolist(), rel=6e-4, abs=1e-9)
        assert panel["plot_points"] == 9


def test_flux_gguf_loader_counts_what_the_model_took(report):
    """FLUX.1-dev loaded by ComfyUI-GGUF (Q8_0): the loader shows the layers the GGUF model patcher took."""
    if report["models"].get("gguf"):
        pytest.skip(f"no GGUF run: {report['models']['gguf']}")
    steps = run_steps(report, "flux-gguf")
    layers = report["models"]["flux"]["transformer"]
    lines, _ = panel_text(steps["1024"], "loaders")
    assert lines[0] == FLUX_FILE and f"transformer: {layers} of {layers} layers patched" in lines, lines


@pytest.mark.parametrize("lang", LOCALES)
def test_locale_translates_a_node_and_its_help_page(report, lang):
    """Comfy.Locale switched as the settings dialog does: a new loader node takes the pack's translated title and
    its help is the pack's page in that language (web/docs/<node>/<lang>.md); then back to English."""
    entry = next(e for e in report["locales"]["entries"] if e["locale"] == lang)
    assert not entry.get("error"), f"{entry['error']}\n{entry.get('doc_requests')}\n{entry.get('body')}"
    assert entry["setting"] == lang and report["locales"]["reset"] == "en"
    assert entry["title"] == translated_title(lang) != "Hyper-SD LoRA Loader"
    translations = json.loads((REPO / "locales" / lang / "main.json").read_text(encoding="utf-8"))
    inputs = translations["nodeDefs"]["HyperSDLoraLoader"]["inputs"]
    assert entry["widget_labels"] == [inputs[name]["name"] for name in ("lora", "strength", "download", "strength_from")]
    assert f"200 /extensions/{PACK_FOLDER}/docs/HyperSDLoraLoader/{lang}.md" in entry["doc_requests"]
    assert entry["body_has_heading"]
