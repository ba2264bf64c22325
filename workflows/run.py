"""Run a shipped Hyper-SD workflow headless: UI format -> API format -> ComfyUI server -> saved images.

    python workflows/run.py workflows/hyper-sdxl-4step-lora.json --prompt "a red fox in snow" --seed 7 \
        --size 1024 [--model sd_xl_base_1.0.safetensors=my_sdxl.safetensors] [--server http://127.0.0.1:8188 |
        --start [--comfy-arg=--lowvram ...]] [--out images/]

The workflow file is used as saved (the UI format the frontend writes, schema 0.4 or 1). ``convert()`` turns
it into the API format against the running server's ``/object_info`` the way the frontend's own
``app.graphToPrompt()`` does: Reroute nodes and link reroutes, PrimitiveNodes, widgets turned into inputs,
bypassed (mode 4) and muted (mode 2) nodes, groups and subgraphs; tests/test_conversion.py holds it equal
to the frontend's prompts for every shipped workflow, edited variants of them and 71 of ComfyUI's template
workflows. (comfy-cli 1.23.0's converter was weighed: it gives the frontend's prompt for 116 of those 143
files, not for the PrimitiveNode and bypass variants nor 3 templates, and it brings ~23 runtime
dependencies -- gitpython, posthog, mixpanel, uv, ruff, imageio-ffmpeg ...) Then ``--prompt`` replaces the positive prompt (the CLIPTextEncode whose
title is "Positive"), ``--seed`` every seed widget, ``--size`` every width/height (and the Int nodes titled
Width/Height), ``--model OLD=NEW``
every widget value OLD. The prompt is queued on ``--server`` (default http://127.0.0.1:8188) or, with
``--start``, on a ComfyUI started from $COMFYUI_PATH (default ~/comfy/ComfyUI) with $COMFYUI_PYTHON (default
the python running this script) and this pack, stopped afterwards: ComfyUI's own models, input and user
folders (and its extra_model_paths.yaml) are used, ``--cpu`` is added when torch finds no CUDA, ROCm, MPS or
XPU device (unless a ``--comfy-arg`` chooses the device), and each ``--comfy-arg`` is passed on. Progress is printed as it comes (step i/N of each node); the images are saved under ``--out``
and their paths printed.

Errors are one clear line each (exit status 2): server unreachable; a node type the server lacks (names the
pack to install); a missing model (the file, the folder, the download URL from the workflow's ``models``
list); a validation error (the node and the input); an execution error (the node and ComfyUI's message).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

PACK_NODES = {"HyperSDLoraLoader", "HyperSDTCDSampler", "HyperSDScheduler", "HyperSDUNetLoader",
              "HyperSDXL1StepUnetScheduler", "TCDModelSamplingDiscrete"}  # the last two: stand-ins, see README
PACK_NAME = "Hyper-SD (ComfyUI-Manager / Comfy Registry id 'hyper-sd')"


class RunError(Exception):
    """A failure with a one-line explanation for the user."""


# ------------------------------------------------------------------------------------------- conversion
# What the frontend's app.graphToPrompt() does (ComfyUI_frontend src/utils/executionUtil.ts and litegraph's
# ExecutableNodeDTO), re-done on the saved file: every node of a server class becomes one API node, keyed
# by its execution id ("12", or "7:12" for node 12 inside subgraph instance 7); its widget values by name,
# then each linked input resolved upstream through Reroute nodes, bypassed nodes (mode 4: the input of the
# output's type is passed through), subgraph boundaries and PrimitiveNodes (their value goes into every
# widget they feed). Muted nodes (mode 2) and frontend-only nodes are left out, and so are the inputs
# linked to them. Native link reroutes, groups and node positions do not change the prompt.

FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
SEED_MARKERS = {"fixed", "increment", "decrement", "randomize"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload")
MUTED, BYPASSED = 2, 4
SUBGRAPH_INPUT, SUBGRAPH_OUTPUT = "-10", "-20"
#: Node types of other packs, by the pack to install (for the missing-node message).
KNOWN_PACKS = {
    "ComfyUI-GGUF (city96/ComfyUI-GGUF)": {"UnetLoaderGGUF", "UnetLoaderGGUFAdvanced", "CLIPLoaderGGUF",
                                          "DualCLIPLoaderGGUF", "TripleCLIPLoaderGGUF", "QuadrupleCLIPLoaderGGUF"},
    "ComfyUI-TCD (JettHu/ComfyUI-TCD)": {"SamplerTCD", "SamplerTCD EulerA"},
    "ComfyUI-Impact-Pack (ltdrdata/ComfyUI-Impact-Pack)": {"FaceDetailer", "DetailerForEach", "SAMLoader",
                                                          "UltralyticsDetectorProvider"},
    "ComfyUI-KJNodes (kijai/ComfyUI-KJNodes)": {"GetNode", "SetNode"},
    "ComfyUI-VideoHelperSuite (Kosinkadink/ComfyUI-VideoHelperSuite)": {"VHS_VideoCombine", "VHS_LoadVideo"},
}


class Graph:
    """One graph of a saved workflow (the root, or a subgraph definition): nodes and links by string id,
    links as (origin id, origin slot, target id, target slot, type) whatever the schema wrote."""

    def __init__(self, data):
        self.nodes = {str(n["id"]): n for n in data.get("nodes", [])}
        self.links = {}
        for link in data.get("links", []) or []:
            if isinstance(link, dict):
                self.links[str(link["id"])] = (str(link["origin_id"]), int(link["origin_slot"]),
                                               str(link["target_id"]), int(link["target_slot"]), link.get("type"))
            elif link:
                self.links[str(link[0])] = (str(link[1]), int(link[2]), str(link[3]), int(link[4]), link[5])
        self.inputs = data.get("inputs", [])    # subgraph definitions only
        self.outputs = data.get("outputs", [])

    def link(self, link_id, where):
        try:
            return self.links[str(link_id)]
        except KeyError:
            raise RunError(f"the workflow is damaged: {where} refers to link {link_id}, which it does not "
                           f"hold; open it in ComfyUI and save it again") from None


class Scope:
    """A graph as placed in the workflow: the root, or a subgraph instance's definition under its path."""

    def __init__(self, graph, path=(), parent=None, instance=None):
        self.graph, self.path, self.parent, self.instance = graph, tuple(path), parent, instance

    def exec_id(self, node_id):
        return ":".join((*self.path, str(node_id)))


