"""The frontend as the oracle of workflows/run.py's convert(): what app.graphToPrompt() makes of a workflow
file, in ComfyUI's own page (tests/browser/graph_to_prompt.mjs), for

- the shipped workflows, as shipped and edited on the canvas with the frontend's own API (a Reroute, a
  PrimitiveNode, a bypassed node, a muted node, packed into a subgraph and that instance bypassed or muted,
  packed with seed / steps / width / prompt widgets promoted to instance values, two instances of one
  definition holding seeds 123 and 456, a nested subgraph whose seed is promoted at both levels, and the
  whole workflow packed into a muted or a bypassed instance);
- the template workflows of ComfyUI's templates packages whose node types all exist on the server: the
  image templates of comfyui-workflow-templates 0.1.95 (the old set) and every other template of
  comfyui-workflow-templates-json 0.1.123 (the newest, many with subgraphs and promoted widgets).

Each frontend's prompts are kept in tests/data/frontend-<version>.json.gz: 1.48.7 (the frontend ComfyUI 0.33.0
pins) and 1.58.1 (the newest), both recorded against a ComfyUI 0.33.0 server with this pack, and 1.27.10
(ComfyUI 0.3.64's, recorded earlier against 0.3.64 with the old set: tests/data/frontend-1.27.10.json and
tests/data/object_info-0.3.64.json; each entry carries the workflow file the frontend was given, the shipped files
of that time included).
tests/data/object_info.json is the 0.33.0 server's /object_info for the node types the goldens use.

The template files are read from pinned installs under $HYPERSD_TEMPLATES (default .cache-templates in the
repository), one folder per package and version, which .ci/run makes:

    pip install --no-deps --target .cache-templates/comfyui-workflow-templates-0.1.95 \\
        comfyui-workflow-templates==0.1.95
    pip install --no-deps --target .cache-templates/comfyui-workflow-templates-json-0.1.123 \\
        comfyui-workflow-templates-json==0.1.123

Recording (a ComfyUI 0.33.0 at COMFYUI_PATH, chromium, tests/browser/node_modules; the newest frontend in
.cache-frontend/1.58.1 as tests/test_browser.py finds it):

    for fe in pinned newest; do
      flock /tmp/hypersd-heavy.lock .venv/bin/python tests/oracle.py --record $fe --part shipped
      for k in 1 2 3; do
        flock /tmp/hypersd-heavy.lock .venv/bin/python tests/oracle.py --record $fe --part templates --slice $k/3
      done
    done

(each run a few minutes; the parts are merged into the golden files).
"""
import argparse
import copy
import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / "data"
SCRIPT = HERE / "browser" / "graph_to_prompt.mjs"
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
#: Golden prompts by the frontend version that made them (gzip: the saved variant files are most of it).
GOLDEN_FILES = {"1.27.10": DATA / "frontend-1.27.10.json", "1.48.7": DATA / "frontend-1.48.7.json.gz",
                "1.58.1": DATA / "frontend-1.58.1.json.gz"}
GOLDEN = GOLDEN_FILES["1.27.10"]  # plain JSON; tests/test_workflows.py runs its saved Reroute variant
OBJECT_INFO = DATA / "object_info.json"  # ComfyUI 0.33.0 with this pack
OBJECT_INFO_FILES = {"1.27.10": DATA / "object_info-0.3.64.json", "1.48.7": OBJECT_INFO, "1.58.1": OBJECT_INFO}
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
#: The pinned template packages: (distribution, version, module).
OLD_TEMPLATES = ("comfyui-workflow-templates", "0.1.95", "comfyui_workflow_templates")
NEW_TEMPLATES = ("comfyui-workflow-templates-json", "0.1.123", "comfyui_workflow_templates_json")
#: Output nodes of the old set's image workflows.
IMAGE_OUTPUTS = {"SaveImage", "PreviewImage"}
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Workflow.WorkflowTabsPosition": "Sidebar",
            "Comfy.Minimap.Visible": False, "Comfy.Workflow.ShowMissingModelsWarning": False,
            "Comfy.Workflow.ShowMissingNodesWarning": True}


