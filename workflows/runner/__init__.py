"""The headless runner behind ``workflows/run.py``, one job per module:

- ``convert``: UI-format workflow -> API prompt, a port of the frontend's ``app.graphToPrompt()``;
- ``edits``: the command line's edits of the prompt (``--prompt``, ``--seed``, ...);
- ``client``: HTTP and websocket client of a ComfyUI server, and its refusals explained in one line;
- ``launcher``: starting and stopping a ComfyUI for ``--start``;
- ``distributed``: running on a ComfyUI-Distributed master and its workers;
- ``cli``: the command line.

No ComfyUI import anywhere: the runner talks to a server.
"""
