"""The live canvas's fast path: one WebSocket per tab carrying binary snapshots in and JPEG frames out.

Gradio's server functions (JSON over HTTP, data URLs, Brotli) stay as the fallback; this path skips the JSON
wrapping, base64 and compression of every frame. A message is `uint32 header length (big endian) | JSON header |
image bytes`. Browser -> server: header {session, seq, final, params}, the snapshot (JPEG/PNG). Server -> browser:
the reply dict of `LiveSessions.generate_frame` (+ `server_ms`, `mime`, and `recv_at` / `send_at`: epoch ms when the
message arrived and when its reply left, so the page can tell the network and event loops from the server's work), then
the JPEG frame or nothing. Every
message is answered exactly once with its own seq (None when it has none), errors included.

Each message is handled in its own task (as each HTTP call is), so a pen-up snapshot supersedes a queued one in the
latest-wins worker instead of waiting behind it on the socket. Connections from another origin are refused: a web
page the person visits must not drive their GPU (Gradio's HTTP routes have the same CORS rule; ui/guard.py adds
the Host rule against DNS rebinding on every route). A session is one page load: when its socket closes, the
server forgets it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import time
from urllib.parse import urlsplit

import anyio
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ui.live import LiveSessions, reply_seq

log = logging.getLogger(__name__)
PATH = "/sketchsprint/live"
MAX_SESSIONS_PER_SOCKET = 64
MAX_HEADER_BYTES = 64_000
MAX_MESSAGE_BYTES = 16_000_000


class FrameError(ValueError):
    """A socket message that does not follow the frame layout."""


def pack(header: dict, payload: bytes = b"") -> bytes:
    """header dict + payload bytes -> one binary message."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack(">I", len(head)) + head + payload


def unpack(message: bytes) -> tuple[dict, bytes]:
    """One binary message -> (header dict, payload bytes); FrameError when it is not one."""
    if len(message) < 4:
        raise FrameError("message shorter than its length prefix")
    (size,) = struct.unpack(">I", message[:4])
    if size > MAX_HEADER_BYTES or 4 + size > len(message):
        raise FrameError("bad header length")
    try:
        header = json.loads(message[4 : 4 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FrameError("header is not JSON") from error
    if not isinstance(header, dict):
        raise FrameError("header is not an object")
    return header, message[4 + size :]


def same_origin(origin: str | None, host: str | None) -> bool:
    """True when the page that opened the socket is served by this server (or no browser origin is given)."""
    if origin is None:
        return True  # not a browser (a script or test client): the server's bind address is the boundary
    return bool(host) and urlsplit(origin).netloc.lower() == host.lower()


def error_reply(seq, message: str) -> dict:
    return {"seq": seq, "status": "error", "message": message}


async def serve(websocket: WebSocket, sessions: LiveSessions) -> None:
    """One tab's socket: each snapshot is generated in a worker thread and answered as soon as its frame is ready.
    Every message gets exactly one reply carrying its seq; the sessions it named are forgotten when it closes."""
    if not same_origin(websocket.headers.get("origin"), websocket.headers.get("host")):
        await websocket.close(code=1008, reason="cross-origin connection refused")
        return
    await websocket.accept()
    send_lock = asyncio.Lock()
    tasks: set[asyncio.Task] = set()
    seen: set[str] = set()

    async def answer(message: bytes, received_at: float) -> None:
        seq = None
        jpeg = None
        try:
            if len(message) > MAX_MESSAGE_BYTES:
                raise FrameError(f"message too large: {len(message):,} bytes (at most {MAX_MESSAGE_BYTES:,})")
            header, snapshot = unpack(message)
            seq = reply_seq(header)
            if isinstance(header.get("session"), str) and len(seen) < MAX_SESSIONS_PER_SOCKET:
                seen.add(header["session"])
            reply, jpeg = await anyio.to_thread.run_sync(sessions.live_generate_bytes, header, snapshot)
        except FrameError as error:
            reply = error_reply(seq, f"bad frame: {error}")
        except Exception as error:  # the app stays up and the tab hears why, whatever went wrong
            log.exception("live frame failed")
            reply = error_reply(seq, f"the server could not make this frame: {error}")
        reply["mime"] = "image/jpeg" if jpeg else ""
        reply["recv_at"] = received_at  # epoch ms: the page's clock reads the same, so it can split its round trip
        async with send_lock:
            reply["send_at"] = time.time() * 1e3
            try:
                await websocket.send_bytes(pack(reply, jpeg or b""))
            except (WebSocketDisconnect, RuntimeError):
                pass  # the tab went away meanwhile

    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("bytes")
            if data is None:
                data = b""  # a text message is not a frame: answered with an error below
            task = asyncio.create_task(answer(data, time.time() * 1e3))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    except WebSocketDisconnect:
        pass
    finally:
        for task in tasks:
            task.cancel()
        for session in seen:
            sessions.forget(session)


def route(sessions: LiveSessions) -> WebSocketRoute:
    """The socket route for the Gradio app (`launch(app_kwargs={"routes": [route(sessions)]})`)."""

    async def endpoint(websocket: WebSocket) -> None:
        await serve(websocket, sessions)

    return WebSocketRoute(PATH, endpoint)
