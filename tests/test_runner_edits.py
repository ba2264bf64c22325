"""The runner's edits (workflows/runner/edits.py): --prompt, --negative, --seed, --size, --model OLD=NEW and --set
change what they name or stop with exit status 2 naming what they looked for -- never a silent no-op.

The prompts are found by the wiring, so ComfyUI's own templates work: ``default``, ``sdxl_simple_example``
and ``flux_dev_checkpoint_example`` (two generations of it: the plain graph and the subgraph one). The
goldens are the templates' own prompt texts (the encoder that held the template's positive text is the one
--prompt must change) and, for the shipped workflows, their titles ("Positive prompt" / "Negative prompt").
The templates come from the templates packages: ``comfyui-workflow-templates==0.1.95`` (ComfyUI 0.3.64's pin,
the last with ``default``) and ``comfyui-workflow-templates-json==0.1.123``, installed with
``pip install --no-deps --target .venv/workflow-templates-<version> <package>==<version>`` (or in the
running python). No server: types come from tests/data/object_info.json (a real server's /object_info).
"""
import copy
import glob
import importlib.util
import json
from pathlib import Path

import pytest

from fakecomfy import FakeComfy
from hypersd_pack.workflows.runner import cli, convert as conversion, edits

REPO = Path(__file__).resolve().parents[1]
INFO = json.loads((REPO / "tests" / "data" / "object_info.json").read_text())
# PrimitiveStringMultiline (ComfyUI 0.3.6x+, not in the recorded file): its schema, io.String.Input("value",
# multiline=True) -> STRING, as /object_info writes it.
INFO["PrimitiveStringMultiline"] = {"input": {"required": {"value": ["STRING", {"multiline": True}]}},
                                    "output": ["STRING"], "output_name": ["STRING"], "name": "PrimitiveStringMultiline"}
SHIPPED = sorted((REPO / "workflows").glob("hyper-*.json"))
# (template, the start of its positive prompt, its negative prompt or None when it has no negative of its own)
TEMPLATES = {
    "default": ("beautiful scenery nature glass bottle", "text, watermark"),
    "sdxl_simple_example": ("evening sunset scenery blue sky nature", "text, watermark"),
    "flux_dev_checkpoint_example": (("cute anime girl", "Beautiful photography"), None),
}


