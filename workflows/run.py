"""Run a shipped Hyper-SD workflow headless: UI format -> API format -> ComfyUI server -> saved images.

    python workflows/run.py workflows/hyper-sdxl-4step-lora.json --prompt "a red fox in snow" --seed 7 \
        --size 1024 [--negative TEXT] [--set NODE.input=VALUE ...] [--model OLD=NEW] \
        [--server http://127.0.0.1:8188 | --start [--comfy-arg=--lowvram ...]] [--download] [--out images/]

The workflow file is used as saved (the UI format the frontend writes, schema 0.4 or 1). ``convert()`` turns
it into the API format against the running server's ``/object_info`` the way the frontend's own
``app.graphToPrompt()`` does: Reroute nodes and link reroutes, PrimitiveNodes, widgets turned into inputs,
bypassed (mode 4) and muted (mode 2) nodes, groups and subgraphs; tests/test_conversion.py holds it equal to
the frontend's prompts for every shipped workflow, edited variants of them and 71 of ComfyUI's template
workflows. (comfy-cli 1.23.0's converter was weighed: it gives the frontend's prompt for 116 of those 143
files, not for the PrimitiveNode and bypass variants nor 3 templates, and it brings ~23 runtime dependencies
-- gitpython, posthog, mixpanel, uv, ruff, imageio-ffmpeg ...) Then the edits, each of which changes what it
names or stops (exit status 2) naming what it looked for: ``--prompt`` / ``--negative`` set the text encoders
that feed the samplers' positive / negative inputs, found by the wiring (through FluxGuidance,
ConditioningCombine, guiders ...), so ComfyUI's own templates work too; ``--seed`` every seed input,
``--size`` every width/height (a linked one on its source node, e.g. a PrimitiveInt), ``--model OLD=NEW``
every input whose value is OLD, ``--set NODE.input=VALUE`` one input (NODE an id or a title; VALUE JSON, else
text; checked against the server's types and ranges). ``--download`` then fetches the model files the workflow
lists (as the canvas offers them) that the server lacks into the server's own folders (Hugging Face URLs only;
size and sha256 checked; resumed after any interruption). The prompt is queued on ``--server`` (default
http://127.0.0.1:8188) or, with ``--start``, on a ComfyUI started from $COMFYUI_PATH (default ~/comfy/ComfyUI)
with $COMFYUI_PYTHON (default the python running this script) and this pack, stopped afterwards: ComfyUI's own
models, input and user folders (and its extra_model_paths.yaml) are used, ``--cpu`` is added when torch finds
no CUDA, ROCm, MPS or XPU device (unless a ``--comfy-arg`` chooses the device), and each ``--comfy-arg`` is
passed on. Progress is printed as it comes (step i/N of each node); the images are saved under ``--out`` and
their paths printed (a server-supplied name that would land outside ``--out`` is refused).

Errors are one clear line each (exit status 2): server unreachable; a node type the server lacks (names the
pack to install); a missing model (the file, the folder, the download URL from the workflow's ``models``
list); a validation error (the node and the input); an execution error (the node and ComfyUI's message).

This file is the command; the work is done by the modules of ``workflows/runner/`` (see its ``__init__``).
"""
import sys

if __package__:  # imported as part of the pack (the tests)
    from .runner.cli import main
else:  # run as a script: this folder is on sys.path, so the runner package imports by its name
    from runner.cli import main

if __name__ == "__main__":
    sys.exit(main())
