"""LiveHost: bad input becomes a message, OOM falls back to a smaller resolution, long prompts are cut."""

import numpy as np

from pipelines.engine import Request
from pipelines.host import LiveHost
from tests.fakes import ScriptedEngine, install


def sketch():
    image = np.full((512, 512, 3), 255, np.uint8)
    image[200:210, 50:450] = 0
    return image


def req(version=1, **kw):
    base = dict(session="s", version=version, model="scripted", prompt="a cat", sketch=sketch(), resolution=256)
    return Request(**{**base, **kw})


def test_unknown_model_is_answered_with_the_known_names(tmp_path, monkeypatch):
    host = LiveHost(install(monkeypatch, tmp_path, ScriptedEngine()), "cpu")
    frame = host.draw(req(model="../../etc/passwd"))
    host.close()
    assert frame.status == "error" and "unknown model" in frame.message and "scripted" in frame.message


def test_cuda_oom_falls_back_to_a_smaller_resolution_and_says_so(tmp_path, monkeypatch):
    engine = ScriptedEngine(oom_above=256)
    host = LiveHost(install(monkeypatch, tmp_path, engine), "cpu")
    first = host.draw(req(resolution=512))
    second = host.draw(req(version=2, resolution=512, seed=3))
    host.close()
    assert first.status == "ok" and "out of GPU memory at 512x512" in first.message
    assert first.image.size == (256, 256)
    assert second.status == "ok" and engine.generated[-1] == (256, 256)  # remembered: no second OOM


def test_empty_canvas_and_ten_thousand_character_prompt_still_give_a_frame(tmp_path, monkeypatch):
    host = LiveHost(install(monkeypatch, tmp_path, ScriptedEngine()), "cpu")
    frame = host.draw(req(prompt="word " * 2000, sketch=np.full((64, 64, 3), 255, np.uint8)))
    host.close()
    assert frame.status == "ok"
    assert "empty" in frame.message and "truncated" in frame.message


def test_refine_is_refused_for_a_model_without_a_teacher(tmp_path, monkeypatch):
    host = LiveHost(install(monkeypatch, tmp_path, ScriptedEngine()), "cpu")
    frame = host.draw(req(mode="refine"))
    host.close()
    assert frame.status == "error" and "no refine pass" in frame.message
