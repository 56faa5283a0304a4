"""The 2-D toy: exact GMM teacher, metrics, the smoke run of every method, the CLI and the BENCHMARKS section."""

import json
import math

import pytest
import torch

from distillation import toy

KEYS = {
    "method",
    "teacher",
    "seed",
    "ed_student",
    "ed_teacher_1",
    "ed_teacher_4",
    "ed_teacher_64",
    "noise_floor",
    "modes_covered",
    "precision",
    "pass",
    "seconds",
}


def test_gmm_velocity_is_exact_for_one_gaussian():
    """One component N(mu, std^2): v(x_s, s) = E[eps - x0 | x_s] in closed form; one Euler step from s = 1 -> mean."""
    mu, std = torch.tensor([[1.0, -2.0]], dtype=torch.float64), 0.3
    field = toy.GMMFlow(mu, std)
    x, s = torch.randn(6, 2, dtype=torch.float64), torch.rand(6, dtype=torch.float64)
    var = ((1 - s) ** 2 * std**2 + s**2)[:, None]
    expected = (
        s[:, None] * (x - (1 - s[:, None]) * mu) - (1 - s[:, None]) * std**2 * (x - (1 - s[:, None]) * mu)
    ) / var
    torch.testing.assert_close(field(x, s), expected - mu)
    ring = toy.GMMFlow()
    x1 = torch.randn(6, 2)
    torch.testing.assert_close(x1 - ring(x1, torch.ones(6)), torch.zeros(6, 2), atol=1e-5, rtol=0)


def test_metrics():
    g = torch.Generator().manual_seed(0)
    a, b = toy.ring_samples(2000, g), toy.ring_samples(2000, g)
    assert toy.energy_distance(a, a) == pytest.approx(0.0, abs=1e-12)
    floor, shifted = toy.energy_distance(a, b), toy.energy_distance(a, b + 0.5)
    assert 0 <= floor < 0.01 < shifted
    assert toy.sliced_w2(a, b + 0.5, g) > 3 * toy.sliced_w2(a, b, g)
    masses = toy.mode_masses(a)
    assert masses.shape == (8,) and masses.sum() > 0.95 and masses.min() > 0.5 / 8
    assert toy.mode_masses(torch.zeros(10, 2)).sum() == 0


@pytest.mark.parametrize("name", sorted(toy.DISTILLERS))
def test_smoke_run(name):  # the distillation methods (flow_matching pre-trains teachers, paired_ladd fine-tunes on
    # pictures: not toy methods)
    record = toy.run(name, 0, "gmm", toy.SMOKE)
    assert KEYS <= set(record) and record["method"] == name
    assert all(math.isfinite(v) for v in record.values() if isinstance(v, float))
    assert 0 <= record["precision"] <= 1 and 0 <= record["modes_covered"] <= 8


def test_cli_prints_one_json_line(capsys):
    toy.main(["--method", "scm", "--teacher", "mlp", "--seed", "1", "--smoke", "--json"])
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert KEYS <= set(record) and record["teacher"] == "mlp" and record["seed"] == 1


def test_markdown_section_is_replaced_between_markers(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    toy.write_section(path, "first")
    path.write_text("# Benchmarks\n\nintro\n\n" + path.read_text() + "\n## Later\nkept\n")
    toy.write_section(path, "second")
    text = path.read_text()
    assert "first" not in text and "second" in text and text.count(toy.MARKERS[0]) == 1
    assert text.startswith("# Benchmarks\n\nintro") and text.endswith("## Later\nkept\n")


def test_merge_records_replaces_same_runs_and_orders_teacher_seed_method():
    def row(method, teacher, seed, tag):
        return {"method": method, "teacher": teacher, "seed": seed, "tag": tag}

    old = [row("lcm", "mlp", 0, "old"), row("scm", "gmm", 1, "old"), row("scm", "gmm", 0, "old")]
    new = [row("scm", "gmm", 0, "new"), row("dmd2", "gmm", 0, "new")]
    merged = toy.merge_records(old, new)
    assert [(r["method"], r["teacher"], r["seed"], r["tag"]) for r in merged] == [
        ("scm", "gmm", 0, "new"),
        ("dmd2", "gmm", 0, "new"),
        ("scm", "gmm", 1, "old"),
        ("lcm", "mlp", 0, "old"),
    ]


def test_cli_reruns_a_subset_and_keeps_the_other_rows(tmp_path, capsys):
    kept = toy.run("lcm", 0, "gmm", toy.SMOKE) | {"precision": 0.123456}
    records, markdown = tmp_path / "toy.jsonl", tmp_path / "BENCHMARKS.md"
    records.write_text(json.dumps(kept) + "\n")
    args = ["--all", "--smoke", "--methods", "scm", "--records", str(records), "--markdown", str(markdown)]
    toy.main(args)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["runs"] == 6 and summary["table_runs"] == 7
    rows = toy.read_records(records)
    assert [r["method"] for r in rows].count("scm") == 6 and rows[0]["method"] == "scm"
    assert any(r["method"] == "lcm" and r["precision"] == 0.123456 for r in rows)
    assert "| lcm | gmm | 0 |" in markdown.read_text() and "0.123 /" in markdown.read_text()
    with pytest.raises(SystemExit):
        toy.main(["--all", "--smoke", "--methods", "nope"])


@pytest.mark.slow
def test_the_recipe_passes_its_2d_proof_and_an_untrained_student_does_not():
    """The full-size proof of the recipe (sCM + LADD on the exact GMM teacher, seed 0; ~2 CPU-minutes) passes:
    closer to the ring than 4 teacher steps and 10x closer than 1, every mode covered. The same run with no training
    steps must fail, so the `pass` flag can fail."""
    record = toy.run("scm_ladd", 0, "gmm", toy.Scale())
    assert record["pass"] is True, {k: record[k] for k in KEYS if k != "pass"}
    untrained = toy.run("scm_ladd", 0, "gmm", toy.Scale(train_steps=0))
    assert untrained["pass"] is False
