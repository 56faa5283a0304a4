"""The live server function and what it keeps: refusals, history on disk, PNG metadata round trip."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from pipelines.host import LiveHost
from pipelines.preprocess import InputError
from tests.fakes import ScriptedEngine, install
from ui.canvas import decode_data_url, encode_data_url
from ui.live import LiveSessions, read_png_metadata


def data_url(image: np.ndarray, fmt: str = "JPEG") -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def sessions(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    registry = install(monkeypatch, tmp_path / "models", ScriptedEngine())
    live = LiveSessions(LiveHost(registry, "cpu"), "scripted", tmp_path / "out")
    yield live
    live.host.close()


def drawing() -> np.ndarray:
    image = np.full((512, 512, 3), 255, np.uint8)
    image[100:120, 50:400] = 0
    return image


def payload(seq: int, final: bool = False, **params) -> dict:
    return {
        "session": "tab1",
        "seq": seq,
        "final": final,
        "image": data_url(drawing()),
        "params": {"prompt": "a cat", "seed": 1, "steps": 1, "model": "scripted", "resolution": 256, **params},
    }


def test_a_frame_comes_back_as_a_data_url_with_timings(sessions):
    reply = sessions.live_generate([payload(1)])
    assert reply["status"] == "ok" and reply["seq"] == 1
    assert decode_data_url(reply["image"]).shape == (256, 256, 3)
    assert "encode" in reply["timings"] and reply["server_ms"] > 0


def test_pen_up_frames_go_to_history_once_and_survive_a_restart(sessions, tmp_path):
    sessions.live_generate(payload(1, final=False))
    sessions.live_generate(payload(2, final=True))
    sessions.live_generate(payload(3, final=True, seed=1))  # unchanged request: not stored twice
    entries = sessions.history.entries()
    assert len(entries) == 1
    params, sketch = read_png_metadata(entries[0])
    assert params["prompt"] == "a cat" and params["seed"] == 1 and params["model"] == "scripted"
    assert sketch.shape == (512, 512, 3)
    again = LiveSessions(sessions.host, "scripted", tmp_path / "out")
    assert again.history.entries() == entries


def test_export_embeds_prompt_seed_model_steps_and_sketch(sessions):
    with pytest.raises(InputError, match="nothing to export"):
        sessions.export("tab1")
    sessions.live_generate(payload(1, seed=42, prompt="a red fox"))
    path = sessions.export("tab1")
    params, sketch = read_png_metadata(path)
    assert (params["prompt"], params["seed"], params["model"], params["steps"]) == ("a red fox", 42, "scripted", 1)
    assert np.array_equal(sketch, decode_data_url(data_url(drawing())))


def test_variations_use_other_seeds(sessions):
    sessions.live_generate(payload(1, seed=5))
    shots = sessions.variations("tab1", count=3)
    seeds = [int(caption.split()[-1]) for _, caption in shots]
    assert len(set(seeds)) == 3 and 5 not in seeds


@pytest.mark.parametrize(
    "bad",
    [
        {"session": "../../etc", "seq": 1, "image": "data:image/png;base64,AAAA"},
        {"session": "tab1", "seq": 1, "image": "file:///etc/passwd"},
        {"session": "tab1", "seq": 1, "image": "data:image/png;base64,not-base64!!"},
        "just a string",
    ],
)
def test_bad_payloads_are_refused_with_a_message(sessions, bad):
    reply = sessions.live_generate(bad)
    assert reply["status"] == "error" and reply["message"]


def test_history_entries_outside_the_folder_are_refused(sessions):
    for name in ("../../etc/passwd", "/etc/passwd", "20260101-000000-zzzzzz"):
        with pytest.raises(InputError):
            sessions.history.resolve(name)


def test_encode_decode_round_trip_keeps_size():
    image = Image.new("RGB", (64, 32), (10, 200, 30))
    assert decode_data_url(encode_data_url(image)).shape == (32, 64, 3)
