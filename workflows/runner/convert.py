"""UI-format workflow -> API-format prompt: a port of the frontend's ``app.graphToPrompt()``.

The frontend (ComfyUI_frontend) turns the canvas into the prompt the Queue button sends; this module re-does
that on the saved file, against the server's ``/object_info``, in the frontend's own steps:

- loading the file: ``LGraph.configure`` (subgraph definitions first, their node ids made unique across the
  workflow by ``deduplicateSubgraphNodeIds``), each node's widgets as the node definition makes them
  (``addInputs``, ``migrateWidgetsValues``, DynamicCombo and the core extensions' widgets) taking the saved
  ``widgets_values`` in order (``LGraphNode.configure``), ``SubgraphNode.configure`` (an instance's inputs,
  laid onto its definition's by name by ``ComfyNode.configure``, the widgets it promotes, and the values the
  instance holds for them: its ``widgets_values``), the migration of the older ``properties.proxyWidgets``
  lists (``flushProxyWidgetMigration``), and ``app.loadGraphData``'s widget fixes;
- ``graphToPrompt`` (src/utils/executionUtil.ts): every PrimitiveNode's ``applyToGraph``, then one
  ``ExecutableNodeDTO`` per node, the contents of each active subgraph instance included
  (``SubgraphNode.getInnerNodes``), and each node's widgets and inputs, an input resolved upstream by
  ``ExecutableNodeDTO.resolveInput`` / ``resolveOutput`` through Reroute nodes, bypassed nodes, subgraph
  boundaries and promoted widgets.

Where the frontends differ (tests/test_conversion.py holds the port equal to frontends 1.27.10, 1.48.7 and
1.58.1), ``convert()`` follows the version the server serves (``served_frontend_version(/system_stats)``).
``load_workflow()`` reads a workflow file and ``check_workflow()`` its structure, each failure one line.
"""
import json
import re
from pathlib import Path

from .errors import RunError

PACK_NODES = {"HyperSDLoraLoader", "HyperSDTCDSampler", "HyperSDScheduler", "HyperSDUNetLoader",
              "HyperSDXL1StepUnetScheduler", "TCDModelSamplingDiscrete"}  # the last two: stand-ins, see README
PACK_NAME = "Hyper-SD (ComfyUI-Manager / Comfy Registry id 'hyper-sd')"
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

#: The frontend's virtual nodes (isVirtualNode): never in the prompt; SubgraphNode instances are virtual too.
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
#: Input types the frontend makes a widget for (ComfyWidgets, and the core extensions' custom widgets); an
#: input spec's widgetType option names the widget of a multi-type input ("FLOAT,INT").
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", "MARKDOWN", "COLOR", "IMAGECOMPARE", "BOUNDING_BOX",
                "PREVIEW_3D",
                "CHART", "GALLERIA", "PAINTER", "COMPOSITOR", "TEXTAREA", "CURVE", "RANGE", "BOUNDING_BOXES", "COLORS",
                "VIDEO_EDIT", "RESOLUTION_PREVIEW", "LIGHT_INFO_PREVIEW", "AUDIO_UI", "AUDIOUPLOAD", "AUDIO_RECORD",
                "LOAD_3D", "LOAD_3D_ADVANCED", "PREVIEW_3D", "WEBCAM"}
UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload")
MUTED, BYPASSED = 2, 4  # LGraphEventMode.NEVER, LGraphEventMode.BYPASS
SUBGRAPH_INPUT, SUBGRAPH_OUTPUT = "-10", "-20"  # the ids of a subgraph's input and output nodes
#: Frontend versions where behaviour changed (verified against 1.27.10, 1.48.7 and 1.58.1; the first
#: version of each is the release line of the change in ComfyUI_frontend's history).
MUTED_INSTANCES_LEFT_OUT = (1, 39, 3)  # a muted/bypassed instance's contents no longer run (PR #8494)
DEDUPLICATED_NODE_IDS = (1, 40, 0)  # deduplicateSubgraphNodeIds on load (PR #9510, core/1.40)
MULTILINE_TEXT = (1, 58, 0)  # a multiline text widget sends its text box's string (1.48.7: the value as saved)
NEWEST = (99, 0, 0)
_UNSET = object()


# -- the workflow file ----------------------------------------------------------------------------------------

