"""SANA-Sprint engine: parity with diffusers' SanaSprintPipeline and SanaControlNetPipeline on tiny seeded weights,
ControlNet wirings against plain reference compositions, the NVlabs converter, manifests, and bad input."""

import copy
import json
import math

import numpy as np
import pytest
import torch
from diffusers import (
    FlowMatchEulerDiscreteScheduler,
    SanaControlNetModel,
    SanaControlNetPipeline,
    SanaSprintPipeline,
    SanaTransformer2DModel,
    SCMScheduler,
)
from PIL import Image

from pipelines.engine import Request
from pipelines.host import LiveHost
from pipelines.parameterization import SIGMA_D, FlowAsTrigFlow
from pipelines.registry import MODELS_DIR, ModelError, ModelSpec, Registry
from pipelines.sana.config import CHI, controlnet_config, transformer_config
from pipelines.sana.controlnet import SprintControlNet, controlnet_from_diffusers
from pipelines.sana.engine import SanaSprintEngine
from pipelines.sana.flow import SanaFlow
from pipelines.sana.load import load_controlnet
from pipelines.sana.memory import check_gpu_memory, gpu_memory_need_gib
from pipelines.sana.sampling import sample_scm, sprint_timesteps
from pipelines.schedules import sample_trigflow
from pipelines.testing import build_random_sana, save_random_sana

ATOL = 1e-4
PROMPT = "A red fox sitting in the snow, watercolour"
SIZE = (64, 64)  # the tiny model's half-scale square bin (8x8 latents)

MANIFEST = """name = "{name}"
title = "{name}"
backend = "sana"
resolution = 128
steps = 1
allowed_steps = [1, 2, 3, 4]
dtype = "float32"
guidance = 4.5

[components]
{components}
"""


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def parts():
    """Tiny seeded components, teacher included (SANA 1.0 base + HED-layout branch)."""
    return build_random_sana("tiny", seed=0, teacher=True)


@pytest.fixture(scope="module")
def engine(parts):
    return SanaSprintEngine.from_components(
        parts, name="tiny", device="cpu", dtype=torch.float32, native_resolution=128
    )