def is_widget(spec):
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return (isinstance(kind, list) or kind in WIDGET_TYPES) and not options.get("forceInput")


def spec_options(spec):
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def control_widgets(name, spec):
    """How many frontend-only widgets follow this one: control_after_generate (INT: seed/noise_seed by
    default), and for a combo also its filter list."""
    options = spec_options(spec)
    if isinstance(spec[0], list) or spec[0] == "COMBO":
        return 2 if options.get("control_after_generate") else 0
    if spec[0] == "INT":
        control = options.get("control_after_generate")
        return 1 if (control if control is not None else name in ("seed", "noise_seed")) else 0
    return 0


def widget_default(spec):
    """The value a widget starts with when the file holds none for it."""
    options = spec_options(spec)
    if "default" in options:
        return options["default"]
    kind = spec[0]
    choices = kind if isinstance(kind, list) else options.get("options") if kind == "COMBO" else None
    if choices is not None:
        return choices[0] if choices else None
    return {"INT": options.get("min", 0), "FLOAT": options.get("min", 0), "STRING": "", "BOOLEAN": False}.get(kind)


def widget_layout(node_info):
    """The node's widgets as the frontend creates them, in order: (input name, default), or (None, None) for
    a widget the prompt does not take (control_after_generate, control_filter_list, a remote combo's
    auto-refresh toggle, the upload button); a remote combo's refresh button is sent as "refresh"."""
    layout = []
    for section in ("required", "optional"):
        specs = node_info["input"].get(section, {}) or {}
        for name, spec in specs.items():
            if not is_widget(spec):
                continue
            layout.append((name, widget_default(spec)))
            layout.extend([(None, None)] * control_widgets(name, spec))
            remote = spec_options(spec).get("remote")
            if isinstance(remote, dict):
                layout.append((None, None))  # "Auto-refresh after generation"
                if remote.get("refresh_button"):
                    layout.append(("refresh", "refresh"))
        if section == "required" and any(spec_options(s).get(k) for s in specs.values() for k in UPLOAD_OPTIONS):
            layout.append((None, None))  # the upload button the frontend appends to the required inputs
    return layout


def widget_values(node, node_info):
    """{input name: value} of the node's saved widgets_values (a list in widget order, or a dict by name),
    the widget's start value where the file holds none."""
    saved = node.get("widgets_values")
    layout = widget_layout(node_info)
    if isinstance(saved, dict):
        return {name: saved.get(name, default) for name, default in layout if name is not None}
    saved = list(saved or [])
    return {name: (saved[i] if i < len(saved) else default)
            for i, (name, default) in enumerate(layout) if name is not None}


def is_valid_connection(a, b):
    """LiteGraph.isValidConnection: '*' or '' matches anything; comma lists match on any shared type."""
    if a in ("", "*", 0, None) or b in ("", "*", 0, None) or a == b:
        return True
    a, b = str(a).lower(), str(b).lower()
    return bool(set(a.split(",")) & set(b.split(",")))