def load_workflow(path):
    """The UI-format workflow (a dict) in file `path`; RunError with one line saying what is wrong."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise RunError(f"workflow file {path} not found") from None
    except IsADirectoryError:
        raise RunError(f"{path} is a folder, not a workflow file") from None
    except UnicodeDecodeError:
        raise RunError(f"{path} is not a text file: pass a workflow .json saved by ComfyUI") from None
    except OSError as e:
        raise RunError(f"cannot read workflow file {path}: {e.strerror or e}") from None
    try:
        workflow = json.loads(text)
    except json.JSONDecodeError as e:
        raise RunError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}): pass a workflow "
                       f".json saved by ComfyUI") from None
    except RecursionError:
        raise RunError(f"{path} nests its JSON too deeply to be a workflow") from None
    if is_api_prompt(workflow):
        raise RunError(f"{path} is an API-format prompt (Export (API)), not a workflow: pass the workflow as "
                       f"saved by ComfyUI's Save or Export")
    if not isinstance(workflow, dict) or "nodes" not in workflow:
        kind = "an object without 'nodes'" if isinstance(workflow, dict) else f"a JSON {json_kind(workflow)}"
        raise RunError(f"{path} is not a ComfyUI workflow (it holds {kind}): pass a workflow .json saved by "
                       f"ComfyUI's Save or Export")
    return workflow


def json_kind(value):
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def is_api_prompt(data):
    """An API-format prompt: {node id: {"class_type": ..., "inputs": {...}}}."""
    return isinstance(data, dict) and "nodes" not in data and bool(data) and all(
        isinstance(v, dict) and "class_type" in v for v in data.values())


def damaged(where, what):
    return RunError(f"the workflow is damaged: {where} {what}; open it in ComfyUI and save it again")


def is_id(value):
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and value != "")


def is_slot(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= -1


def check_workflow(workflow):
    """The structure convert() reads, or RunError naming the first thing that is wrong and where."""
    if is_api_prompt(workflow):
        raise RunError("this is an API-format prompt (Export (API)), not a workflow: pass the workflow as saved "
                       "by ComfyUI's Save or Export")
    if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
        raise RunError("not a UI-format workflow (no 'nodes' list): pass a workflow saved by ComfyUI's Save/Export")
    definitions = definitions_of(workflow)
    if not isinstance(definitions.get("subgraphs") or [], list):
        raise damaged("its 'definitions'", "hold 'subgraphs' that are not a list")
    check_graph(workflow, "the workflow")
    for i, sg in enumerate(definitions.get("subgraphs") or []):
        if not isinstance(sg, dict) or not is_id(sg.get("id")) or not isinstance(sg.get("nodes", []), list):
            raise damaged(f"subgraph definition {i}", "has no 'id' or no 'nodes' list")
        check_graph(sg, f"subgraph '{sg.get('name') or sg['id']}'")
        for side in ("inputs", "outputs"):
            slots = sg.get(side, [])
            if not isinstance(slots, list) or not all(
                    isinstance(s, dict) and isinstance(s.get("linkIds", []), list) and isinstance(s.get("name"), str)
                    for s in slots):
                raise damaged(f"subgraph '{sg.get('name') or sg['id']}'", f"has malformed {side}")
    models = workflow.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, dict) and isinstance(m.get("name"), str)
                                               for m in models):
        raise damaged("its 'models' list", "is not a list of {name, url, directory} entries")


def definitions_of(workflow):
    """workflow.definitions as the frontend reads it (definitions?.subgraphs: anything else is none)."""
    definitions = workflow.get("definitions")
    return definitions if isinstance(definitions, dict) else {}


def check_graph(graph, where):
    ids = set()
    for i, node in enumerate(graph.get("nodes", [])):
        check_node(node, node_label(node, i, where))
        if str(node["id"]) in ids:
            raise damaged(where, f"holds two nodes with id {node['id']}")
        ids.add(str(node["id"]))
    links = graph.get("links", [])
    if links is not None and not isinstance(links, list):
        raise damaged(where, "has a 'links' entry that is not a list")
    for link in links or []:
        if not (link is None or parse_link(link)):
            raise damaged(where, f"has a malformed link {json.dumps(link)[:80]}")


def node_label(node, index, where):
    if not isinstance(node, dict) or not is_id(node.get("id")):
        kind = f" ({node['type']})" if isinstance(node, dict) and isinstance(node.get("type"), str) else ""
        return f"{where}'s node #{index}{kind}"
    return f"node {node['id']}" + ("" if where == "the workflow" else f" of {where}")


def check_node(node, where):
    if not isinstance(node, dict) or not is_id(node.get("id")):
        raise damaged(where, "has no id")
    if not isinstance(node.get("type"), str) or not node["type"]:
        raise damaged(where, "has no type")
    for key, kind in (("inputs", list), ("outputs", list), ("properties", dict)):
        if node.get(key) is not None and not isinstance(node[key], kind):
            raise damaged(where, f"has '{key}' that is not a {'list' if kind is list else 'mapping'}")
    for slot in node.get("inputs") or []:
        if not isinstance(slot, dict) or not isinstance(slot.get("name"), str) or not (
                slot.get("link") is None or is_id(slot["link"])) or not isinstance(slot.get("widget") or {}, dict) \
                or not isinstance((slot.get("widget") or {}).get("name", ""), str):
            raise damaged(where, "has a malformed input")
    for slot in node.get("outputs") or []:
        if not isinstance(slot, dict) or not isinstance(slot.get("links") or [], list):
            raise damaged(where, "has a malformed output")
    if not isinstance(node.get("widgets_values"), (list, dict, type(None))):
        raise damaged(where, "has 'widgets_values' that is neither a list nor a mapping")
    if not isinstance(node.get("mode", 0), int) or isinstance(node.get("mode", 0), bool):
        raise damaged(where, "has a 'mode' that is not a number")


def parse_link(link):
    """(id, origin id, origin slot, target id, target slot, type) of a link in either schema, or None."""
    if isinstance(link, dict):
        fields = [link.get(k) for k in ("id", "origin_id", "origin_slot", "target_id", "target_slot")]
        fields.append(link.get("type"))
    elif isinstance(link, list) and len(link) >= 5:
        fields = list(link[:5]) + [link[5] if len(link) > 5 else None]
    else:
        return None
    if not (is_id(fields[0]) and is_id(fields[1]) and is_slot(fields[2]) and is_id(fields[3])
            and is_slot(fields[4])):
        return None
    return str(fields[0]), str(fields[1]), fields[2], str(fields[3]), fields[4], fields[5]


# -- widgets as the frontend creates them from /object_info --------------------------------------------------

def spec_options(spec):
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def widget_type(spec):
    return spec_options(spec).get("widgetType") or spec[0]


def is_widget(spec):
    kind = widget_type(spec)
    return (isinstance(kind, list) or kind in WIDGET_TYPES) and not spec_options(spec).get("forceInput")


#: Inputs that core frontend extensions add to a node type (beforeRegisterNodeDef), after its required ones.
EXTENSION_INPUTS = {"SaveGLB": {"image": ["PREVIEW_3D", {}]},  # Comfy.SaveGLB's 3D preview
                    "Preview3D": {"image": ["PREVIEW_3D", {}]}}  # Comfy.Preview3D's
#: Widgets the workflow file does not keep (widget.serialize false), with the value they start with.
UNSAVED_WIDGETS = {"IMAGECOMPARE": ["", ""]}


def control_widgets(name, spec):
    """How many frontend-only widgets follow this one: control_after_generate (INT: seed/noise_seed by
    default), and for a combo also its filter list."""
    options, kind = spec_options(spec), widget_type(spec)
    if isinstance(kind, list) or kind == "COMBO":
        return 2 if options.get("control_after_generate") else 0
    if kind == "INT":
        control = options.get("control_after_generate")
        return 1 if (control if control is not None else name in ("seed", "noise_seed")) else 0
    return 0


def combo_choices(spec):
    kind = spec[0]
    if kind == "COMFY_DYNAMICCOMBO_V3":
        return [o.get("key") for o in spec_options(spec).get("options") or [] if isinstance(o, dict)]
    return kind if isinstance(kind, list) else spec_options(spec).get("options") if kind == "COMBO" else None


def widget_default(spec):
    """The value a widget starts with when the file holds none for it."""
    options = spec_options(spec)
    if "default" in options:
        return options["default"]
    choices = combo_choices(spec)
    if choices is not None:
        return choices[0] if choices else None
    return {"INT": options.get("min", 0), "FLOAT": options.get("min", 0), "STRING": "",
            "BOOLEAN": False}.get(widget_type(spec))


class SavedValues:
    """LGraphNode.configure's walk over widgets_values: the widgets in order, each taking the next value
    (a dict of values by name: each its own), the frontend-only ones skipping theirs."""

    def __init__(self, saved):
        self.named = saved if isinstance(saved, dict) else None
        self.saved = list(saved) if isinstance(saved, list) else []
        self.index = 0

    def take(self, name, default):
        if self.named is not None:
            return self.named.get(name, default)
        value = self.saved[self.index] if self.index < len(self.saved) else default
        self.index += 1
        return value

    def skip(self, count=1):
        self.index += count


def add_widgets(values, specs, saved, prefix=""):
    """The widgets the frontend makes for `specs` ({input name: spec}) in order, into `values` {name: value}:
    each widget's control widgets (control_after_generate, control_filter_list) and a remote combo's
    auto-refresh toggle are skipped, its refresh button is sent as "refresh"; a DynamicCombo
    (COMFY_DYNAMICCOMBO_V3) is a combo of its option keys followed by the widgets of the chosen option,
    named '<combo>.<input>' (dynamicWidgets.ts)."""
    for name, spec in specs.items():
        if not isinstance(spec, (list, tuple)) or not spec:
            continue
        full = prefix + name
        if spec[0] == "COMFY_DYNAMICCOMBO_V3":
            options = [o for o in spec_options(spec).get("options") or [] if isinstance(o, dict)]
            keys = [o.get("key") for o in options]
            chosen = saved.take(full, keys[0] if keys else None)
            values[full] = chosen
            inputs = next((o.get("inputs") or {} for o in options if o.get("key") == chosen), {})
            for section in ("required", "optional"):
                add_widgets(values, inputs.get(section) or {}, saved, full + ".")
            continue
        if not is_widget(spec):
            continue
        kind = widget_type(spec) if isinstance(widget_type(spec), str) else "COMBO"
        if kind in UNSAVED_WIDGETS:
            values[full] = list(UNSAVED_WIDGETS[kind])
            continue
        values[full] = saved.take(full, widget_default(spec))
        if kind == "STRING" and spec_options(spec).get("multiline"):
            values.multiline.add(full)
        saved.skip(control_widgets(full, spec))
        if kind == "BOUNDING_BOX":
            saved.skip(4)  # its x, y, width and height number widgets: kept in the file, not sent
        remote = spec_options(spec).get("remote")
        if isinstance(remote, dict):
            saved.skip()  # "Auto-refresh after generation"
            if remote.get("refresh_button"):
                values["refresh"] = saved.take("refresh", "refresh")


def migrate_widgets_values(node_info, saved):
    """migrateWidgetsValues (ComfyNode.configure): a file that still holds values for the inputs that are
    sockets only (forceInput) has them dropped, when its count says so."""
    if not isinstance(saved, list):
        return saved
    slots = []
    for section in ("required", "optional"):
        for name, spec in ((node_info.get("input") or {}).get(section) or {}).items():
            if not isinstance(spec, (list, tuple)) or not spec:
                continue
            forced = bool(spec_options(spec).get("forceInput"))
            if forced or is_widget(spec):
                slots += [forced, False] if spec_options(spec).get("control_after_generate") else [forced]
    if len(slots) != len(saved) or not any(slots):
        return saved
    return [value for value, forced in zip(saved, slots) if not forced]


def custom_combo_values(saved, values):
    """Comfy.CustomWidgets' CustomCombo: its choice, a hidden 'index' (the choice's place among the options),
    then option1, option2, ... each non-empty one followed by another (the last one empty)."""
    values["choice"] = saved.take("choice", "")
    saved.skip()  # the index is computed
    options, value = [], saved.take("option1", "")
    while True:
        options.append(value)
        if not value:
            break
        value = saved.take(f"option{len(options) + 1}", "")
    values["index"] = next((i for i, o in enumerate(options) if o == values["choice"]), -1)
    values.update((f"option{i + 1}", o) for i, o in enumerate(options))
    return values


class WidgetValues(dict):
    """{widget name: value}; `hidden`: the widgets graphToPrompt leaves out (options.serialize false)."""

    def __init__(self):
        super().__init__()
        self.hidden, self.multiline = set(), set()

    def sent(self):
        return {k: v for k, v in self.items() if k not in self.hidden}


def widget_values(node, node_info):
    """The node's widgets (WidgetValues) from its saved widgets_values (a list in widget order, or a dict by
    name), the widget's start value where the file holds none; the upload button the frontend appends to
    the required inputs of a node with a media combo (Comfy.UploadImage: a button 'upload' holding
    'image', not sent); app.loadGraphData's fixes applied (a combo holding null takes its first choice,
    KSampler's old 'sample_' sampler names)."""
    saved, values = SavedValues(migrate_widgets_values(node_info, node.get("widgets_values"))), WidgetValues()
    if node.get("type") == "CustomCombo":
        return custom_combo_values(saved, values)
    for section in ("required", "optional"):
        specs = dict((node_info.get("input") or {}).get(section) or {})
        if section == "required":
            specs.update(EXTENSION_INPUTS.get(node.get("type"), {}))
        add_widgets(values, specs, saved)
        if section == "required" and any(spec_options(s).get(k) is True and combo_choices(s) is not None
                                         for s in specs.values() if isinstance(s, (list, tuple)) and s
                                         for k in UPLOAD_OPTIONS):
            values["upload"] = saved.take("upload", "image")
            values.hidden.add("upload")
    for section in ("required", "optional"):
        for name, spec in ((node_info.get("input") or {}).get(section) or {}).items():
            choices = combo_choices(spec) if isinstance(spec, (list, tuple)) and spec else None
            if choices and name in values and values[name] is None:
                values[name] = choices[0]
    if node.get("type") in ("KSampler", "KSamplerAdvanced"):
        name = values.get("sampler_name")
        if isinstance(name, str) and name.startswith("sample_"):
            values["sampler_name"] = name[7:]
    return values


