"""In the real frontend (chromium, headless, tests/browser/open_help.mjs): a node's help shows this pack's
page, and workflows made for ComfyUI-TCD open with this pack alone.

A ComfyUI server with the pack (no model) serves the page. For three nodes (a pack node and the two
stand-ins) the script puts the node on the canvas, selects it and clicks the selection toolbox's Info
button; the help panel must show the page from web/docs (its heading, the eta section, the recipe table)
and the page must have fetched it from /extensions/<pack folder>/docs/. ComfyUI-TCD's own example
workflows (embedded in the PNGs of its examples/ folder) are opened too: every node of a known class, no
missing-node dialog, and the TCD node's widget values under ComfyUI-TCD's input names.

Runs on the frontend ComfyUI's requirements pin (1.27.10 for 0.3.64) and, when present, on the newest
comfyui-frontend-package (``$HYPERSD_FRONTEND_ROOT``, or ``.cache-frontend/<version>/comfyui_frontend_package/
static`` as .ci/run installs it), served with --front-end-root. Skipped with a message without ComfyUI
(COMFYUI_PATH), chromium, node, tests/browser/node_modules or the upstream snapshot.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

from host import PACK_FOLDER, ComfyServer, require_comfyui
from test_browser import newest_frontend_root, require_browser
from test_compat import TCD_ID, UNET_ID, unpack_comfyui_tcd

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


@pytest.fixture(scope="module", params=["pinned", "newest"])
def report(request, tmp_path_factory):
    require_comfyui()
    chromium, node = require_browser()
    root = None
    if request.param == "newest":
        root = newest_frontend_root()
        if root is None or not (root / "index.html").is_file():
            pytest.skip("needs the newest comfyui-frontend-package in .cache-frontend/<version> or "
                        "HYPERSD_FRONTEND_ROOT (pip install --target .cache-frontend/<version> "
                        "comfyui-frontend-package==<version>)")
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
    server.start()
    try:
        config = base / "help.json"
        config.write_text(json.dumps({
            "url": server.url, "chromium": chromium, "outdir": str(shots), "viewport": [1600, 1000],
            "timeout_ms": 60000, "workflows": workflows,
            "help": [{"type": t, "expect": first_heading(t)} for t in HELP_NODES]}))
        proc = subprocess.run([node, str(SCRIPT), str(config)], cwd=str(BROWSER_DIR), capture_output=True,
                              text=True, timeout=240)
    finally:
        server.stop()
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, f"browser script failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    result = json.loads(lines[-1])
    if result.get("fatal") in ("no-playwright", "launch"):
        pytest.skip(f"the browser cannot be had here ({result['fatal']}): {result.get('message', '')[:500]}")
    assert not result.get("fatal"), result.get("message")
    (shots / "report.json").write_text(json.dumps(result, indent=1))
    return result


def first_heading(node_id):
    return (DOCS / f"{node_id}.md").read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()


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
