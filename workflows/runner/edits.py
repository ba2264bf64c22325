"""The command line's edits of an API prompt: --prompt, --negative, --seed, --size, --model OLD=NEW, --set.

Never a silent no-op: each edit changes what it names, or raises :class:`EditError` (exit status 2) naming
what it looked for. The prompts are found by graph position, not by title: from each sampler or guider
(a node that takes conditioning and gives none: KSampler, SamplerCustom, CFGGuider, BasicGuider ...) its
positive / negative input is followed upstream through conditioning nodes (FluxGuidance, ConditioningCombine,
ControlNetApplyAdvanced's matching output, ...) to the text encoders (CLIPTextEncode and its SDXL, SD3,
FLUX kin: their multiline text inputs). A ConditioningZeroOut ends a branch: it has no text. A text, seed or
size input linked from another node (PrimitiveInt, PrimitiveStringMultiline, ...) is set on that node.

The input types come from the server's ``/object_info``; without it (tests, scripts) input names decide.
"""
import json

from .client import node_label
from .errors import RunError

SEED_INPUTS = ("seed", "noise_seed")
SIZE_INPUTS = ("width", "height")
ZEROING = {"ConditioningZeroOut"}
# Without /object_info: the names of conditioning inputs and of text encoders' text inputs.
COND_NAMES = {"positive", "negative", "conditioning", "cond1", "cond2", "conditioning_to", "conditioning_from",
              "conditioning_1", "conditioning_2"}
TEXT_NAMES = ("text", "text_g", "text_l", "clip_l", "clip_g", "t5xxl")
MAX_LISTED = 12


class EditError(RunError):
    """An edit of the command line that would change nothing, or an invalid one."""


def is_link(value):
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


class PromptGraph:
    """An API prompt with the server's input types: links, input specs, labels."""

    def __init__(self, prompt, object_info=None, pending=()):
        self.prompt, self.info = prompt, object_info
        self.pending = set(pending)  # file names valid as choices though the server does not list them yet

    def node(self, node_id):
        return self.prompt.get(str(node_id))

    def label(self, node_id):
        return node_label(self.prompt, node_id)

    def spec(self, node_id, name):
        """The input's /object_info spec ``[type, options]``, or None when the server does not say."""
        cls = (self.info or {}).get((self.node(node_id) or {}).get("class_type"), {})
        for group in ("required", "optional"):
            spec = ((cls.get("input") or {}).get(group) or {}).get(name)
            if spec is not None:
                return spec if isinstance(spec, (list, tuple)) else [spec]
        return None

    def input_names(self, node_id):
        cls = (self.info or {}).get((self.node(node_id) or {}).get("class_type"), {})
        names = [n for group in ("required", "optional") for n in ((cls.get("input") or {}).get(group) or {})]
        return names or list((self.node(node_id) or {}).get("inputs", {}))

    def kind(self, node_id, name):
        """'INT', 'FLOAT', 'STRING', 'BOOLEAN', 'COMBO', another type name, or None (unknown)."""
        spec = self.spec(node_id, name)
        if spec is None:
            return None
        return "COMBO" if isinstance(spec[0], (list, tuple)) else str(spec[0])

    def options(self, node_id, name):
        spec = self.spec(node_id, name) or []
        return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}

    def choices(self, node_id, name):
        spec = self.spec(node_id, name) or []
        if spec and isinstance(spec[0], (list, tuple)):
            return list(spec[0])
        return list(self.options(node_id, name).get("options") or [])

    def outputs(self, node_id):
        cls = (self.info or {}).get((self.node(node_id) or {}).get("class_type"))
        return None if cls is None else list(cls.get("output") or [])

    def output_name(self, node_id, slot):
        cls = (self.info or {}).get((self.node(node_id) or {}).get("class_type")) or {}
        names = cls.get("output_name") or cls.get("output") or []
        return str(names[slot]).lower() if slot < len(names) else None


# ---------------------------------------------------------------------------------------------- prompts


def cond_inputs(g, node_id):
    """Names of the node's linked inputs that carry conditioning."""
    inputs = g.node(node_id)["inputs"]
    known = g.outputs(node_id) is not None
    return [name for name, value in inputs.items() if is_link(value) and (
        g.kind(node_id, name) == "CONDITIONING" if known else name in COND_NAMES or name.startswith("conditioning"))]