def templates_root():
    return Path(os.environ.get("HYPERSD_TEMPLATES") or REPO / ".cache-templates").expanduser()


def package_label(package):
    return f"{package[0]}=={package[1]}"


def templates_dir(package):
    """The templates folder of a pinned install ($HYPERSD_TEMPLATES/<distribution>-<version>/<module>/templates),
    or None."""
    dist, version, module = package
    folder = templates_root() / f"{dist}-{version}" / module / "templates"
    return folder if folder.is_dir() else None


def install_command(package):
    dist, version, _ = package
    return (f"pip install --no-deps --target {templates_root() / f'{dist}-{version}'} {dist}=={version}"
            f" (.ci/run does; HYPERSD_TEMPLATES names another folder)")


def node_types(wf):
    graphs = [wf] + list((wf.get("definitions") or {}).get("subgraphs", []))
    sub_ids = {sg["id"] for sg in graphs[1:]}
    return {n["type"] for g in graphs for n in g.get("nodes", []) if n["type"] not in sub_ids}


def ui_workflows(folder):
    """(name, path, workflow) of the UI-format workflow files of a templates folder."""
    for path in sorted(folder.glob("*.json")):
        if path.name == "index.json" or path.stem.startswith("api_"):
            continue
        try:
            wf = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(wf, dict) and isinstance(wf.get("nodes"), list):
            yield path.stem, path, wf


def runnable(wf, object_info):
    return all(t in object_info or t in FRONTEND_ONLY for t in node_types(wf))


def template_jobs(object_info):
    """(name, path, source) of the templates the goldens cover: the old set's image workflows, then every
    other workflow of the newest package, each with every node type on the server."""
    old, new = templates_dir(OLD_TEMPLATES), templates_dir(NEW_TEMPLATES)
    for package, folder in ((OLD_TEMPLATES, old), (NEW_TEMPLATES, new)):
        if folder is None:
            raise SystemExit(f"no {package_label(package)} templates: {install_command(package)}")
    jobs = [(f"template:{name}", path, package_label(OLD_TEMPLATES)) for name, path, wf in ui_workflows(old)
            if node_types(wf) & IMAGE_OUTPUTS and runnable(wf, object_info)]
    seen = {name for name, _, _ in jobs}
    jobs += [(f"template:{name}", path, package_label(NEW_TEMPLATES)) for name, path, wf in ui_workflows(new)
             if f"template:{name}" not in seen and runnable(wf, object_info)]
    return jobs


#: The live check (tests/test_browser.py) opens every LIVE_SAMPLE-th template of template_jobs(), and edits
#: only the LIVE_EDITED shipped workflows (live_jobs), as the whole set takes a browser ~10 minutes per frontend.
LIVE_SAMPLE = 8
LIVE_EDITED = ("hyper-sd15-4step-lora", "hyper-flux1-dev-8step-lora", "hyper-sdxl-4step-img2img")
#: The edits graph_to_prompt.mjs makes to a shipped workflow (its VARIANTS), each one golden variant.
EDITS = ("reroute", "primitive", "bypass", "mute", "subgraph", "subgraph-bypass", "subgraph-mute",
                 "promoted", "instances", "nested", "packed-mute", "packed-bypass")


def live_jobs(object_info):
    """(name, path, variants) for the live check: every shipped workflow as shipped, the LIVE_EDITED ones in
    every edited form, and the sample of templates."""
    return [(p.stem, p, p.stem in LIVE_EDITED) for p in WORKFLOWS] + [
        (f"template:{name}", path, False) for name, path in image_templates(object_info)]


def image_templates(object_info):
    """(name, path) of the templates the live check opens: a sample of template_jobs() (old and new,
    subgraph templates among them), as the whole set takes a browser several minutes per frontend."""
    return [(name.split(":", 1)[1], path) for name, path, _ in template_jobs(object_info)[::LIVE_SAMPLE]]


