"""Run a workflow on a ComfyUI-Distributed master and its workers (robertvoy/ComfyUI-Distributed).

Used by ``workflows/run.py --distributed --server <master URL>``. ComfyUI-Distributed (installed on the
master and on every worker, each with this pack and the same model files) runs one prompt on every
participant: its ``DistributedSeed`` node gives the master the prompt's seed and worker i (0-based, in the
order of the master's enabled workers) seed + i + 1; its ``DistributedCollector`` node sends each worker's
images to the master, which returns them after its own. This module

- adds those two nodes to an API prompt that lacks them (every literal seed input behind one
  DistributedSeed, every SaveImage's images behind one DistributedCollector);
- reads the master's enabled workers from ``GET /distributed/config``;
- queues with ``POST /distributed/queue`` (the endpoint ComfyUI-Distributed's own UI uses) under one
  client id, listening to the progress of the master and of every worker (each prefixed with its name);
- waits for the master's prompt and saves the collected images (master's first, then each worker's).

"""
import time
import uuid

from . import client
from .errors import RunError

SEED_INPUTS = ("seed", "noise_seed")


def _new_id(prompt):
    numeric = [int(k) for k in prompt if str(k).isdigit()]
    return str(max(numeric, default=0) + 1)


def add_distributed_nodes(prompt):
    """Put every literal seed behind a DistributedSeed and every SaveImage behind a DistributedCollector.

    Returns the prompt (changed in place). A prompt that already has either node is left as it is: the
    user wired them. Raises ValueError when there is nothing to collect (no SaveImage).
    """
    kinds = {node["class_type"] for node in prompt.values()}
    if kinds & {"DistributedSeed", "DistributedCollector"}:
        return prompt
    savers = [nid for nid, node in prompt.items() if node["class_type"] == "SaveImage"]
    if not savers:
        raise ValueError("the workflow has no SaveImage node: nothing for DistributedCollector to collect")
    seeds = {}  # seed value -> DistributedSeed node id
    for node in list(prompt.values()):
        for key in SEED_INPUTS:
            value = node["inputs"].get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                if value not in seeds:
                    seeds[value] = _new_id(prompt)
                    prompt[seeds[value]] = {"class_type": "DistributedSeed", "inputs": {"seed": value},
                                            "_meta": {"title": "Distributed Seed"}}
                node["inputs"][key] = [seeds[value], 0]
    for nid in savers:
        collector = _new_id(prompt)
        prompt[collector] = {"class_type": "DistributedCollector",
                             "inputs": {"images": prompt[nid]["inputs"]["images"], "load_balance": False},
                             "_meta": {"title": "Distributed Collector"}}
        prompt[nid]["inputs"]["images"] = [collector, 0]
    return prompt


def worker_url(worker):
    """A worker's base URL from its entry in ComfyUI-Distributed's config (host, port)."""
    host = (worker.get("host") or "127.0.0.1").strip().rstrip("/")
    if host.startswith(("http://", "https://")):
        return host
    port = int(worker.get("port") or 8188)
    scheme = "https" if port == 443 or worker.get("type") == "cloud" else "http"
    return f"{scheme}://{host}" + ("" if port in (80, 443) else f":{port}")


def enabled_workers(server):
    """The master's enabled workers (dicts with id, name, url); RunError when the extension is missing."""
    status, body = server.request("/distributed/config")
    if status == 404:
        raise RunError(f"{server.url} has no ComfyUI-Distributed (GET /distributed/config answered 404): "
                              f"install robertvoy/ComfyUI-Distributed on the master and every worker, or drop "
                              f"--distributed")
    if status != 200 or not isinstance(body, dict):
        raise RunError(f"GET /distributed/config answered HTTP {status}: {body}")
    workers = [w for w in body.get("workers", []) if w.get("enabled") and str(w.get("id") or "").strip()]
    return [{"id": str(w["id"]), "name": w.get("name") or str(w["id"]), "url": worker_url(w)} for w in workers]


def run(server, workflow, prompt, out_dir, log=print, timeout=3600):
    """Queue ``prompt`` (an API prompt) on a ComfyUI-Distributed master; returns the saved image paths."""
    workers = enabled_workers(server)
    try:
        add_distributed_nodes(prompt)
    except ValueError as e:
        raise RunError(str(e)) from e
    client_id = uuid.uuid4().hex
    names = ["master"] + [w["name"] for w in workers]
    log(f"participants: {', '.join(names)} (seeds: the prompt's seed, then +1 per worker in this order)")
    listeners = [client.ProgressListener(server.url, client_id, prompt, _prefixed(log, "master"))]
    listeners += [client.ProgressListener(w["url"], client_id, prompt, _prefixed(log, w["name"])) for w in workers]
    try:
        payload = {"prompt": prompt, "client_id": client_id, "enabled_worker_ids": [w["id"] for w in workers],
                   "workflow": workflow}
        status, body = server.request("/distributed/queue", payload, timeout=300)
        if status == 404:
            raise RunError(f"{server.url} has no POST /distributed/queue: install ComfyUI-Distributed")
        if status != 200:
            raise RunError(f"the master refused the workflow (HTTP {status}): {_refusal(body)}")
        if body.get("node_errors"):
            raise RunError("the master refused the workflow:\n" +
                                  client.validation_message(body, workflow))
        prompt_id = body["prompt_id"]
        log(f"queued {prompt_id} on the master and {body.get('worker_count', 0)} worker(s)")
        return _wait(server, prompt_id, prompt, out_dir, log, timeout)
    finally:
        for listener in listeners:
            listener.close()


def _prefixed(log, name):
    return lambda message: log(f"[{name}] {message}")


def _refusal(body):
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    if isinstance(body, dict) and "errors" in body:
        return "; ".join(map(str, body["errors"]))
    return str(body)[:2000]


def _wait(server, prompt_id, prompt, out_dir, log, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        entry = (server.get(f"/history/{prompt_id}") or {}).get(prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None:
            return client.finish(server, entry, prompt, out_dir, log)
        time.sleep(0.5)
    raise RunError(f"prompt {prompt_id} did not finish within {timeout} s")