def text_inputs(g, node_id):
    """The node's prompt text inputs: multiline STRING inputs (with /object_info), else the usual names."""
    node = g.node(node_id)
    if g.outputs(node_id) is not None:
        return [name for name in node["inputs"] if g.kind(node_id, name) == "STRING"
                and g.options(node_id, name).get("multiline")]
    return [name for name in TEXT_NAMES if isinstance(node["inputs"].get(name), str) or is_link(
        node["inputs"].get(name))]


def samplers(g):
    """(node id, input name, role) of every conditioning input of the nodes that consume conditioning and
    produce none (samplers and guiders); role is 'negative' or 'positive' (or None: PerpNeg's empty one)."""
    feeding = {str(v[0]) for nid in g.prompt for name in cond_inputs(g, nid)
               for v in [g.node(nid)["inputs"][name]]}
    found = []
    for nid in g.prompt:
        outs = g.outputs(nid)
        if not cond_inputs(g, nid) or (outs is not None and "CONDITIONING" in outs) or \
                (outs is None and nid in feeding):
            continue
        for name in cond_inputs(g, nid):
            role = None if "empty" in name else "negative" if "negative" in name else "positive"
            found.append((nid, name, role))
    return found


def trace(g, link, ends, seen):
    """Follow a conditioning link upstream; add ('encoder' | 'zeroed' | 'dead', node id) to ``ends``."""
    nid, slot = str(link[0]), link[1]
    if (nid, slot) in seen or g.node(nid) is None:
        return
    seen.add((nid, slot))
    if g.node(nid)["class_type"] in ZEROING:
        ends.append(("zeroed", nid))
    elif text_inputs(g, nid):
        ends.append(("encoder", nid))
    else:
        names = cond_inputs(g, nid)
        out = g.output_name(nid, slot)
        names = [out] if out in names else names  # ControlNetApplyAdvanced: positive out <- positive in
        if not names:
            ends.append(("dead", nid))
        for name in names:
            trace(g, g.node(nid)["inputs"][name], ends, seen)


def prompt_ends(g):
    """{'positive': [(end kind, node id), ...], 'negative': [...]} and the sampler inputs looked at."""
    ends, looked = {"positive": [], "negative": []}, []
    for nid, name, role in samplers(g):
        looked.append(f"{g.label(nid)} input '{name}'")
        if role is not None:
            found = []
            trace(g, g.node(nid)["inputs"][name], found, set())
            ends[role] += [e for e in found if e not in ends[role]]
    return ends, looked


def set_text(g, text, option, log):
    """--prompt (option 'prompt') or --negative: the text of every encoder feeding that sampler input."""
    role = "positive" if option == "prompt" else "negative"
    ends, looked = prompt_ends(g)
    encoders = [nid for kind, nid in ends[role] if kind == "encoder"]
    other = {nid for kind, nid in ends["positive" if role == "negative" else "negative"] if kind == "encoder"}
    if not encoders:
        raise EditError(no_encoder_message(g, option, role, ends[role], looked))
    if role == "negative" and other.intersection(encoders):
        shared = sorted(other.intersection(encoders))
        raise EditError(f"--negative: {g.label(shared[0])} feeds both the positive and the negative input, so "
                        "this workflow has no negative prompt of its own (with cfg 1 none is used); give the "
                        "negative its own text encoder, or set a node's text with --set NODE.text=...")
    for nid in encoders:
        for name in text_inputs(g, nid):
            set_value(g, nid, name, text, "STRING", f"--{option}", log)
        if role == "positive" and nid in other:
            log(f"note: {g.label(nid)} feeds the negative input too (the workflow has no separate negative)")


def check_negative_used(g):
    """After every edit: when every sampler with a negative input has a literal cfg of 1, the negative set by
    --negative is never used (ComfyUI skips it at cfg 1) -- that would be a silent no-op."""
    def cfg_one(nid):
        cfg = g.node(nid)["inputs"].get("cfg")
        return isinstance(cfg, (int, float)) and not isinstance(cfg, bool) and cfg == 1

    users = sorted({nid for nid, name, role in samplers(g) if role == "negative"})
    if users and all(cfg_one(nid) for nid in users):
        raise EditError(f"--negative: {g.label(users[0])} has cfg 1, where ComfyUI does not use the negative "
                        f"prompt; raise it (--set {users[0]}.cfg=5 for a CFG recipe) or leave --negative out")


