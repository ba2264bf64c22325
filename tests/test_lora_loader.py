"""The Hyper-SD LoRA Loader inside a real (in-process) ComfyUI, on a random-weight SD1.5 checkpoint.

What is checked
---------------
* Every key spelling of :mod:`loras` (kohya with diffusers and ldm paths, diffusers, the 2023 diffusers
  attention-processor format, PEFT with no / ``unet.`` / ``base_model.model.`` prefix), over attention,
  projection, feed-forward, resnet conv (3x3 and 1x1), sampler, embedding and CLIP layers: for 100 % of
  the file's layers the weight ComfyUI patches equals ``W + strength·(alpha/rank)·up@down``, computed in
  the test in float64 from the file's own tensors and the weight *before* patching, and no other weight
  is patched.
* Strength from the recipe (-1 -> 1.0 for SD1.5) and explicit; the recipe outputs; no clip connected
  (a warning, the UNet still patched).
* Wrong family (SDXL / FLUX labels on SD1.5, SD3 on an SDXL model built on the ``meta`` device: no SDXL
  weights are loaded), an SDXL-layout file on SD1.5, foreign keys, shapes that differ, and files that are
  not readable safetensors (truncated, pickle, torch zip, HTML, empty): clear errors, pickles never run.
* SDXL key layouts (names and shapes only) pass the fit check on the meta SDXL model and map every layer.
* Downloads through the node against the local stand-in hub (tests/fakehub.py via HF_ENDPOINT): success
  with ComfyUI progress-bar updates into the first loras folder, a file already present (no request),
  offline / 'never' / missing on the hub / bad checksum / ComfyUI Cancel errors, nothing ComfyUI lists
  (Cancel keeps the hidden partial for the next run to resume).
* No leaks between models: clones patched at 0.5 and 1.0 from one base, two loaders chained, the same
  node re-run with other inputs; the base model's weights are bit-identical afterwards.

How patched weights are read: as sampling does, with ComfyUI's own ``load_models_gpu([patcher])``
(``LoadedModel.model_load`` -> ``ModelPatcher.partially_load``, which first unpatches whatever clone of
the same module was applied before, then ``patch_weight_to_device`` -> ``comfy.lora.calculate_weight``),
the weights are copied, and ``unload_all_models()`` restores the originals. A bare ``clone().patch_model()``
is not enough: the ``comfy.sd.CLIP`` constructor already loaded the base CLIP, which marks its modules
``comfy_patched_weights``, so ``patch_model`` on a LoRA'd CLIP clone silently applies nothing; and two
clones share one nn.Module and one backup dict, so patching B while A is applied would stack them.

Tolerance (per element, not a blanket rtol/atol): ComfyUI computes the patched weight in float32
(``temp = W.float(); temp += (s·alpha/rank·mm(up, down))``) and rounds it to the weight's dtype. On CPU
the UNet is float32 and CLIP float16. So ``|patched - exact| <= eps(dtype)·|exact| + eps(dtype)·tiny(dtype)
+ 16·eps(float32)·(|W| + |s·alpha/rank|·|up|@|down|)``: one ulp of the weight's dtype (rounding is half
an ulp) plus float32 accumulation error over the rank. A blanket ``rtol=2e-3, atol=1e-3`` would be 5 % of
a 0.02-sized weight: too loose to tell strength 0.5 from 0.55. Every comparison also asserts that the
LoRA's change is > 100x that bound, so no check can pass vacuously.

diffusers as an extra reference: fusing the same file into a diffusers ``UNet2DConditionModel`` needs the
PEFT backend (``peft`` is not installed in ComfyUI's venv) and a second 3.4 GB float32 UNet on this
2-core/24 GB machine, so it is not done. Instead diffusers' own kohya -> diffusers key converter
(``_convert_non_diffusers_lora_to_diffusers``) checks the hand-written layer table the expectations use.
"""
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import loras
from fakehub import FakeHub

pytestmark = pytest.mark.every_host  # also run on the oldest supported host (.ci/run)

CPU = torch.device("cpu")
LABEL = "SD1.5 · 4 steps"
NAME = "Hyper-SD15-4steps-lora.safetensors"
SDXL_LABEL = "SDXL · 4 steps"
SDXL_NAME = "Hyper-SDXL-4steps-lora.safetensors"
MODEL_EXTENSIONS = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def pack(comfy_host):
    from hypersd_pack.core import catalog, download
    from hypersd_pack.nodes import lora
    return SimpleNamespace(lora=lora, catalog=catalog, download=download, Loader=lora.HyperSDLoraLoader)