class Converter:
    def __init__(self, workflow, object_info):
        self.object_info = object_info
        self.subgraphs = {sg["id"]: Graph(sg) for sg in (workflow.get("definitions") or {}).get("subgraphs", [])}
        self.root = Scope(Graph(workflow))
        self.overrides = {}  # (exec id, widget name) -> value set by a PrimitiveNode

    def kind(self, node):
        if node["type"] in self.subgraphs:
            return "subgraph"
        if node["type"] in FRONTEND_ONLY:
            return "virtual"
        return "node"

    def scopes(self, scope=None):
        """Every scope, depth first: the root, then each subgraph instance's inner graph."""
        scope = scope or self.root
        yield scope
        for node in scope.graph.nodes.values():
            if self.kind(node) == "subgraph":
                if len(scope.path) > 32:
                    raise RunError(f"the workflow's subgraphs nest more than 32 deep at node {node['id']}")
                yield from self.scopes(Scope(self.subgraphs[node["type"]], (*scope.path, str(node["id"])),
                                             scope, node))

    def input_index(self, node, link_id):
        for i, inp in enumerate(node.get("inputs", []) or []):
            if inp.get("link") is not None and str(inp["link"]) == str(link_id):
                return i
        return None

    def resolve_input(self, scope, node, slot, visited, want=None):
        """(exec id, output slot) or ("value", v) feeding input `slot` of `node`, or None."""
        key = (scope.path, str(node["id"]), "I", slot)
        if key in visited:
            raise RunError(f"the workflow's links loop through node {node['id']} ({node['type']})")
        visited.add(key)
        inputs = node.get("inputs", []) or []
        if slot >= len(inputs) or inputs[slot].get("link") is None:
            return None
        inp = inputs[slot]
        origin, origin_slot, _, _, _ = scope.graph.link(inp["link"], f"node {node['id']} input '{inp['name']}'")
        if scope.instance is not None and origin == SUBGRAPH_INPUT:
            return self.resolve_subgraph_input(scope, origin_slot, visited)
        if origin not in scope.graph.nodes:
            raise RunError(f"the workflow is damaged: node {node['id']} input '{inp['name']}' is linked from "
                           f"node {origin}, which it does not hold")
        return self.resolve_output(scope, scope.graph.nodes[origin], origin_slot,
                                   want if want is not None else inp.get("type"), visited)

    def resolve_subgraph_input(self, scope, index, visited):
        instance = scope.instance
        if index >= len(scope.graph.inputs):
            raise RunError(f"the workflow is damaged: subgraph {instance['type']} has no input {index}")
        name = scope.graph.inputs[index].get("name")
        # saved files leave out unlinked widget inputs, so the instance's inputs are matched by name
        outer = next((i for i, inp in enumerate(instance.get("inputs", []) or []) if inp.get("name") == name), None)
        if outer is None or instance["inputs"][outer].get("link") is None:
            return self.promoted_value(scope, index)
        return self.resolve_input(scope.parent, instance, outer, visited)

    def promoted_value(self, scope, index):
        """The value of a subgraph input left unlinked outside: the widget it feeds inside (the first one)."""
        graph = scope.graph
        link_ids = graph.inputs[index].get("linkIds", []) if index < len(graph.inputs) else []
        for link_id in link_ids:
            _, _, target, _, _ = graph.link(link_id, f"subgraph input {index}")
            node = graph.nodes.get(target)
            if node is None or self.kind(node) != "node":
                continue
            slot = self.input_index(node, link_id)
            widget = ((node.get("inputs") or [])[slot] or {}).get("widget") if slot is not None else None
            if widget:
                values = self.widgets(scope, node)
                if widget["name"] in values:
                    return ("value", values[widget["name"]])
        return None

    def resolve_output(self, scope, node, slot, want, visited):
        key = (scope.path, str(node["id"]), "O", slot)
        if key in visited:
            raise RunError(f"the workflow's links loop through node {node['id']} ({node['type']})")
        visited.add(key)
        if node.get("mode", 0) == BYPASSED:
            index = self.bypass_index(node, slot, want)
            return None if index < 0 else self.resolve_input(scope, node, index, visited)
        kind = self.kind(node)
        if kind == "subgraph":
            inner = Scope(self.subgraphs[node["type"]], (*scope.path, str(node["id"])), scope, node)
            outputs = inner.graph.outputs
            link_ids = outputs[slot].get("linkIds", []) if slot < len(outputs) else []
            if not link_ids:
                return None
            origin, origin_slot, _, _, _ = inner.graph.link(link_ids[0], f"subgraph output {slot}")
            return self.resolve_output(inner, inner.graph.nodes[origin], origin_slot, want, visited)
        if kind == "virtual":
            if slot < len(node.get("inputs", []) or []):
                return self.resolve_input(scope, node, slot, visited, want)
            return None
        return (scope.exec_id(node["id"]), slot)

    def bypass_index(self, node, slot, want):
        """Which input a bypassed node passes to output `slot` (ExecutableNodeDTO's rule)."""
        inputs = node.get("inputs", []) or []
        outputs = node.get("outputs", []) or []
        if want in ("*", "", None):
            return slot if len(inputs) > slot else 0
        out_type = outputs[slot].get("type") if slot < len(outputs) else None
        if slot < len(inputs) and is_valid_connection(inputs[slot].get("type"), out_type) \
                and is_valid_connection(inputs[slot].get("type"), want):
            return slot
        for i, inp in enumerate(inputs):
            if inp.get("type") == want:
                return i
        for i, inp in enumerate(inputs):
            if is_valid_connection(inp.get("type"), out_type) and is_valid_connection(inp.get("type"), want):
                return i
        return -1

    def widgets(self, scope, node):
        values = widget_values(node, self.object_info[node["type"]])
        for name in values:
            key = (scope.exec_id(node["id"]), name)
            if key in self.overrides:
                values[name] = self.overrides[key]
        return values

    def apply_primitives(self):
        """A PrimitiveNode's value goes into the widget of every input it links to directly."""
        for scope in self.scopes():
            for node in scope.graph.nodes.values():
                if node["type"] != "PrimitiveNode" or not node.get("widgets_values"):
                    continue
                value = node["widgets_values"][0]
                for link_id, (origin, _, target, _, _) in scope.graph.links.items():
                    target_node = scope.graph.nodes.get(target)
                    if origin != str(node["id"]) or target_node is None:
                        continue
                    slot = self.input_index(target_node, link_id)
                    widget = (target_node["inputs"][slot].get("widget") or {}) if slot is not None else {}
                    if widget.get("name"):
                        self.overrides[(scope.exec_id(target), widget["name"])] = value

    def node_prompt(self, scope, node):
        inputs = {name: ({"__value__": v} if isinstance(v, list) else v)
                  for name, v in self.widgets(scope, node).items()}
        for slot, inp in enumerate(node.get("inputs", []) or []):
            resolved = self.resolve_input(scope, node, slot, set())
            if resolved is None:
                continue
            if resolved[0] == "value":
                inputs[inp["name"]] = {"__value__": resolved[1]} if isinstance(resolved[1], list) else resolved[1]
            else:
                inputs[inp["name"]] = [resolved[0], resolved[1]]
        return {"inputs": inputs, "class_type": node["type"], "_meta": {"title": node.get("title") or node["type"]}}

    def convert(self):
        self.check_types()
        self.apply_primitives()
        prompt = {}
        for scope in self.scopes():
            for node in scope.graph.nodes.values():
                if self.kind(node) != "node" or node.get("mode", 0) in (MUTED, BYPASSED):
                    continue
                prompt[scope.exec_id(node["id"])] = self.node_prompt(scope, node)
        for entry in prompt.values():  # inputs linked to left-out nodes go, as the frontend drops them
            for name, value in list(entry["inputs"].items()):
                if isinstance(value, list) and len(value) == 2 and value[0] not in prompt:
                    del entry["inputs"][name]
        return prompt

    def check_types(self):
        missing = {}
        for scope in self.scopes():
            for node in scope.graph.nodes.values():
                if self.kind(node) == "node" and node["type"] not in self.object_info:
                    missing.setdefault(node["type"], []).append(scope.exec_id(node["id"]))
        if missing:
            raise RunError(missing_nodes_message(missing))