def no_encoder_message(g, option, role, ends, looked):
    if not looked:
        return (f"--{option}: the workflow has no sampler or guider with a conditioning input (looked for nodes "
                "that take CONDITIONING and give none: KSampler, SamplerCustom, CFGGuider, ...); set the text with "
                "--set NODE.text=...")
    zeroed = [nid for kind, nid in ends if kind == "zeroed"]
    if zeroed:
        return (f"--{option}: the {role} input comes from {g.label(zeroed[0])}, which zeroes it: this workflow has "
                f"no {role} prompt")
    dead = [g.label(nid) for kind, nid in ends if kind == "dead"]
    where = f"; the {role} conditioning comes from {', '.join(dead)}" if dead else ""
    return (f"--{option}: no text encoder (a node with a multiline text input, such as CLIPTextEncode) feeds a "
            f"{role} input; looked at {', '.join(looked)}{where}; set the text with --set NODE.input=...")


# ---------------------------------------------------------------------------------------------- values


def set_value(g, nid, name, value, want, option, log, seen=None):
    """Set input ``name`` of node ``nid``; when it is linked, set the literal of the node it comes from
    (a PrimitiveInt, a PrimitiveStringMultiline ...) that has exactly one ``want``-typed value."""
    current = g.node(nid)["inputs"].get(name)
    if not is_link(current):
        check_value(g, nid, name, value, option)
        g.node(nid)["inputs"][name] = value
        log(f"{option}: {g.label(nid)}, input '{name}'")
        return
    seen = set() if seen is None else seen
    source = str(current[0])
    if source in seen or g.node(source) is None:
        raise EditError(f"{option}: {g.label(nid)}, input '{name}' is linked from node {source}, which the prompt "
                        "does not hold")
    seen.add(source)
    candidates = value_inputs(g, source, want)
    if len(candidates) != 1:
        raise EditError(f"{option}: {g.label(nid)}, input '{name}' comes from {g.label(source)}, which has "
                        f"{'no' if not candidates else 'more than one'} {want} value to set "
                        f"({', '.join(candidates) or 'none'}); set it with --set {source}.<input>=...")
    set_value(g, source, candidates[0], value, want, option, log, seen)


def value_inputs(g, nid, want):
    """The inputs of a value node that can hold a ``want`` value (linked ones included: followed later)."""
    inputs = g.node(nid)["inputs"]
    if g.outputs(nid) is not None:
        return [name for name in inputs if g.kind(nid, name) == want]
    python = {"INT": int, "FLOAT": float, "STRING": str}.get(want, object)
    return [name for name, v in inputs.items() if (isinstance(v, python) and not isinstance(v, bool))
            or (name == "value" and is_link(v))]


def check_value(g, nid, name, value, option):
    """The value against the server's type and range for that input (nothing to check without it)."""
    kind, opts = g.kind(nid, name), g.options(nid, name)
    where = f"{option}: {g.label(nid)}, input '{name}'"
    if kind in ("INT", "FLOAT"):
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not numeric or (kind == "INT" and not isinstance(value, int)):
            raise EditError(f"{where} takes {'an integer' if kind == 'INT' else 'a number'}, not {value!r}")
        low, high = opts.get("min"), opts.get("max")
        if (low is not None and value < low) or (high is not None and value > high):
            raise EditError(f"{where} takes {low} to {high}, not {value}")
    elif kind == "BOOLEAN" and not isinstance(value, bool):
        raise EditError(f"{where} takes true or false, not {value!r}")
    elif kind == "STRING" and not isinstance(value, str):
        raise EditError(f"{where} takes a text, not {value!r}")
    elif kind == "COMBO":
        choices = g.choices(nid, name)
        if choices and value not in choices and value not in g.pending:
            raise EditError(f"{where}: {value!r} is not one of the server's choices ({shortlist(choices)})")


def shortlist(values):
    shown = ", ".join(repr(v) for v in values[:MAX_LISTED])
    return shown + (f" ... ({len(values)} in all)" if len(values) > MAX_LISTED else "")


def set_everywhere(g, names, value, option, what, log):
    """--seed / --size: every input of those names (linked ones through their source), at least one."""
    done = 0
    for nid in list(g.prompt):
        for name in names:
            if name in g.node(nid)["inputs"]:
                set_value(g, nid, name, value, "INT", option, log)
                done += 1
    if not done:
        raise EditError(f"{option}: the workflow has no {what} (looked for inputs named {' / '.join(names)} in "
                        f"{len(g.prompt)} nodes); set one with --set NODE.input=...")