def is_valid_connection(a, b):
    """LiteGraph.isValidConnection: '*' or '' matches anything; comma lists match on any shared type."""
    if a in ("", "*", 0, None) or b in ("", "*", 0, None) or a == b:
        return True
    a, b = str(a).lower(), str(b).lower()
    return bool(set(a.split(",")) & set(b.split(",")))


def js_str(value):
    return "undefined" if value is None else str(value)


def js_string(value):
    """What a text box holds after `textarea.value = value` (JavaScript's String(); null: empty)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, list):
        return ",".join(js_string(v) for v in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def version_tuple(version):
    """(major, minor, patch) of a frontend version string, NEWEST where it is unknown."""
    match = re.match(r"v?(\d+)\.(\d+)\.(\d+)", str(version or ""))
    return tuple(int(x) for x in match.groups()) if match else NEWEST


def served_frontend_version(system_stats):
    """The frontend version a server serves, from its /system_stats: the version named by --front-end-version
    or found in the --front-end-root path, else the installed comfyui-frontend-package (or the one the
    server requires); None where nothing says (convert() then follows the newest frontend)."""
    system = (system_stats or {}).get("system") or {}
    argv = [str(a) for a in system.get("argv") or []]
    for i, arg in enumerate(argv):
        name, _, value = arg.partition("=")
        if name in ("--front-end-version", "--front-end-root"):
            value = value or (argv[i + 1] if i + 1 < len(argv) else "")
            found = re.findall(r"(?<![\d.])v?(\d+\.\d+\.\d+)(?![\d.])", value)
            return found[-1] if found else None
    for package in system.get("comfy_package_versions") or []:
        if isinstance(package, dict) and package.get("name") == "comfyui-frontend-package":
            return package.get("installed") or package.get("required")
    return system.get("required_frontend_version")


# -- the graph as LGraph.configure holds it -------------------------------------------------------------------

class Graph:
    """One graph of a saved workflow, the root or a subgraph definition: nodes and links by string id."""

    def __init__(self, data, gid=None):
        self.id, self.name = gid, data.get("name") or gid
        self.nodes = {}
        for node in data.get("nodes", []):
            self.nodes.setdefault(str(node["id"]), node)
        self.links = {}
        for link in data.get("links") or []:
            parsed = parse_link(link) if link is not None else None
            if parsed:
                self.links.setdefault(parsed[0], parsed)
        self.inputs = [dict(s) for s in data.get("inputs", [])]
        self.outputs = data.get("outputs", [])

    def where(self, node_id=None):
        inside = "" if self.id is None else f" in subgraph '{self.name}'"
        return f"node {node_id}{inside}" if node_id is not None else (inside.strip() or "the workflow")

    def link(self, link_id, where):
        try:
            return self.links[str(link_id)]
        except KeyError:
            raise damaged(where, f"refers to link {link_id}, which the workflow does not hold") from None


def last_node_id(workflow):
    """The graph state's lastNodeId as LGraph.configure reads it (state.lastNodeId, or last_node_id)."""
    state = workflow.get("state") if isinstance(workflow.get("state"), dict) else {}
    value = state.get("lastNodeId", workflow.get("last_node_id"))
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def deduplicate_node_ids(root_nodes, definitions, last):
    """deduplicateSubgraphNodeIds: a definition's node whose id another node of the workflow already has (a
    root node, an earlier definition's) gets the next free id after the graph's lastNodeId; its links and
    the proxyWidgets lists naming it follow. `definitions` are copies this may change."""
    ids = IdState({str(n["id"]) for n in root_nodes}, last)
    renamed = {}
    for sg in definitions:
        mapping = {}
        for node in sg.get("nodes", []):
            new = ids.claim(str(node["id"]))
            if new is not None:
                mapping[str(node["id"])] = node["id"] = new
        if mapping:
            renamed[sg["id"]] = mapping
            sg["links"] = [remap_link(link, mapping) for link in sg.get("links") or []]
    for node in list(root_nodes) + [n for sg in definitions for n in sg.get("nodes", [])]:
        mapping = renamed.get(node.get("type"))
        proxies = (node.get("properties") or {}).get("proxyWidgets")
        for entry in proxies if mapping and isinstance(proxies, list) else []:
            if isinstance(entry, list) and entry and str(entry[0]) in mapping:
                entry[0] = str(mapping[str(entry[0])])


