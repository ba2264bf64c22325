"""workflows/run.py's convert() equals the frontends' own app.graphToPrompt(), without a browser.

tests/data/frontend-<version>.json(.gz) hold the prompts ``tests/oracle.py --record`` took from ComfyUI's page:
frontends 1.48.7 (the one ComfyUI 0.33.0 pins) and 1.58.1 (the newest), each against a 0.33.0 server with
this pack, and 1.27.10 (ComfyUI 0.3.64's) recorded earlier against 0.3.64. They cover every shipped
workflow as shipped and edited on the canvas (a Reroute, a PrimitiveNode, a bypassed and a muted node,
packed into a subgraph, that instance bypassed or muted, seed / steps / width / prompt widgets promoted
to instance values, two instances of one definition, a nested subgraph, the whole workflow packed into a
muted or a bypassed instance), files in the older proxyWidgets format, the old templates (comfyui-workflow-templates 0.1.95) and the newest
templates package's workflows (comfyui-workflow-templates-json 0.1.123), read from their pinned installs
(tests/oracle.py says where). convert() is given each recording's frontend version, as the runner gives it
the version the server serves. tests/test_browser.py checks the same against the live frontends.
"""
import copy
import json
import re

import pytest

from hypersd_pack.workflows.runner import convert as conversion, errors
from oracle import (EDITS, GOLDEN_FILES, NEW_TEMPLATES, OBJECT_INFO_FILES, OLD_TEMPLATES, SCRIPT, WORKFLOWS,
                    constructed_cases, install_command, known_differences_applied, package_label, read_golden,
                    strip_meta, template_file)

GOLDENS = {v: read_golden(p) for v, p in GOLDEN_FILES.items()}
OBJECT_INFOS = {v: json.loads(p.read_text()) for v, p in OBJECT_INFO_FILES.items()}
SHIPPED = {p.stem: p for p in WORKFLOWS}
CURRENT = ("1.48.7", "1.58.1")
VARIANTS = ["as-is", *EDITS]


def cases(templates):
    return [(v, r) for v, g in GOLDENS.items() for r in g["results"] if r["name"].startswith("template:") == templates]


def case_id(case):
    version, entry = case
    name = entry["name"].split(":", 1)[-1]
    return f"{version}-{name}" + ("" if entry["name"].startswith("template:") else f"-{entry['variant']}")


def source(entry):
    """The workflow file the frontend converted: the saved variant, or the shipped / template file."""
    if "workflow" in entry:
        return copy.deepcopy(entry["workflow"])
    if entry["name"].startswith("template:"):
        path = template_file(entry)
        if path is None:
            package = NEW_TEMPLATES if entry.get("source") == package_label(NEW_TEMPLATES) else OLD_TEMPLATES
            pytest.fail(f"the template files of {package_label(package)} are missing: {install_command(package)}")
        return json.loads(path.read_text())
    return json.loads(SHIPPED[entry["name"]].read_text())


def check(version, entry):
    got = strip_meta(conversion.convert(source(entry), OBJECT_INFOS[version], version))
    assert known_differences_applied(version, entry["name"], got, entry["prompt"]) == entry["prompt"]


def golden(version, name, variant="as-is"):
    return next(r for r in GOLDENS[version]["results"] if r["name"] == name and r["variant"] == variant)


def test_every_shipped_workflow_and_variant_is_recorded():
    """The goldens cover every shipped workflow in every edited form, on each frontend."""
    for version in CURRENT:
        assert GOLDENS[version]["frontend_version"] == version
        have = {(r["name"], r["variant"]) for r in GOLDENS[version]["results"]}
        missing = [(name, v) for name in SHIPPED for v in VARIANTS if (name, v) not in have]
        assert not missing, (version, missing)
    have = {(r["name"], r["variant"]) for r in GOLDENS["1.27.10"]["results"]}
    assert all((name, v) in have for name in SHIPPED for v in VARIANTS[:6])


