"""Where the host files its own nodes, so the pack's nodes sit beside core's in the node library.

Core moved its nodes between releases (0.3.64: ``loaders``, ``sampling/custom_sampling/samplers``; 0.33:
``model/loaders``, ``model/sampling/samplers`` ...). Rather than a table per version, each pack node takes the
category of the core node it stands beside, read from the host when the pack is imported (core's nodes are
registered before custom nodes). A host where that node cannot be found gets the 0.3.64 category.
"""
import importlib
import logging

log = logging.getLogger("HyperSD")

#: kind -> (core module, core node it stands beside, category when the host does not say)
BESIDE = {
    "loaders": ("nodes", "LoraLoader", "loaders"),
    "samplers": ("comfy_extras.nodes_custom_sampler", "KSamplerSelect", "sampling/custom_sampling/samplers"),
    "schedulers": ("comfy_extras.nodes_custom_sampler", "BasicScheduler", "sampling/custom_sampling/schedulers"),
    "model_patches": ("comfy_extras.nodes_model_advanced", "ModelSamplingDiscrete", "advanced/model"),
}


def _registered(node_id):
    """The node class the host registered under ``node_id`` (ComfyUI's ``nodes.NODE_CLASS_MAPPINGS``)."""
    try:
        return importlib.import_module("nodes").NODE_CLASS_MAPPINGS.get(node_id)
    except (ImportError, AttributeError):
        return None


def _defined(module, node_id):
    """The core class, imported from its module (in-process use, before the host registered its extras)."""
    try:
        return getattr(importlib.import_module(module), node_id, None)
    except ImportError:
        return None


def core_category(kind):
    """The category the host gives the core node of ``kind`` (see BESIDE), else its 0.3.64 category."""
    module, node_id, fallback = BESIDE[kind]
    for cls in (_registered(node_id), _defined(module, node_id)):
        category = getattr(cls, "CATEGORY", None)
        if isinstance(category, str) and category:
            return category
    log.debug("[Hyper-SD] core node %s not found: filing the pack's %s under %s", node_id, kind, fallback)
    return fallback
