"""``--download``: the model files a workflow lists that the server lacks, fetched into the server's own folders.

The list is the one the frontend offers as "missing models" when it opens the file: the workflow's top-level
``models`` and, on each active node, the ``properties.models`` entries one of its widgets selects (name, url,
directory). A file counts as present when the server's ``/models/<directory>`` lists its name, as in the
canvas. Each missing file goes into the first folder the server gives for its directory
(``/internal/folder_paths``, ``extra_model_paths.yaml`` and ``--base-directory`` included), through the pack's
own downloader (``core/download.py``): only Hugging Face resolve URLs, honouring ``HF_ENDPOINT``,
``HF_TOKEN`` and ``HF_HUB_OFFLINE``; size and sha256 checked; a hidden partial that the next run resumes
after any interruption (Ctrl-C included); the cross-process lock shared with the pack's loader nodes.

The download runs in this process: the runner is a script (``python workflows/run.py``), so it loads the
pack's ``core`` package by file path with importlib (nothing added to ``sys.path``). The python running the
runner needs ``huggingface_hub`` (the pack's requirement; with ``--start``, ComfyUI's python is the default).
"""
import importlib
import importlib.util
import os
import sys
import time
from pathlib import Path
from urllib.parse import quote

from .errors import RunError

PACK_ROOT = Path(__file__).resolve().parents[2]
CORE_NAME = "hypersd_runner_core"  # the pack's core package, as the runner loads it
LEGACY_FOLDERS = {"unet": "diffusion_models", "clip": "text_encoders"}  # ComfyUI's folder_paths.map_legacy
INACTIVE = (2, 4)  # muted, bypassed: the frontend skips their models