def missing_nodes_message(missing):
    """One line: the node types the server lacks, the node ids, and the pack that provides each."""
    parts = []
    for node_type, ids in sorted(missing.items()):
        pack = PACK_NAME if node_type in PACK_NODES else next(
            (name for name, types in KNOWN_PACKS.items() if node_type in types), None)
        where = f"node{'s' if len(ids) > 1 else ''} {', '.join(ids)}"
        hint = f"install {pack}" if pack else "install the custom node pack that provides it (ComfyUI-Manager: " \
                                              "'Install Missing Custom Nodes')"
        parts.append(f"{node_type} ({where}): {hint}")
    return "the server has no node type " + "; ".join(parts) + "; then restart ComfyUI"


def convert(workflow, object_info):
    """API-format prompt {execution id: {inputs, class_type, _meta}} from a UI-format workflow (schema 0.4
    or 1, with or without subgraphs), equal to what the frontend's app.graphToPrompt() sends."""
    if not isinstance(workflow, dict) or "nodes" not in workflow:
        raise RunError("not a UI-format workflow (no 'nodes'): pass a workflow saved by ComfyUI's Save/Export")
    if (workflow.get("extra") or {}).get("groupNodes"):
        raise RunError("the workflow uses legacy group nodes (extra.groupNodes): open it in ComfyUI, convert "
                       "each group node to a subgraph or ungroup it, and save it again")
    return Converter(workflow, object_info).convert()


