"""The command line's edits of an API prompt: --prompt, --seed, --size, --model OLD=NEW."""


def customize(prompt, text=None, seed=None, size=None, models=()):
    """Apply --prompt, --seed, --size and --model OLD=NEW to an API prompt (in place)."""
    replace = dict(m.split("=", 1) for m in models)
    for node in prompt.values():
        inputs = node["inputs"]
        if text is not None and node["class_type"] == "CLIPTextEncode" and \
                node["_meta"]["title"].lower().startswith("positive"):
            inputs["text"] = text
        for key in ("seed", "noise_seed"):
            if seed is not None and key in inputs and not isinstance(inputs[key], list):
                inputs[key] = seed
        for key in ("width", "height"):
            if size is not None and key in inputs and not isinstance(inputs[key], list):
                inputs[key] = size
        if size is not None and node["class_type"] == "PrimitiveInt" and \
                node["_meta"]["title"].lower() in ("width", "height"):  # a size wired into several nodes
            inputs["value"] = size
        for key, value in list(inputs.items()):
            if isinstance(value, str) and value in replace:
                inputs[key] = replace[value]
    return prompt


# ----------------------------------------------------------------------------------------------- server