class IdState:
    """The node ids in use and the graph state's lastNodeId, as remapNodeIds keeps them."""

    def __init__(self, keys, last):
        self.keys, self.last = set(keys), last
        self.numbers = {int(k) for k in keys if re.fullmatch(r"-?\d+", k)}

    def claim(self, key):
        """None if `key` is free (it is now taken), else the next free id it becomes (findNextAvailableId)."""
        if key not in self.keys:
            self.keys.add(key)
            if re.fullmatch(r"-?\d+", key):
                self.numbers.add(int(key))
                self.last = max(self.last, int(key))
            return None
        self.last += 1
        while self.last in self.numbers:
            self.last += 1
        self.numbers.add(self.last)
        self.keys.add(str(self.last))
        return self.last


def remap_link(link, mapping):
    parsed = parse_link(link) if link is not None else None
    if not parsed:
        return link
    lid, origin, oslot, target, tslot, kind = parsed
    return [lid, mapping.get(origin, origin), oslot, mapping.get(target, target), tslot, kind]


def topological(definitions):
    """topologicalSortSubgraphs: definitions used inside others come first."""
    ids = {sg["id"] for sg in definitions}
    placed, order, pending = set(), [], list(definitions)
    while pending:
        ready = [sg for sg in pending if all(n.get("type") not in ids or n["type"] in placed or n["type"] == sg["id"]
                                             for n in sg.get("nodes", []))]
        if not ready:
            return definitions
        for sg in ready:
            placed.add(sg["id"])
            order.append(sg)
            pending.remove(sg)
    return order


def copy_json(data):
    return json.loads(json.dumps(data))


# -- subgraph instances as SubgraphNode.configure makes them --------------------------------------------------

class InstanceInput:
    """One input of a subgraph instance: the definition's input it stands for, its outer link, and the
    promoted widget's value the instance holds (has_widget: the input carries a widget)."""

    def __init__(self, saved, slot):
        self.name, self.type = saved.get("name"), saved.get("type")
        self.link = saved.get("link")
        self.slot = slot
        self.has_widget, self.value = False, None


def instance_inputs(saved, slots):
    """The inputs of a subgraph instance after configure: ComfyNode.configure lays the saved inputs onto the
    definition's inputs by name (extra saved inputs after them), SubgraphNode.configure binds each to the
    definition input of its name and type, else its name (_rebindInputSubgraphSlots), and drops the ones
    bound to none; so one input per definition input, in the definition's order."""
    by_name = {inp.get("name"): inp for inp in saved}
    laid = [dict(by_name.get(s.get("name")) or {}, name=s.get("name"), type=s.get("type")) for s in slots]
    laid += [inp for inp in saved if inp.get("name") not in {s.get("name") for s in slots}]
    taken, bound = set(), []
    for inp in laid:
        slot = free_slot(slots, taken, lambda s: f"{s.get('name')}:{js_str(s.get('type'))}",
                         f"{inp.get('name')}:{js_str(inp.get('type'))}")
        slot = slot if slot is not None else free_slot(slots, taken, lambda s: s.get("name"), inp.get("name"))
        if slot is not None:
            taken.add(slot)
            bound.append(InstanceInput(inp, slot))
    return bound