def customize(prompt, text=None, seed=None, size=None, models=()):
    """Apply --prompt, --seed, --size and --model OLD=NEW to an API prompt (in place)."""
    replace = dict(m.split("=", 1) for m in models)
    for node in prompt.values():
        inputs = node["inputs"]
        if text is not None and node["class_type"] == "CLIPTextEncode" and \
                node["_meta"]["title"].lower().startswith("positive"):
            inputs["text"] = text
        for key in ("seed", "noise_seed"):
            if seed is not None and key in inputs and not isinstance(inputs[key], list):
                inputs[key] = seed
        for key in ("width", "height"):
            if size is not None and key in inputs and not isinstance(inputs[key], list):
                inputs[key] = size
        if size is not None and node["class_type"] == "PrimitiveInt" and \
                node["_meta"]["title"].lower() in ("width", "height"):  # a size wired into several nodes
            inputs["value"] = size
        for key, value in list(inputs.items()):
            if isinstance(value, str) and value in replace:
                inputs[key] = replace[value]
    return prompt


# ----------------------------------------------------------------------------------------------- server


class Server:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def request(self, path, payload=None, timeout=60):
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                return e.code, json.loads(body)
            except ValueError:
                return e.code, body.decode(errors="replace")
        except (urllib.error.URLError, OSError) as e:
            raise RunError(f"ComfyUI server unreachable at {self.url} ({getattr(e, 'reason', e)}): start ComfyUI "
                           f"(python main.py) or pass --server URL, or --start") from e

    def get(self, path, timeout=60):
        status, body = self.request(path, timeout=timeout)
        if status != 200:
            raise RunError(f"GET {path} answered HTTP {status}: {body}")
        return body


def node_label(prompt, node_id, class_type=None):
    """'node 7:12 (title, Class)' from the prompt's _meta, as the user sees the node in the canvas."""
    entry = (prompt or {}).get(str(node_id), {})
    cls = class_type or entry.get("class_type")
    title = entry.get("_meta", {}).get("title")
    if title and cls and title != cls:
        return f"node {node_id} ({title}, {cls})"
    return f"node {node_id} ({title or cls or 'unknown type'})"


def dangling_inputs(prompt, node_id):
    """(input name, source id) of the node's inputs linked to nodes the prompt does not hold."""
    inputs = ((prompt or {}).get(str(node_id)) or {}).get("inputs", {})
    return [(name, str(v[0])) for name, v in inputs.items()
            if isinstance(v, list) and len(v) == 2 and str(v[0]) not in prompt]


def error_line(node_id, err, e, prompt):
    """One server validation error as a line naming the node and the input the server names.

    ComfyUI reports a node that fails while a downstream node validates it ("Exception when validating
    inner node") under the downstream node's input name; the line names the failing node's own input
    instead when it is linked to a node the prompt lacks (a dropped Reroute, say)."""
    extra = e.get("extra_info") or {}
    where = node_label(prompt, node_id, err.get("class_type"))
    if e.get("type") == "exception_during_inner_validation" and prompt is not None:
        dangling = dangling_inputs(prompt, node_id)
        if dangling:
            return "; ".join(f"{where}, input '{name}': it is linked from node {source}, which the prompt does not "
                             f"hold: open the workflow in ComfyUI, reconnect that input and save it again"
                             for name, source in dangling)
        return (f"{where}: could not be validated ({extra.get('exception_type', 'error')}: {e.get('details', '')}), "
                f"found while validating the input '{extra.get('input_name', '?')}' it feeds")
    if extra.get("input_name"):
        where += f", input '{extra['input_name']}'"
    detail = e.get("details") or ""
    line = f"{where}: {e.get('message', 'invalid')}" + (f" ({detail})" if detail else "")
    linked = extra.get("linked_node")
    if isinstance(linked, list) and linked:
        source = str(linked[0])
        if prompt is not None and source not in prompt:
            line += (f"; it is linked from node {source}, which the prompt does not hold: open the workflow in "
                     f"ComfyUI, reconnect that input and save it again")
        else:
            line += f"; it is linked from {node_label(prompt, source)}, output {linked[1] if len(linked) > 1 else 0}"
    return line


