"""Test-only ComfyUI custom node: lets ComfyUI's own T5-XXL class load the reduced T5 of tests/flow_models.py.

ComfyUI builds T5-XXL from a fixed json config (24 layers, 64 heads, d_ff 10240: 4.7 B parameters), too big
for the test machines. ComfyUI's text-encoder classes read config overrides from the model option
``t5xxl_model_config``; this module wraps ``comfy.sd.load_text_encoder_state_dicts`` (what DualCLIPLoader,
TripleCLIPLoader and CLIPLoader call) so that, when a T5 state dict is smaller than T5-XXL, that option
carries the sizes read from its tensors. Full-size files are untouched. Never shipped with the pack: the
tests link this folder into the test server's custom_nodes (and call ``install()`` in-process).
"""
import logging

import comfy.sd

FF_KEY = "encoder.block.0.layer.1.DenseReluDense.wi_1.weight"
Q_KEY = "encoder.block.0.layer.0.SelfAttention.q.weight"
BIAS_KEY = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"


def reduced_t5_config(state_dict):
    """{num_layers, num_heads, d_kv, d_ff} of a T5 state dict smaller than T5-XXL, else None."""
    if FF_KEY not in state_dict or state_dict[FF_KEY].shape[0] == 10240:
        return None
    heads = state_dict[BIAS_KEY].shape[1]
    layers = len({k.split(".")[2] for k in state_dict if k.startswith("encoder.block.")})
    return {"num_layers": layers, "num_heads": heads, "d_kv": state_dict[Q_KEY].shape[0] // heads,
            "d_ff": state_dict[FF_KEY].shape[0]}


def install():
    original = comfy.sd.load_text_encoder_state_dicts
    if getattr(original, "reduced_t5", False):
        return

    def load_text_encoder_state_dicts(state_dicts=[], embedding_directory=None, clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION,
                                      model_options={}, **kwargs):
        # **kwargs: arguments newer hosts add (disable_dynamic since 0.16), passed on as given
        for sd in state_dicts:
            config = reduced_t5_config(sd)
            if config is not None:
                logging.info("test stub: reduced T5 %s", config)
                model_options = {**model_options, "t5xxl_model_config": config}
        return original(state_dicts, embedding_directory=embedding_directory, clip_type=clip_type,
                        model_options=model_options, **kwargs)

    load_text_encoder_state_dicts.reduced_t5 = True
    comfy.sd.load_text_encoder_state_dicts = load_text_encoder_state_dicts


install()
NODE_CLASS_MAPPINGS = {}
