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
