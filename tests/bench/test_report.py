"""bench.report: README blocks rebuilt from bench JSON (quality rows per sampler@steps, markers kept)."""

from bench.report import FREEHAND_COLUMNS, QUALITY_COLUMNS, freehand_rows, quality_rows, replace_block, table


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