def template_files(name):
    """Every copy of the template found: the pinned installs the converter's goldens use (tests/oracle.py's
    $HYPERSD_TEMPLATES, which .ci/run fills), then the running python's packages."""
    from oracle import templates_root
    found = sorted(glob.glob(str(templates_root() / "comfyui-workflow-templates*" / "*" / "templates" / f"{name}.json")))
    for package in ("comfyui_workflow_templates", "comfyui_workflow_templates_json"):
        spec = importlib.util.find_spec(package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            path = Path(folder) / "templates" / f"{name}.json"
            if path.is_file() and str(path) not in found:
                found.append(str(path))
    return found


TEMPLATE_CASES = [pytest.param(name, path, id=f"{name}-{Path(path).parts[-4]}")
                  for name in TEMPLATES for path in template_files(name)] + [
    pytest.param(name, None, id=f"{name}-missing") for name in TEMPLATES if not template_files(name)]


def api(path):
    return conversion.convert(json.loads(Path(path).read_text()), INFO)


def changed(before, after):
    """{(node id, input): new value} of every input the edit changed."""
    return {(nid, name): value for nid, node in after.items() for name, value in node["inputs"].items()
            if before[nid]["inputs"].get(name) != value}


def edited(prompt, **kwargs):
    after = edits.customize(copy.deepcopy(prompt), object_info=INFO, **kwargs)
    return changed(prompt, after)


def texts(prompt, test):
    return {(nid, name) for nid, node in prompt.items() for name, v in node["inputs"].items()
            if isinstance(v, str) and test(v)}


# ---------------------------------------------------------------------------------------------- templates


@pytest.mark.parametrize("name, path", TEMPLATE_CASES)
def test_prompt_seed_and_size_on_comfyuis_templates(name, path):
    if path is None:
        from oracle import OLD_TEMPLATES, install_command
        pytest.skip(f"template {name} not found: {install_command(OLD_TEMPLATES)}")
    positive, negative = TEMPLATES[name]
    prompt = api(path)
    assert edited(prompt, text="A FOX") == dict.fromkeys(texts(prompt, lambda v: v.startswith(positive)), "A FOX")
    if negative is not None:
        assert edited(prompt, negative="BLUR") == dict.fromkeys(texts(prompt, lambda v: v == negative), "BLUR")
    seeds = {(nid, k) for nid, n in prompt.items() for k in ("seed", "noise_seed") if k in n["inputs"]}
    assert seeds and edited(prompt, seed=7) == dict.fromkeys(seeds, 7)
    sizes = edited(prompt, size=640)
    assert sizes and set(sizes.values()) == {640}
    assert {name for _, name in sizes} == {"width", "height"}  # the latent's own widgets in these templates


@pytest.mark.parametrize("name, path", [c for c in TEMPLATE_CASES if "flux" in c.id])
def test_flux_templates_have_no_negative_to_set(name, path):
    """flux_dev_checkpoint_example: cfg 1 with an empty negative (0.1.95), or a ConditioningZeroOut (0.1.123)."""
    if path is None:
        pytest.skip(f"template {name} not found")
    prompt = api(path)
    with pytest.raises(edits.EditError) as info:
        edited(prompt, negative="BLUR")
    message = str(info.value)
    assert message.startswith("--negative: ")
    assert "ConditioningZeroOut" in message or "has cfg 1" in message, message
    if "has cfg 1" in message:  # a real negative once cfg is raised
        sampler = next(nid for nid, n in prompt.items() if n["class_type"] == "KSampler")
        result = edited(prompt, negative="BLUR", sets=[f"{sampler}.cfg=3.5"])
        assert result[(sampler, "cfg")] == 3.5 and "BLUR" in result.values()


# ---------------------------------------------------------------------------------------------- shipped


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_workflows_prompt_by_wiring_equals_their_titles(path):
    prompt = api(path)
    titled = lambda word: {(nid, "text") for nid, n in prompt.items()  # noqa: E731
                           if n["class_type"] == "CLIPTextEncode" and n["_meta"]["title"].lower().startswith(word)}
    assert edited(prompt, text="A FOX") == dict.fromkeys(titled("positive"), "A FOX")
    if titled("negative"):
        assert edited(prompt, negative="BLUR") == dict.fromkeys(titled("negative"), "BLUR")
    else:  # FLUX, the one-step UNet: one encoder feeds both inputs
        with pytest.raises(edits.EditError, match="feeds both the positive and the negative"):
            edited(prompt, negative="BLUR")
    assert set(edited(prompt, seed=7).values()) == {7}
    assert set(edited(prompt, size=640).values()) == {640}
    untyped = edits.customize(copy.deepcopy(prompt), "A FOX", 7, 640)  # without /object_info: input names decide
    assert changed(prompt, untyped) == edited(prompt, text="A FOX", seed=7, size=640)


def test_size_follows_the_links_to_flux_width_and_height_nodes():
    prompt = api(REPO / "workflows" / "hyper-flux1-dev-8step-lora.json")
    primitives = {n["_meta"]["title"]: nid for nid, n in prompt.items() if n["class_type"] == "PrimitiveInt"}
    assert edited(prompt, size=768) == {(primitives["Width"], "value"): 768, (primitives["Height"], "value"): 768}


# ---------------------------------------------------------------------------------------------- by the wiring


def node(cls, title=None, **inputs):
    return {"class_type": cls, "inputs": inputs, "_meta": {"title": title or cls}}


def graph(**nodes):
    return {nid.lstrip("n"): n for nid, n in nodes.items()}


def base(**extra):
    """Checkpoint -> KSampler, with the given conditioning nodes as "3" (positive) and "4" (negative)."""
    return graph(n1=node("CheckpointLoaderSimple", ckpt_name="a.safetensors"),
                 n5=node("EmptyLatentImage", width=512, height=512, batch_size=1),
                 n7=node("KSampler", model=["1", 0], seed=1, steps=4, cfg=5.0, sampler_name="euler",
                         scheduler="normal", positive=["3", 0], negative=["4", 0], latent_image=["5", 0],
                         denoise=1.0), **extra)


def test_text_linked_from_a_text_node_is_set_there():
    prompt = base(n3=node("CLIPTextEncode", text=["8", 0], clip=["1", 1]),
                  n4=node("CLIPTextEncode", text="neg", clip=["1", 1]),
                  n8=node("PrimitiveStringMultiline", "My prompt", value="old"))
    assert edited(prompt, text="new") == {("8", "value"): "new"}


def test_controlnet_outputs_are_followed_to_the_matching_input():
    prompt = base(n9=node("CLIPTextEncode", text="pos", clip=["1", 1]),
                  n10=node("CLIPTextEncode", text="neg", clip=["1", 1]),
                  n3=node("ControlNetApplyAdvanced", positive=["9", 0], negative=["10", 0], control_net=["11", 0],
                          image=["12", 0], strength=1.0, start_percent=0.0, end_percent=1.0))
    prompt["7"]["inputs"]["negative"] = ["3", 1]
    assert edited(prompt, text="P") == {("9", "text"): "P"}
    assert edited(prompt, negative="N") == {("10", "text"): "N"}


def test_guiders_and_combined_conditioning():
    prompt = graph(n1=node("CheckpointLoaderSimple", ckpt_name="a.safetensors"),
                   n2=node("CLIPTextEncode", text="a", clip=["1", 1]),
                   n3=node("CLIPTextEncode", text="b", clip=["1", 1]),
                   n4=node("ConditioningCombine", conditioning_1=["2", 0], conditioning_2=["3", 0]),
                   n5=node("BasicGuider", model=["1", 0], conditioning=["4", 0]))
    assert edited(prompt, text="P") == {("2", "text"): "P", ("3", "text"): "P"}
    with pytest.raises(edits.EditError, match="no text encoder .* feeds a negative input"):
        edited(prompt, negative="N")


# ---------------------------------------------------------------------------------------------- exit 2


@pytest.mark.parametrize("kwargs, needles", [
    (dict(text="x"), ["--prompt", "no sampler or guider"]),
    (dict(seed=1), ["--seed", "no seed", "seed / noise_seed"]),
    (dict(size=64), ["--size", "no width or height", "width / height"]),
    (dict(models=["missing.safetensors=b.safetensors"]), ["'missing.safetensors'", "model files are"]),
    (dict(models=["nothing"]), ["--model OLD=NEW"]),
])
def test_an_edit_that_finds_nothing_names_what_it_looked_for(kwargs, needles):
    prompt = graph(n1=node("LoadImage", image="in.png"), n2=node("SaveImage", images=["1", 0], filename_prefix="x"))
    with pytest.raises(edits.EditError) as info:
        edited(prompt, **kwargs)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_size_linked_from_a_node_without_a_value_is_refused():
    prompt = base(n3=node("CLIPTextEncode", text="p", clip=["1", 1]), n4=node("CLIPTextEncode", text="n",
                                                                              clip=["1", 1]),
                  n6=node("GetImageSize", image=["9", 0]))
    prompt["5"]["inputs"]["width"] = ["6", 0]
    with pytest.raises(edits.EditError, match=r"node 6 \(GetImageSize\), which has no INT value to set"):
        edited(prompt, size=64)


def test_values_are_checked_against_the_servers_types_and_ranges():
    prompt = base(n3=node("CLIPTextEncode", text="p", clip=["1", 1]), n4=node("CLIPTextEncode", text="n",
                                                                              clip=["1", 1]))
    with pytest.raises(edits.EditError, match=r"input 'width' takes 16 to 16384, not 8"):
        edited(prompt, size=8)
    with pytest.raises(edits.EditError, match=r"input 'steps' takes an integer, not 'many'"):
        edited(prompt, sets=["KSampler.steps=many"])
    with pytest.raises(edits.EditError, match=r"'magic' is not one of the server's choices \('euler'"):
        edited(prompt, sets=["7.sampler_name=magic"])


def test_model_new_name_must_be_a_server_choice_unless_download_brings_it():
    info = copy.deepcopy(INFO)
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = ["a.safetensors", "b.safetensors"]
    prompt = base(n3=node("CLIPTextEncode", text="p", clip=["1", 1]), n4=node("CLIPTextEncode", text="n",
                                                                              clip=["1", 1]))
    ok = edits.customize(copy.deepcopy(prompt), models=["a.safetensors=b.safetensors"], object_info=info)
    assert ok["1"]["inputs"]["ckpt_name"] == "b.safetensors"
    with pytest.raises(edits.EditError, match=r"'c.safetensors' is not one of the server's choices"):
        edits.customize(copy.deepcopy(prompt), models=["a.safetensors=c.safetensors"], object_info=info)
    edits.customize(copy.deepcopy(prompt), models=["a.safetensors=c.safetensors"], object_info=info,
                    pending=["c.safetensors"])


# ---------------------------------------------------------------------------------------------- --set


def test_set_by_id_title_or_type_parses_json_and_keeps_text_as_given():
    prompt = base(n3=node("CLIPTextEncode", "Positive", text="p", clip=["1", 1]),
                  n4=node("CLIPTextEncode", "Negative", text="n", clip=["1", 1]))
    lines = []
    result = changed(prompt, edits.customize(copy.deepcopy(prompt), object_info=INFO, log=lines.append, sets=[
        "7.steps=8", "KSampler.cfg=2.5", "positive.text=42", "EmptyLatentImage.batch_size=2", "7.positive=[\"4\", 0]"]))
    assert result == {("7", "steps"): 8, ("7", "cfg"): 2.5, ("3", "text"): "42", ("5", "batch_size"): 2,
                      ("7", "positive"): ["4", 0]}
    assert any("it was linked from node 3 (Positive, CLIPTextEncode)" in line for line in lines), lines


@pytest.mark.parametrize("spec, needles", [
    ("CLIPTextEncode.text=x", ["2 nodes match 'CLIPTextEncode'", "node 3 (Positive, CLIPTextEncode)",
                               "node 4 (Negative, CLIPTextEncode)", "use the node id"]),
    ("Sampler.steps=4", ["no node has the id, title or type 'Sampler'", "node 7 (KSampler)"]),
    ("7.stepz=4", ["node 7 (KSampler) has no input 'stepz'", "steps", "cfg"]),
    ("7.steps", ["write --set NODE.input=value"]),
    ("steps=4", ["write --set NODE.input=value"]),
])
def test_set_refusals_name_the_candidates(spec, needles):
    prompt = base(n3=node("CLIPTextEncode", "Positive", text="p", clip=["1", 1]),
                  n4=node("CLIPTextEncode", "Negative", text="n", clip=["1", 1]))
    with pytest.raises(edits.EditError) as info:
        edited(prompt, sets=[spec])
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


# ---------------------------------------------------------------------------------------------- the command


def test_the_command_exits_2_with_one_line_and_queues_nothing(tmp_path, capsys):
    wf = REPO / "workflows" / "hyper-flux1-dev-8step-lora.json"
    with FakeComfy(object_info=INFO) as server:
        code = cli.main([str(wf), "--server", server.url, "--negative", "blurry", "--out", str(tmp_path)])
        assert code == 2 and server.prompts == []
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --negative: node 8 (Positive prompt, CLIPTextEncode) feeds both") and "\n" not in err


def test_the_command_queues_the_edited_prompt(tmp_path, capsys):
    wf = REPO / "workflows" / "hyper-sd15-1step-unified-tcd.json"
    with FakeComfy(object_info=INFO, images=[{"filename": "a.png", "subfolder": "", "type": "output"}]) as server:
        code = cli.main([str(wf), "--server", server.url, "--prompt", "a red fox", "--negative", "blurry",
                         "--seed", "7", "--size", "64", "--set", "HyperSDTCDSampler.eta=0.3", "--out", str(tmp_path)])
        assert code == 0, capsys.readouterr()
        (queued,) = server.prompts
    expected = edits.customize(api(wf), "a red fox", 7, 64, negative="blurry", sets=["6.eta=0.3"], object_info=INFO)
    assert queued == expected
    assert changed(api(wf), queued) == {("3", "text"): "a red fox", ("4", "text"): "blurry", ("8", "noise_seed"): 7,
                                        ("7", "width"): 64, ("7", "height"): 64, ("6", "eta"): 0.3}
    out = capsys.readouterr().out
    assert "--prompt: node 3 (Positive prompt, CLIPTextEncode), input 'text'" in out
