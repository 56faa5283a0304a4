"""Copy benchmark JSON (bench/results/*.json, one object per file) into README tables between markers.

python -m bench.e2e --json | tail -1 > bench/results/e2e_cpu.json
python -m bench.report            # rewrites the <!-- bench:NAME:begin/end --> blocks in README.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """Markdown table; columns are (header, dotted key into each row)."""

    def get(row, key):
        for part in key.split("."):
            row = row.get(part, "") if isinstance(row, dict) else ""
        return fmt(row)

    lines = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(get(r, k) for _, k in columns) + " |" for r in rows]
    return "\n".join(lines)


TABLES = {
    "e2e": [
        ("file", "_file"),
        ("model", "model"),
        ("device", "device"),
        ("strokes", "strokes"),
        ("frames", "frames"),
        ("stroke→pixel p50 ms", "p50_ms"),
        ("p95 ms", "p95_ms"),
        ("engine p50 ms", "engine_p50_ms"),
        ("overhead p50 ms", "overhead_p50_ms"),
        ("browser encode", "breakdown_p50_ms.browser_encode"),
        ("upload+reply", "breakdown_p50_ms.upload_and_reply"),
        ("queue", "breakdown_p50_ms.queue"),
        ("decode+paint", "breakdown_p50_ms.decode_and_paint"),
        ("stale dropped", "stale_dropped"),
    ],
    "latency": [
        ("file", "_file"),
        ("backend", "backend"),
        ("device", "device_name"),
        ("resolution", "resolution"),
        ("steps", "steps"),
        ("dtype", "dtype"),
        ("decoder", "decoder"),
        ("p50 ms", "p50_ms"),
        ("p95 ms", "p95_ms"),
        ("denoise p50", "stages_p50_ms.denoise"),
        ("decode p50", "stages_p50_ms.decode"),
        ("threads", "threads"),
        ("teacher steps", "teacher.steps"),
        ("teacher p50 ms", "teacher.p50_ms"),
        ("teacher / student", "teacher_over_student_p50"),
    ],
    "soak": [
        ("file", "_file"),
        ("model", "model"),
        ("tabs", "tabs"),
        ("minutes", "minutes"),
        ("sockets", "connections"),
        ("MB after warm-up", "rss_after_warmup_mb"),
        ("MB at end", "rss_end_mb"),
        ("growth MB", "rss_growth_mb"),
        ("all answered", "pass_answered"),
        ("1 tab p95 ms", "s2p_single_p95_ms"),
        ("foreground p95 ms", "s2p_foreground_p95_ms"),
        ("ratio", "s2p_p95_ratio"),
        ("foreground queue p50", "stages_foreground_p50_ms.queue"),
        ("foreground engine p50", "stages_foreground_p50_ms.engine"),
    ],
    "train_gpu": [
        ("file", "_file"),
        ("method", "method"),
        ("device", "device_name"),
        ("teacher M params", "teacher_params_m"),
        ("trainable M params", "trainable_params_m"),
        ("LoRA rank", "lora_rank"),
        ("resolution", "resolution"),
        ("batch", "batch"),
        ("dtype", "dtype"),
        ("steps", "steps"),
        ("s/step", "s_per_step"),
        ("s/step p50", "s_per_step_p50"),
        ("peak GiB", "peak_memory_gb"),
    ],
}


def quality_rows(reports: list[dict]) -> list[dict]:
    """One row per sampler@steps of each bench.quality report."""
    rows = []
    for r in reports:
        for key, fd in r["fd_effnet"].items():
            run = "real images (reference)" if key == "real images" else key
            rows.append(
                {
                    "_file": r["_file"],
                    "model": r["model"],
                    "n": r["n"],
                    "run": run,
                    "fd": fd,
                    "kid": r.get("kid_effnet", {}).get(key, ""),
                    "f1": r["edge_f1"].get(key, ""),
                }
            )
        if "real images" in r["edge_f1"] and "real images" not in r["fd_effnet"]:
            rows.append(
                {
                    "_file": r["_file"],
                    "model": r["model"],
                    "n": r["n"],
                    "run": "real images (reference)",
                    "fd": "",
                    "kid": "",
                    "f1": r["edge_f1"]["real images"],
                }
            )
    return rows


QUALITY_COLUMNS = [
    ("file", "_file"),
    ("model", "model"),
    ("held-out pairs", "n"),
    ("sampler@steps", "run"),
    ("FD-EffNetLite0 (not comparable to FID)", "fd"),
    ("KID-EffNetLite0", "kid"),
    ("edge F1 vs sketch", "f1"),
]


def freehand_rows(reports: list[dict]) -> list[dict]:
    """One row per model@steps of each bench.freehand report, with the colour hit rate a guess would get."""
    return [
        {**run, "_file": r["_file"], "run": key, "chance": r["chance_colour_hit_rate"]}
        for r in reports
        for key, run in r["runs"].items()
    ]


FREEHAND_COLUMNS = [
    ("file", "_file"),
    ("model@steps", "run"),
    ("native res", "resolution"),
    ("pictures", "n"),
    ("colour hit rate", "colour_hit_rate"),
    ("chance", "chance"),
    ("no prompt colour", "no_colour_share"),
    ("edge agreement", "edge_agreement"),
    ("vs another sketch", "edge_agreement_other_sketch"),
    ("FD-EffNetLite0 vs held-out", "fd_effnet_lite0"),
]


def load(prefix: str) -> list[dict]:
    rows = []
    for path in sorted(RESULTS.glob(f"{prefix}*.json")):
        row = json.loads(path.read_text().strip().splitlines()[-1])
        rows.extend({**r, "_file": path.name} for r in (row if isinstance(row, list) else [row]))
    return rows


def models_table() -> str:
    """The shipped manifests, as the Models tab lists them (state as seen offline)."""
    from pipelines.registry import Registry

    rows = [
        {
            "name": s.name,
            "title": s.title,
            "backend": s.backend,
            "resolution": s.resolution,
            "steps": "/".join(map(str, s.allowed_steps)),
            "components": ", ".join(s.components.values()) or "(built in)",
            "download_gb": s.download_gb,
            "min_vram_gb": s.min_vram_gb,
            "licence": s.licence,
        }
        for s in Registry().specs().values()
    ]
    columns = [
        ("name", "name"),
        ("what", "title"),
        ("backend", "backend"),
        ("native res", "resolution"),
        ("steps", "steps"),
        ("components (hub ids)", "components"),
        ("download GB", "download_gb"),
        ("GPU GB", "min_vram_gb"),
        ("licence", "licence"),
    ]
    return table(rows, columns)


def replace_block(readme: str, name: str, body: str) -> str:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in readme or end not in readme:
        return readme
    head, rest = readme.split(begin, 1)
    return head + begin + "\n" + body + "\n" + end + rest.split(end, 1)[1]


def render(readme: str) -> str:
    readme = replace_block(readme, "models", models_table())
    for name, columns in TABLES.items():
        rows = load(name)
        body = table(rows, columns) if rows else "_no results yet: run the command above_"
        readme = replace_block(readme, f"bench:{name}", body)
    rows = quality_rows(load("quality"))
    body = table(rows, QUALITY_COLUMNS) if rows else "_no results yet: run the command above_"
    readme = replace_block(readme, "bench:quality", body)
    rows = freehand_rows(load("freehand"))
    body = table(rows, FREEHAND_COLUMNS) if rows else "_no results yet: run the command above_"
    return replace_block(readme, "bench:freehand", body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)
    args.readme.write_text(render(args.readme.read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