@pytest.fixture(scope="module")
def sd15(pack):
    """The random SD1.5 checkpoint (UNet float32 on CPU, CLIP float16), loaded once, and the original
    values of every weight the test LoRAs touch (float64 copies)."""
    import comfy.sd
    import comfy.utils
    import models
    model, clip, _, _ = comfy.sd.load_checkpoint_guess_config(str(models.sd15_checkpoint()), output_vae=False,
                                                              output_clip=True)
    unet_keys = [layer.target for layer in loras.SD15_UNET]
    clip_keys = [layer.target for layer in loras.SD15_CLIP]
    originals = {k: comfy.utils.get_attr(model.model, k).detach().clone() for k in unet_keys}
    originals.update({k: comfy.utils.get_attr(clip.cond_stage_model, k).detach().clone() for k in clip_keys})
    ns = SimpleNamespace(model=model, clip=clip, originals=originals)
    yield ns
    assert_base_untouched(ns)  # after the whole module


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test reaches the internet: offline unless a test starts the local stand-in hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def dirs(comfy_host, tmp_path, monkeypatch):
    """Two loras folders (the first, where downloads go, not created yet), set in ComfyUI's folder_paths."""
    import folder_paths
    first, second = tmp_path / "models" / "loras", tmp_path / "extra" / "loras"
    second.mkdir(parents=True)
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "loras",
                        ([str(first), str(second)], set(folder_paths.supported_pt_extensions)))
    return first, second


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    with FakeHub({}) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
        yield fake


@pytest.fixture
def progress(comfy_host, monkeypatch):
    """Records the (value, total) the pack gives ComfyUI's progress bar. Recorded at
    ``ProgressBar.update_absolute``, not at the hook the server sends messages from: since 0.2x core throttles
    what reaches the hook itself (first and last update always), so the hook would test core's throttle."""
    import comfy.utils
    calls = []
    original = comfy.utils.ProgressBar.update_absolute

    def update_absolute(bar, value, total=None, preview=None):
        calls.append((value, bar.total if total is None else total))
        return original(bar, value, total, preview)

    monkeypatch.setattr(comfy.utils.ProgressBar, "update_absolute", update_absolute)
    return calls


@pytest.fixture(scope="module")
def sdxl_meta(comfy_host):
    """An SDXL model and SDXL CLIP on the meta device: real SDXL classes, names and shapes, no weights."""
    import comfy.model_detection
    import comfy.model_patcher
    import comfy.sd
    import models
    unet_config = comfy.model_detection.convert_config(models._UNET_CONFIGS["SDXL"])
    config = comfy.model_detection.model_config_from_unet_config(unet_config)
    assert type(config).__name__ == "SDXL"
    with torch.device("meta"):
        base = config.get_model({})
        target = config.clip_target()
        text = target.clip(device="meta", dtype=torch.float16)
    model = comfy.model_patcher.ModelPatcher(base, load_device=CPU, offload_device=CPU)
    clip = comfy.sd.CLIP(no_init=True)
    clip.cond_stage_model = text
    clip.patcher = comfy.model_patcher.ModelPatcher(text, load_device=CPU, offload_device=CPU)
    clip.tokenizer, clip.layer_idx, clip.tokenizer_options = None, None, {}
    clip.use_clip_schedule, clip.apply_hooks_to_conds = False, None
    return SimpleNamespace(model=model, clip=clip)


# ------------------------------------------------------------------------------------------ helpers


def load(pack, model, lora=LABEL, strength=None, download="never", clip=None, node=None):
    """The loader at the recipe's strength (strength None) or at a custom strength."""
    custom = "recipe" if strength is None else "custom"
    return (node or pack.Loader()).load(model, lora, 1.0 if strength is None else strength, download,
                                        clip=clip, strength_from=custom)


def read(patcher, keys, unload=True):
    """The weights ``keys`` as ComfyUI computes them for sampling: ``load_models_gpu`` (which unpatches
    whatever clone of the same model was loaded before and applies this patcher's patches), copied, then
    (``unload``) every model unloaded, which restores the original weights."""
    import comfy.model_management
    import comfy.utils
    comfy.model_management.load_models_gpu([patcher], force_full_load=True)
    try:
        return {k: comfy.utils.get_attr(patcher.model, k).detach().clone() for k in keys}
    finally:
        if unload:
            comfy.model_management.unload_all_models()


def expect(originals, contributions):
    """{target: [(part, strength), ...]} -> {target: (exact float64 weight, error bound)}."""
    out = {}
    for target, items in contributions.items():
        w = originals[target]
        exact = w.to(torch.float64).clone()
        spread = w.to(torch.float64).abs()
        for part, strength in items:
            exact += part.delta(strength)
            spread += part.delta_abs_bound(strength)
        fin = torch.finfo(w.dtype)
        bound = fin.eps * exact.abs() + fin.eps * fin.tiny + 16 * torch.finfo(torch.float32).eps * spread
        out[target] = (exact, bound)
    return out


