"""Distillation jobs from the command line (one process, or many under `accelerate launch`).

    python -m distillation.train distillation/presets/tiny_scm_ladd.toml --max_steps=20 --optim.lr=1e-3
    python -m distillation.train distillation/presets/tiny_scm_ladd.toml --resume latest --out runs/tiny-scm-ladd
    accelerate launch --multi_gpu --num_processes 2 -m distillation.train distillation/presets/tiny_scm_ladd.toml

Under `accelerate launch` each process trains its slice of every batch (on a machine without CUDA, on the CPU;
accelerate's `--cpu` launcher starts one process unless it runs under mpirun). Overrides are `--key=value` with
dotted keys for sections (`--method.tangent_warmup=100`). Progress: a bar on a terminal, JSON lines on stdout
otherwise (--progress). Exit codes: 0 done, 1 failed, 2 bad input, 143 stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from distillation.config import ConfigError, load_config
from distillation.run_folder import write_status
from distillation.trainer import EXIT_BAD_INPUT, PROGRESS_MODES, Trainer


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m distillation.train", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    parser.add_argument("preset", help="a TOML preset (distillation/presets/*.toml)")
    parser.add_argument("--resume", help="'latest' or a checkpoint folder")
    parser.add_argument("--out", help="run folder (default runs/<name>)")
    parser.add_argument("--progress", choices=PROGRESS_MODES, default="auto")
    args, overrides = parser.parse_known_args(argv)
    try:
        config = load_config(args.preset, overrides)
    except ConfigError as error:
        print(json.dumps({"event": "failed", "step": 0, "reason": str(error)}), flush=True)
        print(f"error: {error}", file=sys.stderr)
        if args.out:
            write_status(Path(args.out), "failed", step=0, reason=str(error))
        return EXIT_BAD_INPUT
    out = Path(args.out) if args.out else Path("runs") / config.name
    # Without CUDA every process runs on the CPU, so processes started by `accelerate launch --multi_gpu`
    # (torchrun) on a CPU machine form a gloo group instead of N independent jobs.
    cpu = not torch.cuda.is_available()
    return Trainer(config, out, resume=args.resume, progress=args.progress, cpu=cpu).run()


if __name__ == "__main__":
    sys.exit(main())
