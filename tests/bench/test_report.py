"""bench.report: README blocks rebuilt from bench JSON (quality rows per sampler@steps, markers kept); the committed
README.md and BENCHMARKS.md are exactly what the committed bench/results give."""

import json

import pytest

from bench import report
from bench.report import (
    FREEHAND_COLUMNS,
    QUALITY_COLUMNS,
    finetune_variants_table,
    freehand_rows,
    quality_checks,
    quality_rows,
    replace_block,
    table,
    toy_summary,
)


def test_quality_rows_list_every_sampler_and_the_real_image_reference():
    report = {
        "_file": "quality_x.json",
        "model": "m",
        "n": 3,
        "fd_effnet": {"teacher@32": 12.5, "student@1": 13.25},
        "kid_effnet": {"teacher@32": 0.01, "student@1": 0.02},
        "edge_f1": {"teacher@32": 0.5, "student@1": 0.45, "real images": 0.8},
    }
    rows = quality_rows([report])
    assert [r["run"] for r in rows] == ["teacher@32", "student@1", "real images (reference)"]
    markdown = table(rows, QUALITY_COLUMNS)
    assert "| quality_x.json | m | 3 | student@1 | 13.2 | 0.020 | 0.450 |" in markdown


def test_quality_rows_put_the_real_image_fd_floor_on_the_reference_row():
    report = {
        "_file": "q.json",
        "model": "m",
        "n": 3,
        "fd_effnet": {"student@1": 13.0, "real images": 7.5},
        "kid_effnet": {"student@1": 0.02, "real images": 0.01},
        "edge_f1": {"student@1": 0.45, "real images": 0.8},
    }
    rows = quality_rows([report])
    assert [r["run"] for r in rows] == ["student@1", "real images (reference)"]
    assert (rows[1]["fd"], rows[1]["kid"], rows[1]["f1"]) == (7.5, 0.01, 0.8)


def test_replace_block_keeps_the_markers_and_the_text_around_them():
    readme = "a\n<!-- bench:quality:begin -->\nold\n<!-- bench:quality:end -->\nb\n"
    assert replace_block(readme, "bench:quality", "new") == (
        "a\n<!-- bench:quality:begin -->\nnew\n<!-- bench:quality:end -->\nb\n"
    )


def test_freehand_rows_list_every_model_at_every_step_count_with_chance():
    run = {"resolution": 128, "n": 8, "colour_hit_rate": 0.25, "no_colour_share": 0.0}
    run |= {"edge_agreement": 0.99, "edge_agreement_other_sketch": 0.5, "fd_effnet_lite0": "n/a"}
    report = {"_file": "freehand_x.json", "chance_colour_hit_rate": 0.25, "runs": {"s@1": run, "t@32": run}}
    rows = freehand_rows([report])
    assert [r["run"] for r in rows] == ["s@1", "t@32"]
    assert "| freehand_x.json | s@1 | 128 | 8 | 0.250 | 0.250 | 0.000 | 0.990 | 0.500 | n/a |" in table(
        rows, FREEHAND_COLUMNS
    )


@pytest.mark.parametrize("path", report.DOCS, ids=lambda p: p.name)
def test_committed_docs_regenerate_identically_from_the_committed_json(path):
    text = path.read_text()
    assert report.render(text) == text, f"run `python -m bench.report`: {path.name} is not what bench/results gives"


def test_the_generated_sentences_have_their_blocks_in_the_docs():
    docs = "".join(path.read_text() for path in report.DOCS)
    for name in report.summaries():
        assert f"<!-- {name}:begin -->" in docs, name


def test_quality_checks_measure_fd_above_the_real_vs_real_floor():
    report_ = {
        "_file": "q.json",
        "model": "m",
        "n": 4,
        "fd_effnet": {"teacher@1": 100.0, "teacher@8": 50.0, "student@1": 60.0, "real images": 40.0},
        "edge_f1": {"teacher@8": 0.5, "student@1": 0.5},
        "checks": {
            "excess_student1_le_0.75x_teacher@1": True,
            "excess_student1_le_1.2x_teacher@8": False,
            "edge_f1_student1_ge_0.9x_teacher@8": True,
        },
    }
    text = quality_checks(report_)
    assert "floor FD 40.0; excess over it: student@1 20.0, teacher@1 60.0, teacher@8 10.0" in text
    assert "excess(student@1) 20.0 <= 0.75 x excess(teacher@1) 60.0 = 45.0: pass" in text
    assert "excess(student@1) 20.0 <= 1.2 x excess(teacher@8) 10.0 = 12.0: fail" in text
    assert "edge F1(student@1) 0.500 >= 0.9 x edge F1(teacher@8) 0.500 = 0.450: pass" in text


def test_toy_summary_counts_passes_and_names_every_run_at_the_lowest_precision():
    def run(method, seed, precision, ok=True):
        return {
            "method": method,
            "teacher": "gmm",
            "seed": seed,
            "pass": ok,
            "precision": precision,
            "baseline_steps": 4,
            "ed_student": 0.001,
            "ed_teacher_4": 0.01,
            "modes_covered": 8,
            "seconds": 60.0,
        }

    text = toy_summary([run("a", 0, 0.95), run("a", 1, 0.91), run("b", 0, 0.9104, ok=False)])
    assert "2 of 3 runs pass (2 methods x 1 teachers x 2 seeds; a 2/2, b 0/1)" in text
    assert "0.910 (a, gmm seed 1 and b, gmm seed 0)" in text
    assert "add up to 3.0 minutes" in text


def test_finetune_variants_rows_come_from_each_line_in_order(tmp_path, monkeypatch):
    base = {"recipe": "p.toml (paired LADD from m)", "fd_effnet_to_style": {"fine-tuned": 200.0}, "fd_drop": 0.1}
    base |= {"edge_f1": {"fine-tuned": 0.7}, "load_average_before": [1.0], "minutes": 9.5}
    base |= {"planned_steps": 10, "trained_steps": 8, "resolution": 256}
    lines = [base, {**base, "recipe": base["recipe"] + " --method.x=3", "fd_drop": -0.2}]
    (tmp_path / "v.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    markdown = finetune_variants_table(report.load_lines("v.jsonl"))
    assert "| v.jsonl:1 | 256 | (none) | 1.00 | 10 | 8 | 9.50 | 200.0 | 10.0 % | 0.700 |" in markdown
    assert "| v.jsonl:2 | 256 | --method.x=3 |" in markdown and "-20.0 %" in markdown


def test_check_mode_reports_a_stale_block_and_writes_nothing(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- bench:toy_summary:begin -->\nold\n<!-- bench:toy_summary:end -->\n")
    assert report.main(["--readme", str(doc), "--check"]) == 1
    assert "old" in doc.read_text()
    assert report.main(["--readme", str(doc)]) == 0
    assert report.main(["--readme", str(doc), "--check"]) == 0


def test_e2e_pair_summary_means_each_commit_and_the_difference():
    from bench.report import e2e_pair_summary

    rows = [
        {"commit": "aaa", "overhead_p50_ms": 30.0},
        {"commit": "bbb", "overhead_p50_ms": 32.0},
        {"commit": "bbb", "overhead_p50_ms": 34.0},
        {"commit": "aaa", "overhead_p50_ms": 40.0},
    ]
    text = e2e_pair_summary(rows)
    assert "order aaa bbb bbb aaa" in text and "aaa 35.0 ms and bbb 33.0 ms (difference -2.0 ms)" in text