def check(got, originals, contributions):
    """Every target weight within its bound of the exact value, and the change far above the bound."""
    assert set(got) == set(contributions)
    for target, (exact, bound) in expect(originals, contributions).items():
        value = got[target]
        assert value.dtype == originals[target].dtype, target
        err = (value.to(torch.float64) - exact).abs()
        worst = (err - bound).max().item()
        assert worst <= 0, (f"{target}: max error {err.max().item():.3g} exceeds its bound "
                            f"(worst excess {worst:.3g})")
        change = (exact - originals[target].to(torch.float64)).abs().max().item()
        if any(s != 0 for _, s in contributions[target]):
            assert change > 100 * bound.max().item(), f"{target}: change {change:.3g} is not above the tolerance"


def contributions(lora, strength, parts=None):
    out = {}
    for part in (parts if parts is not None else lora.parts):
        out.setdefault(part.target, []).append((part, strength))
    return out


def unet_clip_keys(lora):
    return [p.target for p in lora.unet_parts()], [p.target for p in lora.text_parts()]


def check_model_and_clip(model, clip, base, lora, strength):
    unet_keys, clip_keys = unet_clip_keys(lora)
    check(read(model, unet_keys), base.originals, contributions(lora, strength, lora.unet_parts()))
    if clip_keys:
        check(read(clip.patcher, clip_keys), base.originals, contributions(lora, strength, lora.text_parts()))


def new_patch_keys(out, base):
    return set(out.patches) - set(base.patches)


def assert_base_untouched(base):
    """The base model and CLIP carry no patches, and loading them (a prompt without the LoRA, after any
    number of LoRA prompts) gives the original weights, bit for bit."""
    assert base.model.patches == {} and base.clip.patcher.patches == {}
    unet = [k for k in base.originals if not k.startswith("clip_")]
    text = [k for k in base.originals if k.startswith("clip_")]
    got = read(base.model, unet)
    got.update(read(base.clip.patcher, text))
    for key, original in base.originals.items():
        assert torch.equal(got[key], original), f"base weight {key} changed"


def listed(*folders):
    """Files ComfyUI would list in these folders (by extension), and every file at all (hidden ones too)."""
    models, everything = [], []
    for folder in folders:
        if Path(folder).exists():
            for p in Path(folder).rglob("*"):
                if p.is_file():
                    everything.append(p)
                    if p.suffix.lower() in MODEL_EXTENSIONS:
                        models.append(p)
    return sorted(models), sorted(everything)


# ------------------------------------------------------------------------------------------ the layer table


def test_layer_table_matches_the_models(sd15, sdxl_meta):
    """The hand-written table's shapes are the real SD1.5 / SDXL weights' shapes (the table is the oracle)."""
    for layer in loras.SD15_LAYERS:
        assert tuple(sd15.originals[layer.target].shape) == layer.shape, layer
    sdxl_sd = sdxl_meta.model.model.state_dict()
    sdxl_sd.update(sdxl_meta.clip.cond_stage_model.state_dict())
    for layer in loras.SDXL_LAYERS:
        assert tuple(sdxl_sd[layer.target].shape) == layer.shape, layer
    kinds = {layer.kind for layer in loras.SD15_LAYERS}
    assert kinds == {"attention", "projection", "feed-forward", "resnet", "sampler", "embedding", "clip"}
    assert any(len(layer.shape) == 4 and layer.shape[-1] == 3 for layer in loras.SD15_UNET)  # 3x3 convs


