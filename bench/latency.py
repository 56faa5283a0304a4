"""Engine latency per live-canvas frame (new sketch each frame, cached prompt): p50/p95 and per-stage p50 as JSON.

python -m bench.latency --backend sd-turbo|sdxl-turbo|sd15-lcm --random-weights --resolution 512 --device cuda --json
python -m bench.latency --config tiny --device cpu --threads 1 --iters 20 --json   # tiny random model, any CPU
python -m bench.latency --model sd-turbo-scribble --decoder taesd --optimized --json
python -m bench.latency --backend sdxl-turbo --random-weights --compare --json   # eager vs channels_last+compile
python -m bench.latency --backend sana-sprint-0.6b --random-weights --resolution 1024 --device cuda --json
python -m bench.latency --backend sana-sprint-1.6b --config tiny --device cpu --threads 1 --json   # tiny, any CPU
python -m bench.latency --model sketch-tiny --device cpu --json   # the offline default + its teacher@32 / student@1

Sana backends run eager and optimized (bf16, channels_last + compiled DC-AE, CUDA graphs) in the same run unless
--eager or --optimized is given; their stages are control (DC-AE encode of a new sketch), denoise (ControlNet +
transformer, every step) and decode.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Any

import numpy as np
import torch

PROMPT = "a watercolour fox in the snow, soft light"
# backend -> (random-weight kind, LCM scheduler, default steps)
BACKENDS = {"sd-turbo": ("sd", False, 1), "sdxl-turbo": ("sdxl", False, 1), "sd15-lcm": ("sd15", True, 4)}
SANA_BACKENDS = {"sana-sprint-0.6b": "0.6b", "sana-sprint-1.6b": "1.6b"}  # backend -> published size
STAGES = ("prompt", "control", "denoise", "decode")


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 1]."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q * 100))


def sketches(count: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Distinct white-stroke-on-black control images, one per frame, so the control cache never hits."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        image = np.zeros((size, size, 3), np.uint8)
        for _ in range(8):
            y, x = rng.integers(0, size - 8, 2)
            image[y : y + 4, x : x + size // 4] = 255
        images.append(image)
    return images


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine()


def build_engine(args: argparse.Namespace) -> tuple[Any, str, str]:
    """The engine under test, its backend and its model name (a manifest's, or e.g. "sd-turbo-random-full")."""
    from pipelines import accelerate
    from pipelines.registry import Registry

    if args.model:
        registry = Registry(args.models_dir) if args.models_dir else Registry()
        return registry.load(args.model, args.device, args.dtype), registry.get(args.model).backend, args.model
    if args.backend in SANA_BACKENDS:
        return build_sana_engine(args), args.backend, f"{args.backend}-random-{args.config}"
    from pipelines.sd.engine import SDControlNetEngine
    from pipelines.testing import build_random_sd

    kind, lcm, steps = BACKENDS[args.backend]
    components = build_random_sd(kind, args.config, seed=args.seed, device=args.device)
    engine = SDControlNetEngine.from_components(
        components,
        name=f"{args.backend}-random-{args.config}",
        device=args.device,
        dtype=accelerate.torch_dtype(args.dtype),
        lcm=lcm,
        native_resolution=256 if args.config == "tiny" else 512,
        default_steps=steps,
    )
    return engine, args.backend, engine.name


def build_sana_engine(args: argparse.Namespace) -> Any:
    """Seeded random SANA-Sprint (+ Sprint ControlNet, DC-AE, Gemma-2) at the published size or tiny; the DC-AE-Lite
    decoder is built only when it is the one measured."""
    from pipelines import accelerate
    from pipelines.sana.engine import SanaSprintEngine
    from pipelines.testing import build_random_sana

    size = "tiny" if args.config == "tiny" else SANA_BACKENDS[args.backend]
    components = build_random_sana(size, seed=args.seed, device=args.device)
    if args.decoder != "lite":
        components.pop("vae_lite")
    return SanaSprintEngine.from_components(
        components,
        name=f"{args.backend}-random-{args.config}",
        device=args.device,
        dtype=accelerate.torch_dtype(args.dtype),
        size=size,
        native_resolution=128 if size == "tiny" else 1024,
    )


def parameters_m(engine: Any) -> dict[str, float]:
    """Millions of parameters per network (proof that a random-weight run is real-size)."""
    names = ("transformer", "controlnet", "vae", "vae_lite", "text_encoder", "unet", "taesd", "model", "teacher")
    modules = {name: getattr(engine, name, None) for name in names}
    return {name: sum(p.numel() for p in m.parameters()) / 1e6 for name, m in modules.items() if m is not None}


def measure(engine: Any, *, resolution: int, steps: int, iters: int, warmup: int, device: str) -> dict[str, Any]:
    """Warm up, then time `iters` frames: encode_prompt (cached) + encode_control (new sketch) + generate."""
    from pipelines.accelerate import synchronize

    size = (resolution, resolution)
    start = time.perf_counter()
    engine.warmup(resolution)
    engine.encode_prompt(PROMPT)  # the prompt is cached in a live session; its encoder's visit is not a frame's
    synchronize(device)
    warmup_s = time.perf_counter() - start
    frames = sketches(warmup + iters, resolution)
    totals: list[float] = []
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(torch.device(device))
    for i, sketch in enumerate(frames):
        synchronize(device)
        start = time.perf_counter()
        prompt = engine.encode_prompt(PROMPT)
        control = engine.encode_control(sketch, size)
        result = engine.generate(prompt, control, seed=i, steps=steps, strength=1.0, resolution=size)
        synchronize(device)
        if i < warmup:
            continue
        totals.append((time.perf_counter() - start) * 1e3)
        for stage in STAGES:
            if stage in result.timings:  # the small pixel model has no prompt/control stages inside generate
                stages[stage].append(result.timings[stage])
    peak = torch.cuda.max_memory_allocated(torch.device(device)) / 2**20 if device.startswith("cuda") else None
    return {
        "p50_ms": percentile(totals, 0.5),
        "p95_ms": percentile(totals, 0.95),
        "mean_ms": statistics.fmean(totals),
        "fps_p50": 1e3 / percentile(totals, 0.5),
        "stages_p50_ms": {stage: percentile(values, 0.5) for stage, values in stages.items() if values},
        "peak_memory_mb": peak,
        "warmup_s": warmup_s,
        "image_size": list(result.image.size),  # what was generated (a Sana engine snaps to its resolution bins)
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_argument_group("what to run")
    source.add_argument(
        "--backend", choices=sorted(BACKENDS | SANA_BACKENDS), default="sd-turbo", help="architecture (random weights)"
    )
    source.add_argument("--random-weights", action="store_true", help="seeded random weights (default size: full)")
    source.add_argument("--config", choices=("tiny", "full"), default=None, help="random-weight size (implies it)")
    source.add_argument("--model", default=None, help="a manifest name from assets/models instead of random weights")
    source.add_argument("--models-dir", default=None, help="manifest folder for --model (default assets/models)")
    run = parser.add_argument_group("how")
    run.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    run.add_argument(
        "--dtype", default=None, help="float32 | float16 | bfloat16 (default on CUDA: float16, bfloat16 for Sana)"
    )
    run.add_argument("--resolution", type=int, default=None, help="square side in pixels (default: native)")
    run.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    run.add_argument(
        "--decoder", choices=("vae", "taesd", "dc-ae", "lite"), default=None, help="default: the engine's (vae, dc-ae)"
    )
    run.add_argument("--iters", type=int, default=20)
    run.add_argument("--warmup", type=int, default=3, help="untimed frames after the engine's own warm-up")
    run.add_argument("--seed", type=int, default=0, help="random-weight seed")
    run.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default: torch's)")
    run.add_argument("--optimized", action="store_true", help="channels_last + torch.compile(dynamic=False)")
    run.add_argument("--compare", action="store_true", help="eager, then optimized, in the same run")
    run.add_argument("--eager", action="store_true", help="eager only (Sana backends otherwise imply --compare)")
    run.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    run.add_argument("--teacher-steps", type=int, default=32, help="small model: also time its teacher (0 = no)")
    args = parser.parse_args(argv)
    if args.model and (args.random_weights or args.config):
        parser.error("--model loads a manifest; it does not combine with --random-weights / --config")
    if not args.model:
        args.config = args.config or "full"
    sana = args.backend in SANA_BACKENDS and not args.model
    if args.eager:
        args.compare = args.optimized = False
    elif sana and not args.optimized:
        args.compare = True
    gpu_dtype = "bfloat16" if sana else "float16"
    args.dtype = args.dtype or (gpu_dtype if args.device.startswith("cuda") else "float32")
    if args.iters < 1 or args.warmup < 0:
        parser.error("--iters must be >= 1 and --warmup >= 0")
    return args


def measure_teacher(engine: Any, *, steps: int, iters: int) -> dict[str, Any]:
    """The shipped teacher of a small-model student (TinyEngine.refine: Euler + CFG), same sketches and prompt."""
    resolution = engine.native_resolution
    size = (resolution, resolution)
    prompt = engine.encode_prompt(PROMPT)
    totals = []
    for i, sketch in enumerate(sketches(iters + 1, resolution, seed=1)):
        start = time.perf_counter()
        engine.refine(prompt, engine.encode_control(sketch, size), seed=i, strength=1.0, resolution=size, steps=steps)
        if i:
            totals.append((time.perf_counter() - start) * 1e3)
    return {"steps": steps, "iters": iters, "p50_ms": percentile(totals, 0.5), "p95_ms": percentile(totals, 0.95)}


def main(argv: list[str] | None = None) -> int:
    import diffusers

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    engine, backend, model = build_engine(args)
    if args.decoder:
        engine.decoder = args.decoder
    resolution = args.resolution or engine.native_resolution
    steps = args.steps or engine.default_steps
    report: dict[str, Any] = {
        "bench": "latency",
        "backend": backend,
        "model": model,
        "resolution": resolution,
        "device": args.device,
        "device_name": device_name(args.device),
        "steps": steps,
        "dtype": args.dtype,
        "decoder": engine.decoder,
        "attention": engine.attention,
        "optimized": args.optimized or args.compare,
        "iters": args.iters,
        "warmup": args.warmup,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "params_m": parameters_m(engine),
    }
    run = {"resolution": resolution, "steps": steps, "iters": args.iters, "warmup": args.warmup, "device": args.device}
    if args.compare:
        eager = measure(engine, **run)
        engine.optimize()
        optimized = measure(engine, **run)
        report["runs"] = {"eager": eager, "optimized": optimized}
        report["speedup_p50"] = eager["p50_ms"] / optimized["p50_ms"]
        report.update({key: optimized[key] for key in ("p50_ms", "p95_ms", "stages_p50_ms", "peak_memory_mb")})
    else:
        if args.optimized:
            engine.optimize()
        report.update(measure(engine, **run))
    if getattr(engine, "teacher", None) is not None and backend == "tiny" and args.teacher_steps:
        report["teacher"] = measure_teacher(engine, steps=args.teacher_steps, iters=max(3, args.iters // 4))
        report["teacher_over_student_p50"] = report["teacher"]["p50_ms"] / report["p50_ms"]
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
