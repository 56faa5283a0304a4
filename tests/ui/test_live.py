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


def big_png_header(width: int, height: int) -> bytes:
    """A PNG that only says how big it is (signature + IHDR + IEND): what a decompression bomb starts with."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def header(seq, **params) -> dict:
    return {"session": "tab1", "seq": seq, "params": {"seed": 1, "model": "scripted", "resolution": 256, **params}}


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"seed": float("inf")}, "seed Infinity"),
        ({"seed": -5}, "seed -5"),
        ({"seed": 2**40}, f"seed {2**40}"),
        ({"seed": 1.5}, "seed 1.5"),
        ({"steps": 1000}, "steps 1000"),
        ({"resolution": 100000}, "resolution 100000"),
        ({"strength": float("nan")}, "strength NaN"),
        ({"seed": "many"}, 'seed "many"'),
    ],
)
def test_out_of_range_numbers_are_refused_naming_the_value_sent(sessions, params, named):
    reply, jpeg = sessions.live_generate_bytes(header(7, **params), png_bytes(drawing()))
    assert reply["status"] == "error" and reply["seq"] == 7 and jpeg is None
    assert named in reply["message"], reply["message"]


@pytest.mark.parametrize(
    ("request_", "named"),
    [
        ({"session": "tab1", "seq": float("inf"), "params": {}}, "seq Infinity"),
        ({"session": "tab1", "seq": 3, "params": ["a", "list"]}, "params must be an object"),
    ],
)
def test_malformed_requests_get_one_error_reply_naming_the_problem(sessions, request_, named):
    reply, _ = sessions.live_generate_bytes(request_, png_bytes(drawing()))
    assert reply["status"] == "error" and named in reply["message"]
    assert reply["seq"] == (None if request_["seq"] == float("inf") else request_["seq"])


@pytest.mark.parametrize(("width", "height"), [(4097, 4096), (20000, 20000)])
def test_oversized_snapshots_are_called_too_large(sessions, width, height):
    reply, _ = sessions.live_generate_bytes(header(2), big_png_header(width, height))
    assert reply["status"] == "error" and "too large" in reply["message"] and reply["seq"] == 2


def test_an_older_snapshot_never_overwrites_a_newer_one_and_export_pairs_the_shown_frame(sessions):
    newer, older = drawing(), np.full((512, 512, 3), 255, np.uint8)
    older[300:320, 50:400] = 0
    assert sessions.live_generate_bytes(header(5, prompt="newer"), png_bytes(newer))[0]["status"] == "ok"
    late, _ = sessions.live_generate_bytes(header(4, prompt="older"), png_bytes(older))
    assert late["status"] == "stale" and late["seq"] == 4
    state = sessions.session("tab1")
    assert state.seq == 5 and np.array_equal(state.sketch, newer) and state.params["prompt"] == "newer"
    params, sketch = read_png_metadata(sessions.export("tab1"))
    assert params["prompt"] == "newer" and np.array_equal(sketch, newer)


def test_racing_snapshots_from_threads_leave_the_newest(sessions):
    import threading

    images = {seq: np.full((64, 64, 3), 255 - seq, np.uint8) for seq in range(1, 41)}
    threads = [
        threading.Thread(target=sessions.live_generate_bytes, args=(header(seq), png_bytes(images[seq])))
        for seq in images
    ]
    for thread in reversed(threads):
        thread.start()
    for thread in threads:
        thread.join()
    state = sessions.session("tab1")
    assert state.seq == 40 and np.array_equal(state.sketch, images[40])
    assert state.shown is None or np.array_equal(state.shown.sketch, images[state.shown.seq])


def test_two_exports_in_the_same_second_are_two_files(sessions):
    sessions.live_generate(payload(1))
    first, second = sessions.export("tab1"), sessions.export("tab1")
    assert first != second and first.is_file() and second.is_file()


def test_a_settings_change_that_is_not_kept_adds_no_history_and_the_disk_is_capped(sessions):
    for seq, prompt in enumerate(["a", "a c", "a ca", "a cat"], start=1):
        sessions.live_generate({**payload(seq, final=True, prompt=prompt), "history": False})
    assert sessions.history.entries() == []
    sessions.history.keep = 3
    for seq in range(5, 11):
        sessions.live_generate(payload(seq, final=True, seed=seq))
    sessions.history.flush()  # the pen-up frames' files are written on the history thread
    kept = sorted(sessions.history.folder.glob("*.png"))
    assert len(kept) == 3  # and they are the newest three, though all six came within a second or two
    assert [read_png_metadata(path)[0]["seed"] for path in kept] == [8, 9, 10]


def test_closed_idle_and_surplus_sessions_are_forgotten_with_the_workers_memory(sessions, monkeypatch):
    import ui.live as live

    for k in range(5):
        sessions.live_generate({**payload(1), "session": f"tab{k}"})
    assert len(sessions) == 5 and sessions.host.worker.remembered() == 5
    sessions.forget("tab0")
    assert len(sessions) == 4 and sessions.host.worker.remembered() == 4
    monkeypatch.setattr(live, "MAX_SESSIONS", 2)
    sessions.session("tab9")
    assert len(sessions) == 2 and sessions.host.worker.remembered() <= 2
    monkeypatch.setattr(live, "IDLE_SECONDS", 0.0)
    sessions.session("tab8")
    assert len(sessions) == 1 and sessions.host.worker.remembered() == 0
    sessions.close()
