"""Noise for the stochastic samplers, seeded the way ComfyUI's core samplers seed theirs."""
import torch


def seeded_noise_sampler(x, seed=None):
    """``noise_sampler(sigma, sigma_next)`` drawing unit Gaussians shaped like ``x`` on x's device.

    With a seed (ComfyUI passes the prompt's seed as ``extra_args["seed"]``) the stream is reproducible:
    same seed, same image. Without one it falls back to the global generator, like core.
    """
    generator = None
    if seed is not None:
        generator = torch.Generator(device=x.device)
        generator.manual_seed(int(seed))

    def sample(sigma, sigma_next):
        return torch.randn(x.size(), dtype=x.dtype, layout=x.layout, device=x.device, generator=generator)

    return sample
