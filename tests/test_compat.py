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
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.every_host  # also run on the oldest supported host (.ci/run)

pytest.importorskip("diffusers")
from diffusers import LCMScheduler, TCDScheduler  # noqa: E402
from test_host_sampling import close, comfy_sample, diffusers_tcd, make_model  # noqa: E402

from hypersd_pack.samplers import schedules  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TCD_ID, UNET_ID = "TCDModelSamplingDiscrete", "HyperSDXL1StepUnetScheduler"
TCD_SCHEDULERS = ("simple", "sgm_uniform")
# The official node's interface, from its source (ByteDance/Hyper-SD, comfyui/ComfyUI-HyperSDXL1StepUnetScheduler).
OFFICIAL_INPUTS = {"required": {"model": ("MODEL",), "steps": ("INT", {"default": 1, "min": 1, "max": 10})}}
OFFICIAL = {"RETURN_TYPES": ("SIGMAS",), "CATEGORY": "sampling/custom_sampling/schedulers", "FUNCTION": "get_sigmas"}
# Saved workflows carry no category: the stand-ins are filed beside the core node the original was filed with
# (the originals' categories are those of 0.3.64's core nodes; later hosts moved them).
BESIDE = {TCD_ID: ("comfy_extras.nodes_model_advanced", "ModelSamplingDiscrete"),
          UNET_ID: ("comfy_extras.nodes_custom_sampler", "BasicScheduler")}
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


def same_category(mine, node_id, original):
    """The stand-in is where this host files the core node the original sat beside (the original's own
    category wherever that core node still has it, as on 0.3.64)."""
    import importlib
    module, core_id = BESIDE[node_id]
    core = getattr(importlib.import_module(module), core_id).CATEGORY
    return mine.CATEGORY == core and (core != original or mine.CATEGORY == original)


def test_tcd_node_has_the_originals_interface(pack, upstream):
    theirs, mine = upstream.NODE_CLASS_MAPPINGS[TCD_ID], ours(pack, TCD_ID)
    assert without_tooltips(mine.INPUT_TYPES()) == theirs.INPUT_TYPES()
    assert list(mine.INPUT_TYPES()["required"]) == list(theirs.INPUT_TYPES()["required"])  # widget order
    for attr in ("RETURN_TYPES", "FUNCTION"):
        assert getattr(mine, attr) == getattr(theirs, attr), attr
    assert same_category(mine, TCD_ID, theirs.CATEGORY)
    assert getattr(mine, "RETURN_NAMES", None) == getattr(theirs, "RETURN_NAMES", None)
    assert all(e[1]["tooltip"] for e in mine.INPUT_TYPES()["required"].values()) and mine.DESCRIPTION


def test_unet_scheduler_has_the_originals_interface(pack):
    mine = ours(pack, UNET_ID)
    assert without_tooltips(mine.INPUT_TYPES()) == OFFICIAL_INPUTS
    assert list(mine.INPUT_TYPES()["required"]) == ["model", "steps"]
    for attr, value in OFFICIAL.items():
        assert attr == "CATEGORY" or getattr(mine, attr) == value, attr
    assert same_category(mine, UNET_ID, OFFICIAL["CATEGORY"])
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
    assert schedules.tcd_timesteps(4, 0.0) == []
    for bad in ((0, 1.0), (51, 1.0), (4, 1.5), (4, -0.1)):
        with pytest.raises(schedules.ScheduleError):
            schedules.tcd_timesteps(*bad)


def test_comfyui_tcd_timesteps_edges():
    assert schedules.comfyui_tcd_timesteps(4) == [999, 759, 499, 259]
    assert schedules.comfyui_tcd_timesteps(4, 1.0, "sgm_uniform") == [999, 759, 499, 259]
    assert schedules.comfyui_tcd_timesteps(4, 0.0, "simple") == schedules.comfyui_tcd_timesteps(4, 0.0,
                                                                                            "sgm_uniform") == []
    for bad, match in (((0, 1.0), "steps 0"), ((51, 1.0), "steps 51"), ((4, 1.5), "denoise 1.5"),
                       ((4, -0.1), "denoise -0.1"), ((4, 1.0, "karras"), "'karras'")):
        with pytest.raises(schedules.ScheduleError, match=match):
            schedules.comfyui_tcd_timesteps(*bad)


