"""The stand-ins for ByteDance's HyperSDXL1StepUnetScheduler and JettHu/ComfyUI-TCD's
TCDModelSamplingDiscrete (nodes/compat.py), checked against the originals.

ComfyUI-TCD's own node is loaded in-process from its unmodified source (``../shared/upstream``, unpacked at
test time) and run side by side with ours on ComfyUI's real ``BaseModel`` (its model_sampling, CFG guider,
KSAMPLER and SamplerCustom's code path) with an analytic UNet; diffusers' TCDScheduler is the third
witness. The official one-step node is 25 lines whose whole behaviour is ``model.model.model_sampling
.sigma(tensor([800]))`` followed by 0; it is checked against that expression and against diffusers'
alphas. Where ours differs on purpose, a test named ``test_differs_*`` shows the difference.

Skipped with a message without ComfyUI (COMFYUI_PATH) or without the upstream snapshot.
"""
import importlib.util
import logging
import os
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
from diffusers import LCMScheduler, TCDScheduler  # noqa: E402
from test_host_sampling import close, comfy_sample, diffusers_tcd, make_model  # noqa: E402

from hypersd_pack.samplers import schedules  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TCD_ID, UNET_ID = "TCDModelSamplingDiscrete", "HyperSDXL1StepUnetScheduler"
# The official node's interface, from its source (ByteDance/Hyper-SD, comfyui/ComfyUI-HyperSDXL1StepUnetScheduler).
OFFICIAL_INPUTS = {"required": {"model": ("MODEL",), "steps": ("INT", {"default": 1, "min": 1, "max": 10})}}
OFFICIAL = {"RETURN_TYPES": ("SIGMAS",), "CATEGORY": "sampling/custom_sampling/schedulers", "FUNCTION": "get_sigmas"}
DENOISES = (1.0, 0.9, 0.75, 0.5, 0.33, 0.3, 0.2, 0.1, 0.05, 0.02)


def unpack_tool():
    for cand in (os.environ.get("HYPERSD_SHARED"), REPO.parent / "shared", REPO.parents[1] / "shared",
                 Path("/work/shared")):
        if cand and (Path(cand) / "tools" / "unpack-upstream").is_file():
            return Path(cand) / "tools" / "unpack-upstream"
    pytest.skip("needs ../shared/tools/unpack-upstream and ../shared/upstream/ComfyUI-TCD-*.tar.gz (JettHu/"
                "ComfyUI-TCD's source snapshot) or HYPERSD_SHARED pointing at that shared folder")


