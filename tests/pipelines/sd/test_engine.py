"""SD-family ControlNet engine: parity with diffusers' pipelines on tiny saved checkpoints, caches, errors."""

import numpy as np
import pytest
import torch
from diffusers import (
    ControlNetModel,
    LCMScheduler,
    StableDiffusionControlNetPipeline,
    StableDiffusionXLControlNetPipeline,
    UNet2DConditionModel,
)
from PIL import Image

from pipelines.registry import MODELS_DIR, ModelError, Registry
from pipelines.sd.engine import SDControlNetEngine
from pipelines.testing import build_random_sd
from tests.pipelines.conftest import write_manifest

PROMPT = "a red fox sitting in the snow, watercolour"
ATOL = 1e-4


def make_sketch(seed: int = 0, size: tuple[int, int] = (240, 320)) -> np.ndarray:
    """White strokes on black at a size other than the model's, so the resize path runs too."""
    rng = np.random.default_rng(seed)
    sketch = np.zeros((*size, 3), np.uint8)
    for _ in range(6):
        y, x = rng.integers(0, size[0] - 8), rng.integers(0, size[1] - 60)
        sketch[y : y + 4, x : x + 60] = 255
        sketch[rng.integers(0, size[0] - 60) :, x : x + 3][:60] = 255
    return sketch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models are bound by per-op overhead: one intra-op thread is as fast on an idle 2-core machine and several
    times faster on a busy one (OpenMP threads wait on each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def references(sd_models_dir):
    """diffusers' own pipelines, loaded independently from the same folders."""
    root = sd_models_dir
    sd = StableDiffusionControlNetPipeline.from_pretrained(
        root / "sd" / "base", controlnet=ControlNetModel.from_pretrained(root / "sd" / "controlnet")
    )
    xl = StableDiffusionXLControlNetPipeline.from_pretrained(
        root / "sdxl" / "base",
        controlnet=ControlNetModel.from_pretrained(root / "sdxl" / "controlnet"),
        add_watermarker=False,
    )
    lcm = StableDiffusionControlNetPipeline.from_pretrained(
        root / "sd15" / "base", controlnet=ControlNetModel.from_pretrained(root / "sd15" / "controlnet")
    )
    lcm.scheduler = LCMScheduler.from_config(lcm.scheduler.config)
    lcm.load_lora_weights(root / "sd15" / "lora")
    lcm.fuse_lora()
    for pipe in (sd, xl, lcm):
        pipe.set_progress_bar_config(disable=True)
    return {"tiny-sd": sd, "tiny-sdxl": xl, "tiny-sd15-lcm": lcm}


def reference_image(pipe, sketch, *, seed, steps, strength, resolution, guidance) -> np.ndarray:
    h, w = resolution
    return pipe(
        PROMPT,
        image=Image.fromarray(sketch),
        height=h,
        width=w,
        num_inference_steps=steps,
        guidance_scale=guidance,
        controlnet_conditioning_scale=strength,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np",
    ).images[0]


def our_image(engine, sketch, *, seed, steps, strength, resolution) -> np.ndarray:
    prompt, control = engine.encode_prompt(PROMPT), engine.encode_control(sketch, resolution)
    return engine._generate_array(prompt, control, seed=seed, steps=steps, strength=strength, resolution=resolution)[0]


CASES = [
    # model, guidance, seed, steps, strength, (h, w)
    ("tiny-sd", 0.0, 0, 1, 1.0, (256, 256)),
    ("tiny-sd", 0.0, 1, 2, 0.5, (256, 256)),
    ("tiny-sd", 0.0, 2, 4, 0.8, (192, 256)),
    ("tiny-sdxl", 0.0, 0, 1, 1.0, (256, 256)),
    ("tiny-sdxl", 0.0, 3, 2, 0.7, (256, 256)),
    ("tiny-sdxl", 0.0, 4, 4, 1.0, (256, 192)),
    ("tiny-sd15-lcm", 1.0, 0, 2, 1.0, (256, 256)),
    ("tiny-sd15-lcm", 1.0, 5, 4, 0.6, (256, 256)),
]


@pytest.mark.parametrize(
    "name, guidance, seed, steps, strength, resolution",
    CASES,
    ids=[f"parity-{c[0]}-seed{c[2]}-{c[3]}step-s{c[4]}-{c[5][0]}x{c[5][1]}" for c in CASES],
)
def test_parity_with_diffusers_pipeline(sd_engines, references, name, guidance, seed, steps, strength, resolution):
    sketch = make_sketch(seed)
    args = {"seed": seed, "steps": steps, "strength": strength, "resolution": resolution}
    ours = our_image(sd_engines[name], sketch, **args)
    ref = reference_image(references[name], sketch, guidance=guidance, **args)
    assert ours.shape == ref.shape == (*resolution, 3)
    assert ref.std() > 0.01  # a constant image would make parity meaningless
    assert np.abs(ours - ref).max() < ATOL


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sdxl"])
def test_parity_encode_prompt(sd_engines, references, name):
    ours = sd_engines[name].encode_prompt(PROMPT).tensors
    pipe = references[name]
    if name == "tiny-sdxl":
        embeds, _, pooled, _ = pipe.encode_prompt(PROMPT, device="cpu", do_classifier_free_guidance=False)
        torch.testing.assert_close(ours["pooled_prompt_embeds"], pooled, atol=1e-6, rtol=0)
    else:
        embeds, _ = pipe.encode_prompt(PROMPT, "cpu", 1, False)
    torch.testing.assert_close(ours["prompt_embeds"], embeds, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sdxl"])
def test_long_prompt_is_truncated_and_flagged(sd_engines, references, name):
    engine = sd_engines[name]
    long = ("a red fox jumps over a lazy dog " * 400)[:10_000]
    cond = engine.encode_prompt(long)
    assert cond.truncated and cond.n_tokens == 77
    short = engine.encode_prompt("a red fox")
    assert not short.truncated and short.n_tokens < 77
    reference = references[name].encode_prompt(
        long, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False
    )
    torch.testing.assert_close(cond.tensors["prompt_embeds"], reference[0], atol=1e-6, rtol=0)


def test_lcm_lora_is_fused_into_the_unet(sd_engines, sd_models_dir):
    base = UNet2DConditionModel.from_pretrained(sd_models_dir / "sd15" / "base" / "unet")
    name = next(n for n, _ in base.named_parameters() if n.endswith("attn1.to_q.weight"))
    fused = dict(sd_engines["tiny-sd15-lcm"].unet.named_parameters())[name]
    assert not torch.allclose(fused, dict(base.named_parameters())[name])
    assert not any("lora" in n for n, _ in sd_engines["tiny-sd15-lcm"].unet.named_parameters())


def test_strength_zero_ignores_the_sketch_and_one_follows_it(sd_engines):
    engine = sd_engines["tiny-sd"]
    a, b = make_sketch(1), make_sketch(2)
    args = {"seed": 7, "steps": 1, "resolution": (256, 256)}
    np.testing.assert_array_equal(
        our_image(engine, a, strength=0.0, **args), our_image(engine, b, strength=0.0, **args)
    )
    assert np.abs(our_image(engine, a, strength=1.0, **args) - our_image(engine, b, strength=1.0, **args)).max() > 1e-3


def test_cached_schedules_give_identical_frames_across_step_counts(sd_engines):
    engine = sd_engines["tiny-sdxl"]  # Euler ancestral: its steps draw noise from the seeded generator
    sketch = make_sketch(3)
    first = our_image(engine, sketch, seed=11, steps=2, strength=1.0, resolution=(256, 256))
    our_image(engine, sketch, seed=11, steps=4, strength=1.0, resolution=(256, 256))
    our_image(engine, sketch, seed=12, steps=1, strength=1.0, resolution=(256, 256))
    np.testing.assert_array_equal(
        first, our_image(engine, sketch, seed=11, steps=2, strength=1.0, resolution=(256, 256))
    )


def test_prompt_and_control_are_cached_by_content(sd_engines):
    engine = sd_engines["tiny-sd"]
    assert engine.encode_prompt("cached") is engine.encode_prompt("cached")
    sketch = make_sketch(4)
    control = engine.encode_control(sketch, (256, 256))
    assert engine.encode_control(sketch.copy(), (256, 256)) is control
    assert engine.encode_control(make_sketch(5), (256, 256)) is not control
    assert engine.encode_control(sketch, (192, 256)).tensors["image"].shape == (1, 3, 192, 256)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        engine.encode_control(sketch[..., 0], (256, 256))


def test_generate_returns_image_and_stage_timings(sd_engines):
    engine = sd_engines["tiny-sd"]
    prompt, control = engine.encode_prompt(PROMPT), engine.encode_control(make_sketch(), (256, 256))
    result = engine.generate(prompt, control, seed=0, steps=1, strength=1.0, resolution=(256, 256))
    assert result.image.size == (256, 256) and result.image.mode == "RGB"
    assert set(result.timings) == {"prompt", "control", "denoise", "decode", "total"}
    assert result.timings["denoise"] > 0 and result.timings["decode"] > 0
    assert result.timings["total"] >= result.timings["denoise"] + result.timings["decode"]
    with pytest.raises(ValueError, match="encoded at"):
        engine.generate(prompt, control, seed=0, steps=1, strength=1.0, resolution=(128, 128))


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sdxl"])
def test_taesd_decoder_gives_finite_frames_of_the_right_size(sd_engines, name):
    engine = sd_engines[name]
    args = {"seed": 0, "steps": 1, "strength": 1.0, "resolution": (192, 256)}
    vae = our_image(engine, make_sketch(), **args)
    engine.decoder = "taesd"
    try:
        fast = our_image(engine, make_sketch(), **args)
    finally:
        engine.decoder = "vae"
    assert fast.shape == (192, 256, 3) and np.isfinite(fast).all()
    assert fast.min() >= 0 and fast.max() <= 1 and not np.allclose(fast, vae)
    with pytest.raises(ValueError, match="decoder"):
        engine.decoder = "dcae"


def test_missing_local_component_is_a_model_error(tmp_path, sd_models_dir):
    sd = sd_models_dir / "sd"
    write_manifest(tmp_path, "no-controlnet", "sd", {"base": f"{sd}/base", "controlnet": f"{sd}/no-such-folder"})
    write_manifest(tmp_path, "bad-base", "sd", {"base": f"{sd}/controlnet", "controlnet": f"{sd}/controlnet"})
    registry = Registry(tmp_path, allowed_roots=(tmp_path, sd_models_dir))
    assert registry.status(registry.get("no-controlnet")).state == "missing"
    with pytest.raises(ModelError, match="no-such-folder"):
        registry.load("no-controlnet", "cpu", "float32")
    with pytest.raises(ModelError, match="controlnet component is missing"):
        SDControlNetEngine.load(registry.get("no-controlnet"), "cpu", "float32")
    with pytest.raises(ModelError, match="tokenizer"):  # the folder exists but is not a pipeline folder
        registry.load("bad-base", "cpu", "float32")


def test_offline_uncached_hub_id_is_a_model_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    parts = {"base": "sketchsprint-tests/not-cached-base", "controlnet": "sketchsprint-tests/not-cached-controlnet"}
    write_manifest(tmp_path, "hub", "sd", parts)
    registry = Registry(tmp_path, allowed_roots=(tmp_path,))
    spec = registry.get("hub")
    assert registry.status(spec).state == "missing"
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE"):
        registry.load("hub", "cpu", "float32")
    with pytest.raises(ModelError, match="not-cached-base"):  # the loader itself never reaches for the network
        SDControlNetEngine.load(spec, "cpu", "float32")


def test_shipped_tiny_random_manifest_runs_offline():
    registry = Registry(MODELS_DIR)
    assert registry.status(registry.get("tiny-random-sd")).state == "ready"
    engine = registry.load("tiny-random-sd", "cpu")
    assert engine.native_resolution == 256 and engine.dtype == torch.float32
    engine.warmup(256)
    control = engine.encode_control(make_sketch(), (256, 256))
    result = engine.generate(
        engine.encode_prompt(PROMPT), control, seed=1, steps=1, strength=1.0, resolution=(256, 256)
    )
    assert result.image.size == (256, 256)
    assert np.asarray(result.image).std() > 0


def test_float16_load_falls_back_to_full_precision_files(sd_registry):
    engine = sd_registry.load("tiny-sdxl", "cpu", "float16")  # the folders hold no fp16 variant
    assert engine.unet.dtype == engine.controlnet.dtype == engine.text_encoders[1].dtype == torch.float16
    assert engine.vae.dtype == torch.float32  # SDXL's VAE (force_upcast) decodes in float32, as diffusers does
    assert engine.taesd.dtype == torch.float16


def test_channels_last_gives_the_same_frame():
    engine = SDControlNetEngine.from_components(
        build_random_sd("sd", "tiny", seed=3), name="cl", device="cpu", dtype=torch.float32
    )
    args = {"seed": 2, "steps": 2, "strength": 1.0, "resolution": (256, 256)}
    before = our_image(engine, make_sketch(), **args)
    engine.optimize(channels_last=True, compile=False)
    assert engine.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(our_image(engine, make_sketch(), **args), before, atol=ATOL, rtol=0)