# --- SIGMAS against ComfyUI-TCD ---------------------------------------------------------------------------
# Every steps (1-50) x denoise (0, 0.01 .. 0.99, 1.0) x scheduler: 10100 cells. ComfyUI-TCD's node costs
# ~5 ms a call (it builds its sampling object each time) plus ~0.4 ms per point of an sgm_uniform schedule
# (int(steps / denoise) of them), so the default run takes a spread of cells that covers every steps and
# every denoise value (~13 s); HYPERSD_FULL_GRID=1 runs all 10100 and checks the counts the README gives.
DENOISE_GRID = (0.0,) + tuple(k / 100 for k in range(1, 100)) + (1.0,)
FULL_GRID = os.environ.get("HYPERSD_FULL_GRID") == "1"
GRID_COUNTS = {  # (scheduler, category): cells of the full grid; categories from exact arithmetic (see cell_kind)
    ("simple", "equal"): 5000, ("simple", "denoise 0"): 50,
    ("sgm_uniform", "equal"): 130, ("sgm_uniform", "interpolated"): 4870, ("sgm_uniform", "denoise 0"): 50,
}


def grid_cells(scheduler):
    """(steps, denoise) cells of the run: all of them with HYPERSD_FULL_GRID=1, else every cell with denoise 0
    or 1 and each 11th of the rest (by steps + denoise index: every steps and every denoise value occurs);
    sgm_uniform only up to int(steps / denoise) = 100 there (the slow part; 50..100 includes the repeats)."""
    cells = []
    for steps in range(1, 51):
        for k, denoise in enumerate(DENOISE_GRID):
            if not (FULL_GRID or denoise in (0.0, 1.0) or (steps + k) % 11 == 0):
                continue
            if not FULL_GRID and scheduler == "sgm_uniform" and denoise > 0 and int(steps / denoise) > 100:
                continue
            cells.append((steps, denoise))
    return cells


def grid_positions(steps, denoise):
    """Exact grid index (0 = timestep 19 .. 49 = 999) of each kept step of ComfyUI's sgm_uniform on the grid."""
    total = int(steps / denoise)
    return [Fraction(49 * (total - x), total) for x in range(total - steps, total)]


def cell_kind(scheduler, steps, denoise):
    """What ComfyUI-TCD's node gives here, by exact arithmetic: 'denoise 0' (it fails), 'equal' (grid sigmas),
    'interpolated' (sgm_uniform with a point between grid timesteps: its sigma is not its timestep's)."""
    if denoise == 0.0:
        return "denoise 0"
    if scheduler == "sgm_uniform" and any(f.denominator != 1 for f in grid_positions(steps, denoise)):
        return "interpolated"
    return "equal"


def theirs_seen(upstream, model, steps, scheduler="simple", denoise=1.0, eta=0.3):
    """ComfyUI-TCD's outputs and the integer timesteps its patched model calls the UNet at."""
    m, sampler, sigmas = upstream.TCDModelSamplingDiscrete().patch(model, steps, scheduler, denoise, eta)
    ms = m.get_model_object("model_sampling")
    return m, sampler, sigmas, [int(t) for t in ms.timestep(sigmas[:-1])]


