"""The bundled offline model: save/load, batch == single, 1-step sampler == denoiser, Engine via a manifest; the
256 px SketchJiT: no seams at window borders, forward-mode JVP == finite differences, old configs still load."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.parameterization import SIGMA_D, FlowAsTrigFlow, trigflow_denoise
from pipelines.registry import ModelError, Registry
from pipelines.text import PROMPT_DIM, TEXT_DIM, colour_words
from pipelines.tiny import (
    X_PRED_MIN_S,
    JiTConfig,
    SketchJiT,
    SketchTinyNet,
    TinyConfig,
    TinyEngine,
    build_tiny,
    load_tiny,
    sample,
    save_tiny,
    to_pil,
    velocity_from_clean,
)

ROOT = Path(__file__).resolve().parents[2]
SMALL = TinyConfig(resolution=32, patch=2, channels=(16, 32), blocks=1, emb_dim=32)
SMALL_JIT = JiTConfig(
    resolution=32, patch=8, overlap=2, width=32, depth=2, heads=2, bottleneck=16, text_tokens=2, refine_channels=4
)


def randomised(config: TinyConfig | JiTConfig, seed: int = 0) -> SketchTinyNet | SketchJiT:
    """A net with every weight random (the real init zeroes the output layers, which would hide bugs)."""
    torch.manual_seed(seed)
    model = build_tiny(config)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn_like(p))
    return model.eval()


def cond(b: int, size: int = 32, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"sketch": torch.rand(b, 1, size, size, generator=g), "text": torch.randn(b, PROMPT_DIM, generator=g)}


@pytest.mark.parametrize("config", [SMALL, SMALL_JIT], ids=["unet", "jit"])
def test_batch_equals_single(config):
    model = randomised(config)
    x, s, c = torch.randn(3, 3, 32, 32), torch.rand(3), cond(3)
    with torch.no_grad():
        batch = model(x, s, c)
        rows = [model(x[i : i + 1], s[i : i + 1], {k: v[i : i + 1] for k, v in c.items()}) for i in range(3)]
        single = torch.cat(rows)
    scale = max(1.0, batch.abs().max().item())  # x-prediction scales by 1/s (up to 20); random weights are large
    assert torch.allclose(batch, single, atol=1e-5 * scale, rtol=1e-4)


@pytest.mark.parametrize("config", [SMALL, SMALL_JIT], ids=["unet", "jit"])
def test_save_load_round_trip(tmp_path, config):
    model = randomised(config)
    save_tiny(model, tmp_path / "m")
    loaded = load_tiny(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.config == model.config
    with torch.no_grad():  # weights are stored in fp16: compare against the fp16-rounded original
        for p in model.parameters():
            p.copy_(p.half().float())
        x, s, c = torch.randn(2, 3, 32, 32), torch.rand(2), cond(2)
        assert torch.allclose(model(x, s, c), loaded(x, s, c), atol=1e-5)


def test_x_prediction_gives_the_exact_velocity_and_one_euler_step_lands_on_its_clean_image():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    s = torch.tensor([1.0, 0.5, 0.2, X_PRED_MIN_S])
    x_s = (1 - s[:, None, None, None]) * x0 + s[:, None, None, None] * eps
    assert torch.allclose(velocity_from_clean(x_s, x0, s), eps - x0, atol=1e-5)
    assert torch.allclose(velocity_from_clean(x_s, x0, -s), eps - x0, atol=1e-5)  # TwinFlow's twin branch: -s
    assert torch.isfinite(velocity_from_clean(x_s, x0, torch.zeros(4))).all()  # bounded at the data end
    model = randomised(replace(SMALL, prediction="x"))
    x1, c = torch.randn(2, 3, 32, 32), cond(2)
    with torch.no_grad():  # Euler from s = 1 to 0 in one step returns exactly the network's clean-image output
        v = model(x1, torch.ones(2), c)
        model.config = replace(model.config, prediction="v")
        clean = model(x1, torch.ones(2), c)
    assert torch.allclose(x1 - v, clean, atol=1e-5)


def test_configs_written_before_x_prediction_load_as_velocity_models():
    assert TinyConfig.from_dict({"resolution": 32}).prediction == "v"
    assert TinyConfig.from_dict({"resolution": 32, "prediction": "x"}).prediction == "x"
    assert TinyConfig().prediction == "x"


@pytest.mark.parametrize("config", [SMALL, SMALL_JIT], ids=["unet", "jit"])
def test_one_step_student_sampler_equals_the_direct_denoiser_call(config):
    model = randomised(replace(config, kind="trigflow"))
    noise, c = torch.randn(1, 3, 32, 32), cond(1)
    out = sample(model, c, steps=1, noise=noise)
    t = torch.full((1,), torch.pi / 2)
    direct = trigflow_denoise(SIGMA_D * noise, FlowAsTrigFlow(model)(noise, t, c), t) / SIGMA_D
    assert torch.allclose(out, direct.clamp(-1, 1), atol=1e-6)


def test_teacher_with_guidance_one_equals_no_guidance():
    model = randomised(SMALL)
    noise, c = torch.randn(1, 3, 32, 32), cond(1)
    plain = sample(model, c, steps=3, noise=noise, guidance=1.0)
    cfg = sample(model, c, steps=3, noise=noise, guidance=1.0, null_text=torch.zeros(1, PROMPT_DIM))
    assert torch.allclose(plain, cfg, atol=1e-6)


def manifest(folder, name="tiny-test", weights="./weights"):
    (folder / f"{name}.toml").write_text(
        f'name = "{name}"\ntitle = "t"\nbackend = "tiny"\nresolution = 32\nsteps = 1\nallowed_steps = [1, 2, 4]\n'
        f'dtype = "float32"\n[components]\nweights = "{weights}"\n'
    )


def test_engine_loads_through_a_manifest_and_draws_without_nans(tmp_path):
    save_tiny(randomised(SMALL), tmp_path / "weights")
    manifest(tmp_path)
    engine = Registry(tmp_path, allowed_roots=(tmp_path,)).load("tiny-test", "cpu")
    assert isinstance(engine, TinyEngine)
    blank = np.zeros((32, 32, 3), np.uint8)
    prompt = engine.encode_prompt("")  # empty prompt: the null text, no encoder needed
    for sketch in (blank, np.full((32, 32, 3), 255, np.uint8)):  # empty and all-ink sketches
        result = engine.generate(
            prompt, engine.encode_control(sketch, (32, 32)), seed=3, steps=2, strength=1.0, resolution=(64, 64)
        )
        array = np.asarray(result.image)
        assert array.shape == (64, 64, 3) and np.isfinite(array).all()
        assert result.timings["total"] > 0
    first = engine.generate(
        prompt, engine.encode_control(blank, (32, 32)), seed=3, steps=1, strength=1.0, resolution=(32, 32)
    )
    second = engine.generate(
        prompt, engine.encode_control(blank, (32, 32)), seed=3, steps=1, strength=1.0, resolution=(32, 32)
    )
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))


def test_missing_weights_is_a_model_error(tmp_path):
    manifest(tmp_path, weights="./nothing-here")
    registry = Registry(tmp_path, allowed_roots=(tmp_path,))
    assert registry.status(registry.get("tiny-test")).state == "missing"
    with pytest.raises(ModelError, match="cannot be loaded"):
        registry.load("tiny-test", "cpu")


def test_refine_runs_the_shipped_teacher_with_euler_steps(tmp_path):
    """A student manifest with a 'teacher' component: generate() samples the student (consistency steps), refine()
    the flow teacher at refine_steps Euler steps with CFG; without a teacher, refine is a ModelError."""
    student = randomised(TinyConfig(**{**SMALL.__dict__, "kind": "trigflow"}), seed=0)
    teacher = randomised(SMALL, seed=1)
    save_tiny(student, tmp_path / "weights")
    save_tiny(teacher, tmp_path / "teacher")
    (tmp_path / "s.toml").write_text(
        'name = "s"\ntitle = "t"\nbackend = "tiny"\nresolution = 32\nsteps = 1\nallowed_steps = [1, 2]\n'
        'dtype = "float32"\n[components]\nweights = "./weights"\nteacher = "./teacher"\n'
    )
    manifest(tmp_path, name="plain")
    registry = Registry(tmp_path, allowed_roots=(tmp_path,))
    engine = registry.load("s", "cpu")
    engine.refine_steps = 3
    prompt = engine.encode_prompt("")
    control = engine.encode_control(np.zeros((32, 32, 3), np.uint8), (32, 32))
    refined = engine.refine(prompt, control, seed=5, strength=1.0, resolution=(32, 32))
    c = {"sketch": control.tensors["sketch"], "text": engine.null_text}
    noise, null = engine._noise_for(5), engine.null_text
    expected = sample(load_tiny(tmp_path / "teacher"), c, steps=3, noise=noise, null_text=null)
    assert np.array_equal(np.asarray(refined.image), np.asarray(to_pil(expected[0])))
    live = engine.generate(prompt, control, seed=5, steps=1, strength=1.0, resolution=(32, 32))
    assert not np.array_equal(np.asarray(live.image), np.asarray(refined.image))
    with pytest.raises(ModelError, match="no teacher component"):
        registry.load("plain", "cpu").refine(prompt, control, seed=5, strength=1.0, resolution=(32, 32))


def test_fp16_manifest_computes_in_float32_on_cpu(tmp_path):
    """Shipped weights are stored in fp16 (manifest dtype float16); on a CPU the engine computes in float32."""
    save_tiny(randomised(SMALL), tmp_path / "weights")
    (tmp_path / "h.toml").write_text(
        'name = "h"\ntitle = "t"\nbackend = "tiny"\nresolution = 32\nsteps = 1\nallowed_steps = [1]\n'
        'dtype = "float16"\n[components]\nweights = "./weights"\n'
    )
    engine = Registry(tmp_path, allowed_roots=(tmp_path,)).load("h", "cpu")
    assert engine.dtype == torch.float32
    control = engine.encode_control(np.zeros((32, 32, 3), np.uint8), (32, 32))
    image = engine.generate(engine.encode_prompt(""), control, seed=0, steps=1, strength=1.0, resolution=(32, 32))
    assert np.asarray(image.image).shape == (32, 32, 3)


def test_a_thin_canvas_stroke_stays_a_full_strength_line_at_the_model_size(tmp_path):
    save_tiny(randomised(SMALL), tmp_path / "weights")
    manifest(tmp_path)
    engine = Registry(tmp_path, allowed_roots=(tmp_path,)).load("tiny-test", "cpu")
    scribble = np.zeros((128, 128, 3), np.uint8)
    scribble[60:62, 10:120] = 255  # a 2 px line at 4x the model's 32 px
    ink = engine.encode_control(scribble, (32, 32)).tensors["sketch"]
    assert ink.shape == (1, 1, 32, 32) and ink.max() == 1.0 and ink[0, 0, 15, 5:28].min() == 1.0


def seam_ratio(image: torch.Tensor, patch: int) -> float:
    """Mean |horizontal + vertical step| across window borders over the mean step elsewhere (1: no visible grid)."""
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(dim=(0, 1, 2))
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(dim=(0, 1, 3))
    borders = torch.arange(patch - 1, dx.shape[0], patch)
    inside = torch.ones_like(dx, dtype=torch.bool)
    inside[borders] = False
    return float((dx[borders].mean() + dy[borders].mean()) / (dx[inside].mean() + dy[inside].mean()))


def test_overlapping_windows_paint_no_grid_where_abutting_patches_do():
    """Random token outputs painted through the blend: steps across window borders are no larger than inside them;
    the same tokens painted as abutting patches (overlap 0) leave a grid (so the check can fail)."""
    g = torch.Generator().manual_seed(0)
    blended, abutting = SketchJiT(replace(SMALL_JIT, overlap=4)), SketchJiT(replace(SMALL_JIT, overlap=0))
    smooth = torch.nn.functional.avg_pool2d(torch.randn(2, 3, 64, 64, generator=g), 5, 1, 2)  # a smooth picture
    painted = {}
    for name, net in (("blended", blended), ("abutting", abutting)):
        windows = torch.nn.functional.unfold(smooth[..., :32, :32], net.window, stride=8, padding=net.config.overlap)
        windows = windows + 0.3 * torch.randn(windows.shape[0], 1, windows.shape[2], generator=g)  # per-token offsets
        painted[name] = net._fold(windows)
    assert seam_ratio(painted["abutting"], 8) > 2.0
    assert seam_ratio(painted["blended"], 8) < 1.3


def test_jit_forward_mode_jvp_equals_finite_differences():
    """sCM's tangent runs torch.func.jvp through the network (unfold, attention, fold, channels_last convs)."""
    from distillation.jvp import jvp

    model = randomised(SMALL_JIT).double()
    g = torch.Generator().manual_seed(2)
    x, s = torch.randn(2, 3, 32, 32, generator=g, dtype=torch.float64), torch.tensor([0.3, 0.7], dtype=torch.float64)
    c = {k: v.double() for k, v in cond(2).items()}
    tangents = (
        torch.randn(x.shape, generator=g, dtype=torch.float64),
        torch.tensor([1e-3, -2e-3], dtype=torch.float64),
    )
    with torch.no_grad():
        _, forward = jvp(lambda a, b: model(a, b, c), (x, s), tangents)
        _, central = jvp(lambda a, b: model(a, b, c), (x, s), tangents, mode="fd", fd_step=1e-6)
    assert torch.allclose(forward, central, rtol=1e-5, atol=1e-5 * forward.abs().max().item())


