"""The frontend as the oracle of workflows/run.py's convert(): what app.graphToPrompt() makes of a workflow
file, in ComfyUI's own page (tests/browser/graph_to_prompt.mjs), for the shipped workflows (as shipped and
with a Reroute, a PrimitiveNode, a bypassed node, a muted node, packed as a subgraph) and for the image
workflows of ComfyUI's templates package (comfyui-workflow-templates, as ComfyUI 0.3.64 pins it) whose nodes
all exist on the server.

Recording (needs ComfyUI, chromium and tests/browser/node_modules, as tests/test_browser.py does):

    flock /tmp/heavy.lock .venv/bin/python tests/oracle.py --record

writes tests/data/frontend_prompts.json (the frontend's prompts and the saved variant files) and
tests/data/object_info.json (the server's /object_info for the node types they use), which
tests/test_conversion.py compares convert() with, without a browser.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / "data"
GOLDEN = DATA / "frontend_prompts.json"
OBJECT_INFO = DATA / "object_info.json"
SCRIPT = HERE / "browser" / "graph_to_prompt.mjs"
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
#: Output nodes of image workflows; a template with any node outside the server's set is left out.
IMAGE_OUTPUTS = {"SaveImage", "PreviewImage"}
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Workflow.WorkflowTabsPosition": "Sidebar",
            "Comfy.Minimap.Visible": False, "Comfy.Workflow.ShowMissingModelsWarning": False,
            "Comfy.Workflow.ShowMissingNodesWarning": True}


def templates_dir():
    """The templates package's folder (installed with ComfyUI's requirements), or None."""
    spec = importlib.util.find_spec("comfyui_workflow_templates")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "templates"
    return folder if folder.is_dir() else None


def templates_version():
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("comfyui-workflow-templates")
    except PackageNotFoundError:
        return None


def node_types(wf):
    graphs = [wf] + list((wf.get("definitions") or {}).get("subgraphs", []))
    sub_ids = {sg["id"] for sg in graphs[1:]}
    return {n["type"] for g in graphs for n in g.get("nodes", []) if n["type"] not in sub_ids}


def image_templates(object_info):
    """(name, path) of the templates that are image workflows whose every node the server has."""
    folder = templates_dir()
    if folder is None:
        return []
    chosen = []
    for path in sorted(folder.glob("*.json")):
        if path.name == "index.json" or path.stem.startswith("api_"):
            continue
        try:
            wf = json.loads(path.read_text())
        except ValueError:
            continue
        if not isinstance(wf, dict) or "nodes" not in wf:
            continue
        types = node_types(wf)
        if types & IMAGE_OUTPUTS and all(t in object_info or t in FRONTEND_ONLY for t in types):
            chosen.append((path.stem, path))
    return chosen


def run_oracle(server_url, chromium, node, jobs, timeout=900):
    """The script's JSON for jobs [(name, path, variants)]; RuntimeError when the script itself failed."""
    config = Path(os.environ.get("TMPDIR", "/tmp")) / f"oracle-{os.getpid()}.json"
    config.write_text(json.dumps({"url": server_url, "chromium": chromium, "timeout_ms": 60000,
                                  "workflows": [{"name": n, "path": str(p), "variants": v} for n, p, v in jobs]}))
    try:
        proc = subprocess.run([node, str(SCRIPT), str(config)], cwd=str(SCRIPT.parent), capture_output=True,
                              text=True, timeout=timeout)
    finally:
        config.unlink(missing_ok=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"graph_to_prompt.mjs failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


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


def record():
    import tempfile

    import conftest  # noqa: F401  (makes the pack importable as hypersd_pack)
    from test_browser import chromium_path
    import shutil
    with tempfile.TemporaryDirectory() as base:
        server = start_server(base)
        try:
            info = server.get("/object_info", timeout=120)
            templates = image_templates(info)
            jobs = [(p.stem, p, True) for p in WORKFLOWS] + [(f"template:{n}", p, False) for n, p in templates]
            result = run_oracle(server.url, chromium_path(), shutil.which("node"), jobs)
        finally:
            server.stop()
    if result.get("fatal"):
        raise SystemExit(f"browser: {result['fatal']}: {result.get('message')}")
    entries = [r for r in result["results"] if not r.get("skipped")]
    bad = [r for r in entries if r.get("error")]
    if bad:
        raise SystemExit("graphToPrompt failed: " + json.dumps(bad, indent=1)[:4000])
    used = set()
    for r in entries:
        used |= {v["class_type"] for v in r["prompt"].values()}
        if "workflow" in r:
            used |= node_types(r["workflow"])
    for _, p, _ in jobs:
        used |= node_types(json.loads(Path(p).read_text()))
    DATA.mkdir(exist_ok=True)
    OBJECT_INFO.write_text(json.dumps({k: info[k] for k in sorted(used) if k in info}))
    golden = {"frontend_version": result.get("frontend_version"), "templates_version": templates_version(),
              "results": [{k: r[k] for k in ("name", "variant", "workflow", "prompt") if k in r}
                          for r in entries]}
    for r in golden["results"]:
        r["prompt"] = strip_meta(r["prompt"])
    GOLDEN.write_text(json.dumps(golden, separators=(",", ":")))
    print(f"recorded {len(entries)} prompts ({len(templates)} templates) from frontend "
          f"{golden['frontend_version']}, skipped: {[(r['name'], r['variant'], r['skipped']) for r in result['results'] if r.get('skipped')]}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--record", action="store_true", required=True)
    ap.parse_args()
    record()
