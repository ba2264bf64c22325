"""The command line of workflows/run.py (its usage is run.py's docstring)."""
import argparse
import sys
import time
from pathlib import Path

from . import client, distributed, launcher
from .convert import convert, load_workflow
from .edits import customize
from .errors import RunError


def main(argv=None):
    ap = argparse.ArgumentParser(prog="workflows/run.py", description="Run a ComfyUI workflow headless.")
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
                         "per participant (seed, seed+1, ...); see workflows/runner/distributed.py")
    args = ap.parse_args(argv)
    if args.comfy_arg and not args.start:
        ap.error("--comfy-arg needs --start (it is passed to the ComfyUI the runner starts)")
    proc, server, ok = None, None, False
    try:
        workflow = load_workflow(args.workflow)
        if args.start:
            server, proc = launcher.start_server(launcher.comfyui_path(), print, args.comfy_arg)
        else:
            server = client.Server(args.server)
        prompt = customize(convert(workflow, server.get("/object_info", timeout=120)), args.prompt, args.seed,
                           args.size, args.model)
        t0 = time.time()
        if args.distributed:
            paths = distributed.run(server, workflow, prompt, args.out)
        else:
            paths = client.run(server, workflow, prompt, args.out)
        print(f"done in {time.time() - t0:.1f} s: {len(paths)} image(s)")
        ok = True
        return 0
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        launcher.stop_server(proc, getattr(server, "workdir", None), keep_log=not ok)

