"""`python -m distillation.reexport RUN`: export a run's checkpoint (its EMA student) again with other export.*
settings, without training."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from distillation.export import ExportError


def override_error(overrides: Sequence[str]) -> str | None:
    """Why `overrides` cannot change a trained run (only export.* and teacher.licence can), or None."""
    unsafe = [o for o in overrides if not o.lstrip("-").startswith(("export.", "teacher.licence"))]
    return f"error: only export.* and teacher.licence can be overridden, not {unsafe[0]}" if unsafe else None


def main(argv: Sequence[str] | None = None) -> int:
    """Re-export a run's checkpoint (EMA student) with its saved config and optional overrides of export keys."""
    import argparse
    import sys

    from distillation.config import ConfigError, load_config
    from distillation.trainer import Trainer

    parser = argparse.ArgumentParser(
        prog="python -m distillation.reexport",
        description="Export the EMA student of a run's checkpoint (e.g. with other export.* settings), no training.",
        epilog="example: python -m distillation.reexport runs/sketch-tiny-teacher --export.guidance=4.0",
    )
    parser.add_argument("run", type=Path, help="the run folder (holds config.toml and checkpoints/)")
    parser.add_argument("--checkpoint", default="latest", help="'latest' or a checkpoint folder")
    args, overrides = parser.parse_known_args(argv)
    if error := override_error(overrides):
        print(error, file=sys.stderr)
        return 2
    try:
        config = load_config(args.run / "config.toml", overrides)
        trainer = Trainer(config, args.run, resume=args.checkpoint, progress="json", export_only=True)
        trainer.setup()
        event = trainer.export()
    except (ConfigError, ExportError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(event))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