def test_jit_text_and_sketch_both_change_the_picture():
    """The caption and the sketch both reach the output (adaLN + cross-attention; windows + refine head)."""
    model = randomised(SMALL_JIT)
    x, s, c = torch.randn(1, 3, 32, 32), torch.full((1,), 0.5), cond(1)
    with torch.no_grad():
        base = model(x, s, c)
        other_text = model(x, s, {**c, "text": torch.randn(1, PROMPT_DIM, generator=torch.Generator().manual_seed(9))})
        ink = c["sketch"].clone()
        ink[..., 16, 16] = 1 - ink[..., 16, 16]  # one sketch pixel
        other_sketch = model(x, s, {**c, "sketch": ink})
    assert (other_text - base).abs().mean() > 1e-2
    changed = (other_sketch - base).abs().amax(dim=1)[0] > 1e-6
    assert changed[16, 16] and changed.any()


@pytest.mark.parametrize("reads_colours", [True, False], ids=["colour_words", "embedding_only"])
def test_the_colour_words_reach_the_picture_only_of_a_model_that_reads_them(reads_colours):
    """The prompt vector is the sentence embedding, then the colour words: a colour_words U-Net's output moves with the
    colour words alone; a model without them (the first offline model) reads the embedding and nothing after it."""
    model = randomised(replace(SMALL, colour_words=reads_colours))
    x, s, c = torch.randn(1, 3, 32, 32), torch.full((1,), 0.5), cond(1)
    red, blue = (torch.from_numpy(colour_words(f"a {name} house"))[None] for name in ("red", "blue"))
    with torch.no_grad():
        as_red = model(x, s, {**c, "text": torch.cat([c["text"][:, :TEXT_DIM], red], 1)})
        as_blue = model(x, s, {**c, "text": torch.cat([c["text"][:, :TEXT_DIM], blue], 1)})
        embedding_only = model(x, s, {**c, "text": c["text"][:, :TEXT_DIM]}) if not reads_colours else None
    moved = (as_red - as_blue).abs().mean()
    assert moved > 1e-2 if reads_colours else moved == 0
    if embedding_only is not None:
        assert torch.equal(embedding_only, as_red)