#: Templates whose graphToPrompt throws on a frontend (its Queue button fails on them); no golden for them there.
FRONTEND_FAILURES = {"1.48.7": set(), "1.58.1": {"template:basic_image_color_adjustment"}}  # DataCloneError


def test_frontend_failures_are_the_known_ones():
    for version in CURRENT:
        assert {r["name"] for r in GOLDENS[version].get("failed", [])} == FRONTEND_FAILURES[version]


def test_browser_script_makes_the_edits_the_goldens_name():
    script = (SCRIPT.read_text().split("const VARIANTS = [", 1)[1]).split("]", 1)[0]
    assert re.findall(r"'([^']+)'", script) == list(EDITS)


def test_proxy_widget_files_are_recorded():
    """Files in the older proxyWidgets format (tests/oracle.py's constructed_cases) on both frontends."""
    for version in CURRENT:
        names = {r["name"] for r in GOLDENS[version]["results"] if r["name"].startswith("case:")}
        assert names == {"case:" + name for name, _ in constructed_cases()}


def test_templates_are_recorded():
    """Both frontends converted the old templates again and 30+ of the newest package's, subgraph templates
    and templates with proxyWidgets among them."""
    old = {r["name"] for r in GOLDENS["1.27.10"]["results"] if r["name"].startswith("template:")}
    for version in CURRENT:
        entries = [r for r in GOLDENS[version]["results"] if r["name"].startswith("template:")]
        assert old <= {r["name"] for r in entries}
        new = [r for r in entries if r.get("source") == package_label(NEW_TEMPLATES)]
        assert len(new) >= 30 and not {r["name"] for r in new} & old
        files = [json.loads(template_file(r).read_text()) for r in new if template_file(r)]
        with_subgraphs = [wf for wf in files if (wf.get("definitions") or {}).get("subgraphs")]
        proxies = [wf for wf in with_subgraphs if any("proxyWidgets" in (n.get("properties") or {})
                                                      for n in wf["nodes"])]
        assert len(with_subgraphs) >= 30 and len(proxies) >= 10, (len(with_subgraphs), len(proxies))


@pytest.mark.parametrize("case", cases(templates=False), ids=case_id)
def test_conversion_equals_the_frontend(case):
    check(*case)


@pytest.mark.parametrize("case", cases(templates=True), ids=case_id)
def test_template_conversion_equals_the_frontend(case):
    check(*case)


def sampler_seeds(prompt):
    return sorted(v["inputs"]["noise_seed"] for v in prompt.values() if v["class_type"] == "SamplerCustom")


@pytest.mark.parametrize("version", CURRENT)
def test_promoted_widgets_take_each_instances_value(version):
    """What the frontends send (recorded): each instance's own seed (123 and 456, the inner widget holding
    999), the outer value of a nested promotion (123, the nested instance 555), nothing of a muted or
    bypassed instance; convert() sends the same."""
    name = "hyper-sd15-4step-lora"
    expected = {"promoted": [123], "instances": [123, 456], "nested": [123], "packed-mute": [], "packed-bypass": []}
    for variant, seeds in expected.items():
        entry = golden(version, name, variant)
        assert sampler_seeds(entry["prompt"]) == seeds, (variant, entry["prompt"])
        assert sampler_seeds(conversion.convert(entry["workflow"], OBJECT_INFOS[version], version)) == seeds
    prompt = golden(version, name, "instances")["prompt"]
    texts = sorted(v["inputs"]["text"] for v in prompt.values()
                   if v["class_type"] == "CLIPTextEncode" and v["inputs"]["text"])
    assert texts == ["a promoted prompt", "the second instance"]
    assert golden(version, name, "packed-mute")["prompt"] == {}