def free_slot(slots, taken, key, wanted):
    return next((i for i, s in enumerate(slots) if i not in taken and key(s) == wanted), None)


class Converter:
    """The frontend's work on one workflow: load it (LGraph.configure), then graphToPrompt."""

    def __init__(self, workflow, object_info, frontend_version=None):
        self.object_info = object_info
        self.version = version_tuple(frontend_version)
        definitions = copy_json(definitions_of(workflow).get("subgraphs") or [])
        root_nodes = workflow["nodes"]
        if self.version >= DEDUPLICATED_NODE_IDS:
            root_nodes = copy_json(root_nodes)
            deduplicate_node_ids(root_nodes, definitions, last_node_id(workflow))
        self.definitions = {}
        for sg in definitions:
            self.definitions.setdefault(sg["id"], sg)
        self.graphs = {sg_id: Graph(sg, sg_id) for sg_id, sg in self.definitions.items()}
        self.root = Graph(dict(workflow, nodes=root_nodes))
        self.instances = {}  # (graph id, node id) -> [InstanceInput]
        self.overrides = {}  # (graph id, node id, widget name) -> value set by a PrimitiveNode
        self.widget_cache = {}
        self.primitive_inputs = {}  # (definition id, PrimitiveNode id) -> input made by repairPrimitive
        self.configure_instances()

    # -- LGraph.configure ----------------------------------------------------------------------------------
    def graph_of(self, gid):
        return self.root if gid is None else self.graphs[gid]

    def is_instance(self, node):
        return node["type"] in self.graphs

    def configure_instances(self):
        """Every subgraph instance configured, graph by graph as LGraph.configure does (definitions in
        topological order, then the root), each graph's proxyWidgets lists migrated after its nodes."""
        order = [self.graphs[sg["id"]] for sg in topological(list(self.definitions.values()))] + [self.root]
        for graph in order:
            hosts = [node for node in graph.nodes.values() if self.is_instance(node)]
            for node in hosts:
                self.configure_instance(graph, node)
            for node in hosts:
                ProxyMigration(self, graph, node).flush()

    def configure_instance(self, graph, node):
        """SubgraphNode.configure: the instance's inputs, the widget each promotes (_resolveInputWidget: the
        first widget its definition input feeds) and the values the instance holds
        (_applyPromotedWidgetValues: widgets_values in order, a quarantined value by name first)."""
        definition = self.graphs[node["type"]]
        inputs = instance_inputs(list(node.get("inputs") or []), definition.inputs)
        self.instances[(graph.id, str(node["id"]))] = inputs  # a subgraph holding itself finds it unfinished
        for inp in inputs:
            found = self.promoted_source(definition, definition.inputs[inp.slot])
            if found is not None:
                inp.has_widget, inp.value = True, found[2]
        saved = node.get("widgets_values")
        saved = saved if isinstance(saved, list) else []
        quarantined = quarantine_values(node)
        index = 0
        for inp in inputs:
            if not inp.has_widget:
                continue
            value = quarantined.get(inp.name)  # JavaScript's `quarantined ?? saved[index]`
            if value is None:
                value = saved[index] if index < len(saved) else _UNSET
            if value is not _UNSET:
                inp.value = value
            index += 1
        self.instances[(graph.id, str(node["id"]))] = inputs

    def promoted_source(self, definition, slot):
        """(inner node, widget name, value) of the first widget a definition input feeds, or None."""
        for link_id in slot.get("linkIds", []):
            link = definition.links.get(str(link_id))
            target = definition.nodes.get(link[3]) if link else None
            if target is None:
                continue
            inp = target_input(target, link)
            if inp is None:
                continue
            found = self.widget_from_slot(definition, target, inp)
            if found is not None:
                return (target, found[0], found[1])
        return None

    def widget_from_slot(self, graph, node, inp):
        """LGraphNode.getWidgetFromSlot: (widget name, value) of the widget behind input `inp` of `node`;
        for a subgraph instance, its promoted widget (or the one it promotes further down)."""
        if self.is_instance(node):
            key = (graph.id, str(node["id"]))
            if key not in self.instances:
                self.configure_instance(graph, node)
            own = next((i for i in self.instances[key] if i.link is not None and str(i.link) == str(inp.get("link"))),
                       None)
            if own is not None and own.has_widget:
                return (own.name, own.value)
            return None
        name = (inp.get("widget") or {}).get("name")
        values = self.saved_widgets(graph, node)
        return (name, values[name]) if name in values else None

    def saved_widgets(self, graph, node):
        key = (graph.id, str(node["id"]))
        if key not in self.widget_cache:
            info = self.object_info.get(node["type"])
            self.widget_cache[key] = widget_values(node, info) if info is not None else WidgetValues()
        return self.widget_cache[key]

    def instance_state(self, graph, node):
        key = (graph.id, str(node["id"]))
        if key not in self.instances:
            self.configure_instance(graph, node)
        return self.instances[key]

    def add_definition_input(self, definition, name, kind, targets, value):
        """Subgraph.addInput + SubgraphInput.connect: a new definition input (a unique name) linked to each
        (inner node, input slot), each configured instance given the input ('input-added') holding
        `value`; {(graph id, node id): the instance's new input}."""
        taken = {s.get("name") for s in definition.inputs}
        unique, n = name, 1
        while unique in taken:
            unique, n = f"{name}_{n}", n + 1
        index = len(definition.inputs)
        link_ids = []
        for node, slot in targets:
            old = node["inputs"][slot].get("link")
            for other in definition.inputs:
                other["linkIds"] = [x for x in other.get("linkIds", []) if old is None or str(x) != str(old)]
            link_id = f"proxy-{definition.id}-{index}-{len(link_ids)}"
            definition.links[link_id] = (link_id, SUBGRAPH_INPUT, index, str(node["id"]), slot, kind)
            node["inputs"][slot]["link"] = link_id
            link_ids.append(link_id)
        definition.inputs.append({"name": unique, "type": kind, "linkIds": link_ids})
        added = {}
        for (gid, node_id), inputs in self.instances.items():
            owner = self.graph_of(gid).nodes.get(node_id)
            if owner is not None and owner["type"] == definition.id:
                new = InstanceInput({"name": unique, "type": kind}, index)
                new.has_widget, new.value = True, value
                inputs.append(new)
                added[(gid, node_id)] = new
        return added

    # -- graphToPrompt ---------------------------------------------------------------------------------------
    def convert(self):
        scopes = self.active_scopes()
        self.check_types(scopes)
        self.apply_primitives()
        prompt = {}
        for scope in scopes:
            for node in scope.graph.nodes.values():
                if node["type"] in FRONTEND_ONLY or self.is_instance(node) or node.get("mode", 0) in (MUTED, BYPASSED):
                    continue
                prompt[scope.exec_id(node["id"])] = self.node_prompt(scope, node)
        for entry in prompt.values():  # inputs linked to left-out nodes go, as the frontend drops them
            for name, value in list(entry["inputs"].items()):
                if isinstance(value, list) and len(value) == 2 and value[0] not in prompt:
                    del entry["inputs"][name]
        check_cycles(prompt)
        return prompt

    def active_scopes(self):
        """The root and the inner graph of every instance whose contents run: SubgraphNode.getInnerNodes of
        each root node (since 1.39.3 not of a muted or bypassed one; nested instances always)."""
        scopes, pending = [], [Scope(self.root)]
        while pending:
            scope = pending.pop(0)
            scopes.append(scope)
            for node in scope.graph.nodes.values():
                if not self.is_instance(node):
                    continue
                if (not scope.path and node.get("mode", 0) in (MUTED, BYPASSED)
                        and self.version >= MUTED_INSTANCES_LEFT_OUT):
                    continue
                if len(scope.path) >= 32 or node["type"] in scope.definitions():
                    raise RunError(f"the workflow's subgraphs contain themselves at {scope.graph.where(node['id'])}")
                pending.append(scope.inner(self.graphs[node["type"]], node))
        return scopes

    def check_types(self, scopes):
        missing = {}
        for scope in scopes:
            for node in scope.graph.nodes.values():
                if node["type"] in FRONTEND_ONLY or self.is_instance(node) or node.get("mode", 0) in (MUTED, BYPASSED):
                    continue
                if node["type"] not in self.object_info:
                    missing.setdefault(node["type"], []).append(scope.exec_id(node["id"]))
        if missing:
            raise RunError(missing_nodes_message(missing))

    def apply_primitives(self):
        """PrimitiveNode.applyToGraph (graphToPrompt runs it first): the primitive's value goes into the
        widget of every input it links to directly (a subgraph instance: the value the instance holds)."""
        for graph in [self.root, *self.graphs.values()]:
            for node in graph.nodes.values():
                if node["type"] != "PrimitiveNode" or not node.get("widgets_values"):
                    continue
                values = node["widgets_values"]
                value = values[0] if isinstance(values, list) else next(iter(values.values()), None)
                for out in (node.get("outputs") or [])[:1]:
                    for link_id in out.get("links") or []:
                        self.apply_primitive(graph, graph.links.get(str(link_id)), value)

    def apply_primitive(self, graph, link, value):
        target = graph.nodes.get(link[3]) if link else None
        inputs = (target.get("inputs") or []) if target else []
        if target is None or link[4] >= len(inputs) or not (inputs[link[4]].get("widget") or {}).get("name"):
            return
        name = inputs[link[4]]["widget"]["name"]
        if self.is_instance(target):
            for inp in self.instance_state(graph, target):
                if inp.has_widget and inp.name == name:
                    inp.value = value
        elif name in self.saved_widgets(graph, target):
            self.overrides[(graph.id, str(target["id"]), name)] = value

    def widgets(self, scope, node):
        """The node's widgets as graphToPrompt sends them: the saved values, a PrimitiveNode's where one
        applies; a multiline text widget's value read back from its text box (since 1.58: a string)."""
        saved = self.saved_widgets(scope.graph, node)
        values = saved.sent()
        for name in values:
            key = (scope.graph.id, str(node["id"]), name)
            if key in self.overrides:
                values[name] = self.overrides[key]
            if name in saved.multiline and self.version >= MULTILINE_TEXT and not isinstance(values[name], str):
                values[name] = js_string(values[name])
        return values

    def node_prompt(self, scope, node):
        """One node of the prompt: its widgets by name, then each input resolved (a link or a value)."""
        inputs = {name: wrap(v) for name, v in self.widgets(scope, node).items()}
        for slot, inp in enumerate(node.get("inputs") or []):
            resolved = Resolver(self).input(scope, node, slot)
            if resolved is None:
                continue
            inputs[inp["name"]] = wrap(resolved[1]) if resolved[0] == "value" else [resolved[0], resolved[1]]
        return {"inputs": inputs, "class_type": node["type"], "_meta": {"title": node.get("title") or node["type"]}}