@pytest.fixture(scope="module")
def sprint_pipe(parts):
    pipe = SanaSprintPipeline(
        tokenizer=parts["tokenizer"],
        text_encoder=parts["text_encoder"],
        vae=parts["vae"],
        transformer=parts["transformer"],
        scheduler=SCMScheduler(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """save_random_sana's folders and two manifests: the Sprint branch folder, or the NVlabs HED .pth serving as
    both the live branch and the teacher."""
    root = tmp_path_factory.mktemp("sana")
    save_random_sana("tiny", root, seed=0)
    manifests = {
        "tiny-sana": {
            "base": "./sprint",
            "controlnet": "./controlnet",
            "vae_lite": "./dc-ae-lite",
            "teacher": "./hed",
        },
        "tiny-sana-hed": {"base": "./sprint", "controlnet": "./hed", "teacher": "./hed"},
    }
    for name, components in manifests.items():
        lines = "\n".join(f'{role} = "{value}"' for role, value in components.items())
        (root / f"{name}.toml").write_text(MANIFEST.format(name=name, components=lines))
    return root


@pytest.fixture(scope="module")
def registry(models_dir):
    return Registry(models_dir=models_dir, allowed_roots=(models_dir,))


def sketch(seed: int = 0, size: tuple[int, int] = SIZE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.zeros((*size, 3), np.uint8)
    for _ in range(4):
        y, x = rng.integers(0, size[0] - 6, 2)
        image[y : y + 3, x : x + size[1] // 3] = 255
    return image


@torch.no_grad()
def sprint_reference(transformer, embeds, mask, *, steps, seed, guidance=4.5, branch=None):
    """A plain Sprint loop (diffusers SanaSprintPipeline's arithmetic with its SCMScheduler). `branch(x_in, s)` returns
    the transformer call's extra kwargs and the forward hooks to remove after it."""
    scheduler = SCMScheduler()
    scheduler.set_timesteps(steps, intermediate_timesteps=1.3 if steps == 2 else None)
    scheduler.set_begin_index(0)
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn((1, 4, 8, 8), generator=generator) * SIGMA_D
    g = torch.full((1,), guidance) * transformer.config.guidance_embeds_scale
    for t in scheduler.timesteps[:-1]:
        s = torch.sin(t) / (torch.sin(t) + torch.cos(t))
        x_in = latents / SIGMA_D * torch.sqrt(s**2 + (1 - s) ** 2)
        extra, hooks = branch(x_in, s.expand(1)) if branch else ({}, [])
        v = transformer(x_in, embeds, encoder_attention_mask=mask, guidance=g, timestep=s.expand(1), **extra).sample
        for hook in hooks:
            hook.remove()
        F = ((1 - 2 * s) * x_in + (1 - 2 * s + 2 * s**2) * v) / torch.sqrt(s**2 + (1 - s) ** 2)
        latents, denoised = scheduler.step(F * SIGMA_D, t, latents, generator=generator, return_dict=False)
    return denoised / SIGMA_D


# --- parity with diffusers --------------------------------------------------------------------------------------


def test_sana_prompt_parity_with_pipeline_encode_prompt(engine, sprint_pipe):
    ours = engine.encode_prompt(PROMPT)
    embeds, mask = sprint_pipe.encode_prompt(PROMPT, complex_human_instruction=list(CHI))
    assert ours.tensors["text"].shape == (1, 300, 32)
    torch.testing.assert_close(ours.tensors["text"], embeds, atol=ATOL, rtol=0)
    torch.testing.assert_close(ours.tensors["text_bias"][:, 0], (1 - mask.float()) * -10000.0)
    assert not ours.truncated and ours.n_tokens == len(PROMPT)  # the tiny vocabulary is one token per character


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_sana_sprint_parity_with_diffusers_pipeline(engine, sprint_pipe, steps):
    """No control and control at scale 0 both give SanaSprintPipeline's latents for the same embeddings and seed."""
    prompt = engine.encode_prompt(PROMPT)
    embeds, mask = sprint_pipe.encode_prompt(PROMPT, complex_human_instruction=list(CHI))
    reference = sprint_pipe(
        prompt_embeds=embeds,
        prompt_attention_mask=mask,
        height=SIZE[0],
        width=SIZE[1],
        num_inference_steps=steps,
        intermediate_timesteps=1.3 if steps == 2 else None,
        use_resolution_binning=False,
        generator=torch.Generator().manual_seed(7),
        output_type="latent",
    ).images
    ours = engine.sample_latents(prompt, None, seed=7, steps=steps, resolution=SIZE)
    torch.testing.assert_close(ours, reference, atol=ATOL, rtol=0)
    control = engine.encode_control(sketch(), SIZE)
    off = engine.sample_latents(prompt, control, seed=7, steps=steps, strength=0.0, resolution=SIZE)
    on = engine.sample_latents(prompt, control, seed=7, steps=steps, strength=1.0, resolution=SIZE)
    torch.testing.assert_close(off, reference, atol=ATOL, rtol=0)
    assert (on - reference).abs().max() > 1e-2  # the random branch does reach the output


def test_sana_sample_scm_parity_with_sample_trigflow():
    """Drawing the noise up front changes nothing: sample_scm == schedules.sample_trigflow for the same draws."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 16), torch.nn.Tanh())

    def model(x, t):
        return net(x * torch.cos(t)[:, None, None, None]).view_as(x)

    ts, shape = sprint_timesteps(4), (2, 1, 4, 4)
    generator = torch.Generator().manual_seed(1)
    noise = torch.stack([torch.randn(shape, generator=generator) for _ in range(4)])
    generator = torch.Generator().manual_seed(1)
    x_T = SIGMA_D * torch.randn(shape, generator=generator)
    reference = sample_trigflow(model, x_T, ts, generator=generator)  # draws the re-noising as it goes
    torch.testing.assert_close(sample_scm(model, noise, ts), reference, atol=1e-6, rtol=0)


def test_sana_controlnet_parity_diffusers_wiring(parts, engine):
    """The HED-layout branch from a diffusers SanaControlNetModel, diffusers wiring, on the Sprint transformer ==
    SanaControlNetModel + SanaTransformer2DModel(controlnet_block_samples=...) in the plain Sprint loop."""
    torch.manual_seed(3)
    reference_branch = SanaControlNetModel(
        **{k: v for k, v in controlnet_config("tiny", sprint=False).items() if k != "wiring"}, interpolation_scale=None
    ).eval()
    for linear in (reference_branch.input_block, *reference_branch.controlnet_blocks):
        linear.reset_parameters()
    live = {k: v for k, v in parts.items() if not k.startswith("teacher")}
    ours = SanaSprintEngine.from_components(
        {**live, "controlnet": controlnet_from_diffusers(reference_branch, wiring="diffusers")},
        name="tiny-diffusers-wiring",
        device="cpu",
        dtype=torch.float32,
        native_resolution=128,
    )
    prompt = ours.encode_prompt(PROMPT)
    control = ours.encode_control(sketch(1), SIZE)
    mask = (prompt.tensors["text_bias"][:, 0] == 0).long()
    latent = control.tensors["latent"]

    def branch(x_in, s):
        samples = reference_branch(
            x_in,
            prompt.tensors["text"],
            timestep=1000 * s,
            controlnet_cond=latent,
            conditioning_scale=0.7,
            encoder_attention_mask=mask,
            return_dict=False,
        )[0]
        return {"controlnet_block_samples": tuple(samples)}, []

    for steps in (1, 2):
        reference = sprint_reference(
            parts["transformer"], prompt.tensors["text"], mask, steps=steps, seed=5, branch=branch
        )
        got = ours.sample_latents(prompt, control, seed=5, steps=steps, strength=0.7, resolution=SIZE)
        torch.testing.assert_close(got, reference, atol=ATOL, rtol=0)


def test_sana_controlnet_parity_nvlabs_wiring(parts, engine):
    """The Sprint branch (QK-norm, guidance embedding, dense time), NVlabs wiring == diffusers' unmodified
    transformer with hooks doing what SanaMSControlNet.forward does: after base block 0 the branch starts from its
    output + input_block(patch_embed(control)), and skip k joins the output of base block k (= input of k + 1)."""
    transformer, branch_net = parts["transformer"], parts["controlnet"]
    prompt = engine.encode_prompt(PROMPT)
    control = engine.encode_control(sketch(2), SIZE)
    text, bias = prompt.tensors["text"], prompt.tensors["text_bias"]
    mask = (bias[:, 0] == 0).long()
    latent, scale = control.tensors["latent"], 0.8

    def branch(x_in, s):
        g = torch.full((1,), 4.5) * branch_net.config.guidance_embeds_scale
        t_mod, _ = branch_net.time_embed(s, guidance=g, hidden_dtype=torch.float32)  # dense time: s itself
        text_c = branch_net.caption_norm(branch_net.caption_projection(text))
        skips = []

        def after_block0(module, args, output):
            h = output + branch_net.input_block(branch_net.patch_embed(latent))
            for block, project in zip(branch_net.transformer_blocks, branch_net.controlnet_blocks, strict=True):
                h = block(h, None, text_c, bias, t_mod, 8, 8)
                skips.append(project(h) * scale)
            return output + skips[0]

        hooks = [transformer.transformer_blocks[0].register_forward_hook(after_block0)]
        for k in range(1, branch_net.config.num_layers):
            hooks.append(
                transformer.transformer_blocks[k].register_forward_hook(lambda m, a, out, k=k: out + skips[k])
            )
        return {}, hooks

    for steps in (1, 4):
        reference = sprint_reference(transformer, text, mask, steps=steps, seed=9, branch=branch)
        got = engine.sample_latents(prompt, control, seed=9, steps=steps, strength=scale, resolution=SIZE)
        torch.testing.assert_close(got, reference, atol=ATOL, rtol=0)


def test_sana_teacher_parity_with_sana_controlnet_pipeline(parts, engine):
    """Teacher mode (SANA 1.0 base + HED branch, diffusers wiring, Euler + CFG over the scheduler's own times) ==
    SanaControlNetPipeline with FlowMatchEulerDiscreteScheduler(shift=3); the pipeline encodes its own negative ""."""
    torch.manual_seed(4)
    hed = SanaControlNetModel(
        **{k: v for k, v in controlnet_config("tiny", sprint=False).items() if k != "wiring"}, interpolation_scale=None
    ).eval()
    for linear in (hed.input_block, *hed.controlnet_blocks):
        linear.reset_parameters()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    pipe = SanaControlNetPipeline(
        tokenizer=parts["tokenizer"],
        text_encoder=parts["text_encoder"],
        vae=parts["vae"],
        transformer=parts["teacher_transformer"],
        controlnet=hed,
        scheduler=scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    teacher = SanaFlow(
        parts["teacher_transformer"], controlnet_from_diffusers(hed, wiring="diffusers"), dense_time=False
    )
    ours = SanaSprintEngine.from_components(
        {**parts, "teacher": teacher}, name="tiny-teacher", device="cpu", dtype=torch.float32, native_resolution=128
    )
    prompt = ours.encode_prompt(PROMPT)  # the pipeline encodes the negative "" itself: ours must agree
    image = sketch(3)
    control = ours.encode_control(image, SIZE)
    reference = pipe(
        prompt_embeds=prompt.tensors["text"],
        prompt_attention_mask=(prompt.tensors["text_bias"][:, 0] == 0).long(),
        control_image=Image.fromarray(image),
        controlnet_conditioning_scale=0.9,
        height=SIZE[0],
        width=SIZE[1],
        num_inference_steps=4,
        guidance_scale=4.5,
        use_resolution_binning=False,
        generator=torch.Generator().manual_seed(11),
        output_type="latent",
    ).images
    times = scheduler.sigmas.double()  # the 4 times the pipeline evaluated, plus the final 0
    got = ours.refine_latents(prompt, control, seed=11, strength=0.9, guidance=4.5, resolution=SIZE, timesteps=times)
    torch.testing.assert_close(got, reference, atol=ATOL, rtol=0)


# --- NVlabs checkpoints -----------------------------------------------------------------------------------------


def test_sana_community_diffusers_controlnet_folder_loads_with_nvlabs_wiring(parts, tmp_path):
    """A diffusers SanaControlNetModel folder (the community HED conversions) loads as a SprintControlNet with the same
    weights, NVlabs wiring unless asked otherwise or its config.json names the diffusers wiring."""
    config = {k: v for k, v in controlnet_config("tiny", sprint=False).items() if k != "wiring"}
    SanaControlNetModel(**config, interpolation_scale=None).save_pretrained(tmp_path / "hed")
    branch = load_controlnet(str(tmp_path / "hed"), torch.float32)
    reference = SanaControlNetModel.from_pretrained(tmp_path / "hed")
    assert isinstance(branch, SprintControlNet) and branch.config.wiring == "nvlabs" and not branch.config.dense_time
    assert all(torch.equal(v, branch.state_dict()[k]) for k, v in reference.state_dict().items())
    assert load_controlnet(str(tmp_path / "hed"), torch.float32, wiring="diffusers").config.wiring == "diffusers"
    config_file = tmp_path / "hed" / "config.json"  # a branch trained with diffusers' wiring says so in its config
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "wiring": "diffusers"}))
    assert load_controlnet(str(tmp_path / "hed"), torch.float32).config.wiring == "diffusers"
    with pytest.raises(ModelError, match="nothing at"):
        load_controlnet(str(tmp_path / "absent"), torch.float32)


# --- manifests, registry, host ----------------------------------------------------------------------------------


def test_sana_manifest_loads_saved_folders_and_generates(registry):
    """Tiny components saved with save_pretrained (+ an NVlabs .pth) load through manifests; both decoders and the
    refine pass produce images at the bin; one HED checkpoint serves live branch and teacher."""
    engine = registry.load("tiny-sana", "cpu")
    assert engine.controlnet.config.dense_time and engine.teacher.controlnet.config.wiring == "nvlabs"
    prompt = engine.encode_prompt(PROMPT)
    control = engine.encode_control(sketch(4), SIZE)
    frames = {}
    for decoder in ("dc-ae", "lite"):
        engine.decoder = decoder
        frames[decoder] = engine.generate(prompt, control, seed=1, steps=2, strength=1.0, resolution=SIZE)
        assert frames[decoder].image.size == SIZE and frames[decoder].notice == ""
        assert set(frames[decoder].timings) == {"prompt", "control", "denoise", "decode", "total"}
    assert frames["dc-ae"].image.tobytes() != frames["lite"].image.tobytes()
    refined = engine.refine(prompt, control, seed=1, steps=3, resolution=SIZE)
    assert refined.image.size == SIZE

    hed = registry.load("tiny-sana-hed", "cpu")
    assert hed.controlnet is hed.teacher.controlnet and not hed.controlnet.config.dense_time
    with pytest.raises(ValueError, match="DC-AE-Lite"):
        hed.decoder = "lite"


def test_sana_caches_control_latents_and_noise(engine):
    """An unchanged canvas is not re-encoded, a seed's noise is drawn once; a new canvas or seed changes them."""
    first = engine.encode_control(sketch(5), SIZE)
    assert engine.encode_control(sketch(5), SIZE) is first
    assert engine.encode_control(sketch(6), SIZE) is not first
    assert engine.noise(3, 2, (8, 8)) is engine.noise(3, 2, (8, 8))
    assert not torch.equal(engine.noise(3, 2, (8, 8)), engine.noise(4, 2, (8, 8)))


def test_sana_custom_timesteps(engine):
    """A one-element custom schedule at the default t_max is the 1-step default; bad schedules are refused."""
    prompt = engine.encode_prompt(PROMPT)
    one = engine.sample_latents(prompt, None, seed=2, steps=1, resolution=SIZE)
    custom = engine.sample_latents(prompt, None, seed=2, steps=1, resolution=SIZE, timesteps=[1.5708])
    torch.testing.assert_close(one, custom, atol=1e-6, rtol=0)
    two = engine.sample_latents(prompt, None, seed=2, steps=2, resolution=SIZE, timesteps=[1.5708, 0.9])
    assert (two - one).abs().max() > 1e-3
    with pytest.raises(ValueError, match="decrease"):
        engine.sample_latents(prompt, None, seed=2, steps=2, resolution=SIZE, timesteps=[0.5, 1.0])


def test_sana_bad_input_gpu_memory_prompt_length_and_resolution(registry, tmp_path, monkeypatch):
    """A 1.6B model is refused before loading when the GPU's free memory is below the measured need; a long prompt
    is truncated and the host says so; a resolution outside the bins is snapped with a notice."""
    need = gpu_memory_need_gib("1.6b", 1024)
    assert 12 < need < 14  # 8.07 GiB measured frame peak + 4.87 GiB of Gemma-2 weights
    with pytest.raises(ModelError, match=f"needs about {need:.1f} GiB.*6.0 GiB free"):
        check_gpu_memory("SANA-Sprint 1.6B", need, 6 * 2**30)
    check_gpu_memory("SANA-Sprint 1.6B", need, 24 * 2**30)
    assert gpu_memory_need_gib("tiny", 1024) == 0.0
    # the engine asks before loading: only the transformer's config.json exists here, no weights at all
    with torch.device("meta"):
        SanaTransformer2DModel(**transformer_config("1.6b")).save_config(tmp_path / "transformer")
    base = {"base": str(tmp_path)}
    spec = ModelSpec(name="big", title="SANA-Sprint 1.6B", backend="sana", components=base, resolution=1024)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (6 * 2**30, 80 * 2**30))
    with pytest.raises(ModelError, match=f"SANA-Sprint 1.6B needs about {need:.1f} GiB"):
        SanaSprintEngine.load(spec, "cuda", "bfloat16")

    host = LiveHost(registry, "cpu")
    try:
        canvas = 255 - sketch(7, (96, 96))  # dark strokes on white, as the canvas sends them
        frame = host.draw(Request("s", 1, "tiny-sana", "a fox " * 80, canvas, resolution=192), timeout=300)
        assert frame.status == "ok", frame.message
        assert "prompt truncated to 298 tokens" in frame.message  # CHI tokens + 300 - 2, the CHI prefix kept
        assert "resolution 192 -> 128" in frame.message  # SANA's bins, in the one resolution notice
        assert frame.message.count("192") == 1
        assert frame.image.size == (128, 128)
    finally:
        host.close()
    prompt = host.engine("tiny-sana").encode_prompt("a fox " * 80)
    assert prompt.truncated and prompt.n_tokens == 298


def test_sana_manifests_listed_with_size_and_memory_and_missing_offline(monkeypatch):
    """The shipped Sprint manifests show download size and GPU memory, agree with the measured need, and offline
    without a cache they are "missing" with a reason and refuse to load with a ModelError, not a traceback."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    registry = Registry(MODELS_DIR)
    statuses = {s.spec.name: s for s in registry.list()}
    for name, size in (("sana-sprint-0.6b", "0.6b"), ("sana-sprint-1.6b", "1.6b")):
        spec = statuses[name].spec
        assert spec.backend == "sana" and spec.download_gb > 5
        assert spec.min_vram_gb == math.ceil(gpu_memory_need_gib(size, spec.resolution))
        assert spec.components["base"] == f"Efficient-Large-Model/Sana_Sprint_{size.upper()}_1024px_diffusers"
        if statuses[name].state != "ready":  # a machine with the weights cached may list them ready
            assert statuses[name].state == "missing" and "HF_HUB_OFFLINE" in statuses[name].reason
            with pytest.raises(ModelError, match="cannot be loaded"):
                registry.load(name, "cpu")


def test_sana_flow_as_trigflow_one_step_is_direct_denoiser_call(engine):
    """One SCM step from t_max is x_hat0 = cos t x - sin t sigma_d F(x / sigma_d, t), F the wrapped flow model."""
    prompt = engine.encode_prompt(PROMPT)
    cond = {
        "text": prompt.tensors["text"],
        "text_bias": prompt.tensors["text_bias"],
        "guidance": torch.full((1,), 4.5),
    }
    noise = engine.noise(0, 1, (8, 8))
    x = SIGMA_D * noise[0]
    t = torch.full((1,), 1.5708)
    F = FlowAsTrigFlow(engine.flow)(x / SIGMA_D, t, cond)
    direct = (torch.cos(t) * x - torch.sin(t) * SIGMA_D * F) / SIGMA_D
    got = engine.sample_latents(prompt, None, seed=0, steps=1, resolution=SIZE)
    torch.testing.assert_close(got, direct, atol=1e-6, rtol=0)


def test_sana_sprint_controlnet_save_load_round_trip(parts, tmp_path):
    parts["controlnet"].save_pretrained(tmp_path)
    loaded = SprintControlNet.from_pretrained(tmp_path)
    assert loaded.config.wiring == "nvlabs" and loaded.config.qk_norm == "rms_norm_across_heads"
    expected = parts["controlnet"].state_dict()
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in expected.items())


def test_sana_bench_latency_tiny_cpu_json(capsys):
    """bench.latency's Sana backend on the tiny model (in process; --eager: CPU compilation takes minutes)."""
    from bench import latency

    argv = ["--backend", "sana-sprint-1.6b", "--config", "tiny", "--device", "cpu", "--iters", "2", "--warmup", "1"]
    assert latency.main([*argv, "--eager", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["backend"] == "sana-sprint-1.6b" and report["decoder"] == "dc-ae" and report["optimized"] is False
    assert report["resolution"] == 128 and report["image_size"] == [128, 128] and report["dtype"] == "float32"
    assert set(report["stages_p50_ms"]) == {"prompt", "control", "denoise", "decode"}
    assert report["stages_p50_ms"]["control"] > 0 and report["stages_p50_ms"]["denoise"] > 0
    assert set(report["params_m"]) == {"transformer", "controlnet", "vae", "text_encoder"}
    assert latency.parse_args(argv).compare  # Sana runs eager and optimized unless told otherwise


@pytest.mark.gpu
def test_sana_cuda_graph_path_matches_eager_without_allocations_or_host_syncs(monkeypatch):
    """The real-time path (channels_last + compiled DC-AE + CUDA graphs) gives the eager frame, and a steady-state
    frame allocates no device memory and never syncs with the host before its final copy."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    size = (128, 128)

    def make():  # two identical seeded sets: optimize() rewrites the DC-AE's methods in place
        parts = build_random_sana("tiny", seed=0, device="cuda")
        return SanaSprintEngine.from_components(
            parts, name="tiny", device="cuda", dtype=torch.float32, native_resolution=128
        )

    eager, fast = make(), make()
    fast.optimize()
    fast.warmup(size[0])
    assert {key[0] for key in fast._graphs} == {"encode", "denoise", "decode"}
    prompts = eager.encode_prompt(PROMPT), fast.encode_prompt(PROMPT)
    controls = eager.encode_control(sketch(0, size), size), fast.encode_control(sketch(0, size), size)
    torch.testing.assert_close(controls[1].tensors["latent"], controls[0].tensors["latent"], atol=1e-4, rtol=1e-4)
    for steps in (1, 2, 4):
        frames = [
            engine.generate(prompt, control, seed=3, steps=steps, strength=0.8, resolution=size)
            for engine, prompt, control in zip((eager, fast), prompts, controls, strict=True)
        ]
        pixels = [np.asarray(frame.image).astype(int) for frame in frames]
        assert np.abs(pixels[0] - pixels[1]).max() <= 2

    fast.generate(prompts[1], controls[1], seed=3, steps=1, strength=0.8, resolution=size)
    allocations = torch.cuda.memory_stats()["allocation.all.allocated"]
    torch.cuda.set_sync_debug_mode("error")
    try:
        latents = fast._sample(prompts[1], controls[1], seed=3, steps=1, strength=0.8, resolution=size)
        fast._call_graphed(("decode", fast.decoder, 16, 16), fast._decode_fn, latents)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.cuda.memory_stats()["allocation.all.allocated"] == allocations


def test_sana_refine_on_pen_up_runs_the_teacher_through_the_host(registry):
    """The live host runs the manifest's teacher for a refine request, on the same worker as live frames."""
    from pipelines.engine import Request
    from pipelines.host import LiveHost

    host = LiveHost(registry, "cpu")
    canvas = np.full((256, 256, 3), 255, np.uint8)
    canvas[100:110, 30:220] = 0
    base = dict(session="s", model="tiny-sana", prompt=PROMPT, sketch=canvas, seed=1, resolution=SIZE[0])
    try:
        refined = host.draw(Request(version=1, mode="refine", **base), timeout=300)
        live = host.draw(Request(version=2, **base), timeout=300)
    finally:
        host.close()
    assert refined.status == "ok" and live.status == "ok"
    assert refined.image.size == live.image.size
    assert live.image.tobytes() != refined.image.tobytes()


def test_sana_student_transformer_component_replaces_the_base_one(models_dir, parts, tmp_path):
    """A distilled student's manifest (base + its own transformer folder, as distillation.export writes) loads and
    draws with the student's weights; a manifest without a base is a clear ModelError."""
    student = copy.deepcopy(parts["transformer"])
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    student.save_pretrained(models_dir / "student-transformer")
    for name, components in {
        "tiny-sana-student": {"base": "./sprint", "transformer": "./student-transformer"},
        "tiny-sana-nobase": {"transformer": "./student-transformer"},
    }.items():
        lines = "\n".join(f'{role} = "{value}"' for role, value in components.items())
        (models_dir / f"{name}.toml").write_text(MANIFEST.format(name=name, components=lines))
    registry = Registry(models_dir=models_dir, allowed_roots=(models_dir,))
    try:
        engine = registry.load("tiny-sana-student", "cpu")
        for a, b in zip(engine.transformer.parameters(), student.parameters(), strict=True):
            torch.testing.assert_close(a, b)
        prompt = engine.encode_prompt(PROMPT)
        frame = engine.generate(
            prompt, engine.encode_control(sketch(1), SIZE), seed=1, steps=1, strength=1.0, resolution=SIZE
        )
        assert frame.image.size == SIZE
        with pytest.raises(ModelError, match="no 'base' component"):
            registry.load("tiny-sana-nobase", "cpu")
    finally:
        for name in ("tiny-sana-student", "tiny-sana-nobase"):
            (models_dir / f"{name}.toml").unlink()
