"""UI-format workflow -> API-format prompt: a port of the frontend's ``app.graphToPrompt()``.

The frontend (ComfyUI_frontend ``src/utils/executionUtil.ts`` and litegraph's ``ExecutableNodeDTO``) turns
the canvas into the prompt the Queue button sends; this module re-does that on the saved file, against the
server's ``/object_info``. tests/test_conversion.py holds it equal to the frontends' own prompts.
"""
from .errors import RunError

PACK_NODES = {"HyperSDLoraLoader", "HyperSDTCDSampler", "HyperSDScheduler", "HyperSDUNetLoader",
              "HyperSDXL1StepUnetScheduler", "TCDModelSamplingDiscrete"}  # the last two: stand-ins, see README
PACK_NAME = "Hyper-SD (ComfyUI-Manager / Comfy Registry id 'hyper-sd')"


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