def template_file(entry):
    """The template file a golden entry was recorded from, or None where its pinned install is absent."""
    package = NEW_TEMPLATES if entry.get("source") == package_label(NEW_TEMPLATES) else OLD_TEMPLATES
    folder = templates_dir(package)
    return None if folder is None else folder / (entry["name"].split(":", 1)[1] + ".json")


def read_golden(path):
    """A golden file's JSON (plain or gzip)."""
    data = path.read_bytes()
    return json.loads(gzip.decompress(data) if path.suffix == ".gz" else data)


def write_json_gz(path, data):
    """gzip with no time stamp, so a re-recording that changes nothing changes no byte."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    path.write_bytes(gzip.compress(text, compresslevel=9, mtime=0))


def recorded_workflow(name, variant):
    """A variant file the pinned frontend saved (tests/data/frontend-1.48.7.json.gz)."""
    results = read_golden(GOLDEN_FILES["1.48.7"])["results"]
    return copy.deepcopy(next(r["workflow"] for r in results if r["name"] == name and r["variant"] == variant))


def proxied(instance, entries, values):
    """The instance as an older frontend saved it: promoted widgets listed in properties.proxyWidgets
    ([inner node id, widget name]) and their values in widgets_values, in that order."""
    instance.setdefault("properties", {})["proxyWidgets"] = [[str(i), w] for i, w in entries]
    instance["widgets_values"] = values
    return instance


def constructed_cases():
    """(name, workflow) of files in the older proxyWidgets format, made from the 'promoted' and 'instances'
    variants of hyper-sd15-4step-lora (instances 12 and 13; inside: 3 and 4 the prompts, 7 the empty
    latent, 8 SamplerCustom), to check flushProxyWidgetMigration: values in another order than the
    instance's inputs, widgets not yet promoted (cfg, linked from the loader inside), a second instance,
    quarantined entries ('-1', a missing node, a preview, a legacy '8: ' prefix) and a PrimitiveNode."""
    promoted = lambda: recorded_workflow("hyper-sd15-4step-lora", "promoted")  # noqa: E731
    instance = lambda wf, i=12: next(n for n in wf["nodes"] if str(n["id"]) == str(i))  # noqa: E731
    linked = [(3, "text"), (4, "text"), (7, "width"), (8, "noise_seed")]
    cases = []
    wf = promoted()
    proxied(instance(wf), [(8, "noise_seed"), (3, "text"), (7, "width"), (4, "text")], [77, "a proxy prompt", 704, "n"])
    cases.append(("proxy-order", wf))
    wf = promoted()
    proxied(instance(wf), linked + [(7, "height"), (8, "cfg"), (5, "denoise")], ["p", "n", 640, 11, 320, 2.5, 0.5])
    cases.append(("proxy-create", wf))
    wf = recorded_workflow("hyper-sd15-4step-lora", "instances")
    proxied(instance(wf), linked, ["a promoted prompt", "", 576, 123])
    proxied(instance(wf, 13), linked + [(7, "height")], ["second", "", 640, 456, 384])
    cases.append(("proxy-instances", wf))
    wf = promoted()
    proxied(instance(wf), [(3, "text"), (-1, "width"), (4242, "seed"), (8, "$$canvas-image-preview"),
                           (8, "8: noise_seed")], ["q", 800, 5, None, 99])
    cases.append(("proxy-quarantine", wf))
    wf = promoted()
    definition = wf["definitions"]["subgraphs"][0]
    latent = next(n for n in definition["nodes"] if n["id"] == 7)
    slot = next(i for i, inp in enumerate(latent["inputs"]) if inp["name"] == "height")
    latent["inputs"][slot]["link"] = 990
    definition["nodes"].append({"id": 20, "type": "PrimitiveNode", "pos": [0, 0], "size": [210, 82], "flags": {},
                                "order": 0, "mode": 0, "inputs": [],
                                "outputs": [{"name": "INT", "type": "INT", "links": [990], "widget": {"name": "height"}}],
                                "properties": {"Run widget replace on values": False}, "widgets_values": [448, "fixed"]})
    definition["links"].append({"id": 990, "origin_id": 20, "origin_slot": 0, "target_id": 7, "target_slot": slot,
                                "type": "INT"})
    proxied(instance(wf), linked + [(20, "value")], ["a promoted prompt", "", 576, 123, 384])
    cases.append(("proxy-primitive", wf))
    return cases


def run_oracle(server_url, chromium, node, jobs, timeout=3000):
    """The script's JSON for jobs [(name, path, variants: bool or a list)]; RuntimeError when the script
    itself failed."""
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    config, result = tmp / f"oracle-{os.getpid()}.json", tmp / f"oracle-{os.getpid()}-result.json"
    config.write_text(json.dumps({"url": server_url, "chromium": chromium, "timeout_ms": 60000, "out": str(result),
                                  "workflows": [{"name": n, "path": str(p), "variants": v} for n, p, v in jobs]}))
    result.unlink(missing_ok=True)
    try:
        proc = subprocess.run([node, str(SCRIPT), str(config)], cwd=str(SCRIPT.parent), capture_output=True,
                              text=True, timeout=timeout)
        if proc.returncode != 0 or not result.is_file():
            raise RuntimeError(f"graph_to_prompt.mjs failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        return json.loads(result.read_text())
    finally:
        config.unlink(missing_ok=True)
        result.unlink(missing_ok=True)


#: Where convert() knowingly differs from a frontend: {(frontend version, name): {(node, input): (runner's
#: value, frontend's value)}}. templates_graphic_design_recomposer lists two PrimitiveNodes of its subgraph in
#: proxyWidgets; frontend 1.48.7's migration (repairPrimitive) relinks the primitive's targets by the slot
#: numbers saved in the file, before fixLinkInputSlots re-aligns them to the inputs' new order, and so promotes
#: GeminiImage2Node's 'model' widget in place of the aspect ratio: it sends 'gemini-3-pro-image-preview' as
#: GeminiNanoBanana2V2's aspect ratio. 1.58.1 and convert() send the primitive's '16:9'.
KNOWN_DIFFERENCES = {
    ("1.48.7", "template:templates_graphic_design_recomposer"): {("143:157", "model.aspect_ratio"): (
        "16:9", "gemini-3-pro-image-preview")},
}


def known_differences_applied(version, name, got, expected):
    """convert()'s prompt `got` with each known difference checked (runner's and frontend's value as listed)
    and then given the frontend's value, for comparing the rest."""
    for (node, key), (ours, theirs) in KNOWN_DIFFERENCES.get((version, name), {}).items():
        assert (got[node]["inputs"][key], expected[node]["inputs"][key]) == (ours, theirs), (name, node, key)
        got[node]["inputs"][key] = theirs
    return got