def check_cell(upstream, node, model, scheduler, steps, denoise):
    """ComfyUI-TCD and the stand-in on one cell; returns its kind after asserting what the kind defines."""
    kind = cell_kind(scheduler, steps, denoise)
    ms = model.get_model_object("model_sampling")
    mine = node.patch(model, steps, scheduler, denoise, 0.3)[2]
    if kind == "denoise 0":  # ComfyUI-TCD indexes its empty SIGMAS; ours passes the latent through
        with pytest.raises(IndexError):
            theirs_seen(upstream, model, steps, scheduler, denoise)
        assert mine.numel() == 0
        return kind
    _, _, theirs, seen = theirs_seen(upstream, model, steps, scheduler, denoise)
    expected = schedules.comfyui_tcd_timesteps(steps, denoise, scheduler)
    assert mine.dtype == theirs.dtype == torch.float32 and float(mine[-1]) == float(theirs[-1]) == 0.0
    assert torch.equal(mine, torch.cat([ms.sigmas[expected], torch.zeros(1)])), (steps, denoise)
    if scheduler == "simple":
        assert seen == expected and torch.equal(mine, theirs), (steps, denoise)  # bit for bit
        return kind
    positions = grid_positions(steps, denoise)
    for i, f in enumerate(positions):
        if f.denominator == 2:  # an exact half: ours the lower grid timestep, theirs per float32 rounding
            lower = int(f) * 20 + 19
            assert expected[i] == lower and seen[i] in (lower, lower + 20), (steps, denoise, i)
        else:
            assert seen[i] == expected[i], (steps, denoise, i)
        if f.denominator == 1:  # on a grid point: the same sigma (theirs via exp(log(sigma)), an ulp apart)
            assert torch.allclose(theirs[i], mine[i], rtol=1e-6, atol=0), (steps, denoise, i)
        else:  # between grid points: theirs is interpolated, strictly between the two grid sigmas
            low, high = ms.sigmas[int(f) * 20 + 19], ms.sigmas[int(f) * 20 + 39]
            assert low < theirs[i] < high and theirs[i] != mine[i], (steps, denoise, i)
    return kind


@pytest.mark.parametrize("scheduler", ["simple", "sgm_uniform"])
def test_same_sigmas_as_comfyui_tcd_on_the_grid(pack, upstream, scheduler):
    """ComfyUI-TCD's own node, loaded in-process, against the stand-in on steps x denoise. simple: the same
    SIGMAS bit for bit everywhere it runs. sgm_uniform: the same grid timesteps (the model's), with the sigma
    of that timestep (see test_differs_sgm_uniform_uses_the_grid_timestep_sigma)."""
    model = make_model()
    node = ours(pack, TCD_ID)()
    counts = Counter(check_cell(upstream, node, model, scheduler, s, d) for s, d in grid_cells(scheduler))
    if FULL_GRID:
        assert counts == Counter({k: v for (sch, k), v in GRID_COUNTS.items() if sch == scheduler}), counts
    assert counts["equal"] > 0 and counts["denoise 0"] == 50, counts


@pytest.mark.parametrize("family", ["SD15", "SDXL"])
def test_same_sigmas_as_comfyui_tcd_per_family(pack, upstream, family):
    """Both families' noise schedules (the grid is each model's own table), 1-8 steps, a few denoise values."""
    model = make_model("EPS", family)
    node = ours(pack, TCD_ID)()
    for steps in range(1, 9):
        for denoise in (1.0, 0.6, 0.3, 0.07):
            for scheduler in TCD_SCHEDULERS:
                assert check_cell(upstream, node, model, scheduler, steps, denoise) != "denoise 0"


def test_denoise_below_1_takes_the_tail_of_int_steps_over_denoise(pack, upstream):
    """KSampler's img2img rule, as ComfyUI-TCD applies it on its grid: int(4 / 0.6) = 6 steps (999, 839,
    679, 499, 339, 179), the last 4 kept. Below steps / 50 the longer schedule repeats grid points: 4 steps
    at denoise 0.05 are the last 4 of 80, and repeat 39."""
    model = make_model()
    ms = model.get_model_object("model_sampling")
    node = ours(pack, TCD_ID)()
    for (steps, denoise), expected in {(4, 0.6): [679, 499, 339, 179], (4, 0.3): [319, 239, 159, 79],
                                       (4, 0.05): [59, 39, 39, 19], (1, 0.5): [499]}.items():
        _, _, theirs, seen = theirs_seen(upstream, model, steps, "simple", denoise)
        mine = node.patch(model, steps, "simple", denoise, 0.3)[2]
        assert seen == expected == [int(t) for t in ms.timestep(mine[:-1])]
        assert torch.equal(mine, theirs)


