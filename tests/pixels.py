"""Checks every execution test makes of what it gets back: real pixels and real latents, not just shapes.

A sampler that returns NaN decodes to a black image and one that returns a constant to a flat one; both
pass a shape check. ``real_image`` refuses them.
"""
import numpy as np


def load_image(path):
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def real_image(path_or_array, size=None):
    """The image as an int16 array, after asserting it is non-constant (per channel, and not all black)."""
    img = load_image(path_or_array) if not isinstance(path_or_array, np.ndarray) else path_or_array
    if size is not None:
        assert img.shape[:2] == (size[1], size[0]) if isinstance(size, tuple) else (size, size), img.shape
    assert img.max() > 0, "the image is all black (a NaN or empty latent decodes to black)"
    stds = img.reshape(-1, img.shape[-1]).std(axis=0)
    assert (stds > 1.0).all(), f"the image is (nearly) constant: per-channel std {stds}"
    return img


def real_latent(latent):
    """A float latent tensor after asserting it is finite and non-constant."""
    import torch
    assert torch.isfinite(latent).all(), "the latent has NaN/inf values"
    assert float(latent.float().std()) > 1e-3, f"the latent is (nearly) constant: std {float(latent.std())}"
    return latent
