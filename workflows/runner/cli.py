"""The command line of workflows/run.py (its usage is run.py's docstring)."""
import argparse
import sys
import time
from pathlib import Path

from . import client, distributed, launcher, models
from .convert import convert, load_workflow
from .edits import customize
from .errors import RunError


def parser():
    ap = argparse.ArgumentParser(prog="workflows/run.py", description="Run a ComfyUI workflow headless.")
    ap.add_argument("workflow", type=Path)
    ap.add_argument("--prompt", help="positive prompt: the text of every text encoder feeding a sampler's "
                                     "positive input (found by the wiring, not by title)")
    ap.add_argument("--negative", help="negative prompt: the text encoders feeding the negative inputs (exit 2 "
                                       "when the workflow has none of its own or its cfg is 1)")
    ap.add_argument("--seed", type=int, help="every seed / noise_seed input (or the node it is linked from)")
    ap.add_argument("--size", type=int, help="width and height of the image: every width / height input (or the "
                                             "node it is linked from, such as a PrimitiveInt)")
    ap.add_argument("--model", action="append", default=[], metavar="OLD=NEW", help="use file NEW instead of OLD")
    ap.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                    help="set one input of one node (NODE: its id or title; VALUE: JSON, else text), checked "
                         "against the server's types and ranges; repeatable")
    ap.add_argument("--download", action="store_true",
                    help="first download the model files the workflow lists (its models list, as the canvas "
                         "offers them) that the server lacks, into the server's own folders: Hugging Face URLs, "
                         "size and sha256 checked, resumed after an interruption")
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
    return ap


def main(argv=None):
    ap = parser()
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
        prompt = prepare(server, workflow, args)
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
    except KeyboardInterrupt:
        print("interrupted (a partial download, if any, is kept: the next run resumes it)", file=sys.stderr)
        return 130
    finally:
        launcher.stop_server(proc, getattr(server, "workdir", None), keep_log=not ok)


def prepare(server, workflow, args):
    """The API prompt with the command line's edits, and --download's files on the server (edits first: a
    mistyped option fails before gigabytes move)."""
    info = server.get("/object_info", timeout=120)
    replaced = [m.partition("=")[0] for m in args.model]
    pending = [m["name"] for m in models.listed_models(workflow)] if args.download else ()
    prompt = customize(convert(workflow, info), args.prompt, args.seed, args.size, args.model,
                       negative=args.negative, sets=args.set, object_info=info, pending=pending, log=print)
    if args.download:
        models.fetch_missing(server, workflow, client.model_folders(server), replaced, print)
    return prompt