def validation_message(body, workflow, prompt=None, folders=None):
    """One line per node error of a 400 answer, naming the node (id, title, class) and the input the server
    names, with the missing-model hint when the value is a file of the workflow's models list; the hint
    names the server's own folders for that kind of model (``folders``: /internal/folder_paths)."""
    if not isinstance(body, dict):
        return f"HTTP 400: {body}"
    downloads = {m["name"]: m for m in workflow.get("models", [])}
    lines = []
    for node_id, err in (body.get("node_errors") or {}).items():
        for e in err.get("errors", []):
            line = error_line(node_id, err, e, prompt)
            value = (e.get("extra_info") or {}).get("received_value")
            if isinstance(value, str) and value in downloads:
                m = downloads[value]
                where = ((folders or {}).get(m["directory"]) or [f"models/{m['directory']}"])[0]
                line = (f"missing model {value}: put it in {where} (download: {m['url']}); "
                        f"or pass --model {value}=<your file>. ({line})")
            lines.append(line)
    if not lines:
        error = body.get("error") or {}
        lines.append(f"{error.get('message', 'rejected')}: {error.get('details', '')}".rstrip(": "))
    return "\n".join(lines)


def run(server, workflow, prompt, out_dir, log=print, timeout=3600):
    client_id = uuid.uuid4().hex
    events = ProgressListener(server.url, client_id, prompt, log)
    status, body = server.request("/prompt", {"prompt": prompt, "client_id": client_id})
    if status != 200:
        events.close()
        raise RunError("the server refused the workflow:\n" + validation_message(body, workflow, prompt,
                                                                                 model_folders(server)))
    prompt_id = body["prompt_id"]
    log(f"queued {prompt_id}")
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            entry = (server.get(f"/history/{prompt_id}") or {}).get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                return finish(server, entry, prompt, out_dir, log)
            time.sleep(0.5)
    finally:
        events.close()
    raise RunError(f"prompt {prompt_id} did not finish within {timeout} s")


