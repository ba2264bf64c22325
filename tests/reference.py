"""diffusers' own sampling loop on a real ComfyUI checkpoint: the golden latent for the server tests.

The server runs a graph; this module runs the same model, prompt and seed in-process, but steps it with
diffusers' scheduler (``DDIMScheduler`` with ``timestep_spacing="trailing"``, the N-step LoRAs' recipe,
which TCD at eta 0 must equal when N divides 1000). Only the network is ComfyUI's: the model's noise
prediction in DDPM space is recovered from ComfyUI's denoiser as eps = (x_k - D(x_k, sigma)) / sigma with
x_k = x_t * sqrt(1 + sigma^2).
"""
import torch


def text_cond(clip, text):
    tokens = clip.tokenize(text)
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    return cond, pooled


def load_sd15(path):
    """(ModelPatcher, CLIP) of a checkpoint, loaded by ComfyUI as CheckpointLoaderSimple does."""
    import comfy.sd
    model, clip, _, _ = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=False, output_clip=True)
    return model, clip


def start_noise(seed, size, channels=4):
    """The noise SamplerCustom/KSampler draw for an empty latent of ``size`` (comfy.sample.prepare_noise)."""
    import comfy.sample
    latent = torch.zeros(1, channels, size // 8, size // 8)
    return comfy.sample.prepare_noise(latent, seed)


@torch.no_grad()
def ddim_trailing_latent(model, clip, text, seed, steps, size):
    """diffusers' DDIM 'trailing' text-to-image at guidance 0 (cfg 1), in ComfyUI's output latent space.

    diffusers' SD pipelines start from unit-variance noise in DDPM space; ComfyUI's noise for sigma_max is
    z * sqrt(1 + sigma^2) in k-space, i.e. the same z in DDPM space: both start from ``start_noise``.
    """
    from diffusers import DDIMScheduler
    base = model.model
    cond, _ = text_cond(clip, text)
    sch = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                        set_alpha_to_one=False, steps_offset=1, timestep_spacing="trailing")
    sch.set_timesteps(steps)
    x = start_noise(seed, size).float()
    ms = base.model_sampling
    for t in sch.timesteps:
        sigma = ms.sigma(t.float().reshape(1))
        x_k = x * (1.0 + sigma ** 2).sqrt()
        denoised = base.apply_model(x_k, sigma, c_crossattn=cond.float())
        eps = (x_k - denoised) / sigma
        x = sch.step(eps, t, x).prev_sample
    return base.process_latent_out(x)


def latent_file(path):
    """The latent tensor of a SaveLatent file (safetensors, key 'latent_tensor')."""
    from safetensors.torch import load_file
    return load_file(str(path))["latent_tensor"]