def wrap(value):
    """graphToPrompt wraps array values ({"__value__": [...]}) so the server does not read them as links."""
    return {"__value__": value} if isinstance(value, list) else value


def target_input(node, link):
    """The input a link enters: the one holding the link's id, else the link's target slot."""
    inputs = node.get("inputs") or []
    found = next((i for i in inputs if i.get("link") is not None and str(i["link"]) == link[0]), None)
    if found is None and 0 <= link[4] < len(inputs):
        found = inputs[link[4]]
    return found


def quarantine_values(node):
    """_readQuarantineHostValuesByName: values the proxyWidgets migration kept for the instance's inputs."""
    entries = (node.get("properties") or {}).get("proxyWidgetErrorQuarantine")
    values = {}
    for entry in reversed(entries if isinstance(entries, list) else []):
        original = entry.get("originalEntry") if isinstance(entry, dict) else None
        if isinstance(original, list) and len(original) >= 2 and original[0] == "-1" and \
                is_widget_value(entry.get("hostValue")):
            values[original[1]] = entry["hostValue"]
    return values


HOLE = object()  # pickHostValue: no value for this entry


def parse_proxy_widgets(value):
    """parseProxyWidgets: a list of [node id, widget name(, node id)] strings, else nothing at all."""
    ok = isinstance(value, list) and all(
        isinstance(e, list) and len(e) in (2, 3) and all(isinstance(x, str) for x in e) for e in value)
    return value if ok else []


def is_widget_value(value):
    return isinstance(value, (str, int, float, bool, dict, list))