CLIP_ATTENTION = {"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "to_out": "out_proj"}


def test_diffusers_reads_the_kohya_names_as_the_table_does(comfy_host):
    """diffusers' own kohya -> diffusers converter names the same modules as the table's diffusers paths."""
    conversion = pytest.importorskip("diffusers.loaders.lora_conversion_utils")
    lora = loras.make_lora(loras.SD15_LAYERS, "kohya")
    converted, alphas = conversion._convert_non_diffusers_lora_to_diffusers(dict(lora.tensors))
    names = set()
    for key in converted:
        if ".down." not in key:
            continue
        name = key.split(".lora")[0].split("_lora.")[0]  # the module diffusers attaches the layer to
        if name.startswith("unet."):  # attention-processor spelling: attn1.processor.to_q / .to_out
            name = name.replace(".processor.to_out", ".to_out.0").replace(".processor.", ".")
        else:  # CLIP attention: self_attn.to_q = transformers' self_attn.q_proj
            head, _, leaf = name.rpartition(".")
            name = head + "." + CLIP_ATTENTION.get(leaf, leaf)
        names.add(name)
    want = {("unet." if not p.layer.text else "text_encoder.") + p.layer.path for p in lora.parts}
    assert names == want
    assert len(alphas) == len(lora.parts)


# ------------------------------------------------------------------------------------------ spellings


@pytest.mark.parametrize("spelling", loras.SPELLINGS)
def test_every_spelling_patches_every_layer_exactly(pack, sd15, dirs, spelling, caplog):
    first, _ = dirs
    lora = loras.make_lora(loras.SD15_LAYERS, spelling, seed=1)
    loras.write(first / NAME, lora)
    caplog.set_level(logging.INFO)

    model, clip, steps, cfg, eta = load(pack, sd15.model, clip=sd15.clip)

    assert (steps, cfg, eta) == (4, 1.0, 0.0)
    unet_keys, clip_keys = unet_clip_keys(lora)
    assert new_patch_keys(model, sd15.model) == set(unet_keys)  # 100 % of the file, nothing else
    assert new_patch_keys(clip.patcher, sd15.clip.patcher) == set(clip_keys)
    if spelling in ("kohya", "kohya-ldm", "diffusers", "diffusers-2023", "peft-unet"):
        assert clip_keys, "the file has CLIP layers"
    check_model_and_clip(model, clip, sd15, lora, 1.0)  # the SD1.5 recipe's strength
    dropped = [r.getMessage() for r in caplog.records if "not loaded" in r.getMessage().lower()]
    assert dropped == []
    assert_base_untouched(sd15)


def test_peft_respelled_keys_keep_their_alpha(pack, sd15, dirs):
    """base_model.model. PEFT keys are renamed by the pack: a .alpha stored next to them still applies."""
    first, _ = dirs
    lora = loras.make_lora(loras.SD15_UNET, "peft-base-model", seed=2, alpha=True)
    assert all(p.alpha is not None and p.alpha != p.rank for p in lora.parts)
    loras.write(first / NAME, lora)
    model, _, *_ = load(pack, sd15.model, strength=0.75)
    check(read(model, lora.targets), sd15.originals, contributions(lora, 0.75))


@pytest.mark.parametrize("strength", [0.5, 1.7, 0.0, -0.5, -1.0])
def test_explicit_strength(pack, sd15, dirs, strength):
    first, _ = dirs
    lora = loras.make_lora(loras.SD15_LAYERS, "kohya", seed=3)
    loras.write(first / NAME, lora)
    model, clip, *_ = load(pack, sd15.model, strength=strength, clip=sd15.clip)
    check_model_and_clip(model, clip, sd15, lora, strength)


# The labels workflows save in widgets_values: a public interface, never renamed (old workflows must load).
PINNED_LABELS = [
    "SD1.5 · 1 step (unified, TCD)", "SD1.5 · 2 steps", "SD1.5 · 4 steps", "SD1.5 · 8 steps",
    "SD1.5 · 8 steps CFG", "SD1.5 · 12 steps CFG",
    "SDXL · 1 step (unified, TCD)", "SDXL · 2 steps", "SDXL · 4 steps", "SDXL · 8 steps",
    "SDXL · 8 steps CFG", "SDXL · 12 steps CFG",
    "SD3 · 4 steps CFG", "SD3 · 8 steps CFG", "SD3 · 16 steps CFG",
    "FLUX.1-dev · 8 steps", "FLUX.1-dev · 16 steps",
]


def test_lora_choices_are_the_pinned_labels(pack):
    types = pack.Loader.INPUT_TYPES()
    required, optional = types["required"], types["optional"]
    assert required["lora"][0] == PINNED_LABELS and len(PINNED_LABELS) == 17
    assert required["lora"][1]["default"] in PINNED_LABELS
    # widget order: old workflows saved [label, strength, download]; the new choice comes after them
    # (optional, so API prompts written before it still validate)
    widgets = [name for name, spec in {**required, **optional}.items() if spec[0] not in ("MODEL", "CLIP")]
    assert widgets == ["lora", "strength", "download", "strength_from"]
    assert optional["strength_from"][0] == ["recipe", "custom"] and optional["strength_from"][1]["default"] == "recipe"
    assert required["strength"][1]["min"] <= -1.0 < 0 < required["strength"][1]["max"]


def test_validate_inputs_accepts_labels_and_official_file_names(pack):
    validate = pack.Loader.VALIDATE_INPUTS
    for entry in pack.catalog.LORAS:
        assert validate(entry.label) is True and validate(entry.filename) is True
    for bad in ("Hyper-SDXL-1step-Unet.safetensors", "SDXL · one-step UNet (diffusers, fp32)",
                "my-lora.safetensors", "sdxl · 4 steps"):
        msg = validate(bad)
        assert isinstance(msg, str) and f"'{bad}'" in msg and "SDXL · 4 steps" in msg, msg
        assert "Hyper-SDXL-4steps-lora.safetensors" in msg


def test_file_name_loads_like_its_label(pack, sd15, dirs):
    first, _ = dirs
    lora = loras.make_lora(loras.SD15_UNET, "kohya", seed=6)
    loras.write(first / NAME, lora)
    model, _, steps, cfg, eta = load(pack, sd15.model, NAME, strength=0.5)
    assert (steps, cfg, eta) == (4, 1.0, 0.0)
    check(read(model, lora.targets), sd15.originals, contributions(lora, 0.5))


def test_recipe_strength_ignores_the_widget_and_says_so(pack, sd15, dirs, caplog):
    """strength_from 'recipe' applies the recipe's strength whatever the widget holds (-1 = old files)."""
    first, _ = dirs
    lora = loras.make_lora(loras.SD15_UNET, "kohya", seed=7)
    loras.write(first / NAME, lora)
    caplog.set_level(logging.INFO)
    for widget, warned in ((-1.0, False), (1.0, False), (0.3, True)):
        caplog.clear()
        model, *_ = pack.Loader().load(sd15.model, LABEL, widget, "never", strength_from="recipe")
        check(read(model, lora.targets), sd15.originals, contributions(lora, 1.0))
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert bool(warnings) == warned, warnings
        if warned:
            assert "strength 0.3 is ignored" in warnings[0] and "'custom'" in warnings[0]
    with pytest.raises(ValueError, match="strength_from='recipes'"):
        pack.Loader().load(sd15.model, LABEL, 1.0, "never", strength_from="recipes")


def test_api_prompt_without_strength_from(pack, sd15, dirs):
    """An API prompt written before strength_from existed: -1 is the recipe, any other value is applied."""
    first, _ = dirs
    lora = loras.make_lora(loras.SD15_UNET, "kohya", seed=8)
    loras.write(first / NAME, lora)
    for strength, applied in ((-1.0, 1.0), (-0.5, -0.5), (0.7, 0.7)):
        model, *_ = pack.Loader().load(sd15.model, LABEL, strength, "never")
        check(read(model, lora.targets), sd15.originals, contributions(lora, applied))


def test_conv3x3_lora_shapes(pack, sd15, dirs):
    """A 3x3 conv LoRA is down [r, in, 3, 3] and up [out, r, 1, 1]; ComfyUI flattens and reshapes it."""
    first, _ = dirs
    convs = [layer for layer in loras.SD15_UNET if len(layer.shape) == 4 and layer.shape[-1] == 3]
    lora = loras.make_lora(convs, "kohya-ldm", seed=4, rank=6, alpha=2.5)
    for part in lora.parts:
        out_dim, in_dim = part.layer.shape[:2]
        assert tuple(part.down.shape) == (6, in_dim, 3, 3) and tuple(part.up.shape) == (out_dim, 6, 1, 1)
    loras.write(first / NAME, lora)
    model, *_ = load(pack, sd15.model, strength=1.0)
    check(read(model, lora.targets), sd15.originals, contributions(lora, 1.0))


@pytest.mark.parametrize("label", ["SD1.5 · 1 step (unified, TCD)", "SD1.5 · 2 steps", "SD1.5 · 8 steps",
                                   "SD1.5 · 8 steps CFG", "SD1.5 · 12 steps CFG"])
def test_recipe_outputs_for_every_sd15_file(pack, sd15, dirs, label):
    entry = pack.catalog.BY_LABEL[label]
    first, _ = dirs
    lora = loras.make_lora(loras.SD15_UNET[:3], "kohya", seed=5)
    loras.write(first / entry.filename, lora)
    model, clip, steps, cfg, eta = load(pack, sd15.model, label)
    assert (steps, cfg, eta) == (entry.steps, entry.cfg, entry.eta)
    assert clip is None
    assert {patches[-1][0] for patches in model.patches.values()} == {1.0}  # every SD1.5 recipe: 1.0


def test_without_clip_warns_and_still_patches_the_unet(pack, sd15, dirs, caplog):
    first, _ = dirs
    lora = loras.make_lora(loras.SD15_LAYERS, "kohya", seed=6)
    loras.write(first / NAME, lora)
    caplog.set_level(logging.INFO)

    model, clip, *_ = load(pack, sd15.model, clip=None)

    assert clip is None
    assert new_patch_keys(model, sd15.model) == {p.target for p in lora.unet_parts()}
    check(read(model, [p.target for p in lora.unet_parts()]), sd15.originals,
          contributions(lora, 1.0, lora.unet_parts()))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("text-encoder" in w and "clip" in w for w in warnings), warnings
    assert not any("not loaded" in w.lower() for w in warnings), warnings
    assert sd15.clip.patcher.patches == {}


# ------------------------------------------------------------------------------------------ no leaks


def test_two_clones_from_one_base_keep_their_own_strength(pack, sd15, dirs):
    """Model A at 0.5 then model B at 1.0 from the same base, by the same node instance (a re-run with
    other inputs), patched and unpatched one after the other and then A again: each has its own weights."""
    first, _ = dirs
    lora = loras.make_lora(loras.SD15_LAYERS, "kohya", seed=7)
    loras.write(first / NAME, lora)
    node = pack.Loader()
    a_model, a_clip, *_ = load(pack, sd15.model, strength=0.5, clip=sd15.clip, node=node)
    b_model, b_clip, *_ = load(pack, sd15.model, strength=1.0, clip=sd15.clip, node=node)
    assert a_model is not sd15.model and b_model is not a_model and a_model.model is sd15.model.model

    check_model_and_clip(a_model, a_clip, sd15, lora, 0.5)
    assert_base_untouched(sd15)
    check_model_and_clip(b_model, b_clip, sd15, lora, 1.0)
    assert_base_untouched(sd15)
    check_model_and_clip(a_model, a_clip, sd15, lora, 0.5)
    assert_base_untouched(sd15)


def test_two_loaders_chained_in_one_graph(pack, sd15, dirs):
    """Loader 1 (kohya file, 0.5) -> loader 2 (PEFT file, 1.0): both LoRAs add up, layer by layer."""
    first, _ = dirs
    one = loras.make_lora(loras.SD15_LAYERS, "kohya", seed=9)
    two = loras.make_lora(loras.SD15_LAYERS, "peft-unet", seed=10)
    loras.write(first / NAME, one)
    loras.write(first / "Hyper-SD15-8steps-lora.safetensors", two)

    m1, c1, *_ = load(pack, sd15.model, LABEL, 0.5, clip=sd15.clip)
    m2, c2, steps, *_ = load(pack, m1, "SD1.5 · 8 steps", 1.0, clip=c1)

    assert steps == 8
    both = contributions(one, 0.5)
    for target, items in contributions(two, 1.0).items():
        both.setdefault(target, []).extend(items)
    unet = {k: v for k, v in both.items() if not k.startswith("clip_")}
    text = {k: v for k, v in both.items() if k.startswith("clip_")}
    check(read(m2, list(unet)), sd15.originals, unet)
    check(read(c2.patcher, list(text)), sd15.originals, text)
    check_model_and_clip(m1, c1, sd15, one, 0.5)  # the first loader's output is unchanged
    assert_base_untouched(sd15)


# ------------------------------------------------------------------------------------------ wrong family


@pytest.mark.parametrize("label,family", [(SDXL_LABEL, "SDXL"), ("FLUX.1-dev · 8 steps", "FLUX.1-dev"),
                                          ("SD3 · 4 steps CFG", "SD3")])
def test_wrong_family_label_on_sd15_fails_before_looking_for_the_file(pack, sd15, dirs, hub, label, family):
    first, second = dirs
    with pytest.raises(pack.lora.LoraMismatchError) as info:
        load(pack, sd15.model, label, download="if missing", clip=sd15.clip)
    message = str(info.value)
    assert family in message and "SD1.5" in message and pack.catalog.BY_LABEL[label].filename in message
    assert hub.requests == [] and listed(first, second) == ([], [])
    assert_base_untouched(sd15)


def test_sd3_label_on_an_sdxl_model(pack, sdxl_meta, dirs, hub):
    with pytest.raises(pack.lora.LoraMismatchError) as info:
        load(pack, sdxl_meta.model, "SD3 · 8 steps CFG", download="if missing", clip=sdxl_meta.clip)
    assert "SD3" in str(info.value) and "SDXL" in str(info.value)
    assert hub.requests == []


def test_sdxl_file_under_an_sd15_name_does_not_fit(pack, sd15, dirs):
    """An SDXL-layout LoRA (renamed to the SD1.5 file name) on SD1.5: refused, naming SDXL-only layers."""
    first, _ = dirs
    lora = loras.make_lora(loras.SDXL_LAYERS, "kohya-ldm", seed=11)
    loras.write(first / NAME, lora)
    with pytest.raises(pack.lora.LoraMismatchError) as info:
        load(pack, sd15.model, clip=sd15.clip)
    message = str(info.value)
    assert "does not fit this SD1.5 model" in message and NAME in message
    assert "lora_te2_" in message or "transformer_blocks_1" in message or "label_emb" in message
    assert_base_untouched(sd15)


def test_sd15_file_under_an_sdxl_name_does_not_fit_sdxl(pack, sdxl_meta, dirs):
    first, _ = dirs
    loras.write(first / SDXL_NAME, loras.make_lora(loras.SD15_LAYERS, "kohya", seed=12))
    with pytest.raises(pack.lora.LoraMismatchError) as info:
        load(pack, sdxl_meta.model, SDXL_LABEL, clip=sdxl_meta.clip)
    assert "does not fit this SDXL model" in str(info.value)
    assert sdxl_meta.model.patches == {}


@pytest.mark.parametrize("spelling", loras.SPELLINGS)
def test_sdxl_layouts_fit_an_sdxl_model(pack, sdxl_meta, dirs, spelling):
    """Every spelling of an SDXL LoRA passes the fit check (names and shapes) and maps each layer to the
    right SDXL weight (UNet, CLIP-L te1 and CLIP-G te2) with the file's own tensors and alpha."""
    first, _ = dirs
    lora = loras.make_lora(loras.SDXL_LAYERS, spelling, seed=13)
    loras.write(first / SDXL_NAME, lora)
    model, clip, steps, cfg, eta = load(pack, sdxl_meta.model, SDXL_LABEL, clip=sdxl_meta.clip)
    assert (steps, cfg, eta) == (4, 1.0, 0.0)
    for patcher, parts in ((model, lora.unet_parts()), (clip.patcher, lora.text_parts())):
        assert set(patcher.patches) == {p.target for p in parts}
        for part in parts:
            (strength, adapter, strength_model, offset, function), = patcher.patches[part.target]
            up, down, alpha = adapter.weights[:3]
            assert strength == 1.0 and strength_model == 1.0 and offset is None and function is None
            assert torch.equal(up, part.up) and torch.equal(down, part.down)
            assert alpha == part.alpha
    assert sdxl_meta.model.patches == {} and sdxl_meta.clip.patcher.patches == {}


# ------------------------------------------------------------------------------------------ keys and files


def test_foreign_keys_are_refused_and_named(pack, sd15, dirs):
    first, _ = dirs
    lora = loras.make_lora(loras.SD15_LAYERS, "kohya", seed=14)
    tensors = dict(lora.tensors)
    junk = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_qq"
    tensors[junk + ".lora_down.weight"] = torch.zeros(4, 320, dtype=torch.float16)
    tensors[junk + ".lora_up.weight"] = torch.zeros(320, 4, dtype=torch.float16)
    tensors["lora_unet_not_a_layer.alpha"] = torch.tensor(1.0)
    loras.write(first / NAME, tensors)
    with pytest.raises(pack.lora.LoraMismatchError) as info:
        load(pack, sd15.model, clip=sd15.clip)
    message = str(info.value)
    assert "3 of its" in message and junk in message and "lora_unet_not_a_layer.alpha" in message
    assert_base_untouched(sd15)


def test_layer_shapes_that_differ_are_refused(pack, sd15, dirs):
    """An SD1.5-named cross-attention layer with SDXL's 2048-wide context does not fit SD1.5's 768."""
    first, _ = dirs
    bad = loras.Layer("attention", "down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k",
                      "diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight", (320, 2048))
    loras.write(first / NAME, loras.make_lora(loras.SD15_UNET[:4] + (bad,), "kohya", seed=15))
    with pytest.raises(pack.lora.LoraMismatchError) as info:
        load(pack, sd15.model)
    message = str(info.value)
    assert "shapes differ" in message and "attn2_to_k" in message and "2048" in message
    assert_base_untouched(sd15)


def test_text_encoder_shapes_that_differ_are_refused(pack, sd15, dirs):
    """The same for a diffusers text-encoder layer (``lora_linear_layer``): ComfyUI itself would only log
    'ERROR lora …' and leave the weight unpatched."""
    first, _ = dirs
    bad = loras.Layer("clip", "text_model.encoder.layers.0.self_attn.q_proj",
                      "clip_l.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight", (768, 1024), 1)
    loras.write(first / NAME, loras.make_lora(loras.SD15_UNET[:2] + (bad,), "diffusers-2023", seed=18))
    with pytest.raises(pack.lora.LoraMismatchError) as info:
        load(pack, sd15.model, clip=sd15.clip)
    assert "shapes differ" in str(info.value) and "self_attn.q_proj" in str(info.value)
    assert_base_untouched(sd15)


@pytest.mark.parametrize("kind", ["truncated", "pickle", "torch-zip", "html", "empty"])
def test_unreadable_files_give_a_clear_error_and_never_unpickle(pack, sd15, dirs, tmp_path, kind):
    first, _ = dirs
    path = first / NAME
    marker = tmp_path / "unpickled"
    lora = loras.make_lora(loras.SD15_UNET[:4], "kohya", seed=16)
    if kind == "truncated":
        loras.write_truncated(path, lora)
    elif kind == "pickle":
        loras.write_pickle(path, marker)
    elif kind == "torch-zip":
        loras.write_torch_zip(path, lora)
    elif kind == "html":
        loras.write_html(path)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    with pytest.raises(pack.lora.ModelFileError) as info:
        load(pack, sd15.model, download="if missing")
    message = str(info.value)
    assert str(path) in message and "truncated or not a safetensors" in message and "download" in message
    assert not marker.exists()
    assert_base_untouched(sd15)


# ------------------------------------------------------------------------------------------ downloads


@pytest.fixture(scope="module")
def payload(comfy_host):
    """A ~4 MB SD1.5 LoRA (several 1 MiB download chunks) and its parts."""
    lora = loras.make_lora(loras.SD15_UNET, "kohya", seed=17, rank=32)
    data = loras.to_bytes(lora)
    assert len(data) > 3 * 1024 * 1024
    return lora, data


def test_download_through_the_node_with_progress(pack, sd15, dirs, hub, progress, payload):
    lora, data = payload
    first, second = dirs
    hub.files[NAME] = data

    model, *_ = load(pack, sd15.model, download="if missing")

    assert listed(first, second) == ([first / NAME], [first / NAME])  # nothing partial, nothing else
    assert (first / NAME).read_bytes() == data
    assert len(progress) >= 3
    assert all(total == len(data) for _, total in progress)
    values = [v for v, _ in progress]
    assert values == sorted(values) and values[0] == 0 and values[-1] == len(data)
    check(read(model, lora.targets), sd15.originals, contributions(lora, 1.0))
    assert [r.method for r in hub.requests if r.role == "hub"] == ["HEAD"]


def test_file_already_present_makes_no_request(pack, sd15, dirs, hub, progress, payload):
    lora, data = payload
    first, second = dirs
    hub.files[NAME] = b"should never be fetched"
    present = second / "hyper" / NAME.lower()
    present.parent.mkdir(parents=True)
    present.write_bytes(data)

    model, *_ = load(pack, sd15.model, download="if missing")

    assert hub.requests == [] and progress == []
    assert listed(first, second) == ([present], [present])
    check(read(model, lora.targets), sd15.originals, contributions(lora, 1.0))


def test_offline_error_names_file_folders_and_url(pack, sd15, dirs, hub, monkeypatch):
    first, second = dirs
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(pack.download.DownloadError) as info:
        load(pack, sd15.model, download="if missing")
    message = str(info.value)
    entry = pack.catalog.BY_FILENAME[NAME]
    for needle in (NAME, str(first), str(second), entry.url, "HF_HUB_OFFLINE"):
        assert needle in message, needle
    assert hub.requests == [] and listed(first, second) == ([], [])


def test_policy_never_names_file_and_folders(pack, sd15, dirs, hub):
    first, second = dirs
    with pytest.raises(pack.download.DownloadError) as info:
        load(pack, sd15.model, download="never")
    message = str(info.value)
    for needle in (NAME, str(first), str(second), "'never'"):
        assert needle in message, needle
    assert hub.requests == [] and listed(first, second) == ([], [])


@pytest.mark.parametrize("fault", ["missing-on-hub", "bad-checksum", "comfyui-cancel"])
def test_failed_downloads_leave_nothing_listed(pack, sd15, dirs, hub, progress, payload, fault, monkeypatch):
    import comfy.model_management
    _, data = payload
    first, second = dirs
    hub.files[NAME] = data
    expected = pack.download.DownloadError
    if fault == "missing-on-hub":
        hub.files.clear()
    elif fault == "bad-checksum":
        hub.advertise_sha[NAME] = "0" * 64
        expected = pack.download.ChecksumError
    else:  # the user presses Cancel while the body streams in
        import comfy.utils
        calls = progress

        def cancel(value, total, preview=None, node_id=None):
            calls.append((value, total))
            if value > 0:
                comfy.model_management.interrupt_current_processing(True)
        monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", cancel)  # the hook core's ProgressBar calls
        expected = comfy.model_management.InterruptProcessingException
    try:
        with pytest.raises(expected) as info:
            load(pack, sd15.model, download="if missing")
    finally:
        comfy.model_management.interrupt_current_processing(False)
    if fault != "comfyui-cancel":
        assert NAME in str(info.value) and pack.catalog.BY_FILENAME[NAME].url in str(info.value)
        assert listed(first, second) == ([], [])
    else:  # Cancel keeps the bytes that arrived, hidden (not a model extension), for the next run to resume
        partial = first / f".{NAME}.{hub.sha256(data)[:16]}.partial"
        assert listed(first, second) == ([], [partial]) and data.startswith(partial.read_bytes())
    assert_base_untouched(sd15)
