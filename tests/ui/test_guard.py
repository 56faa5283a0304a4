"""The Host rule (DNS rebinding) and the access token, on a small Starlette app and on the real app's routes."""

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from ui.guard import LOOPBACK_NAMES, SHARE_DOMAIN, HostGuard, host_allowed, is_loopback


def app(**guard) -> Starlette:
    async def page(request):
        return PlainTextResponse("drawn")

    async def socket(websocket):
        await websocket.accept()
        await websocket.send_text("frame")
        await websocket.close()

    routes = [Route("/", page), WebSocketRoute("/ws", socket)]
    return Starlette(routes=routes, middleware=[Middleware(HostGuard, **guard)])


def test_host_names_are_matched_with_their_port():
    assert host_allowed("127.0.0.1:7860", LOOPBACK_NAMES, 7860)
    assert host_allowed("LOCALHOST:7860", LOOPBACK_NAMES, 7860)
    assert host_allowed("[::1]:7860", LOOPBACK_NAMES, 7860)
    assert not host_allowed("evil.example:7860", LOOPBACK_NAMES, 7860)
    assert not host_allowed("127.0.0.1:9999", LOOPBACK_NAMES, 7860)
    assert not host_allowed("127.0.0.1.evil.example:7860", LOOPBACK_NAMES, 7860)
    assert not host_allowed(None, LOOPBACK_NAMES, 7860) and not host_allowed("", LOOPBACK_NAMES, 7860)
    assert host_allowed("abc123.gradio.live", (*LOOPBACK_NAMES, SHARE_DOMAIN), 7860)
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and not is_loopback("0.0.0.0")


@pytest.mark.parametrize("base", ["http://127.0.0.1:7860", "http://localhost:7860"])
def test_loopback_hosts_are_served(base):
    client = TestClient(app(hosts=LOOPBACK_NAMES, port=7860), base_url=base)
    assert client.get("/").text == "drawn"
    with client.websocket_connect(base.replace("http", "ws") + "/ws") as ws:
        assert ws.receive_text() == "frame"


def test_a_rebinding_host_is_refused_on_http_and_on_the_socket():
    client = TestClient(app(hosts=LOOPBACK_NAMES, port=7860), base_url="http://evil.example:7860")
    response = client.get("/", headers={"origin": "http://evil.example:7860"})
    assert response.status_code == 403 and "Host refused" in response.text
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect(
            "ws://evil.example:7860/ws", headers={"origin": "http://evil.example:7860"}
        ) as ws:
            ws.receive_text()
    assert refused.value.code == 1008


def test_a_non_loopback_bind_needs_the_token_once_then_the_cookie():
    client = TestClient(app(hosts=None, token="s3cret"), base_url="http://192.168.1.5:7860")
    assert client.get("/").status_code == 403
    assert client.get("/?token=wrong").status_code == 403
    first = client.get("/?token=s3cret")
    assert first.status_code == 200 and "sketchsprint_token=s3cret" in first.headers["set-cookie"]
    assert client.get("/").status_code == 200  # the cookie carries it from now on
    with client.websocket_connect("ws://192.168.1.5:7860/ws", headers={"cookie": "sketchsprint_token=s3cret"}) as ws:
        assert ws.receive_text() == "frame"
    stranger = TestClient(app(hosts=None, token="s3cret"), base_url="http://192.168.1.5:7860")
    with pytest.raises(WebSocketDisconnect) as refused:
        with stranger.websocket_connect("ws://192.168.1.5:7860/ws") as ws:
            ws.receive_text()
    assert refused.value.code == 1008