class ProxyMigration:
    """flushProxyWidgetMigration: an instance's older ``properties.proxyWidgets`` list ([inner node id, widget
    name], the instance's widgets_values in the same order) made into promoted widgets after its graph is
    configured. Each entry is classified first, then applied: a widget already promoted takes the entry's
    value; any other widget gets a new definition input linked to it (createSubgraphInput, for every
    instance of the definition); a PrimitiveNode's targets are linked to one new input (repairPrimitive);
    an entry naming nothing ('-1' entries name the instance's own inputs) is quarantined, its value kept."""

    def __init__(self, converter, graph, node):
        self.c, self.graph, self.node = converter, graph, node
        self.definition = converter.graphs[node["type"]]
        self.inputs = converter.instance_state(graph, node)

    def flush(self):
        entries = parse_proxy_widgets((self.node.get("properties") or {}).get("proxyWidgets"))
        saved = self.node.get("widgets_values") if isinstance(self.node.get("widgets_values"), list) else []
        plans = []
        for index, entry in enumerate(entries):
            host = saved[index] if index < len(saved) and is_widget_value(saved[index]) else HOLE
            source_id, name = self.normalize(entry)
            plans.append((entry, host, source_id, name, self.classify(source_id, name, entries)))
        primitives = {}
        for entry, host, source_id, name, plan in plans:
            if plan == "linked":
                matches = [i for i in self.inputs if i.name == self.linked_input(source_id, name).name]
                if len(matches) == 1 and matches[0].has_widget and host is not HOLE:
                    matches[0].value = host
            elif plan == "create":
                self.create_input(source_id, name, host)
            elif plan == "primitive":
                primitives.setdefault(source_id, []).append(host)
            elif plan == "quarantine" and entry[0] == "-1" and host is not HOLE:
                for inp in self.inputs:
                    if inp.name == name and inp.has_widget:
                        inp.value = host
        for source_id, hosts in primitives.items():
            self.bypass_primitive(source_id, next((h for h in hosts if h is not HOLE), HOLE))

    def normalize(self, entry):
        """normalizeLegacyProxyWidgetEntry: a name the node lacks loses its legacy '<id>: ' prefixes."""
        source_id, name = entry[0], entry[1]
        if self.widget_of(self.definition.nodes.get(source_id), name) is None:
            while True:
                match = re.match(r"^\s*(\d+)\s*:\s*(.+)$", name)
                if not match:
                    break
                name = match.group(2)
        return source_id, name

    def classify(self, source_id, name, entries):
        if self.linked_input(source_id, name) is not None:
            return "linked"
        source = self.definition.nodes.get(source_id)
        if source is None:
            return "quarantine"
        if source["type"] == "PrimitiveNode":
            marker = self.c.primitive_inputs.get((self.definition.id, source_id))
            if marker is not None and any(i.name == marker for i in self.inputs):
                return "linked"
            duplicated = sum(1 for e in entries if e[0] == source_id) >= 2
            return "primitive" if self.primitive_targets(source) or duplicated else "quarantine"
        if self.widget_of(source, name) is None or name.startswith("$$"):
            return "quarantine"  # previews ($$ names) change nothing in the prompt
        return "create"

    def widget_of(self, node, name):
        if node is None:
            return None
        if self.c.is_instance(node):
            inner = self.c.instance_state(self.definition, node)
            return next((i for i in inner if i.has_widget and i.name == name), None)
        return name if name in self.c.saved_widgets(self.definition, node) else None

    def linked_input(self, source_id, name):
        """findHostInputForPromotion: the instance input already promoting that widget."""
        for inp in self.inputs:
            found = self.c.promoted_source(self.definition, self.definition.inputs[inp.slot])
            if found is not None and str(found[0]["id"]) == source_id and found[1] == name:
                return inp
        return None

    def primitive_targets(self, primitive):
        outs = primitive.get("outputs") or []
        links = [self.definition.links.get(str(i)) for i in (outs[0].get("links") or [])] if outs else []
        return [link for link in links if link and link[3] != SUBGRAPH_OUTPUT and link[3] in self.definition.nodes]

    def create_input(self, source_id, name, host):
        """repairCreateSubgraphInput: a definition input linked to the widget's input slot."""
        source = self.definition.nodes[source_id]
        slot = widget_slot(source, name)
        value = self.c.saved_widgets(self.definition, source).get(name) if not self.c.is_instance(source) else \
            self.widget_of(source, name).value
        added = self.c.add_definition_input(self.definition, name, source["inputs"][slot].get("type"),
                                            [(source, slot)], value)
        if host is not HOLE:
            added[(self.graph.id, str(self.node["id"]))].value = host

    def bypass_primitive(self, source_id, host):
        """repairPrimitive: the PrimitiveNode's targets linked to one new definition input instead."""
        primitive = self.definition.nodes[source_id]
        targets = [(self.definition.nodes[link[3]], link[4]) for link in self.primitive_targets(primitive)]
        if not targets:
            return
        title = primitive.get("title")
        name = title if title and title != "PrimitiveNode" else "value"
        kind = ((primitive.get("outputs") or [{}])[0]).get("type") or "*"
        own = primitive.get("widgets_values")
        own = own[0] if isinstance(own, list) and own else None
        first = targets[0]
        first_value = self.c.saved_widgets(self.definition, first[0]).get(
            ((first[0].get("inputs") or [])[first[1]].get("widget") or {}).get("name"))
        added = self.c.add_definition_input(self.definition, name, kind, targets, first_value)
        primitive.setdefault("outputs", [{}])[0]["links"] = []
        self.c.primitive_inputs[(self.definition.id, source_id)] = self.definition.inputs[-1]["name"]
        mine = added[(self.graph.id, str(self.node["id"]))]
        mine.value = host if host is not HOLE else own


def widget_slot(node, name):
    """getSlotFromWidget: the input behind widget `name`, added as the frontend's node has it if the file
    leaves it out."""
    inputs = node.setdefault("inputs", [])
    for i, inp in enumerate(inputs):
        if (inp.get("widget") or {}).get("name") == name:
            return i
    inputs.append({"name": name, "type": "*", "widget": {"name": name}, "link": None})
    return len(inputs) - 1


class Scope:
    """A graph as placed in the workflow: the root, or a definition under an instance's execution path."""

    def __init__(self, graph, path=(), parent=None, instance=None):
        self.graph, self.path, self.parent, self.instance = graph, tuple(path), parent, instance

    def exec_id(self, node_id):
        return ":".join((*self.path, str(node_id)))

    def inner(self, graph, node):
        return Scope(graph, (*self.path, str(node["id"])), self, node)

    def definitions(self):
        scope, ids = self, []
        while scope is not None:
            ids.append(scope.graph.id)
            scope = scope.parent
        return ids