def strip_meta(prompt):
    return {k: {kk: vv for kk, vv in v.items() if kk != "_meta"} for k, v in prompt.items()}


def start_server(base, front_end_root=None):
    from host import ComfyServer
    settings = Path(base) / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps(SETTINGS))
    server = ComfyServer(base)
    if front_end_root:
        server.extra_args = ["--front-end-root", str(front_end_root)]
    return server.start()


def record(which, part, piece):
    """Record one part of the goldens on one frontend: the shipped workflows with their variants, or slice
    `piece` (k, n) of the templates; merged into tests/data/frontend-<version>.json."""
    import tempfile

    import conftest  # noqa: F401  (makes the pack importable as hypersd_pack)
    from test_browser import chromium_path, newest_frontend_root
    root = None if which == "pinned" else newest_frontend_root()
    cases = {}
    with tempfile.TemporaryDirectory() as base:
        server = start_server(base, root)
        try:
            info = server.get("/object_info", timeout=120)
            if part == "shipped":
                templates, jobs = [], [(p.stem, p, True) for p in WORKFLOWS]
            elif part == "cases":
                templates, jobs = [], []
                cases = {f"case:{name}": wf for name, wf in constructed_cases()}
                for name, wf in cases.items():
                    path = Path(base) / f"{name.split(':')[1]}.json"
                    path.write_text(json.dumps(wf))
                    jobs.append((name, path, False))
            else:
                k, n = piece
                templates = template_jobs(info)[k - 1::n]
                jobs = [(name, path, False) for name, path, _ in templates]
            result = run_oracle(server.url, chromium_path(), shutil.which("node"), jobs)
        finally:
            server.stop()
    if result.get("fatal"):
        raise SystemExit(f"browser: {result['fatal']}: {result.get('message')}")
    write_golden(result, info, {n: s for n, _, s in templates}, cases)


