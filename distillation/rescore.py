"""`python -m distillation.rescore RUN --metric fd_colour`: score every kept checkpoint of a run (its EMA student) from
select.start on, on the run's validation pairs with another `[select]` metric, and optionally export the best one.

A run's selection is fixed while it trains; when the metric proves blind to something (FD to colour: the 256 px
student darkened while its FD improved), its checkpoints can be re-judged without training again. Only validation
pairs are read (never the held-out split), so bench.quality still measures the exported student honestly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from distillation.config import SELECT_METRICS

RESULT_FILE = "rescore.json"  # <run>/rescore.json: every checkpoint's scores and the pick


def step_of(folder: Path) -> int:
    """The step of a checkpoint folder named step_XXXXXXXX."""
    from distillation.checkpoint import PREFIX

    return int(folder.name[len(PREFIX) :])


def pick(rows: Sequence[dict], metric: str) -> dict:
    """The row with the lowest finite `metric` (the earliest step on ties)."""
    finite = [row for row in rows if row[metric] == row[metric] and abs(row[metric]) != float("inf")]
    if not finite:
        raise ValueError(f"no checkpoint has a finite {metric}")
    return min(finite, key=lambda row: (row[metric], row["step"]))


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import sys

    from distillation.checkpoint import CheckpointError, checkpoints
    from distillation.config import ConfigError, load_config
    from distillation.export import ExportError
    from distillation.reexport import override_error
    from distillation.trainer import Trainer
    from distillation.validate import Best

    parser = argparse.ArgumentParser(
        prog="python -m distillation.rescore",
        description="Score each kept checkpoint of a run on its validation pairs with a select metric; "
        "--export writes the best one like the run's own export.",
        epilog="example: python -m distillation.rescore runs/sketch-tiny --metric fd_colour --export",
    )
    parser.add_argument("run", type=Path, help="the run folder (holds config.toml and checkpoints/)")
    parser.add_argument("--metric", default="fd_colour", choices=SELECT_METRICS)
    parser.add_argument("--export", action="store_true", help="export the best checkpoint's EMA student")
    args, overrides = parser.parse_known_args(argv)
    if error := override_error(overrides):
        print(error, file=sys.stderr)
        return 2
    try:
        config = load_config(args.run / "config.toml", [*overrides, f"--select.metric={args.metric}"])
        if not config.select.every:
            raise ConfigError("the run has no [select] section: set select.every to name its validation pairs")
        found = [folder for folder in checkpoints(args.run / "checkpoints") if step_of(folder) >= config.select.start]
        if not found:
            where = args.run / "checkpoints"
            raise CheckpointError(f"no checkpoints at or after step {config.select.start} in {where}")
        rows = []
        for folder in found:
            trainer = Trainer(config, args.run, resume=str(folder), progress="json", export_only=True)
            trainer.setup()
            scores = trainer.validation_scores()
            rows.append({"step": trainer.step, "checkpoint": str(folder), **scores})
            print(json.dumps({"event": "rescore", **rows[-1]}), flush=True)
        best = pick(rows, args.metric)
        result = {"metric": args.metric, "steps": config.select.steps, "n": config.select.n, "rows": rows}
        result["best"] = best
        (args.run / RESULT_FILE).write_text(json.dumps(result))
        if args.export:
            trainer = Trainer(config, args.run, resume=best["checkpoint"], progress="json", export_only=True)
            trainer.setup()
            trainer.best = Best(step=trainer.step, score=best[args.metric], ema=dict(trainer.validated_weights()))
            print(json.dumps(trainer.export()), flush=True)
    except (ConfigError, CheckpointError, ExportError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