def test_differs_denoise_0_returns_the_latent(pack, upstream):
    """denoise 0: ComfyUI-TCD's node fails (it indexes its empty SIGMAS); ours gives no step, so SamplerCustom
    returns the latent unchanged, as core's BasicScheduler does."""
    model = make_model()
    with pytest.raises(IndexError):
        theirs_seen(upstream, model, 4, "simple", 0.0)
    _, sampler, sigmas = ours(pack, TCD_ID)().patch(model, 4, "simple", 0.0, 0.3)
    assert sigmas.numel() == 0
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    out = comfy_sample(model, sampler, sigmas, torch.randn_like(latent), latent=latent)
    assert torch.allclose(out, latent, rtol=0, atol=1e-6)


def test_differs_sgm_uniform_uses_the_grid_timestep_sigma(pack, upstream):
    """With sgm_uniform, ComfyUI-TCD's SIGMAS are log-interpolated between grid points while its patched
    model calls the UNet at the nearest grid timestep; ours gives the sigma of that grid timestep, so the
    sigma and the timestep the UNet sees agree. At an exact half ComfyUI-TCD's pick depends on float32
    rounding: either is accepted from it, ours is the lower one (ComfyUI's argmin takes the first)."""
    model = make_model()
    ms = model.get_model_object("model_sampling")
    node = ours(pack, TCD_ID)()
    # 4 steps: grid positions 49, 36.75, 24.5 (a half), 12.25
    assert grid_positions(4, 1.0) == [49, Fraction(147, 4), Fraction(49, 2), Fraction(49, 4)]
    _, _, theirs, seen = theirs_seen(upstream, model, 4, "sgm_uniform")
    mine = node.patch(model, 4, "sgm_uniform", 1.0, 0.3)[2]
    assert [int(t) for t in ms.timestep(mine[:-1])] == [999, 759, 499, 259]
    assert seen[:2] == [999, 759] and seen[2] in (499, 519) and seen[3] == 259
    assert torch.equal(mine, torch.cat([ms.sigmas[[999, 759, 499, 259]], torch.zeros(1)]))
    assert torch.allclose(theirs[0], mine[0], rtol=1e-6) and not torch.allclose(theirs[1:4], mine[1:4], rtol=1e-3)
    # 50 steps: 50 points on 49 grid gaps repeat a timestep, in both (the sampler steps twice at that level)
    _, _, _, seen50 = theirs_seen(upstream, model, 50, "sgm_uniform")
    mine50 = node.patch(model, 50, "sgm_uniform", 1.0, 0.3)[2]
    assert len(set(seen50)) == 49 and [int(t) for t in ms.timestep(mine50[:-1])] == seen50


# --- images: the same latents through SamplerCustom's code path -------------------------------------------
def global_seed_for(seed, like):
    """The seed for torch's global generator (ComfyUI-TCD's noise) that draws what core's noise sampler draws
    for the prompt's ``seed`` (ours): ``seed``, or ``seed + 1`` where core offsets it (0.7+ on the CPU)."""
    from test_host_sampling import core_noise
    first = core_noise(like, seed)(None, None)
    for candidate in (seed, seed + 1):
        if torch.equal(torch.randn(like.shape, generator=torch.Generator().manual_seed(candidate)), first):
            return candidate
    pytest.fail(f"core's noise sampler for seed {seed} draws neither seed's nor seed + 1's stream")