class ProgressListener:
    """Prints ComfyUI's progress messages (node started, step i/N) from its websocket, in a thread.

    A minimal RFC 6455 client on the standard library (text frames only, server frames are unmasked);
    progress is a nicety, so any failure here only stops the printing.
    """

    def __init__(self, url, client_id, prompt, log):
        import socket
        import threading
        self.prompt, self.log, self.sock = prompt, log, None
        parts = urllib.parse.urlsplit(url)
        try:
            self.sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=10)
            key = "aHlwZXJzZC1wcm9ncmVzcw=="
            self.sock.sendall((f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                               f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                               f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = self.sock.recv(1)
                if not chunk:
                    raise OSError("closed")
                head += chunk
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                raise OSError("no websocket upgrade")
            self.sock.settimeout(None)
            threading.Thread(target=self._read, daemon=True).start()
        except OSError:
            self.close()

    def _recv(self, n):
        data = b""
        while len(data) < n:
            sock = self.sock  # None once close() ran (from the main thread)
            if sock is None:
                raise OSError("closed")
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise OSError("closed")
            data += chunk
        return data

    def _read(self):
        try:
            while True:
                b0, b1 = self._recv(2)
                length = b1 & 0x7F
                if length == 126:
                    length = int.from_bytes(self._recv(2), "big")
                elif length == 127:
                    length = int.from_bytes(self._recv(8), "big")
                payload = self._recv(length)
                if b0 & 0x0F == 1:
                    self._message(json.loads(payload))
                elif b0 & 0x0F == 8:
                    return
        except (OSError, ValueError, TypeError):
            return

    def _message(self, msg):
        data = msg.get("data") or {}
        title = self.prompt.get(str(data.get("node")), {}).get("_meta", {}).get("title", data.get("node"))
        if msg.get("type") == "executing" and data.get("node") is not None:
            self.log(f"running node {data['node']} ({title})")
        elif msg.get("type") == "progress":
            self.log(f"  {title}: {data.get('value')}/{data.get('max')}")

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None


def finish(server, entry, prompt, out_dir, log):
    for kind, data in entry["status"].get("messages", []):
        if kind == "execution_error":
            node = data.get("node_id")
            title = prompt.get(str(node), {}).get("_meta", {}).get("title", data.get("node_type"))
            kind = str(data.get("exception_type", "")).rsplit(".", 1)[-1]  # ComfyUI's module name is a path
            raise RunError(f"node {node} ({title}) failed: {kind}: "
                           f"{data.get('exception_message', '').strip()}")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for node_out in entry.get("outputs", {}).values():
        for img in node_out.get("images", []):
            query = urllib.parse.urlencode({"filename": img["filename"], "subfolder": img.get("subfolder", ""),
                                            "type": img.get("type", "output")})
            with urllib.request.urlopen(f"{server.url}/view?{query}", timeout=60) as r:
                dest = out_dir / img["filename"]
                dest.write_bytes(r.read())
            paths.append(dest)
    for p in paths:
        log(str(p))
    return paths


def comfyui_path():
    """The ComfyUI to start: $COMFYUI_PATH, default ~/comfy/ComfyUI; RunError when there is none."""
    comfy = Path(os.environ.get("COMFYUI_PATH") or Path.home() / "comfy" / "ComfyUI").expanduser()
    if not (comfy / "main.py").is_file():
        raise RunError(f"no ComfyUI at COMFYUI_PATH={comfy}: set COMFYUI_PATH to a ComfyUI folder")
    return comfy


# Which accelerator torch sees, as ComfyUI picks its device (CUDA and ROCm both answer torch.cuda).
ACCELERATOR_PROBE = """
import importlib.util, torch
found = []
if torch.cuda.is_available():
    found.append("ROCm" if getattr(torch.version, "hip", None) else "CUDA")
if getattr(torch, "xpu", None) is not None and torch.xpu.is_available():
    found.append("XPU")
mps = getattr(torch.backends, "mps", None)
if mps is not None and mps.is_available():
    found.append("MPS")
found += [name for name in ("torch_npu", "torch_mlu") if importlib.util.find_spec(name)]
print("ACCELERATORS=" + ",".join(found))
"""
# ComfyUI arguments that choose the device themselves: with one of them, the runner adds no --cpu.
DEVICE_ARGS = ("--cpu", "--directml", "--cuda-device", "--oneapi-device-selector", "--default-device")


def comfy_python():
    return os.environ.get("COMFYUI_PYTHON") or sys.executable


def accelerators(python):
    """The accelerators torch finds in ComfyUI's python (a subprocess: this process may lack torch)."""
    try:
        proc = subprocess.run([python, "-c", ACCELERATOR_PROBE], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RunError(f"cannot run ComfyUI's python {python} to look for a GPU ({e}): set COMFYUI_PYTHON to "
                       f"the python that runs your ComfyUI") from e
    lines = [line for line in proc.stdout.splitlines() if line.startswith("ACCELERATORS=")]
    if proc.returncode != 0 or not lines:
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise RunError(f"{python} cannot import torch ({why}): set COMFYUI_PYTHON to the python that runs "
                       f"your ComfyUI")
    return [a for a in lines[-1].split("=", 1)[1].split(",") if a]


def server_command(comfy_path, port, workdir, comfy_args=(), accel=None, python=None):
    """ComfyUI's command line: our loopback port, the pack via an extra-model-paths yaml (nothing written
    into ComfyUI's custom_nodes; ComfyUI's own models, input, output and user folders and its
    extra_model_paths.yaml stay in use, so messages name them), previews in ``workdir`` (a second server
    must not wipe the temp folder of a running one), ``--cpu`` when torch has no accelerator, then
    ``comfy_args`` as given."""
    cmd = [python or comfy_python(), str(comfy_path / "main.py"), "--listen", "127.0.0.1", "--port", str(port),
           "--disable-auto-launch", "--database-url", "sqlite:///:memory:"]
    if (workdir / "hypersd-pack.yaml").is_file():
        cmd += ["--extra-model-paths-config", str(workdir / "hypersd-pack.yaml")]
    given = {a.split("=", 1)[0] for a in comfy_args}
    if "--temp-directory" not in given:
        cmd += ["--temp-directory", str(workdir)]
    if accel is not None and not accel and not given.intersection(DEVICE_ARGS):
        cmd.append("--cpu")
    return cmd + list(comfy_args)


def pack_installed_in(comfy_path):
    """True when this pack already sits in ComfyUI's custom_nodes (then ComfyUI loads it by itself)."""
    here = Path(__file__).resolve().parents[1]
    nodes = comfy_path / "custom_nodes"
    return nodes.is_dir() and any(p.resolve() == here for p in nodes.iterdir())


def prepare_workdir(comfy_path):
    """A temporary folder for the server's log and previews; unless ComfyUI already has this pack in its
    custom_nodes, also a yaml that adds this pack's folder to ComfyUI's custom_nodes."""
    workdir = Path(tempfile.mkdtemp(prefix="hypersd-run-"))
    if not pack_installed_in(comfy_path):
        (workdir / "custom_nodes").mkdir()
        (workdir / "custom_nodes" / "ComfyUI-HyperSD").symlink_to(Path(__file__).resolve().parents[1])
        (workdir / "hypersd-pack.yaml").write_text(
            f"hypersd_pack:\n  custom_nodes: {json.dumps(str(workdir / 'custom_nodes'))}\n")
    return workdir


def start_server(comfy_path, log, comfy_args=()):
    """A ComfyUI on a free loopback port with this pack installed; (Server, process)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    python = comfy_python()
    accel = accelerators(python)
    workdir = prepare_workdir(comfy_path)
    cmd = server_command(comfy_path, port, workdir, comfy_args, accel, python)
    log(f"starting ComfyUI ({', '.join(accel) if accel else 'no GPU found by torch: --cpu'}): {' '.join(cmd)}")
    logf = open(workdir / "server.log", "ab")
    proc = subprocess.Popen(cmd, cwd=str(comfy_path), stdout=logf, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}")
    for _ in range(600):
        if proc.poll() is not None:
            raise RunError(f"ComfyUI exited at start-up ({startup_error(workdir / 'server.log')}): see "
                           f"{workdir / 'server.log'}")
        try:
            server.get("/system_stats", timeout=2)
            log(f"started ComfyUI at {server.url} (log: {workdir / 'server.log'})")
            server.workdir = workdir
            return server, proc
        except RunError:
            time.sleep(0.5)
    proc.terminate()
    raise RunError(f"ComfyUI did not start within 300 s: see {workdir / 'server.log'}")


def startup_error(log_path):
    """The last line of a failed start-up's log that names an error."""
    lines = log_path.read_text(errors="replace").splitlines() if log_path.exists() else []
    errors = [line.strip() for line in lines if "Error" in line or "error:" in line]
    return (errors or lines or ["no output"])[-1][:300]


def model_folders(server):
    """{folder name: [paths]} of the running ComfyUI (its real model folders), {} when it does not say."""
    try:
        status, body = server.request("/internal/folder_paths", timeout=30)
    except RunError:
        return {}
    if status != 200 or not isinstance(body, dict):
        return {}
    return {name: [p for p in paths if not str(p).startswith(tempfile.gettempdir() + os.sep + "hypersd-run-")]
            for name, paths in body.items()}


def distributed_module():
    """workflows/distributed.py (the ComfyUI-Distributed client), as a script or as part of the pack."""
    if __package__:
        from . import distributed
    else:
        import distributed
    return distributed


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workflow", type=Path)
    ap.add_argument("--prompt", help="positive prompt")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--size", type=int, help="width and height of the image")
    ap.add_argument("--model", action="append", default=[], metavar="OLD=NEW", help="use file NEW instead of OLD")
    ap.add_argument("--server", default="http://127.0.0.1:8188")
    ap.add_argument("--start", action="store_true",
                    help="start a ComfyUI from $COMFYUI_PATH (with $COMFYUI_PYTHON, default this python; --cpu when "
                         "torch finds no GPU) and stop it after")
    ap.add_argument("--comfy-arg", action="append", default=[], metavar="ARG",
                    help="with --start: one more argument for ComfyUI's main.py, repeatable; write options as "
                         "--comfy-arg=--lowvram or --comfy-arg=--preview-method=auto")
    ap.add_argument("--out", type=Path, default=Path("hypersd-output"))
    ap.add_argument("--distributed", action="store_true",
                    help="--server is a ComfyUI-Distributed master: run on it and on its enabled workers, one image "
                         "per participant (seed, seed+1, ...); see workflows/distributed.py")
    args = ap.parse_args(argv)
    if args.comfy_arg and not args.start:
        ap.error("--comfy-arg needs --start (it is passed to the ComfyUI the runner starts)")
    proc, server, ok = None, None, False
    try:
        workflow = json.loads(args.workflow.read_text())
        if args.start:
            server, proc = start_server(comfyui_path(), print, args.comfy_arg)
        else:
            server = Server(args.server)
        prompt = customize(convert(workflow, server.get("/object_info", timeout=120)), args.prompt, args.seed,
                           args.size, args.model)
        t0 = time.time()
        if args.distributed:
            paths = distributed_module().run(sys.modules[__name__], server, workflow, prompt, args.out)
        else:
            paths = run(server, workflow, prompt, args.out)
        print(f"done in {time.time() - t0:.1f} s: {len(paths)} image(s)")
        ok = True
        return 0
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        stop_server(proc, getattr(server, "workdir", None), keep_log=not ok)


def stop_server(proc, workdir, keep_log):
    """Stop a server started by --start; remove its folder unless its log is needed to explain a failure."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if workdir is not None and not keep_log:
        shutil.rmtree(workdir, ignore_errors=True)
    elif workdir is not None:
        print(f"ComfyUI's log: {workdir / 'server.log'}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
