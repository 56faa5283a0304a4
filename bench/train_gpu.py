"""Distillation training cost: sCM + LADD steps with LoRA through distillation.trainer, s/step and peak memory as JSON.

python -m bench.train_gpu --json                 # real-size random Sana 0.6B teacher/student + ControlNet, 32x32
                                                 # latents (1024 px with DC-AE f32), batch 2, bf16, 50 steps (GPU)
python -m bench.train_gpu --config tiny --json   # the same path on tiny random Sana, any CPU, seconds

Random weights cost what trained ones do. Captions are 300 random Gemma-width (2304) embeddings per sample; the
teacher runs with CFG (two passes) and the JVP pass, as in SANA-Sprint's recipe.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from distillation.config import load_config
from distillation.trainer import Trainer

PRESET = Path(__file__).resolve().parent.parent / "distillation" / "presets" / "tiny_scm_ladd.toml"
CONFIGS = {
    # size: (teacher.random, caption tokens, frozen weight dtype)
    "full": ("full", 300, "bfloat16"),
    "tiny": ("tiny", 8, "float32"),
}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def peak_memory_gb(device: torch.device) -> float:
    """Peak allocated GPU memory, or the process's peak resident memory on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run(*, config: str, steps: int, batch: int, lora_rank: int, warmup: int, out: Path) -> dict:
    """Set up the trainer, time `steps` train steps (the first `warmup` excluded from s/step)."""
    size, tokens, dtype = CONFIGS[config]
    overrides = [
        f"--max_steps={steps}",
        f"--batch_size={batch}",
        "--mixed_precision=bf16",
        f"--teacher.random={size}",
        "--teacher.controlnet=true",
        f"--teacher.dtype={dtype}",
        f"--data.text_tokens={tokens}",
        f"--student.lora_rank={lora_rank}",
        "--preview.every=0",
        "--export.enabled=false",
    ]
    trainer = Trainer(load_config(PRESET, overrides), out, progress="json")
    started = time.perf_counter()
    trainer.setup()
    setup_s = time.perf_counter() - started
    device = trainer.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, logs = [], {}
    for _ in range(steps):
        started = time.perf_counter()
        logs = trainer.train_step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    timed = times[min(warmup, len(times) - 1) :]
    trainable = sum(p.numel() for role in trainer.roles.values() for p in role.params.values())
    teacher = trainer.teacher
    return {
        "bench": "train_gpu",
        "config": config,
        "method": trainer.cfg.method.name,
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "dtype": "bf16",
        "steps": steps,
        "batch": batch,
        "latent": list(teacher.sample_shape),
        "resolution": teacher.resolution,
        "lora_rank": lora_rank,
        "teacher_params_m": round(sum(p.numel() for p in teacher.model.parameters()) / 1e6, 1),
        "trainable_params_m": round(trainable / 1e6, 3),
        "setup_s": round(setup_s, 2),
        "first_step_s": round(times[0], 3),
        "s_per_step": round(statistics.fmean(timed), 4),
        "s_per_step_p50": round(statistics.median(timed), 4),
        "peak_memory_gb": round(peak_memory_gb(device), 3),
        "skipped_updates": trainer.skipped,
        "losses": {k: v for k, v in logs.items() if k.endswith("loss")},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="full")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--lora-rank", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3, help="first steps left out of s/step")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="train_gpu-") as out:
        result = run(
            config=args.config,
            steps=args.steps,
            batch=args.batch,
            lora_rank=args.lora_rank,
            warmup=args.warmup,
            out=Path(out),
        )
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
