"""Copy benchmark JSON (bench/results/*.json, one object per file; *.jsonl, one per line) into README and
BENCHMARKS.md tables and sentences between markers, so every measured number in them comes from a committed file.

python -m bench.e2e --json | tail -1 > bench/results/e2e_cpu.json
python -m bench.report            # rewrites the <!-- bench:NAME:begin/end --> blocks in README.md and BENCHMARKS.md
python -m bench.report --check    # exit 1 (and name the files) when a block is not what the JSON gives
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
        ("tabs draw by", "input"),
        ("background tabs", "background"),  # empty before --background existed: Chromium pages
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


def load_lines(name: str) -> list[dict]:
    """Every line of bench/results/NAME (JSON Lines), each with `_file` = NAME:line."""
    path = RESULTS / name
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return [{**json.loads(line), "_file": f"{name}:{i}"} for i, line in enumerate(lines, 1)]


def one(prefix: str) -> dict | None:
    """The report of bench/results/PREFIX.json, or None."""
    rows = [r for r in load(prefix) if r["_file"] == f"{prefix}.json"]
    return rows[0] if rows else None


def pass_fail(ok: bool) -> str:
    return "pass" if ok else "fail"


def quality_checks(r: dict) -> str:
    """The checks of a bench.quality report (issue 20: FD measured as its excess over the real-vs-real floor), with
    the numbers they compare."""
    fd, f1, checks = r["fd_effnet"], r["edge_f1"], r["checks"]
    t_max = next(k.split("_")[-1] for k in checks if k.startswith("edge_f1_student1_ge_0.9x_"))
    lines = [f"From `{r['_file']}` ({r['model']}, n = {r['n']} held-out pairs):", ""]
    if "real images" in fd:
        floor = fd["real images"]
        s1, t1, tm = (fd[k] - floor for k in ("student@1", "teacher@1", t_max))
        lines.append(
            f"- real-vs-real floor FD {floor:.1f}; excess over it: student@1 {s1:.1f}, teacher@1 {t1:.1f}, "
            f"{t_max} {tm:.1f}"
        )
        lines.append(
            f"- excess(student@1) {s1:.1f} <= 0.75 x excess(teacher@1) {t1:.1f} = {0.75 * t1:.1f}: "
            + pass_fail(checks["excess_student1_le_0.75x_teacher@1"])
        )
        lines.append(
            f"- excess(student@1) {s1:.1f} <= 1.2 x excess({t_max}) {tm:.1f} = {1.2 * tm:.1f}: "
            + pass_fail(checks[f"excess_student1_le_1.2x_{t_max}"])
        )
    lines.append(
        f"- edge F1(student@1) {f1['student@1']:.3f} >= 0.9 x edge F1({t_max}) {f1[t_max]:.3f} = "
        f"{0.9 * f1[t_max]:.3f}: " + pass_fail(checks[f"edge_f1_student1_ge_0.9x_{t_max}"])
    )
    return "\n".join(lines)


def latency_summary(r: dict) -> str:
    """One sentence from a bench.latency report with a teacher comparison."""
    text = (
        f"`{r['_file']}`: {r['model']} at {r['resolution']} px, {r['steps']} step, p50 {r['p50_ms']:.1f} ms "
        f"(p95 {r['p95_ms']:.1f} ms) on {r['threads']} threads of a {r['device_name']} CPU"
    )
    if "teacher" in r:
        teacher = r["teacher"]
        text += (
            f"; its teacher at {teacher['steps']} steps p50 {teacher['p50_ms']:.1f} ms, "
            f"{r['teacher_over_student_p50']:.1f}x slower"
        )
    return text + "."


def e2e_summary(rows: list[dict]) -> str:
    """Where the end-to-end time above the engine goes, per bench.e2e report."""
    parts = []
    for r in rows:
        b = r["breakdown_p50_ms"]
        where = "engine in its own process" if r.get("engine_process") else "engine in the app's process"
        parts.append(
            f"`{r['_file']}` ({where}): overhead above the engine p50 {r['overhead_p50_ms']:.1f} ms, "
            f"of it upload and reply {b['upload_and_reply']:.1f} ms, waiting for the scripted mouse's next send "
            f"{b['wait_for_send']:.1f} ms and decode+paint {b['decode_and_paint']:.1f} ms"
        )
    return "; ".join(parts) + "."


def soak_summary(rows: list[dict]) -> str:
    """The foreground tab against one tab alone, per bench.soak report (p50 of each stage)."""
    parts = []
    for r in rows:
        fg, alone = r["stages_foreground_p50_ms"], r["stages_single_p50_ms"]
        text = (
            f"`{r['_file']}`: the foreground tab's queue wait p50 {fg['queue']:.1f} ms, its engine "
            f"{fg['engine']:.1f} ms (one tab alone: {alone['engine']:.1f} ms), its round trip "
            f"{fg['round_trip']:.1f} ms (alone: {alone['round_trip']:.1f} ms)"
        )
        if "server_total" in fg and "server_total" in alone:
            text += f", {fg['server_total']:.1f} ms of it in the server (alone: {alone['server_total']:.1f} ms)"
        parts.append(text)
    return "; ".join(parts) + "."


def finetune_table(r: dict) -> str:
    """The bench.finetune report as the base / fine-tuned / reference table."""
    fd, f1 = r["fd_effnet_to_style"], r["edge_f1"]
    rows = [
        {"student": "base `" + r["model"] + "`", "fd": fd["base"], "f1": f1["base"], "steps": "-", "minutes": "-"},
        {
            "student": f"fine-tuned (default recipe, {r['budget_minutes']:g}-minute budget)",
            "fd": fd["fine-tuned"],
            "f1": f1["fine-tuned"],
            "steps": f"{r['trained_steps']} of {r['planned_steps']} planned",
            "minutes": f"{r['minutes']:.2f}",
        },
    ]
    rows += [
        {"student": key, "fd": value, "f1": "", "steps": "", "minutes": ""}
        for key, value in fd.items()
        if key not in ("base", "fine-tuned")
    ]
    columns = [
        ("student", "student"),
        (f"FD-EffNetLite0 to the style folder (n = {r['n_style']} vs {r['n_heldout']})", "fd"),
        (f"edge F1 vs sketch ({r['edge_method'].upper()})", "f1"),
        ("steps", "steps"),
        ("job minutes", "minutes"),
    ]
    return f"From `{r['_file']}`:\n\n" + table(rows, columns)


def finetune_variants_table(rows: list[dict]) -> str:
    """One row per recipe variant of bench.finetune (a JSON Lines file)."""
    rows = [
        {
            **r,
            "overrides": r["recipe"].split(")", 1)[1].strip() or "(none)",
            "fd_tuned": r["fd_effnet_to_style"]["fine-tuned"],
            "f1_tuned": r["edge_f1"]["fine-tuned"],
            "drop": f"{100 * r['fd_drop']:.1f} %",
            "load": f"{r['load_average_before'][0]:.2f}",
            "minutes": f"{r['minutes']:.2f}",
        }
        for r in rows
    ]
    columns = [
        ("file:line", "_file"),
        ("base px", "resolution"),
        ("`--set` overrides", "overrides"),
        ("load average before", "load"),
        ("planned steps", "planned_steps"),
        ("trained steps", "trained_steps"),
        ("job minutes", "minutes"),
        ("FD-EffNetLite0 to the style folder", "fd_tuned"),
        ("FD drop", "drop"),
        ("edge F1 vs sketch", "f1_tuned"),
    ]
    return table(rows, columns)


def toy_summary(records: list[dict]) -> str:
    """Pass counts and extremes of the 2-D proof (bench/results/toy.jsonl)."""
    methods = list(dict.fromkeys(r["method"] for r in records))
    teachers = sorted({r["teacher"] for r in records})
    seeds = sorted({r["seed"] for r in records})
    per_method = ", ".join(
        f"{m} {sum(r['pass'] for r in records if r['method'] == m)}/{sum(r['method'] == m for r in records)}"
        for m in methods
    )
    lowest = min(round(r["precision"], 3) for r in records)
    who = " and ".join(
        f"{r['method']}, {r['teacher']} seed {r['seed']}" for r in records if round(r["precision"], 3) == lowest
    )
    beat = sum(r["ed_student"] <= r[f"ed_teacher_{r['baseline_steps']}"] for r in records)
    modes = sum(r["modes_covered"] == 8 for r in records)
    seconds = [r["seconds"] for r in records]
    return (
        f"From `bench/results/toy.jsonl`: {sum(r['pass'] for r in records)} of {len(records)} runs pass "
        f"({len(methods)} methods x {len(teachers)} teachers x {len(seeds)} seeds; {per_method}). "
        f"{beat} of {len(records)} students beat the 4-step (LCM: 8-step) teacher on ED² and {modes} cover all "
        f"8 modes; the lowest student precision is {lowest:.3f} ({who}). The longest run took {max(seconds):.1f} s; "
        f"the runs' wall seconds add up to {sum(seconds) / 60:.1f} minutes."
    )


def e2e_pair_summary(rows: list[dict], name: str = "e2e_pair_e114b6b_cpu.jsonl") -> str:
    """Runs of bench.e2e on two commits in one session (ABBA, same machine and load): each commit's mean overhead
    above the engine, and the difference."""
    by: dict[str, list[float]] = {}
    for r in rows:
        by.setdefault(r["commit"], []).append(r["overhead_p50_ms"])
    (before, a), (after, b) = list(by.items())[:2]
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    order = " ".join(r["commit"] for r in rows)
    return (
        f"`{name}` (runs in the order {order}, one machine, the same load): overhead above the "
        f"engine p50, mean of {len(a)} runs each, {before} {mean_a:.1f} ms and {after} {mean_b:.1f} ms "
        f"(difference {mean_b - mean_a:+.1f} ms)."
    )


def summaries() -> dict[str, str]:
    """The generated sentences and small tables, by block name (absent when their JSON is)."""
    blocks = {}
    if quality := one("quality_sketch_tiny"):  # the shipped model's
        blocks["bench:quality_checks"] = quality_checks(quality)
    if latency := one("latency_sketch_tiny_cpu"):
        blocks["bench:latency_summary"] = latency_summary(latency)
    if rows := load("e2e"):
        blocks["bench:e2e_summary"] = e2e_summary(rows)
    pair = "e2e_pair_e114b6b_cpu.jsonl"
    if rows := load_lines(pair):
        blocks["bench:e2e_pair"] = e2e_pair_summary(rows, pair)
    if rows := [r for r in load("soak") if "stages_foreground_p50_ms" in r]:
        blocks["bench:soak_summary"] = soak_summary(rows)
    if finetune := one("finetune_cpu"):
        blocks["bench:finetune"] = finetune_table(finetune)
    if rows := load_lines("finetune_variants.jsonl"):
        blocks["bench:finetune_variants"] = finetune_variants_table(rows)
    if records := load_lines("toy.jsonl"):
        blocks["bench:toy_summary"] = toy_summary(records)
    return blocks


def replace_block(readme: str, name: str, body: str) -> str:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in readme or end not in readme:
        return readme
    head, rest = readme.split(begin, 1)
    return head + begin + "\n" + body + "\n" + end + rest.split(end, 1)[1]


def render(readme: str) -> str:
    """README.md or BENCHMARKS.md with every block it holds rebuilt (blocks it lacks are left out)."""
    if "<!-- models:begin -->" in readme:
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
    readme = replace_block(readme, "bench:freehand", body)
    for name, body in summaries().items():
        readme = replace_block(readme, name, body)
    return readme


DOCS = (ROOT / "README.md", ROOT / "BENCHMARKS.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--readme", type=Path, action="append", help="a file to rewrite (default: README.md and BENCHMARKS.md)"
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file's blocks are stale")
    args = parser.parse_args(argv)
    stale = []
    for path in args.readme or DOCS:
        text = path.read_text()
        new = render(text)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print("stale blocks (run python -m bench.report):", ", ".join(str(p) for p in stale))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
