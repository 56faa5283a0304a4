"""A job's log reads as words: trainer events (JSON lines) become sentences, any other line stays as it is."""

import json

from distillation.jobs import readable


def test_jobs_log_lines_read_as_words():
    progress = {
        "event": "progress",
        "step": 40,
        "total": 431,
        "it_s": 0.8,
        "eta_s": 488.0,
        "student/loss": 1.08,
        "student/adv_loss": -0.2,
        "heads/loss": 0.95,
        "heads/d_acc": 0.5,
    }
    assert readable(json.dumps(progress)) == (
        "step 40/431 · losses: student 1.08, student/adv -0.2, heads 0.95 · 1.25 s/step · about 8 min 08 s left"
    )
    limit = {"event": "time_limit", "step": 300, "limit_s": 590.0, "seconds": 583.2}
    assert readable(json.dumps(limit)) == (
        "step 300: time budget reached (9 min 43 s of 9 min 50 s); finishing with what was learnt"
    )
    assert readable(json.dumps({"event": "export", "registry": "listed"})) == (
        "exported: listed in the Live tab's model picker"
    )
    assert readable("--- 2026-01-01 10:00:00 $ python -m distillation.train x") == (
        "--- 2026-01-01 10:00:00: training process started"
    )
    assert readable("Traceback (most recent call last):") == "Traceback (most recent call last):"
    assert readable('{"event": "something new", "step": 1}') == '{"event": "something new", "step": 1}'