class Resolver:
    """ExecutableNodeDTO.resolveInput / resolveOutput, as one loop: both only ever hand on to the next node
    upstream, so a chain of any length (a thousand Reroute nodes) needs no recursion. The result: (execution
    id, output slot) of the node that makes the value, ("value", v) for a promoted widget's value, or None."""

    def __init__(self, converter):
        self.c = converter
        self.visited = set()

    def visit(self, scope, node, kind, slot):
        key = (scope.graph.id, str(node["id"]), kind, slot)
        if key in self.visited:
            raise RunError(f"the workflow's links loop through {scope.graph.where(node['id'])} ({node['type']}): "
                           f"reconnect it in ComfyUI")
        self.visited.add(key)

    def input(self, scope, node, slot, want=None):
        state = ("input", scope, node, slot, want)
        while state[0] in ("input", "output"):
            state = self.input_step(*state[1:]) if state[0] == "input" else self.output_step(*state[1:])
        return state[1]

    def inputs_of(self, scope, node):
        if self.c.is_instance(node):
            return [{"name": i.name, "type": i.type, "link": i.link} for i in self.c.instance_state(scope.graph, node)]
        return node.get("inputs") or []

    def input_step(self, scope, node, slot, want):
        """resolveInput: follow the link into input `slot`: out of the subgraph through its instance, or to
        the output of the node it comes from."""
        self.visit(scope, node, "I", slot)
        inputs = self.inputs_of(scope, node)
        where = scope.graph.where(node["id"])
        if not 0 <= slot < len(inputs):
            raise damaged(where, f"({node['type']}) has no input {slot}")
        if inputs[slot].get("link") is None:
            return ("done", None)
        link = scope.graph.link(inputs[slot]["link"], f"{where} input '{inputs[slot].get('name')}'")
        if scope.instance is not None and link[1] == SUBGRAPH_INPUT:
            return self.leave_subgraph(scope, link[2])
        origin = scope.graph.nodes.get(link[1])
        if origin is None:
            raise damaged(f"{where} input '{inputs[slot].get('name')}'", f"is linked from node {link[1]}, which "
                          f"{scope.graph.where()} does not hold")
        return ("output", scope, origin, link[2], want if want is not None else inputs[slot].get("type"))

    def leave_subgraph(self, scope, index):
        """An input fed by the subgraph's input node: the instance's input `index`, linked outside, or the
        value the instance holds for its promoted widget."""
        parent, instance = scope.parent, scope.instance
        inputs = self.c.instance_state(parent.graph, instance)
        if not 0 <= index < len(inputs):
            raise damaged(parent.graph.where(instance["id"]), f"(subgraph '{scope.graph.name}') has no input {index}")
        inp = inputs[index]
        if inp.link is None:
            return ("done", ("value", inp.value) if inp.has_widget else None)
        parent.graph.link(inp.link, f"{parent.graph.where(instance['id'])} input '{inp.name}'")
        # the outer link's target slot, which fixLinkInputSlots set to the input holding it
        return ("input", parent, instance, index, None)

    def output_step(self, scope, node, slot, want):
        """resolveOutput: a muted node gives nothing, a bypassed one passes an input through, a subgraph
        instance hands over to the inner node behind its output, a Reroute to its input; any other node is
        the origin."""
        self.visit(scope, node, "O", slot)
        mode = node.get("mode", 0)
        if mode == MUTED and not (self.c.is_instance(node) and self.c.version < MUTED_INSTANCES_LEFT_OUT):
            return ("done", None)
        if mode == BYPASSED:
            index = bypass_index(self.inputs_of(scope, node), node.get("outputs") or [], slot, want)
            return ("done", None) if index < 0 else ("input", scope, node, index, None)
        if self.c.is_instance(node):
            return self.enter_subgraph(scope, node, slot, want)
        if node["type"] in FRONTEND_ONLY:
            inputs = node.get("inputs") or []
            if slot < len(inputs) and inputs[slot].get("link") is not None:
                return ("input", scope, node, slot, want)
            return ("done", None)
        return ("done", (scope.exec_id(node["id"]), slot))

    def enter_subgraph(self, scope, node, slot, want):
        inner = scope.inner(self.c.graphs[node["type"]], node)
        outputs = inner.graph.outputs
        if not 0 <= slot < len(outputs):
            raise damaged(scope.graph.where(node["id"]), f"(subgraph '{inner.graph.name}') has no output {slot}")
        links = [inner.graph.links[str(i)] for i in outputs[slot].get("linkIds") or [] if str(i) in inner.graph.links]
        if not links:  # SubgraphOutput.getLinks() skips the ids its subgraph does not hold
            return ("done", None)
        link = links[0]
        origin = inner.graph.nodes.get(link[1])
        if origin is None:
            raise damaged(f"output {slot} of subgraph '{inner.graph.name}'", f"comes from node {link[1]}, which "
                          f"the subgraph does not hold")
        return ("output", inner, origin, link[2], want)


def bypass_index(inputs, outputs, slot, want):
    """ExecutableNodeDTO's bypass rule: which input a bypassed node passes to output `slot` (-1: none)."""
    if want in ("*", ""):
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


def check_cycles(prompt):
    """The server cannot run a prompt whose links loop; say so with the loop's nodes (iterative DFS)."""
    state = {}
    for start in prompt:
        if start in state:
            continue
        stack = [(start, iter(links_of(prompt[start])))]
        state[start] = "open"
        while stack:
            node, upstream = stack[-1]
            nxt = next(upstream, None)
            if nxt is None:
                state[node] = "done"
                stack.pop()
            elif state.get(nxt) == "open":
                loop = [n for n, _ in stack][[n for n, _ in stack].index(nxt):] + [nxt]
                raise RunError("the workflow's links loop: " + " -> ".join(
                    f"node {n} ({prompt[n]['class_type']})" for n in loop) + ": reconnect them in ComfyUI")
            elif nxt not in state:
                state[nxt] = "open"
                stack.append((nxt, iter(links_of(prompt[nxt]))))


def links_of(entry):
    return [v[0] for v in entry["inputs"].values() if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str)]


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


def convert(workflow, object_info, frontend_version=None):
    """API-format prompt {execution id: {inputs, class_type, _meta}} from a UI-format workflow (schema 0.4
    or 1, with or without subgraphs), equal to what app.graphToPrompt() of frontend `frontend_version`
    (default: the newest) sends."""
    check_workflow(workflow)
    extra = workflow.get("extra")
    if isinstance(extra, dict) and extra.get("groupNodes"):
        raise RunError("the workflow uses legacy group nodes (extra.groupNodes): open it in ComfyUI, convert "
                       "each group node to a subgraph or ungroup it, and save it again")
    return Converter(workflow, object_info, frontend_version).convert()