def download_module():
    """``core/download.py`` of this pack, loaded once by file path as ``hypersd_runner_core.download``."""
    loaded = sys.modules.get(CORE_NAME + ".download")
    if loaded is not None:
        return loaded
    core = PACK_ROOT / "core"
    spec = importlib.util.spec_from_file_location(CORE_NAME, core / "__init__.py",
                                                  submodule_search_locations=[str(core)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[CORE_NAME] = package
    spec.loader.exec_module(package)
    return importlib.import_module(CORE_NAME + ".download")


# ---------------------------------------------------------------------------------------------- the list


def listed_models(workflow):
    """The workflow's model entries ({name, url, directory}), as the frontend collects them: each active node's
    selected ``properties.models`` (subgraph definitions included), then the top-level ``models``; one entry
    per (name, directory), the first with a URL winning."""
    graphs = [workflow] + list((workflow.get("definitions") or {}).get("subgraphs") or [])
    found = [m for graph in graphs for node in graph.get("nodes") or [] for m in selected_models(node)]
    found += list(workflow.get("models") or [])
    unique = {}
    for m in found:
        if not isinstance(m, dict) or not isinstance(m.get("name"), str) or not isinstance(m.get("directory"), str):
            raise RunError(f"the workflow's models list has an entry without a name and a directory: {m!r}")
        key = (m["name"], m["directory"])
        if key not in unique or (m.get("url") and not unique[key].get("url")):
            unique[key] = m
    return list(unique.values())


def selected_models(node):
    if node.get("mode") in INACTIVE:
        return []
    values = node.get("widgets_values") or []
    values = values.values() if isinstance(values, dict) else values
    chosen = {v for v in values if isinstance(v, str) and v.strip()}
    return [m for m in (node.get("properties") or {}).get("models") or []
            if isinstance(m, dict) and m.get("name") in chosen]


def folder_key(directory, folders):
    """The server's folder name for a list entry's directory (legacy names mapped), or RunError."""
    key = directory if directory in folders else LEGACY_FOLDERS.get(directory, directory)
    if key not in folders:
        raise RunError(f"the workflow's models list puts files in {directory!r}, a folder this ComfyUI does not "
                       f"have (its model folders: {', '.join(sorted(folders))})")
    return key


def missing_models(server, workflow, folders, replaced=()):
    """[(entry, folder name)] of the listed files the server's folder listing lacks (``replaced``: names the
    command line swaps for other files with --model OLD=NEW, not needed)."""
    listings, missing = {}, []
    for m in listed_models(workflow):
        if m["name"] in replaced:
            continue
        key = folder_key(m["directory"], folders)
        if key not in listings:
            listings[key] = set(server.get(f"/models/{quote(key)}") or [])
        if m["name"] not in listings[key]:
            missing.append((m, key))
    return missing


# ---------------------------------------------------------------------------------------------- fetching


def fetch_missing(server, workflow, folders, replaced=(), log=print):
    """Download every listed file the server lacks into its first folder of that kind; the paths written.
    Every entry is checked (URL, name, folder on this machine) before the first byte is fetched."""
    if not folders:
        raise RunError(f"the server at {server.url} does not list its model folders (/internal/folder_paths), so "
                       "--download cannot know where files go; put them in its folders by hand")
    missing = missing_models(server, workflow, folders, replaced)
    if not missing:
        log("model files: every file the workflow lists is on the server")
        return []
    download = download_module()
    jobs = [(m, planned(download, m, folders[key], key), folders[key][0]) for m, key in missing]
    check_local(folders, server.url)
    log(f"downloading {len(jobs)} model file(s) the server lacks: "
        + ", ".join(f"{m['name']} -> {dest}" for m, _, dest in jobs))
    return [fetch_one(download, m, entry, dest, log) for m, entry, dest in jobs]


def planned(download, m, paths, key):
    """The checked download entry of a list entry, or RunError naming the file, its folder and why not."""
    if not m.get("url"):
        raise RunError(f"{m['name']} is not in the server's {key} folder and the workflow gives no download URL "
                       f"for it: put it in {paths[0]}")
    try:
        return download.hub_file(m["url"], m["name"])
    except download.RefusedFileError as e:
        raise RunError(f"{m['name']}: {e.reason}; download it by hand into {paths[0]}") from None


def check_local(folders, url):
    """--download writes into the server's folders: they must be on this machine."""
    if not any(os.path.isdir(p) for paths in folders.values() for p in paths):
        raise RunError(f"--download writes into the model folders of the server at {url}, and none of them is a "
                       f"folder on this machine: run the command on the server's machine, or use --start")


def fetch_one(download, m, entry, dest, log):
    progress = Progress(m["name"], log)
    try:
        path = download.fetch(entry, dest, [dest], progress=progress)
    except download.AccessDeniedError as e:
        raise RunError(access_line(m["name"], entry, e)) from None
    except download.DownloadError as e:
        raise RunError(f"cannot download {m['name']} into {dest}: {e.reason} (by hand: {entry.url})") from None
    log(f"{m['name']}: saved {path}{progress.summary()}")
    return path


def access_line(name, entry, e):
    """One line for a refused download: the token to set and the license page to accept."""
    if e.sent_token:
        return (f"cannot download {name}: the hub refused the token (HF_TOKEN or your `hf auth login`) for "
                f"{entry.repo_id} (HTTP {e.status}): accept the license at {entry.license_url} with that "
                "token's account, or use a token with read access, then run again")
    return (f"cannot download {name}: {entry.repo_id} needs a Hugging Face token (HTTP {e.status}"
            f"{', gated' if e.gated else ''}): accept its license at {entry.license_url}, then set HF_TOKEN to "
            "a read token of that account (or run `hf auth login`) and run again")


class Progress:
    """Prints a download's progress: its size first, then every 10 %, and the speed at the end."""

    def __init__(self, name, log):
        self.name, self.log = name, log
        self.start = self.first = None
        self.shown = -1
        self.done = 0

    def __call__(self, done, total):
        if self.start is None:
            self.start, self.first = time.monotonic(), done
            size = f"{total / 1e6:,.1f} MB" if total else "size unknown"
            resumed = f", resuming at {done / 1e6:,.1f} MB" if done else ""
            self.log(f"{self.name}: {size}{resumed}")
        self.done = done
        if total:
            tenth = int(10 * done / total)
            if tenth > self.shown:
                self.shown = tenth
                self.log(f"  {self.name}: {done / 1e6:,.1f} of {total / 1e6:,.1f} MB ({10 * tenth} %)")

    def summary(self):
        if self.start is None:
            return ""
        seconds = max(time.monotonic() - self.start, 1e-6)
        fetched = self.done - self.first
        return f" ({fetched / 1e6:,.1f} MB fetched in {seconds:.1f} s, {fetched / 1e6 / seconds:,.1f} MB/s)"