def unpack_comfyui_tcd(dest):
    """JettHu/ComfyUI-TCD's folder, unpacked under ``dest`` (unmodified)."""
    out = subprocess.run([str(unpack_tool()), "ComfyUI-TCD", str(dest)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    folder = Path(out.stdout.strip().splitlines()[-1])
    assert (folder / "__init__.py").is_file()
    return folder


@pytest.fixture(scope="module")
def pack(comfy_host):
    return comfy_host


@pytest.fixture(scope="module")
def upstream(pack, tmp_path_factory):
    """ComfyUI-TCD's module, imported from its own folder inside this ComfyUI (as ComfyUI would)."""
    folder = unpack_comfyui_tcd(tmp_path_factory.mktemp("upstream"))
    spec = importlib.util.spec_from_file_location("comfyui_tcd_upstream", folder / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ours(pack, node_id):
    return pack.nodes.compat.COMPAT_NODES[node_id][0]


def without_tooltips(spec):
    return {sect: {name: (entry[0],) + ((opts,) if (opts := {k: v for k, v in entry[1].items() if k != "tooltip"})
                                        else ()) if len(entry) > 1 else entry
                   for name, entry in inputs.items()}
            for sect, inputs in spec.items()}


def test_registered_under_both_ids_without_another_pack(pack):
    for node_id in (TCD_ID, UNET_ID):
        assert pack.NODE_CLASS_MAPPINGS[node_id] is ours(pack, node_id)
        assert "Hyper-SD" in pack.NODE_DISPLAY_NAME_MAPPINGS[node_id]


def test_tcd_node_has_the_originals_interface(pack, upstream):
    theirs, mine = upstream.NODE_CLASS_MAPPINGS[TCD_ID], ours(pack, TCD_ID)
    assert without_tooltips(mine.INPUT_TYPES()) == theirs.INPUT_TYPES()
    assert list(mine.INPUT_TYPES()["required"]) == list(theirs.INPUT_TYPES()["required"])  # widget order
    for attr in ("RETURN_TYPES", "FUNCTION", "CATEGORY"):
        assert getattr(mine, attr) == getattr(theirs, attr), attr
    assert getattr(mine, "RETURN_NAMES", None) == getattr(theirs, "RETURN_NAMES", None)
    assert all(e[1]["tooltip"] for e in mine.INPUT_TYPES()["required"].values()) and mine.DESCRIPTION


def test_unet_scheduler_has_the_originals_interface(pack):
    mine = ours(pack, UNET_ID)
    assert without_tooltips(mine.INPUT_TYPES()) == OFFICIAL_INPUTS
    assert list(mine.INPUT_TYPES()["required"]) == ["model", "steps"]
    for attr, value in OFFICIAL.items():
        assert getattr(mine, attr) == value, attr
    assert getattr(mine, "RETURN_NAMES", None) is None and mine.DESCRIPTION and all(mine.OUTPUT_TOOLTIPS)


# --- TCD timesteps: diffusers is the reference ------------------------------------------------------------
@pytest.mark.parametrize("denoise", DENOISES)
def test_tcd_timesteps_equal_diffusers_tcdscheduler(denoise):
    for steps in range(1, 51):
        sch = TCDScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
        try:
            sch.set_timesteps(steps, strength=denoise)
        except ValueError:
            with pytest.raises(schedules.ScheduleError, match=f"denoise {denoise}"):
                schedules.tcd_timesteps(steps, denoise)
            continue
        assert schedules.tcd_timesteps(steps, denoise) == sch.timesteps.tolist(), (steps, denoise)


def test_tcd_timesteps_edges():
    assert schedules.tcd_timesteps(4) == [999, 759, 499, 259]
    assert schedules.tcd_timesteps(4, 0.0) == [] and schedules.tcd_sgm_uniform_timesteps(4, 0.0) == []
    for bad in ((0, 1.0), (51, 1.0), (4, 1.5), (4, -0.1)):
        with pytest.raises(schedules.ScheduleError):
            schedules.tcd_timesteps(*bad)


# --- SIGMAS against ComfyUI-TCD ---------------------------------------------------------------------------
def theirs_seen(upstream, model, steps, scheduler="simple", denoise=1.0, eta=0.3):
    """ComfyUI-TCD's outputs and the integer timesteps its patched model calls the UNet at."""
    m, sampler, sigmas = upstream.TCDModelSamplingDiscrete().patch(model, steps, scheduler, denoise, eta)
    ms = m.get_model_object("model_sampling")
    return m, sampler, sigmas, [int(t) for t in ms.timestep(sigmas[:-1])]


@pytest.mark.parametrize("family", ["SD15", "SDXL"])
def test_same_sigmas_as_comfyui_tcd(pack, upstream, family):
    model = make_model("EPS", family)
    ms = model.get_model_object("model_sampling")
    node = ours(pack, TCD_ID)()
    for steps in range(1, 51):
        for denoise in (1.0, 0.5) if steps <= 25 else (1.0,):
            _, _, theirs, seen = theirs_seen(upstream, model, steps, denoise=denoise)
            _, _, mine = node.patch(model, steps, "simple", denoise, 0.3)
            assert [int(t) for t in ms.timestep(mine[:-1])] == seen == schedules.tcd_timesteps(steps, denoise)
            assert mine.dtype == theirs.dtype == torch.float32 and float(mine[-1]) == float(theirs[-1]) == 0.0
            # the same float32 table: theirs goes through exp(log(sigma)) on a 50-point copy, 1 ulp apart
            assert torch.allclose(mine, theirs, rtol=1e-6, atol=0), (steps, denoise)


def test_differs_denoise_follows_diffusers_strength(pack, upstream):
    """ComfyUI-TCD computes int(steps / denoise) steps and keeps the last ones; diffusers' TCDScheduler (and
    ours) takes ``steps`` timesteps from the lowest int(50 x denoise) grid points. Often the same, not always."""
    model = make_model()
    node = ours(pack, TCD_ID)()
    ms = model.get_model_object("model_sampling")
    _, _, _, seen = theirs_seen(upstream, model, 4, denoise=0.3)
    _, _, mine = node.patch(model, 4, "simple", 0.3, 0.3)
    sch = TCDScheduler()
    sch.set_timesteps(4, strength=0.3)
    assert [int(t) for t in ms.timestep(mine[:-1])] == sch.timesteps.tolist() == [299, 239, 159, 79]
    assert seen == [319, 239, 159, 79]
    # denoise 0: ComfyUI-TCD fails (an index error on empty sigmas); ours returns the latent unchanged
    with pytest.raises(IndexError):
        theirs_seen(upstream, model, 4, denoise=0.0)
    assert node.patch(model, 4, "simple", 0.0, 0.3)[2].numel() == 0


def sgm_ties(steps, length=50):
    """Positions where sgm_uniform falls exactly halfway between two grid timesteps."""
    top = length - 1
    return {i for i in range(steps) if Fraction(top * (steps - i), steps).denominator == 2}


def test_differs_sgm_uniform_uses_the_grid_timestep_sigma(pack, upstream):
    """With sgm_uniform, ComfyUI-TCD's SIGMAS are log-interpolated between grid points while its patched
    model calls the UNet at the nearest grid timestep; ours gives sigma at that grid timestep, so the sigma
    and the timestep the UNet sees agree. The timesteps are the same except at exact halves, where
    ComfyUI-TCD's pick depends on float32 rounding (ours: the higher one), and at 50 steps, where 50 points
    on 49 grid gaps must repeat one (ComfyUI-TCD repeats it, ours refuses with a message)."""
    model = make_model()
    ms = model.get_model_object("model_sampling")
    node = ours(pack, TCD_ID)()
    ties_total, equal_total = 0, 0
    for steps in range(1, 50):
        _, _, theirs, seen = theirs_seen(upstream, model, steps, "sgm_uniform")
        _, _, mine = node.patch(model, steps, "sgm_uniform", 1.0, 0.3)
        t_mine = [int(t) for t in ms.timestep(mine[:-1])]
        assert t_mine == schedules.tcd_sgm_uniform_timesteps(steps)
        assert all(t % 20 == 19 for t in t_mine) and len(set(t_mine)) == steps
        differ = {i for i, (a, b) in enumerate(zip(t_mine, seen)) if a != b}
        assert differ <= sgm_ties(steps), (steps, t_mine, seen)
        ties_total += len(sgm_ties(steps))
        equal_total += steps - len(differ)
        assert torch.equal(mine, torch.cat([ms.sigma(torch.tensor(t_mine, dtype=torch.float32)),
                                            torch.zeros(1)]))
    assert equal_total > 0.9 * sum(range(1, 50)) and ties_total > 0
    _, _, theirs4, seen4 = theirs_seen(upstream, model, 4, "sgm_uniform")
    assert seen4 == [999, 759, 519, 259]
    assert not torch.allclose(theirs4[1:4], ms.sigma(torch.tensor([759.0, 519.0, 259.0])), rtol=1e-3)
    _, _, _, seen50 = theirs_seen(upstream, model, 50, "sgm_uniform")
    assert len(set(seen50)) == 49
    with pytest.raises(schedules.ScheduleError, match="repeat a timestep"):
        node.patch(model, 50, "sgm_uniform", 1.0, 0.3)


# --- images: the same latents through SamplerCustom's code path -------------------------------------------
@pytest.mark.parametrize("steps", [1, 2, 4, 8])
@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_same_latents_as_comfyui_tcd_and_diffusers(pack, upstream, steps, eta):
    """Each through its own MODEL, SAMPLER and SIGMAS. ComfyUI-TCD draws its step noise from torch's
    global generator, ours from a generator seeded with the prompt's seed: seeding the global one with the
    same seed just before sampling makes the two streams the same numbers."""
    model = make_model()
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(steps))
    m, sampler, sigmas, _ = theirs_seen(upstream, model, steps, eta=eta)
    torch.manual_seed(42)
    theirs = comfy_sample(m, sampler, sigmas, noise, seed=42)
    m2, sampler2, sigmas2 = ours(pack, TCD_ID)().patch(model, steps, "simple", 1.0, eta)
    mine = comfy_sample(m2, sampler2, sigmas2, noise, seed=42)
    ref, _ = diffusers_tcd(model, schedules.tcd_timesteps(steps), eta, noise, seed=42)
    close(mine, ref)
    close(theirs, mine, tol=2e-5)
    assert torch.isfinite(mine).all() and mine.std() > 0.01


def test_differs_step_noise_follows_the_prompt_seed(pack, upstream):
    """ComfyUI-TCD's result at eta > 0 depends on whatever state torch's global generator is in; ours only
    on the prompt's seed (the same seed gives the same image, as with ComfyUI's core samplers)."""
    model = make_model()
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    m, sampler, sigmas, _ = theirs_seen(upstream, model, 4, eta=1.0)
    runs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        runs.append(comfy_sample(m, sampler, sigmas, noise, seed=7))
    assert not torch.allclose(runs[0], runs[1])
    m2, sampler2, sigmas2 = ours(pack, TCD_ID)().patch(model, 4, "simple", 1.0, 1.0)
    mine = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        mine.append(comfy_sample(m2, sampler2, sigmas2, noise, seed=7))
    assert torch.equal(mine[0], mine[1])


def test_differs_model_output_is_the_input_model(pack, upstream):
    """ComfyUI-TCD's MODEL carries a patched model_sampling that snaps every sigma to the 50-step grid (and
    is eps-only); ours passes the model through, so its own sampling (eps, v, zsnr) stays in charge."""
    model = make_model()
    m, _, _, _ = theirs_seen(upstream, model, 4)
    assert type(m.get_model_object("model_sampling")).__name__ == "ModelSamplingDiscreteDistilledTCD"
    assert ours(pack, TCD_ID)().patch(model, 4, "simple", 1.0, 0.3)[0] is model
    v_model = make_model("V_PREDICTION")
    _, sampler, sigmas = ours(pack, TCD_ID)().patch(v_model, 4, "simple", 1.0, 0.3)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    ref, _ = diffusers_tcd(v_model, [999, 759, 499, 259], 0.3, noise, seed=1, prediction_type="v_prediction")
    close(comfy_sample(v_model, sampler, sigmas, noise, seed=1), ref)


def test_flow_model_is_refused_with_the_fix(pack):
    model = make_model("FLOW", "SD3")
    with pytest.raises(pack.nodes.sampling.UnsupportedModelError, match="Hyper-SD Scheduler"):
        ours(pack, TCD_ID)().patch(model, 4, "simple", 1.0, 0.3)
    with pytest.raises(pack.samplers.tcd.SamplingError, match="eta 1.5"):
        ours(pack, TCD_ID)().patch(make_model(), 4, "simple", 1.0, 1.5)


# --- the official one-step scheduler ----------------------------------------------------------------------
@pytest.mark.parametrize("family", ["SD15", "SDXL"])
def test_unet_scheduler_sigmas_are_sigma_800_then_0(pack, family):
    model = make_model("EPS", family)
    official = model.model.model_sampling.sigma(torch.tensor([800]))  # the original's own expression
    official = torch.cat([official, official.new_zeros([1])])
    sch = LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    a = sch.alphas_cumprod[800].double()
    node = ours(pack, UNET_ID)()
    for steps in range(1, 11):  # steps is ignored, as in the original
        (mine,) = node.get_sigmas(model, steps)
        assert torch.equal(mine, official), (steps, mine, official)
    assert float(mine[0]) == pytest.approx(float(((1 - a) / a).sqrt()), rel=1e-6)


def test_differs_pack_unet_sampler_starts_from_unit_variance(pack):
    """The official workflow samples these SIGMAS with a core sampler, whose start noise is z x sigma(800):
    with the stand-in that stays exactly so. The pack's One-Step UNet Loader pairs the same SIGMAS with its
    own sampler, which starts from diffusers' unit-variance noise, z x sqrt(1 + sigma^2): about 2 % apart."""
    import comfy.samplers
    model = make_model("EPS", "SDXL")
    (sigmas,) = ours(pack, UNET_ID)().get_sigmas(model, 1)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(11))
    core = comfy_sample(model, comfy.samplers.ksampler("lcm"), sigmas, noise)
    official = model.model.model_sampling.sigma(torch.tensor([800]))
    again = comfy_sample(model, comfy.samplers.ksampler("lcm"), torch.cat([official, official.new_zeros([1])]),
                         noise)
    assert torch.equal(core, again)
    pack_sampler = comfy.samplers.KSAMPLER(pack.nodes.sampling.sample_lcm_unit_start)
    unit = comfy_sample(model, pack_sampler, sigmas, noise)
    rel = ((unit - core).abs().max() / core.abs().max()).item()
    assert 1e-3 < rel < 0.1, rel


# --- registration next to the original packs --------------------------------------------------------------
class _Other:
    RELATIVE_PYTHON_MODULE = "custom_nodes.ComfyUI-TCD"


def test_an_id_a_pack_loaded_earlier_has_is_left_to_it(pack, caplog):
    compat = pack.nodes.compat
    with caplog.at_level(logging.INFO, logger="HyperSD"):
        classes, names = compat.mappings({TCD_ID: _Other, "KSampler": object})
    assert list(classes) == [UNET_ID] and list(names) == [UNET_ID]
    assert f"[Hyper-SD] {TCD_ID} is already provided by custom_nodes.ComfyUI-TCD" in caplog.text
    assert compat.mappings({})[0] == {k: v[0] for k, v in compat.COMPAT_NODES.items()}


def test_an_id_a_pack_loaded_later_replaced_is_logged(pack, caplog):
    compat = pack.nodes.compat
    mine = {k: v[0] for k, v in compat.COMPAT_NODES.items()}
    classes = dict(mine, **{TCD_ID: _Other})
    names = {k: v[1] for k, v in compat.COMPAT_NODES.items()}
    with caplog.at_level(logging.INFO, logger="HyperSD"):
        replaced = compat.check_replaced(list(mine), classes, names)
    assert replaced == [TCD_ID]
    assert f"[Hyper-SD] {TCD_ID} is provided by custom_nodes.ComfyUI-TCD (loaded after this pack)" in caplog.text
    assert TCD_ID not in names and UNET_ID in names  # the replacing node shows its own name
    assert compat.check_replaced(list(mine), mine, dict(names)) == []
