"""workflows/run.py's convert() equals the frontend's own app.graphToPrompt(), without a browser: the prompts
in tests/data/frontend_prompts.json were recorded from ComfyUI's page (frontend 1.27.10, the one ComfyUI
0.3.64 pins) by ``tests/oracle.py --record`` for every shipped workflow, each shipped workflow edited on the
canvas (a Reroute node and a native link reroute, a PrimitiveNode, a bypassed node, a muted node, packed as
a subgraph) and the image workflows of ComfyUI's templates package; tests/data/object_info.json is the
server's /object_info for their node types. tests/test_browser.py checks the same against the live
frontends (1.27.10 and the newest).
"""
import json
import re
from pathlib import Path

import pytest

from hypersd_pack.workflows.runner import convert as conversion, errors
from oracle import GOLDEN, OBJECT_INFO, WORKFLOWS, strip_meta, templates_dir, templates_version

GOLDENS = json.loads(GOLDEN.read_text())
OBJECT_INFO_DATA = json.loads(OBJECT_INFO.read_text())
SHIPPED = {p.stem: p for p in WORKFLOWS}
CASES = [r for r in GOLDENS["results"] if not r["name"].startswith("template:")]
TEMPLATES = [r for r in GOLDENS["results"] if r["name"].startswith("template:")]


def source(entry):
    """The workflow file the frontend converted: the saved variant, or the shipped / template file."""
    if "workflow" in entry:
        return entry["workflow"]
    if entry["name"].startswith("template:"):
        folder = templates_dir()
        if folder is None or templates_version() != GOLDENS["templates_version"]:
            pytest.skip(f"needs comfyui-workflow-templates=={GOLDENS['templates_version']} (ComfyUI's "
                        f"requirements), found {templates_version()}")
        return json.loads((folder / (entry["name"].split(":", 1)[1] + ".json")).read_text())
    return json.loads(SHIPPED[entry["name"]].read_text())


def check(entry):
    got = strip_meta(conversion.convert(source(entry), OBJECT_INFO_DATA))
    assert got == entry["prompt"]


def test_every_shipped_workflow_and_variant_is_recorded():
    """The goldens cover every shipped workflow, as shipped and in each edited form, and 20+ templates."""
    have = {(r["name"], r["variant"]) for r in CASES}
    for name in SHIPPED:
        for variant in ("as-is", "reroute", "primitive", "bypass", "mute", "subgraph"):
            assert (name, variant) in have, (name, variant)
    assert len(TEMPLATES) >= 20


@pytest.mark.parametrize("entry", CASES, ids=lambda r: f"{r['name']}-{r['variant']}")
def test_conversion_equals_the_frontend(entry):
    check(entry)


@pytest.mark.parametrize("entry", TEMPLATES, ids=lambda r: r["name"].split(":", 1)[1])
def test_template_conversion_equals_the_frontend(entry):
    check(entry)


def test_dropping_reroutes_is_caught():
    """A Reroute node is a pass-through: its consumer gets the Reroute's source, never the Reroute."""
    entry = next(r for r in CASES if r["name"] == "hyper-sd15-4step-lora" and r["variant"] == "reroute")
    reroute = next(str(n["id"]) for n in entry["workflow"]["nodes"] if n["type"] == "Reroute")
    prompt = conversion.convert(entry["workflow"], OBJECT_INFO_DATA)
    assert reroute not in prompt
    assert all(v != [reroute, 0] for node in prompt.values() for v in node["inputs"].values())
    assert strip_meta(prompt) == entry["prompt"]


@pytest.mark.parametrize("node_type, pack", [("UnetLoaderGGUF", "ComfyUI-GGUF"), ("HyperSDLoraLoader", "hyper-sd"),
                                             ("SomeUnknownNode", "Install Missing Custom Nodes")])
def test_missing_node_type_names_the_pack(node_type, pack):
    wf = json.loads(SHIPPED["hyper-sd15-4step-lora"].read_text())
    info = {k: v for k, v in OBJECT_INFO_DATA.items() if k != node_type}
    wf["nodes"][0]["type"] = node_type
    with pytest.raises(errors.RunError) as e:
        conversion.convert(wf, info)
    assert node_type in str(e.value) and pack in str(e.value) and re.search(r"nodes? 1\b", str(e.value))


def test_not_a_ui_workflow():
    with pytest.raises(errors.RunError, match="not a UI-format workflow"):
        conversion.convert({"3": {"class_type": "KSampler", "inputs": {}}}, OBJECT_INFO_DATA)