def test_a_silhouette_u_net_feeds_the_inside_of_the_outlines_to_its_stem():
    """With silhouette=True the stem's input holds a third channel beside the noisy picture and the ink: 1 inside a
    closed ring, 0 on the paper around it (a ring drawn here, not by the function under test)."""
    model = randomised(replace(SMALL, silhouette=True))
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    radius = ((yy - 15.5) ** 2 + (xx - 15.5) ** 2).sqrt()
    ring = ((radius > 9) & (radius < 11)).float()[None, None]
    seen = []
    model.stem.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32), torch.full((1,), 0.5), {**cond(1), "sketch": ring})
    channels = torch.nn.functional.pixel_shuffle(seen[0], SMALL.patch)[0]  # back to (3 + 1 + 1, 32, 32)
    assert channels.shape == (5, 32, 32) and torch.equal(channels[3], ring[0, 0])
    assert channels[4][radius < 8].min() == 1 and channels[4][radius > 13].max() == 0


def test_configs_name_their_architecture_and_unknown_ones_are_a_model_error(tmp_path):
    save_tiny(randomised(SMALL_JIT), tmp_path / "jit")
    assert json.loads((tmp_path / "jit" / "config.json").read_text())["arch"] == "jit"
    raw = json.loads((tmp_path / "jit" / "config.json").read_text())
    (tmp_path / "jit" / "config.json").write_text(json.dumps({**raw, "arch": "vit-xl"}))
    with pytest.raises(ModelError, match="unknown architecture 'vit-xl'"):
        load_tiny(tmp_path / "jit")