def replace_model(g, spec, log):
    """--model OLD=NEW: every string input whose value is OLD."""
    old, sep, new = spec.partition("=")
    if not sep or not old or not new:
        raise EditError(f"--model {spec}: write --model OLD=NEW (the file name in the workflow = yours)")
    hits = [(nid, name) for nid, node in g.prompt.items() for name, v in node["inputs"].items() if v == old]
    if not hits:
        files = sorted({v for nid, node in g.prompt.items() for name, v in node["inputs"].items()
                        if isinstance(v, str) and (g.kind(nid, name) == "COMBO" or v.lower().endswith(
                            (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf")))})
        raise EditError(f"--model {spec}: no input of the workflow has the value {old!r}; its model files are: "
                        f"{', '.join(files) or 'none'}")
    for nid, name in hits:
        set_value(g, nid, name, new, "STRING", f"--model {old}", log)


# ---------------------------------------------------------------------------------------------- --set


def parse_set(spec):
    """'NODE.input=value' -> (node, input, raw value)."""
    key, sep, raw = spec.partition("=")
    node, dot, name = key.rpartition(".")
    if not sep or not dot or not node or not name:
        raise EditError(f"--set {spec}: write --set NODE.input=value (NODE: a node id or title)")
    return node.strip(), name.strip(), raw


def find_node(g, ref, option):
    """A node by id, else by title, else by class; ambiguous or unknown -> EditError naming candidates."""
    if ref in g.prompt:
        return ref
    title = lambda node: node.get("_meta", {}).get("title") or ""  # noqa: E731
    for key, wanted in ((title, ref), (lambda node: title(node).lower(), ref.lower()),
                        (lambda node: node["class_type"], ref)):
        found = [nid for nid, node in g.prompt.items() if key(node) == wanted]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise EditError(f"{option}: {len(found)} nodes match {ref!r}: {', '.join(g.label(n) for n in found)}; "
                            "use the node id")
    nodes = ", ".join(g.label(n) for n in list(g.prompt)[:MAX_LISTED * 2])
    raise EditError(f"{option}: no node has the id, title or type {ref!r}; the workflow's nodes: {nodes}")


def parse_value(g, nid, name, raw):
    """The value as the input's type wants it: text as given for STRING and choices, else JSON, else text."""
    kind = g.kind(nid, name)
    if kind == "STRING" or (kind == "COMBO" and raw in g.choices(nid, name)):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def apply_set(g, spec, log):
    ref, name, raw = parse_set(spec)
    option = f"--set {ref}.{name}"
    nid = find_node(g, ref, option)
    names = g.input_names(nid)
    if name not in names:
        raise EditError(f"{option}: {g.label(nid)} has no input {name!r}; its inputs: {', '.join(names)}")
    value = parse_value(g, nid, name, raw)
    current = g.node(nid)["inputs"].get(name)
    check_value(g, nid, name, value, option)
    g.node(nid)["inputs"][name] = value
    note = f" (it was linked from {g.label(current[0])})" if is_link(current) else ""
    log(f"{option}: {g.label(nid)}, input '{name}' = {value!r}{note}")


# ---------------------------------------------------------------------------------------------- entry


def customize(prompt, text=None, seed=None, size=None, models=(), *, negative=None, sets=(), object_info=None,
              pending=(), log=None):
    """Apply --prompt, --negative, --seed, --size, --model OLD=NEW and --set to an API prompt (in place) and
    return it. ``object_info``: the server's, for input types and ranges; ``pending``: file names that are
    valid choices though the server does not list them yet (the models ``--download`` fetches); ``log``:
    called with one line per change. Raises :class:`EditError` when an edit finds nothing to change."""
    said = set()

    def log_once(line):  # a PrimitiveInt feeding two nodes is set (and told) once
        if log is not None and line not in said:
            said.add(line)
            log(line)

    g = PromptGraph(prompt, object_info, pending)
    for spec in models:
        replace_model(g, spec, log_once)
    if text is not None:
        set_text(g, text, "prompt", log_once)
    if negative is not None:
        set_text(g, negative, "negative", log_once)
    if seed is not None:
        set_everywhere(g, SEED_INPUTS, seed, "--seed", "seed", log_once)
    if size is not None:
        set_everywhere(g, SIZE_INPUTS, size, "--size", "width or height", log_once)
    for spec in sets:
        apply_set(g, spec, log_once)
    if negative is not None:
        check_negative_used(g)
    return prompt
