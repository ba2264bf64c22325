"""The shipped workflows in a real browser: ComfyUI's own web page (comfyui-frontend-package) in Debian's
chromium, headless, driven by npm playwright-core (tests/browser/load_workflows.mjs, JSON in and out).

A ComfyUI server with the pack (tests/host.py) and no model files serves the page; each workflow is opened
into the canvas as the template browser opens a custom node's template (fetched from
/api/workflow_templates/ComfyUI-HyperSD/<name>.json, then app.loadGraphData, which is also what opening or
dropping the .json file does). Then: no missing-node dialog, no error dialog, no toast (the frontend's
workflow validation and link fixer report through toasts), no page error; the frontend's missing-models
dialog is expected here (the server has no models) and must list exactly the workflow's model files,
each downloadable; the graph holds every node of the file, each of a registered node class, with the
file's links and widget values, combo values among the choices (model files apart) and numbers in range;
every node is drawn on the canvas and no two nodes overlap. Last, the template browser is opened on the pack's
category: it fetches and shows the workflows' thumbnails (workflows/<name>.jpg). One screenshot per workflow is
kept under
``$HYPERSD_ARTIFACTS/screenshots`` (default ``artifacts/screenshots`` in the repository), with the whole
report in ``browser-report.json``; ``HYPERSD_UPDATE_DOCS=1`` (or a missing file) refreshes the README's
``docs/screenshot-sdxl-4step.png``.

Skipped with a message without ComfyUI (COMFYUI_PATH), chromium, node or tests/browser/node_modules
(``.ci/run`` installs them: ``apt-get install chromium``, ``npm ci`` in tests/browser). No model is loaded.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import frontends
from host import PACK_FOLDER, ComfyServer, comfyui_path, require_comfyui
from oracle import SETTINGS as ORACLE_SETTINGS, image_templates, run_oracle, strip_meta

REPO = Path(__file__).resolve().parents[1]
BROWSER_DIR = REPO / "tests" / "browser"
SCRIPT = BROWSER_DIR / "load_workflows.mjs"
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
README_SHOT = ("hyper-sdxl-4step-lora", REPO / "docs" / "screenshot-sdxl-4step.png")
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
MODEL_DIALOG = "global-missing-models-warning"
# Console errors that come from this machine having no network and the server no models or user files.
EXPECTED_CONSOLE = ("Failed to load resource", "Error fetching file size")
TEMPLATES_ABSENT = ("Error loading core workflow templates",)
SETTINGS = {  # the test user's settings: no first-run template browser, no minimap or canvas info overlay,
    # opened workflows listed in the side bar instead of one tab each (the menu bar names the open one)
    "Comfy.TutorialCompleted": True,
    "Comfy.Workflow.WorkflowTabsPosition": "Sidebar",
    "Comfy.Minimap.Visible": False,
    "Comfy.Graph.CanvasInfo": False,
    "Comfy.Validation.Workflows": True,
    "Comfy.Workflow.ShowMissingNodesWarning": True,
    "Comfy.Workflow.ShowMissingModelsWarning": True,
}


#: The frontends the test runs (tests/frontends.py): the host's pinned one, the newest, and any in
#: $HYPERSD_EXTRA_FRONTENDS.
FRONTENDS = frontends.frontend_ids()
newest_frontend_root = frontends.newest_frontend_root


def artifacts_dir():
    return Path(os.environ.get("HYPERSD_ARTIFACTS") or REPO / "artifacts").expanduser()


def chromium_path():
    for cand in (os.environ.get("HYPERSD_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                 shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if cand and Path(cand).is_file():
            return cand
    return None


def require_browser():
    """(chromium, node), or skip with a message saying what is missing and how .ci/run installs it."""
    chromium = chromium_path()
    if not chromium:
        pytest.skip("needs a browser: no chromium (apt-get install -y chromium, as .ci/run does as root; or "
                    "set HYPERSD_CHROMIUM)")
    node = shutil.which("node")
    if not node:
        pytest.skip("needs Node.js (node) to drive chromium with playwright-core")
    if not (BROWSER_DIR / "node_modules" / "playwright-core" / "package.json").is_file():
        pytest.skip("needs npm playwright-core: run `npm ci` in tests/browser (.ci/run does when npm is there)")
    return chromium, node


def model_files(wf):
    """The workflow's model files as the frontend collects them (node properties.models, then the
    top-level models list, unique by URL), as the dialog labels them: 'directory / name'."""
    seen, labels = set(), []
    for m in [m for n in wf["nodes"] for m in n.get("properties", {}).get("models", [])] + wf.get("models", []):
        key = m.get("url") or m.get("hash")
        if key and key not in seen:
            seen.add(key)
            labels.append(f"{m['directory']} / {m['name']}")
    return labels


@pytest.fixture(scope="module", params=FRONTENDS)
def frontend(request):
    """(label, --front-end-root or None)."""
    return frontends.resolve(request.param)


@pytest.fixture(scope="module")
def report(tmp_path_factory, frontend):
    require_comfyui()
    chromium, node = require_browser()
    label, root = frontend
    shots = artifacts_dir() / f"screenshots-{label}"
    shots.mkdir(parents=True, exist_ok=True)
    base = tmp_path_factory.mktemp(f"comfy-browser-{label}")
    settings = base / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps(SETTINGS))
    example = comfyui_path() / "input" / "example.png"  # what a ComfyUI install has in input/
    if example.is_file():
        (base / "input").mkdir(parents=True, exist_ok=True)
        shutil.copy(example, base / "input" / "example.png")
    server = ComfyServer(base)
    if root is not None:
        server.extra_args = ("--front-end-root", str(root))
    server.start()
    try:
        config = base / "browser.json"
        config.write_text(json.dumps({
            "url": server.url, "chromium": chromium, "outdir": str(shots), "template_module": PACK_FOLDER,
            # the README's workflow first, so its screenshot shows no other opened workflow
            "workflows": [{"name": p.stem, "path": str(p)}
                          for p in sorted(WORKFLOWS, key=lambda p: p.stem != README_SHOT[0])],
            "viewport": [1920, 1080],
            "timeout_ms": 60000}))
        proc = subprocess.run([node, str(SCRIPT), str(config)], cwd=str(BROWSER_DIR), capture_output=True,
                              text=True, timeout=300)
        object_info = server.get("/object_info", timeout=120)
    finally:
        server.stop()
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, f"browser script failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    result = json.loads(lines[-1])
    if result.get("fatal") in ("no-playwright", "launch"):
        pytest.skip(f"the browser cannot be had here ({result['fatal']}): {result.get('message', '')[:500]}")
    assert not result.get("fatal"), result.get("message")
    result["label"] = label
    result["object_info"] = object_info
    (artifacts_dir() / f"browser-report-{label}.json").write_text(json.dumps(result, indent=1))
    result["by_name"] = {w["name"]: w for w in result["workflows"]}
    name, dest = README_SHOT
    shot = result["by_name"].get(name, {}).get("screenshot")
    if label == "pinned" and shot and Path(shot).is_file() and (
            os.environ.get("HYPERSD_UPDATE_DOCS") == "1" or not dest.exists()):
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, dest)
    shot, dest = result.get("template_browser", {}).get("screenshot"), REPO / "docs" / "screenshot-templates.png"
    if label == "newest" and shot and Path(shot).is_file() and (
            os.environ.get("HYPERSD_UPDATE_DOCS") == "1" or not dest.exists()):
        shutil.copy(shot, dest)
    return result


#: The shipped workflows the live check also edits in every way (tests/oracle.py's EDITS); the others are opened as
#: shipped. Every edit of every shipped workflow is in the goldens (tests/test_conversion.py), recorded the same way.
LIVE_EDITED = ("hyper-sd15-4step-lora", "hyper-flux1-dev-8step-lora")


@pytest.fixture(scope="module")
def oracle(tmp_path_factory, frontend):
    """The frontend's app.graphToPrompt() of every shipped workflow (as shipped; two of them also edited: a
    Reroute, a PrimitiveNode, bypassed and muted nodes, subgraphs with promoted widgets, two instances, nesting)
    and of a sample of the templates whose nodes the server has, with the object_info it was made against."""
    require_comfyui()
    chromium, node = require_browser()
    label, root = frontend
    base = tmp_path_factory.mktemp(f"comfy-oracle-{label}")
    settings = base / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps(ORACLE_SETTINGS))
    server = ComfyServer(base)
    if root is not None:
        server.extra_args = ("--front-end-root", str(root))
    server.start()
    try:
        info = server.get("/object_info", timeout=120)
        templates = image_templates(info)
        jobs = [(p.stem, p, p.stem in LIVE_EDITED) for p in WORKFLOWS] + [
            (f"template:{n}", p, False) for n, p in templates]
        result = run_oracle(server.url, chromium, node, jobs)
    finally:
        server.stop()
    if result.get("fatal") in ("no-playwright", "launch"):
        pytest.skip(f"the browser cannot be had here ({result['fatal']}): {result.get('message', '')[:500]}")
    assert not result.get("fatal"), result.get("message")
    result.update(object_info=info, templates=templates, jobs=jobs)
    return result


def test_runner_conversion_equals_the_frontends(oracle):
    """convert() of each file, given the live frontend's version, equals that frontend's graphToPrompt() of
    the same file (ignoring _meta): every shipped workflow as shipped and in each edited form (subgraphs
    with promoted widgets, two instances, nesting, muted and bypassed instances among them) and a sample of
    the templates (tests/oracle.py)."""
    from hypersd_pack.workflows.runner import convert as conversion
    from oracle import EDITS, known_differences_applied
    sources = {name: path for name, path, _ in oracle["jobs"]}
    version = oracle["frontend_version"]
    compared, problems = [], []
    for r in oracle["results"]:
        if r.get("skipped"):
            continue
        assert not r.get("error"), f"{r['name']} {r['variant']}: graphToPrompt failed: {r['error'][:2000]}"
        wf = r["workflow"] if "workflow" in r else json.loads(Path(sources[r["name"]]).read_text())
        expected = strip_meta(r["prompt"])
        got = known_differences_applied(
            version, r["name"], strip_meta(conversion.convert(wf, oracle["object_info"], version)), expected)
        compared.append((r["name"], r["variant"]))
        if got != expected:
            problems.append(f"{r['name']} {r['variant']}:\n runner   {json.dumps(got, sort_keys=True)[:1500]}\n"
                            f" frontend {json.dumps(expected, sort_keys=True)[:1500]}")
    shipped = [c for c in compared if not c[0].startswith("template:")]
    expected_count = sum(1 + (len(EDITS) if variants is True else len(variants or []))
                         for name, _, variants in oracle["jobs"] if not name.startswith("template:"))
    assert len(shipped) == expected_count and {n for n, _ in shipped} == {p.stem for p in WORKFLOWS}, shipped
    assert len(oracle["templates"]) >= 20
    assert not problems, f"frontend {version}: {len(problems)} of {len(compared)} differ:\n" + "\n".join(problems[:5])


def entry_for(report, path):
    entry = report["by_name"].get(path.stem)
    assert entry is not None, f"{path.stem} was not opened"
    assert not entry.get("error"), entry["error"]
    return entry


@pytest.mark.every_host  # also on 0.3.64 with its frontend 1.27.10 (.ci/run)
def test_page_opens_without_dialogs(report):
    startup = report["startup"]
    assert report["browser_version"]
    assert not [d for d in startup["dialogs"]], startup["dialogs"]
    assert not startup["toasts"], startup["toasts"]


@pytest.mark.every_host  # also on 0.3.64 with its frontend 1.27.10 (.ci/run)
@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_opens_without_missing_nodes_or_errors(report, path):
    entry = entry_for(report, path)
    wf = json.loads(path.read_text())
    assert entry["template_status"] == 200 and entry["template_same_as_file"], \
        "the server's /api/workflow_templates copy differs from the file"
    assert entry["is_api_json"] is False
    assert not entry.get("load_error"), entry["load_error"]
    unexpected = [d for d in entry["dialogs"] if d["key"] != MODEL_DIALOG]
    assert not unexpected, f"dialogs besides the missing-models one: {json.dumps(unexpected, indent=1)}"
    toasts = [t for t in entry["toasts"] if not is_models_notice(t)]
    assert not toasts, f"toasts (workflow validation / link fixer / alerts): {toasts}"
    assert not entry["page_errors"], entry["page_errors"]
    errors = [e for e in entry["console_errors"] if not e.startswith(EXPECTED_CONSOLE)]
    assert not errors, errors
    # The server has no model files: the frontend lists exactly the workflow's (1.27: a dialog with a
    # download button each; newer: a notice whose "View details" opens the list).
    dialogs = [d for d in entry["dialogs"] if d["key"] == MODEL_DIALOG]
    if dialogs:
        assert len(dialogs) == 1
        labels = [item.splitlines()[0].strip() for item in dialogs[0]["items"]]
        assert sorted(labels) == sorted(model_files(wf))
        for item in dialogs[0]["items"]:
            assert "Download" in item and not any(
                bad in item for bad in ("Invalid directory", "not allowed", "Only allowed suffixes")), item
    else:
        # newer frontends (1.48.7 and 1.58.1 here) list the files that a widget names and the server lacks; the
        # LoRA and UNet files, which this pack's loaders name by a recipe label and download themselves, are not
        # among them
        named = {w for n in wf["nodes"] for w in n.get("widgets_values") or [] if isinstance(w, str)}
        expected = sorted({label.split(" / ", 1)[1] for label in model_files(wf)} & named)
        details = entry.get("missing_models_details")
        if not expected:
            assert details is None, f"a missing-models notice although no widget names a model file: {details}"
            return
        assert details, f"no missing-models notice with 'View details': toasts {entry['toasts']}"
        assert details["files"] == expected, details


def is_models_notice(text):
    return "view details" in text.lower() or ("missing" in text.lower() and "model" in text.lower())


@pytest.mark.every_host  # also on 0.3.64 with its frontend 1.27.10 (.ci/run)
@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_graph_holds_the_workflow_as_saved(report, path):
    """Every node of a registered class, links and widget values as in the file, values valid."""
    entry = entry_for(report, path)
    wf = json.loads(path.read_text())
    nodes = entry["graph"]["nodes"]
    # newer frontends hold and save node ids as strings
    assert sorted((str(n["id"]), n["type"]) for n in nodes) == sorted((str(n["id"]), n["type"]) for n in wf["nodes"])
    models = {m["name"] for m in wf["models"]}
    for n in nodes:
        # newer frontends mark the nodes whose model file the server lacks (it has none here)
        flagged_for_model = any(w["value"] in models for w in n["widgets"])
        assert n["registered"] and (not n["has_errors"] or flagged_for_model), \
            f"node {n['id']} {n['type']} did not load: {n}"
        if n["type"] not in FRONTEND_ONLY:
            assert n["comfy_class"] == n["type"], f"node {n['id']} is not the server's {n['type']}"
    saved = entry["graph"]["serialized"]
    # The frontend orders a node's inputs sockets first, then widget inputs, so slot numbers may change;
    # each link must still join the same output to the same input, by name.
    assert sorted(named_links(saved)) == sorted(named_links(wf)), "links changed on load"
    by_id = {str(n["id"]): n for n in saved["nodes"]}
    models = {m["name"] for m in wf["models"]} | {
        m["name"] for n in wf["nodes"] for m in n.get("properties", {}).get("models", [])}
    problems = []
    for node in wf["nodes"]:
        got = by_id[str(node["id"])].get("widgets_values", [])
        if got != node.get("widgets_values", []):
            problems.append(f"node {node['id']} {node['type']}: widgets_values {node.get('widgets_values')} "
                            f"became {got}")
    for n in nodes:
        for w in n["widgets"]:
            if w["options"] is not None and w["value"] not in w["options"] and w["value"] not in models:
                problems.append(f"node {n['id']} {n['type']}: {w['name']}={w['value']!r} not among the choices "
                                f"{w['options'][:20]}")
            if isinstance(w["value"], (int, float)) and not isinstance(w["value"], bool) and (
                    (w["min"] is not None and w["value"] < w["min"])
                    or (w["max"] is not None and w["value"] > w["max"])):
                problems.append(f"node {n['id']} {n['type']}: {w['name']}={w['value']} outside "
                                f"[{w['min']}, {w['max']}]")
    assert not problems, "\n".join(problems)


def named_links(graph):
    """Each link as (origin id, output name, target id, input name, type)."""
    nodes = {str(n["id"]): n for n in graph["nodes"]}
    links = [(lk["origin_id"], lk["origin_slot"], lk["target_id"], lk["target_slot"], lk["type"])
             if isinstance(lk, dict) else lk[1:6] for lk in graph["links"]]
    return [(str(src), nodes[str(src)]["outputs"][s_slot]["name"], str(dst),
             nodes[str(dst)]["inputs"][d_slot]["name"], typ) for src, s_slot, dst, d_slot, typ in links]


def overlaps(view):
    """Pairs of nodes whose drawn rectangles (title bar included) share more than a unit of area, in graph
    units: (a, b, overlap width, overlap height)."""
    pairs = []
    scale = view["scale"]
    items = sorted(((int(k), [v / scale for v in r]) for k, r in view["rects"].items()))
    for i, (a, ra) in enumerate(items):
        for b, rb in items[i + 1:]:
            dx = min(ra[0] + ra[2], rb[0] + rb[2]) - max(ra[0], rb[0])
            dy = min(ra[1] + ra[3], rb[1] + rb[3]) - max(ra[1], rb[1])
            if dx > 1 and dy > 1:
                pairs.append((a, b, round(dx), round(dy)))
    return pairs


@pytest.mark.every_host  # also on 0.3.64 with its frontend 1.27.10 (.ci/run)
@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_every_node_is_drawn_apart(report, path):
    """All nodes drawn once the view fits the graph, none covering another (sizes as the frontend computes
    them, title bars included), and a screenshot kept."""
    entry = entry_for(report, path)
    ids = sorted(str(n["id"]) for n in entry["graph"]["nodes"])
    assert sorted(map(str, entry["fit_view"]["visible"])) == ids
    assert sorted(map(str, entry["stored_view"]["visible"])) == ids, "the workflow's saved view (extra.ds) hides nodes"
    pairs = overlaps(entry["fit_view"])
    types = {int(n["id"]): n["type"] for n in entry["graph"]["nodes"]}
    assert not pairs, "overlapping nodes (as drawn, graph units, title bars included): " + "; ".join(
        f"{a} {types[a]} / {b} {types[b]}: {dx} wide x {dy} high" for a, b, dx, dy in pairs)
    shot = Path(entry["screenshot"])
    assert shot.is_file() and shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.every_host  # also on 0.3.64 with its frontend 1.27.10 (.ci/run)
@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_no_link_crosses_a_node(report, path):
    """The layout as the frontend draws it: no link passes over a node that is not one of its two ends
    (notes included, so no note sits on a wire), links drawn as splines."""
    entry = entry_for(report, path)
    geo = entry["geometry"]
    types = {str(n["id"]): n["type"] for n in entry["graph"]["nodes"]}
    assert not geo["crossings"], f"links drawn across nodes ({geo['method']}): " + "; ".join(
        f"link {c['link']} {types[c['from']]} -> {types[c['to']]} across {c['across']} {types[c['across']]} "
        f"at {c['at']}" for c in geo["crossings"])


@pytest.mark.every_host  # also on 0.3.64 with its frontend 1.27.10 (.ci/run)
@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_nodes_sized_to_their_content(report, path):
    """Each node's size is the frontend's own minimum for its content (computeSize), not a larger box:
    at most 80 px wider or taller than it (prompt text boxes and image previews may be larger)."""
    entry = entry_for(report, path)
    problems = []
    for node_id, s in entry["geometry"]["sizes"].items():
        if s["min"] is None or s["type"] in ("Note", "MarkdownNote"):
            continue
        (w, h), (mw, mh) = s["size"], s["min"]
        grows = s["type"] in ("CLIPTextEncode", "SaveImage", "LoadImage", "PreviewImage")  # text, image previews
        if w < mw - 1 or h < mh - 1 or (not grows and (w > mw + 80 or h > mh + 80)):
            problems.append(f"node {node_id} {s['type']}: {round(w)}x{round(h)}, content {round(mw)}x{round(mh)}")
    assert not problems, "; ".join(problems)


THUMBNAIL_SIZE = (640, 480)  # workflows/build.py's THUMBNAIL_SIZE


@pytest.mark.every_host  # also on 0.3.64 with its frontend 1.27.10 (.ci/run)
@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_every_workflow_has_its_thumbnail(path):
    """workflows/<name>.jpg beside each workflow: the template browser's picture of it (captured from the canvas by
    ``python workflows/build.py``), a JPEG of the size the capture writes, not one flat colour."""
    from PIL import Image, ImageStat
    thumb = path.with_suffix(".jpg")
    assert thumb.is_file(), f"no {thumb.name}: run python workflows/build.py (it captures the thumbnails)"
    with Image.open(thumb) as im:
        assert (im.format, im.size) == ("JPEG", THUMBNAIL_SIZE)
        assert max(ImageStat.Stat(im.convert("L")).stddev) > 8, f"{thumb.name} is nearly one colour"


@pytest.mark.every_host  # also on 0.3.64 with its frontend 1.27.10 (.ci/run)
def test_template_browser_shows_the_thumbnails(report):
    """The frontend's template browser, opened on the pack's category, fetches the pack's thumbnails from
    /api/workflow_templates/<pack>/<name>.jpg (as JPEG) and shows them, loaded, at the size captured."""
    browser = report["template_browser"]
    assert not browser.get("error"), browser["error"]
    assert browser["category"] == PACK_FOLDER, browser
    names = {p.stem for p in WORKFLOWS}
    fetched = {f["path"].rsplit("/", 1)[1][:-4] for f in browser["fetched"]
               if f["status"] == 200 and f["type"].startswith("image/jpeg")}
    assert fetched and fetched <= names, browser["fetched"]
    assert all(f["path"].startswith(f"/api/workflow_templates/{PACK_FOLDER}/") for f in browser["fetched"])
    shown = [i for i in browser["images"] if i["loaded"] and tuple(i["size"]) == THUMBNAIL_SIZE]
    assert shown, f"no thumbnail shown loaded: {browser['images']}"
    assert not browser["page_errors"], browser["page_errors"]
    # the host's core templates may be absent (comfyui-workflow-templates installed without its index): not ours
    errors = [e for e in browser["console_errors"] if not e.startswith(EXPECTED_CONSOLE + TEMPLATES_ABSENT)]
    assert not errors, errors
