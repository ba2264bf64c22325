"""Bad workflow files through the real command: ``python workflows/run.py FILE --server URL`` as a subprocess,
against a stand-in HTTP server (a thread of this test) that serves ``/object_info`` from
tests/data/object_info.json and a ComfyUI 0.33.0 ``/system_stats``, and refuses anything else.

Each case is a mutation of a shipped workflow (truncated or non-JSON text, missing or wrong-typed fields,
dangling links, loops, unknown node types, an API-format prompt given as a workflow, ...). Every one must
end with exit status 2, no traceback, exactly one ``error: ...`` line on stderr naming what is wrong and
where, nothing queued on the server and no ``--out`` folder. A chain of 1,000 Reroute nodes is not an
error (the frontend resolves it): the command converts it to the prompt of the unchained workflow.
"""
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hypersd_pack.workflows.runner import convert as conversion
from oracle import OBJECT_INFO, WORKFLOWS, recorded_workflow, strip_meta

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "workflows" / "run.py"
OBJECT_INFO_DATA = json.loads(OBJECT_INFO.read_text())
SHIPPED = {p.stem: p for p in WORKFLOWS}
SYSTEM_STATS = {"system": {"comfyui_version": "0.33.0", "required_frontend_version": "1.48.7",
                           "comfy_package_versions": [{"name": "comfyui-frontend-package", "installed": "1.48.7",
                                                       "required": "1.48.7"}], "argv": ["main.py"]},
                "devices": []}


