"""The headless runner behind ``workflows/run.py``, one job per module:

- ``convert``: UI-format workflow -> API prompt, a port of the frontend's ``app.graphToPrompt()``;
- ``edits``: the command line's edits of the prompt (``--prompt``, ``--seed``, ``--set`` ...), never a no-op;
- ``client``: HTTP and websocket client of a ComfyUI server, and its refusals explained in one line;
- ``launcher``: starting and stopping a ComfyUI for ``--start``;
- ``models``: ``--download``, the workflow's listed model files the server lacks, into its folders;
- ``distributed``: running on a ComfyUI-Distributed master and its workers;
- ``cli``: the command line.

No ComfyUI import anywhere: the runner talks to a server (``models`` loads the pack's ``core`` by file path).
"""
