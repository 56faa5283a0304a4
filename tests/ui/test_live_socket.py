"""The live canvas's WebSocket: frame layout, origin rule, and real round trips through a Starlette app."""

import io

import numpy as np
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from pipelines.host import LiveHost
from tests.fakes import ScriptedEngine, install
from tests.ui.test_live import big_png_header
from ui import live_socket
from ui.live import LiveSessions


@pytest.fixture
def client(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    registry = install(monkeypatch, tmp_path / "models", ScriptedEngine())
    sessions = LiveSessions(LiveHost(registry, "cpu"), "scripted", tmp_path / "out")
    with TestClient(Starlette(routes=[live_socket.route(sessions)])) as test_client:
        yield test_client, sessions
    sessions.host.close()


def jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG")
    return buffer.getvalue()


def header(seq: int, final: bool = False, **params) -> dict:
    params = {"prompt": "a cat", "seed": 1, "steps": 1, "model": "scripted", "resolution": 256, **params}
    return {"session": "tab1", "seq": seq, "final": final, "params": params}


def drawing() -> np.ndarray:
    image = np.full((512, 512, 3), 255, np.uint8)
    image[100:120, 50:400] = 0
    return image


def test_pack_unpack_round_trip_and_malformed_frames():
    message = live_socket.pack({"seq": 3, "note": "ü"}, b"\xff\xd8jpeg")
    assert live_socket.unpack(message) == ({"seq": 3, "note": "ü"}, b"\xff\xd8jpeg")
    for bad in (b"", b"\x00\x00", b"\x00\x00\x00\x09{}", b"\x00\x00\x00\x02[]", b"\x00\x00\x00\x03{x}"):
        with pytest.raises(live_socket.FrameError):
            live_socket.unpack(bad)


def test_only_pages_from_this_server_may_connect():
    assert live_socket.same_origin("http://127.0.0.1:7860", "127.0.0.1:7860")
    assert live_socket.same_origin(None, "127.0.0.1:7860")  # not a browser
    assert not live_socket.same_origin("https://evil.example", "127.0.0.1:7860")
    assert not live_socket.same_origin("http://127.0.0.1:9999", "127.0.0.1:7860")


def test_a_snapshot_on_the_socket_comes_back_as_a_jpeg_frame(client):
    test_client, sessions = client
    with test_client.websocket_connect(live_socket.PATH) as ws:
        ws.send_bytes(live_socket.pack(header(1, final=True), jpeg(drawing())))
        reply, frame = live_socket.unpack(ws.receive_bytes())
    assert reply["status"] == "ok" and reply["seq"] == 1 and reply["mime"] == "image/jpeg"
    assert "encode" in reply["timings"] and reply["server_ms"] > 0
    with Image.open(io.BytesIO(frame)) as image:
        assert image.format == "JPEG" and image.size == (256, 256)
    sessions.history.flush()
    assert len(sessions.history.entries()) == 1  # the pen-up frame went to the history, as over HTTP


@pytest.mark.parametrize(
    "message",
    [
        b"garbage",
        live_socket.pack({"session": "../../etc", "seq": 2, "params": {}}, jpeg(drawing())),
        live_socket.pack(header(2), b"not an image"),
        live_socket.pack(header(2), b""),
    ],
)
def test_bad_socket_frames_get_an_error_reply_and_the_socket_stays_up(client, message):
    test_client, _ = client
    with test_client.websocket_connect(live_socket.PATH) as ws:
        ws.send_bytes(message)
        reply, frame = live_socket.unpack(ws.receive_bytes())
        assert reply["status"] == "error" and reply["message"] and frame == b""
        ws.send_bytes(live_socket.pack(header(3), jpeg(drawing())))  # still serving
        assert live_socket.unpack(ws.receive_bytes())[0]["status"] == "ok"


def test_a_text_message_is_not_a_frame(client):
    test_client, _ = client
    with test_client.websocket_connect(live_socket.PATH) as ws:
        ws.send_text("hello")
        reply, _ = live_socket.unpack(ws.receive_bytes())
    assert reply["status"] == "error"


def test_a_cross_origin_page_is_refused(client):
    test_client, _ = client
    with pytest.raises(WebSocketDisconnect) as refused:
        with test_client.websocket_connect(live_socket.PATH, headers={"origin": "https://evil.example"}) as ws:
            ws.receive_bytes()
    assert refused.value.code == 1008


def test_every_malformed_message_gets_exactly_one_reply_with_its_seq(client):
    import json

    test_client, _ = client

    def raw(head: dict, payload: bytes) -> bytes:  # Python's JSON writes Infinity as the browser's never would
        text = json.dumps(head).encode()
        return len(text).to_bytes(4, "big") + text + payload

    huge = big_png_header(20000, 20000)
    cases = [
        (raw({**header(11), "params": {**header(11)["params"], "seed": float("inf")}}, jpeg(drawing())), 11, "seed"),
        (raw({**header(1), "seq": float("inf")}, jpeg(drawing())), None, "seq Infinity"),
        (raw({**header(12), "params": ["a"]}, jpeg(drawing())), 12, "params"),
        (live_socket.pack(header(13), huge), 13, "too large"),
    ]
    with test_client.websocket_connect(live_socket.PATH) as ws:
        for message, seq, named in cases:
            ws.send_bytes(message)
            reply, frame = live_socket.unpack(ws.receive_bytes())
            assert reply["status"] == "error" and reply["seq"] == seq and named in reply["message"], reply
        ws.send_bytes(live_socket.pack(header(14), jpeg(drawing())))
        reply, frame = live_socket.unpack(ws.receive_bytes())
        assert reply["status"] == "ok" and reply["seq"] == 14 and frame


def test_an_unexpected_failure_is_still_answered(client, monkeypatch):
    test_client, sessions = client

    def broken(header, snapshot):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(sessions, "live_generate_bytes", broken)
    with test_client.websocket_connect(live_socket.PATH) as ws:
        ws.send_bytes(live_socket.pack(header(5), jpeg(drawing())))
        reply, _ = live_socket.unpack(ws.receive_bytes())
    assert reply == {**reply, "seq": 5, "status": "error"} and "disk on fire" in reply["message"]


def test_a_closed_socket_forgets_its_sessions_and_a_reload_starts_afresh(client):
    test_client, sessions = client
    with test_client.websocket_connect(live_socket.PATH) as ws:
        for seq in range(1, 24):
            ws.send_bytes(live_socket.pack(header(seq), jpeg(drawing())))
            assert live_socket.unpack(ws.receive_bytes())[0]["status"] in ("ok", "cached")
    assert len(sessions) == 0 and sessions.host.worker.remembered() == 0
    with test_client.websocket_connect(live_socket.PATH) as ws:  # the same tab, reloaded: its seq restarts at 1
        ws.send_bytes(live_socket.pack(header(1, prompt="a dog"), jpeg(drawing())))
        reply, frame = live_socket.unpack(ws.receive_bytes())
    assert reply["status"] == "ok" and reply["seq"] == 1 and frame