class StandIn(BaseHTTPRequestHandler):
    """/object_info and /system_stats; every other request is recorded and refused."""
    received = []

    def do_GET(self):
        body = {"/object_info": OBJECT_INFO_DATA, "/system_stats": SYSTEM_STATS}.get(self.path.split("?")[0])
        if body is None:
            return self.refuse()
        self.answer(200, body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.received.append((self.path, json.loads(self.rfile.read(length) or b"null")))
        self.refuse()

    def refuse(self):
        self.received.append((self.path, None)) if self.command == "GET" else None
        self.answer(400, {"error": {"type": "stand_in", "message": "the stand-in server runs nothing",
                                    "details": ""}, "node_errors": {}})

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def run_command(path, url, out):
    StandIn.received.clear()
    proc = subprocess.run([sys.executable, str(RUN), str(path), "--server", url, "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    return proc, list(StandIn.received)


# -- the mutations --------------------------------------------------------------------------------------------

def load(name="hyper-sd15-4step-lora"):
    return json.loads(SHIPPED[name].read_text())


def node(wf, node_type):
    return next(n for n in wf["nodes"] if n["type"] == node_type)


def edited(edit, name="hyper-sd15-4step-lora"):
    """A case whose file is the shipped workflow `name` changed by `edit(wf)`."""
    def make():
        wf = load(name)
        edit(wf)
        return json.dumps(wf)
    return make


def text(content):
    return lambda: content


def truncated(fraction, name="hyper-sd15-4step-lora"):
    return lambda: SHIPPED[name].read_text()[:int(len(SHIPPED[name].read_text()) * fraction)]


def setitem(path, value):
    """edit: set wf[path...] = value (path of keys/indices; a callable picks a node)."""
    def edit(wf):
        target = wf
        for key in path[:-1]:
            target = key(target) if callable(key) else target[key]
        target[path[-1]] = value
    return edit


def delitem(path):
    def edit(wf):
        target = wf
        for key in path[:-1]:
            target = key(target) if callable(key) else target[key]
        del target[path[-1]]
    return edit


def by_type(node_type):
    return lambda wf: node(wf, node_type)


def dangling_input(wf):
    node(wf, "VAEDecode")["inputs"][0]["link"] = 999


def link_from_nowhere(wf):
    link = next(lk for lk in wf["links"] if lk[3] == node(wf, "VAEDecode")["id"])
    link[1] = 777


def cycle(wf):
    """VAEDecode's image into the positive prompt's clip input: the prompt's nodes loop."""
    decode, text_node = node(wf, "VAEDecode"), node(wf, "CLIPTextEncode")
    wf["links"].append([900, decode["id"], 0, text_node["id"], 0, "IMAGE"])
    text_node["inputs"][0]["link"] = 900


def reroute_loop(wf):
    """Two Reroute nodes feeding each other, one of them feeding VAEDecode."""
    decode = node(wf, "VAEDecode")
    wf["nodes"] += [{"id": 501, "type": "Reroute", "inputs": [{"name": "", "type": "*", "link": 901}],
                     "outputs": [{"name": "", "type": "*", "links": [902, 903]}], "mode": 0},
                    {"id": 502, "type": "Reroute", "inputs": [{"name": "", "type": "*", "link": 902}],
                     "outputs": [{"name": "", "type": "*", "links": [901]}], "mode": 0}]
    wf["links"] += [[901, 502, 0, 501, 0, "*"], [902, 501, 0, 502, 0, "*"], [903, 501, 0, decode["id"], 0, "LATENT"]]
    decode["inputs"][0]["link"] = 903


def unknown_type(node_type):
    return setitem([by_type("EmptyLatentImage"), "type"], node_type)


def api_format():
    return json.dumps(strip_meta(conversion.convert(load(), OBJECT_INFO_DATA)))


def subgraph_variant():
    return recorded_workflow("hyper-sd15-4step-lora", "promoted")


def edited_subgraph(edit):
    def make():
        wf = subgraph_variant()
        edit(wf)
        return json.dumps(wf)
    return make


def holds_itself(wf):
    """The definition holds an instance of itself, whose input its own input feeds."""
    sg = first_definition(wf)
    sg["nodes"].append({"id": 4646, "type": sg["id"], "mode": 0, "outputs": [],
                        "inputs": [{"name": sg["inputs"][0]["name"], "type": sg["inputs"][0]["type"], "link": 4647}]})
    sg["links"].append({"id": 4647, "origin_id": -10, "origin_slot": 0, "target_id": 4646, "target_slot": 0,
                        "type": sg["inputs"][0]["type"]})
    sg["inputs"][0]["linkIds"].append(4647)


def first_definition(wf):
    return wf["definitions"]["subgraphs"][0]


def instance(wf):
    return next(n for n in wf["nodes"] if n["type"] == first_definition(wf)["id"])


#: (case id, file content maker (None: no file), fragments the error line must hold)
CASES = [
    ("missing-file", None, ["not found"]),
    ("folder", "folder", ["is a folder"]),
    ("empty-file", text(""), ["not valid JSON", "line 1, column 1"]),
    ("not-utf8", lambda: b"\xff\xfe\x00{\x81", ["not a text file"]),
    ("truncated-10", truncated(0.1), ["not valid JSON", "line"]),
    ("truncated-50", truncated(0.5), ["not valid JSON", "line"]),
    ("truncated-90", truncated(0.9, "hyper-sdxl-4step-lora"), ["not valid JSON", "line"]),
    ("truncated-99", truncated(0.99, "hyper-flux1-dev-8step-lora"), ["not valid JSON"]),
    ("trailing-garbage", lambda: SHIPPED["hyper-sd15-4step-lora"].read_text() + "}", ["not valid JSON", "Extra data"]),
    ("json-array", text("[]"), ["JSON array"]),
    ("json-string", text('"workflow"'), ["JSON string"]),
    ("json-number", text("42"), ["JSON number"]),
    ("json-null", text("null"), ["JSON null"]),
    ("empty-object", text("{}"), ["without 'nodes'"]),
    ("deep-nesting", text("[" * 100000 + "]" * 100000), ["nests its JSON too deeply"]),
    ("api-format", api_format, ["API-format prompt"]),
    ("nodes-not-list", edited(setitem(["nodes"], {"1": {}})), ["no 'nodes' list"]),
    ("node-not-object", edited(lambda wf: wf["nodes"].append("KSampler")), ["node #11", "has no id"]),
    ("node-without-id", edited(delitem([by_type("VAEDecode"), "id"])), ["has no id"]),
    ("node-id-null", edited(setitem([by_type("VAEDecode"), "id"], None)), ["has no id"]),
    ("node-id-float", edited(setitem([by_type("VAEDecode"), "id"], 9.5)), ["has no id"]),
    ("node-without-type", edited(delitem([by_type("VAEDecode"), "type"])), ["node 9", "has no type"]),
    ("node-type-number", edited(setitem([by_type("VAEDecode"), "type"], 7)), ["node 9", "has no type"]),
    ("inputs-not-list", edited(setitem([by_type("VAEDecode"), "inputs"], {"samples": 15})), ["node 9", "'inputs'"]),
    ("input-not-object", edited(setitem([by_type("VAEDecode"), "inputs", 0], 15)), ["node 9", "malformed input"]),
    ("input-without-name", edited(delitem([by_type("VAEDecode"), "inputs", 0, "name"])),
     ["node 9", "malformed input"]),
    ("input-link-list", edited(setitem([by_type("VAEDecode"), "inputs", 0, "link"], [15])),
     ["node 9", "malformed input"]),
    ("input-widget-string", edited(setitem([by_type("EmptyLatentImage"), "inputs", 0, "widget"], "width")),
     ["node 7", "malformed input"]),
    ("outputs-not-list", edited(setitem([by_type("VAEDecode"), "outputs"], "IMAGE")), ["node 9", "'outputs'"]),
    ("output-links-number", edited(setitem([by_type("VAEDecode"), "outputs", 0, "links"], 17)),
     ["node 9", "malformed output"]),
    ("widgets-values-string", edited(setitem([by_type("EmptyLatentImage"), "widgets_values"], "512")),
     ["node 7", "widgets_values"]),
    ("mode-string", edited(setitem([by_type("VAEDecode"), "mode"], "bypass")), ["node 9", "'mode'"]),
    ("properties-list", edited(setitem([by_type("VAEDecode"), "properties"], [])), ["node 9", "'properties'"]),
    ("duplicate-node-id", edited(setitem([by_type("VAEDecode"), "id"], 8)), ["two nodes with id 8"]),
    ("links-not-list", edited(setitem(["links"], {"15": [15, 8, 0, 9, 0, "LATENT"]})), ["'links'"]),
    ("link-too-short", edited(lambda wf: wf["links"].append([950, 1])), ["malformed link", "950"]),
    ("link-slot-string", edited(lambda wf: wf["links"][0].__setitem__(2, "0")), ["malformed link"]),
    ("link-id-null", edited(lambda wf: wf["links"][0].__setitem__(0, None)), ["malformed link"]),
    ("dangling-input", edited(dangling_input), ["node 9", "link 999"]),
    ("link-from-nowhere", edited(link_from_nowhere), ["node 9", "node 777"]),
    ("dangling-input-sdxl", edited(dangling_input, "hyper-sdxl-8step-lora"), ["node 9", "link 999"]),
    ("cycle", edited(cycle), ["loop", "CLIPTextEncode", "VAEDecode"]),
    ("reroute-loop", edited(reroute_loop), ["loop", "Reroute"]),
    ("unknown-type", edited(unknown_type("NoSuchNode")), ["NoSuchNode", "node 7", "Install Missing Custom Nodes"]),
    ("gguf-type", edited(unknown_type("UnetLoaderGGUF")), ["UnetLoaderGGUF", "ComfyUI-GGUF"]),
    ("unknown-type-flux", edited(setitem([by_type("VAEDecode"), "type"], "VAEDecodeTiledX"),
                                 "hyper-flux1-dev-16step-lora"), ["VAEDecodeTiledX", "node 14"]),
    ("group-nodes", edited(setitem(["extra"], {"groupNodes": {"g": {}}})), ["group nodes"]),
    ("subgraphs-not-list", edited(setitem(["definitions"], {"subgraphs": {"a": {}}})), ["'definitions'"]),
    ("models-not-list", edited(setitem(["models"], "sd15.safetensors")), ["'models'"]),
    ("model-without-name", edited(setitem(["models", 0], {"url": "x"})), ["'models'"]),
    ("subgraph-without-id", edited_subgraph(delitem([first_definition, "id"])), ["subgraph definition 0"]),
    ("subgraph-nodes-not-list", edited_subgraph(setitem([first_definition, "nodes"], {})),
     ["subgraph definition 0"]),
    ("subgraph-inputs-malformed", edited_subgraph(setitem([first_definition, "inputs"], [{"linkIds": 5}])),
     ["malformed inputs"]),
    ("subgraph-node-without-type", edited_subgraph(lambda wf: first_definition(wf)["nodes"][0].pop("type")),
     ["has no type", "subgraph"]),
    ("subgraph-dangling-inner-link", edited_subgraph(
        lambda wf: next(n for n in first_definition(wf)["nodes"] if n["type"] == "VAEDecode")["inputs"][0]
        .__setitem__("link", 4242)), ["link 4242", "subgraph"]),
    ("subgraph-instance-input-dangling", edited_subgraph(
        lambda wf: first_definition(wf)["inputs"][0]["linkIds"].append(4343) or
        instance(wf)["inputs"].__setitem__(0, dict(instance(wf)["inputs"][0], link=4444))), ["link 4444"]),
    ("subgraph-contains-itself", edited_subgraph(
        lambda wf: first_definition(wf)["nodes"].append({"id": 4545, "type": first_definition(wf)["id"],
                                                         "inputs": [], "outputs": [], "mode": 0})),
     ["contain themselves"]),
    ("subgraph-holds-itself-promoted", edited_subgraph(holds_itself), ["contain themselves"]),
    ("subgraph-unknown-inner-type", edited_subgraph(
        lambda wf: next(n for n in first_definition(wf)["nodes"] if n["type"] == "VAEDecode")
        .__setitem__("type", "NoSuchDecoder")), ["NoSuchDecoder", ":"]),
]


def test_enough_cases():
    assert len(CASES) >= 50


@pytest.mark.parametrize("case_id, make, fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_workflow_is_one_error_line(server, tmp_path, case_id, make, fragments):
    path = tmp_path / "workflow.json"
    if make == "folder":
        path.mkdir()
    elif make is not None:
        content = make()
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "out"
    proc, received = run_command(path, server, out)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-1000:], proc.stderr[-1000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert not any(path_ == "/prompt" for path_, _ in received), "something was queued"
    assert not out.exists()


def chained(wf, length):
    """The workflow with `length` Reroute nodes spliced into the link into VAEDecode's samples input."""
    decode = node(wf, "VAEDecode")
    first = next(lk for lk in wf["links"] if lk[0] == decode["inputs"][0]["link"])
    origin, slot = first[1], first[2]
    next_id, next_link = 1000, 5000
    for _ in range(length):
        wf["nodes"].append({"id": next_id, "type": "Reroute", "mode": 0,
                            "inputs": [{"name": "", "type": "*", "link": next_link}],
                            "outputs": [{"name": "", "type": "LATENT", "links": [next_link + 1]}]})
        wf["links"].append([next_link, origin, slot, next_id, 0, "LATENT"])
        origin, slot, next_id, next_link = next_id, 0, next_id + 1, next_link + 1
    wf["links"].remove(first)
    wf["links"].append([first[0], origin, 0, decode["id"], 0, "LATENT"])
    return wf


def test_reroute_chain_converts_like_the_plain_workflow():
    """The frontend follows a chain of Reroute nodes of any length; so does convert(), without recursion."""
    expected = strip_meta(conversion.convert(load(), OBJECT_INFO_DATA))
    for length in (1000, 20000):
        assert strip_meta(conversion.convert(chained(load(), length), OBJECT_INFO_DATA)) == expected


def test_reroute_chain_through_the_command(server, tmp_path):
    """The command sends the 1,000-Reroute workflow's prompt (the plain workflow's); the stand-in refuses it."""
    path = tmp_path / "chain.json"
    path.write_text(json.dumps(chained(load(), 1000)))
    proc, received = run_command(path, server, tmp_path / "out")
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 2 and "the stand-in server runs nothing" in proc.stderr
    sent = [body for p, body in received if p == "/prompt"]
    assert len(sent) == 1
    assert strip_meta(sent[0]["prompt"]) == strip_meta(conversion.convert(load(), OBJECT_INFO_DATA))