def write_golden(result, info, sources, cases=None):
    entries = [r for r in result["results"] if not r.get("skipped") and not r.get("error")]
    failed = [{"name": r["name"], "variant": r["variant"], "error": r["error"].splitlines()[0][:500]}
              for r in result["results"] if r.get("error")]
    if any(not r["name"].startswith("template:") for r in failed):
        raise SystemExit("graphToPrompt failed: " + json.dumps(failed, indent=1)[:4000])
    used = set(json.loads(OBJECT_INFO.read_text())) if OBJECT_INFO.exists() else set()
    for r in entries:
        used |= {v["class_type"] for v in r["prompt"].values()} | node_types(r.get("workflow") or {})
    for p in WORKFLOWS:
        used |= node_types(json.loads(p.read_text()))
    for name in sources:
        used |= node_types(json.loads(template_file({"name": name, "source": sources[name]}).read_text()))
    DATA.mkdir(exist_ok=True)
    OBJECT_INFO.write_text(json.dumps({k: info[k] for k in sorted(used) if k in info}, separators=(",", ":")))
    version = result.get("frontend_version")
    path = DATA / f"frontend-{version}.json.gz"
    golden = read_golden(path) if path.exists() else {
        "frontend_version": version, "server": "ComfyUI 0.33.0",
        "templates": [package_label(OLD_TEMPLATES), package_label(NEW_TEMPLATES)], "results": []}
    cases = cases or {}
    names = {r["name"] for r in result["results"]}
    golden["results"] = [r for r in golden["results"] if r["name"] not in names]
    # templates whose graphToPrompt throws on this frontend (its Queue button fails on them too)
    golden["failed"] = [r for r in golden.get("failed", []) if r["name"] not in names] + failed
    for r in entries:
        entry = {k: r[k] for k in ("name", "variant", "workflow") if k in r}
        if r["name"] in cases:
            entry["workflow"] = cases[r["name"]]
        if r["name"] in sources:
            entry["source"] = sources[r["name"]]
        entry["prompt"] = strip_meta(r["prompt"])
        golden["results"].append(entry)
    golden["results"].sort(key=lambda r: (r["name"].startswith("template:"), r["name"], r["variant"]))
    write_json_gz(path, golden)
    skipped = [(r["name"], r["variant"], r["skipped"]) for r in result["results"] if r.get("skipped")]
    print(f"recorded {len(entries)} prompts ({len(sources)} templates) from frontend {version}, skipped: {skipped}, "
          f"graphToPrompt failed: {failed}")


def piece(text):
    k, _, n = text.partition("/")
    return int(k), int(n or 1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--record", choices=["pinned", "newest"], required=True,
                    help="the frontend ComfyUI serves by default, or the newest in .cache-frontend")
    ap.add_argument("--part", choices=["shipped", "cases", "templates"], required=True)
    ap.add_argument("--slice", type=piece, default=(1, 1), metavar="K/N",
                    help="with --part templates: the K-th of N slices (each run stays short)")
    args = ap.parse_args()
    record(args.record, args.part, args.slice)