def test_configs_written_before_arch_existed_load_as_the_unet(tmp_path):
    """Model v1's config.json (and any folder written before "arch" existed) has no "arch": it loads as the U-Net."""
    save_tiny(randomised(SMALL), tmp_path / "old")
    raw = json.loads((tmp_path / "old" / "config.json").read_text())
    (tmp_path / "old" / "config.json").write_text(json.dumps({k: v for k, v in raw.items() if k != "arch"}))
    model = load_tiny(tmp_path / "old")
    assert isinstance(model, SketchTinyNet) and model.config.resolution == 32


def test_the_shipped_offline_models_load_at_256_px_with_colour_words_and_draw():
    """assets/models/sketch-tiny* are model v2: 256 px U-Nets reading colour words and the sketch's silhouette."""
    for name in ("sketch-tiny", "sketch-tiny-teacher"):
        model = load_tiny(ROOT / "assets" / "models" / name)
        assert isinstance(model, SketchTinyNet) and model.config.resolution == 256
        assert model.config.colour_words and model.config.silhouette
    engine = Registry().load("sketch-tiny", "cpu")
    control = engine.encode_control(np.zeros((512, 512, 3), np.uint8), (256, 256))
    result = engine.generate(engine.encode_prompt(""), control, seed=0, steps=1, strength=1.0, resolution=(256, 256))
    assert np.asarray(result.image).shape == (256, 256, 3) and isinstance(engine.teacher, SketchTinyNet)


def test_jit_engine_draws_at_its_native_size_through_a_manifest(tmp_path):
    save_tiny(randomised(replace(SMALL_JIT, kind="trigflow")), tmp_path / "weights")
    manifest(tmp_path)
    engine = Registry(tmp_path, allowed_roots=(tmp_path,)).load("tiny-test", "cpu")
    engine.optimize()
    assert isinstance(engine.model, SketchJiT) and engine.native_resolution == 32
    scribble = np.zeros((512, 512, 3), np.uint8)
    scribble[250:256, 40:470] = 255
    control = engine.encode_control(scribble, (32, 32))
    result = engine.generate(engine.encode_prompt(""), control, seed=1, steps=1, strength=1.0, resolution=(32, 32))
    assert np.asarray(result.image).shape == (32, 32, 3) and np.isfinite(np.asarray(result.image)).all()