def test_muted_instance_contents_ran_before_1_39_3():
    """Frontends before 1.39.3 ran the contents of a muted subgraph instance (ComfyUI_frontend PR #8494)."""
    entry = golden("1.48.7", "hyper-sd15-4step-lora", "packed-mute")
    old = conversion.convert(entry["workflow"], OBJECT_INFOS["1.48.7"], "1.27.10")
    assert {v["class_type"] for v in old.values()} >= {"SamplerCustom", "SaveImage"}
    assert conversion.convert(entry["workflow"], OBJECT_INFOS["1.48.7"], "1.48.7") == {}


@pytest.mark.parametrize("stats, version", [
    ({"system": {"argv": ["main.py", "--front-end-root", "/x/.cache-frontend/1.58.1/comfyui_frontend_package/static"],
                 "comfy_package_versions": [{"name": "comfyui-frontend-package", "installed": "1.48.7"}]}}, "1.58.1"),
    ({"system": {"argv": ["main.py", "--front-end-version=Comfy-Org/ComfyUI_frontend@v1.52.0"]}}, "1.52.0"),
    ({"system": {"argv": ["main.py", "--front-end-version", "Comfy-Org/ComfyUI_frontend@latest"]}}, None),
    ({"system": {"argv": ["main.py"], "required_frontend_version": "1.48.7",
                 "comfy_package_versions": [{"name": "comfyui-frontend-package", "installed": "1.49.0",
                                             "required": "1.48.7"}]}}, "1.49.0"),
    ({"system": {"argv": ["main.py"], "required_frontend_version": "1.27.10"}}, "1.27.10"),
    ({}, None),
])
def test_served_frontend_version(stats, version):
    assert conversion.served_frontend_version(stats) == version


def test_dropping_reroutes_is_caught():
    """A Reroute node is a pass-through: its consumer gets the Reroute's source, never the Reroute."""
    entry = golden("1.48.7", "hyper-sd15-4step-lora", "reroute")
    reroute = next(str(n["id"]) for n in entry["workflow"]["nodes"] if n["type"] == "Reroute")
    prompt = conversion.convert(entry["workflow"], OBJECT_INFOS["1.48.7"], "1.48.7")
    assert reroute not in prompt
    assert all(v != [reroute, 0] for node in prompt.values() for v in node["inputs"].values())
    assert strip_meta(prompt) == entry["prompt"]


@pytest.mark.parametrize("node_type, pack", [("UnetLoaderGGUF", "ComfyUI-GGUF"), ("HyperSDLoraLoader", "hyper-sd"),
                                             ("SomeUnknownNode", "Install Missing Custom Nodes")])
def test_missing_node_type_names_the_pack(node_type, pack):
    wf = json.loads(SHIPPED["hyper-sd15-4step-lora"].read_text())
    info = {k: v for k, v in OBJECT_INFOS["1.48.7"].items() if k != node_type}
    wf["nodes"][0]["type"] = node_type
    with pytest.raises(errors.RunError) as e:
        conversion.convert(wf, info)
    assert node_type in str(e.value) and pack in str(e.value) and re.search(r"nodes? 1\b", str(e.value))


def test_muted_node_of_a_missing_type_is_no_error():
    """The frontend reports only active nodes as missing and leaves muted and bypassed ones out."""
    wf = json.loads(SHIPPED["hyper-sd15-4step-lora"].read_text())
    note = {"id": 99, "type": "SomeUnknownNode", "mode": 2, "inputs": [], "outputs": [], "widgets_values": [1]}
    wf["nodes"].append(note)
    plain = conversion.convert(json.loads(SHIPPED["hyper-sd15-4step-lora"].read_text()), OBJECT_INFOS["1.48.7"])
    assert conversion.convert(wf, OBJECT_INFOS["1.48.7"]) == plain


def test_not_a_ui_workflow():
    with pytest.raises(errors.RunError, match="API-format prompt"):
        conversion.convert({"3": {"class_type": "KSampler", "inputs": {}}}, OBJECT_INFOS["1.48.7"])
    with pytest.raises(errors.RunError, match="no 'nodes' list"):
        conversion.convert({"nodes": {}}, OBJECT_INFOS["1.48.7"])