@pytest.mark.parametrize("steps", [1, 2, 4, 8])
@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_same_latents_as_comfyui_tcd_and_diffusers(pack, upstream, steps, eta):
    """Each through its own MODEL, SAMPLER and SIGMAS. ComfyUI-TCD draws its step noise from torch's
    global generator, ours from core's noise sampler for the prompt's seed: seeding the global one so that
    it draws the same numbers (global_seed_for) just before sampling makes the two runs comparable."""
    model = make_model()
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(steps))
    m, sampler, sigmas, _ = theirs_seen(upstream, model, steps, eta=eta)
    torch.manual_seed(global_seed_for(42, noise))
    theirs = comfy_sample(m, sampler, sigmas, noise, seed=42)
    m2, sampler2, sigmas2 = ours(pack, TCD_ID)().patch(model, steps, "simple", 1.0, eta)
    mine = comfy_sample(m2, sampler2, sigmas2, noise, seed=42)
    ref, _ = diffusers_tcd(model, schedules.tcd_timesteps(steps), eta, noise, seed=42)
    close(mine, ref)
    close(theirs, mine, tol=2e-5)
    assert torch.isfinite(mine).all() and mine.std() > 0.01


@pytest.mark.parametrize("steps,denoise", [(4, 0.6), (4, 0.05), (8, 0.1), (2, 0.01)])
@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_same_img2img_latents_as_comfyui_tcd(pack, upstream, steps, denoise, eta):
    """denoise below 1 on an input latent, including schedules that repeat a timestep (4 at 0.05, 8 at 0.1, 2
    at 0.01): the same result as ComfyUI-TCD's node (global generator seeded as above)."""
    model = make_model()
    gen = torch.Generator().manual_seed(steps)
    latent, noise = torch.randn(1, 4, 8, 8, generator=gen), torch.randn(1, 4, 8, 8, generator=gen)
    m, sampler, sigmas, seen = theirs_seen(upstream, model, steps, "simple", denoise, eta)
    torch.manual_seed(global_seed_for(5, noise))
    theirs = comfy_sample(m, sampler, sigmas, noise, latent=latent, seed=5)
    _, sampler2, sigmas2 = ours(pack, TCD_ID)().patch(model, steps, "simple", denoise, eta)
    mine = comfy_sample(model, sampler2, sigmas2, noise, latent=latent, seed=5)
    close(theirs, mine, tol=2e-5)
    assert not torch.allclose(mine, latent, atol=1e-3)
    if denoise <= 0.1:
        assert len(set(seen)) < steps  # a repeated timestep was run


def test_empty_latent_below_denoise_1_starts_like_comfyui_tcd(pack, upstream):
    """txt2img at denoise < 1 (an empty latent): ComfyUI's start noise z * sigma0, as ComfyUI-TCD (the pack's
    own TCD Sampler would rescale it to diffusers' unit variance)."""
    model = make_model()
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(9))
    m, sampler, sigmas, _ = theirs_seen(upstream, model, 4, "simple", 0.5, 0.0)
    theirs = comfy_sample(m, sampler, sigmas, noise)
    _, sampler2, sigmas2 = ours(pack, TCD_ID)().patch(model, 4, "simple", 0.5, 0.0)
    close(theirs, comfy_sample(model, sampler2, sigmas2, noise), tol=2e-5)


def test_differs_step_noise_follows_the_prompt_seed(pack, upstream):
    """At eta > 0 ComfyUI-TCD's step noise comes from torch's global generator, so its result depends on that
    generator's state; ours only on the prompt's seed (as ComfyUI's core samplers: a generator seeded with
    it). In a SamplerCustom run the global generator is the one ComfyUI's start noise was drawn from
    (comfy.sample.prepare_noise seeds it with the noise seed), so ComfyUI-TCD's step noise on the CPU is
    that stream's continuation: reproducible, but other numbers than ours."""
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
    import comfy.sample
    start = comfy.sample.prepare_noise(torch.zeros(1, 4, 8, 8), 7)  # SamplerCustom's start noise for seed 7
    theirs = comfy_sample(m, sampler, sigmas, start, seed=7)
    torch.manual_seed(7)
    torch.randn(start.shape)  # the same draw again: the global stream where prepare_noise left it
    assert torch.equal(theirs, comfy_sample(m, sampler, sigmas, start, seed=7))
    assert not torch.allclose(theirs, comfy_sample(m2, sampler2, sigmas2, start, seed=7), atol=1e-3)


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
