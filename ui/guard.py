"""Who may talk to the app: the Host rule against DNS rebinding, and the access token for non-loopback binds.

A page on another site can point its own domain at 127.0.0.1 (DNS rebinding): its requests then carry that domain
in Host and Origin, so an Origin == Host check passes them. On a loopback bind the app answers only requests whose
Host names this machine (127.0.0.1, localhost, [::1], with the server's port), on every HTTP route and socket. Bound
to other addresses the Host cannot be known in advance, so a token printed at start is required instead: the
person opens `http://<address>:<port>/?token=<token>` once and a cookie carries it from then on.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
SHARE_DOMAIN = ".gradio.live"  # `--share` tunnels arrive with this Host
COOKIE = "sketchsprint_token"
OPEN_PATHS = ("/gradio_api/startup-events",)  # Gradio's launch() calls it without a token; it only starts the app


def is_loopback(address: str) -> bool:
    """True for a bind address only this machine can reach."""
    return address in LOOPBACK_NAMES or address.startswith("127.")


def split_host(host: str) -> tuple[str, int | None]:
    """A Host header -> (lower-case name without brackets, port or None); ("", None) when it is not one."""
    try:
        parts = urlsplit("//" + host.strip())
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return "", None


def host_allowed(host: str | None, names: Iterable[str], port: int | None) -> bool:
    """True when a Host header names one of `names` with `port` (when the header carries one), or ends with a name
    that starts with a dot (a share tunnel's domain, any port)."""
    name, given = split_host(host or "")
    if not name:
        return False
    if any(n.startswith(".") and name.endswith(n) for n in names):
        return True
    return name in set(names) and (given is None or port is None or given == port)


def new_token() -> str:
    return secrets.token_urlsafe(18)


class HostGuard:
    """ASGI middleware: refuses requests whose Host is not allowed (HTTP 403, socket close 1008) and, with a token,
    requests that carry neither the token cookie nor `?token=` (the latter sets the cookie)."""

    def __init__(self, app, *, hosts: Iterable[str] | None, port: int | None = None, token: str | None = None):
        self.app = app
        self.hosts = tuple(hosts) if hosts is not None else None
        self.port = port
        self.token = token

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.hosts is not None and not host_allowed(headers.get("host"), self.hosts, self.port):
            await self._refuse(scope, receive, send, "this address is not served here (Host refused)")
            return
        if self.token is not None and scope.get("path") not in OPEN_PATHS:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
            cookie = SimpleCookie(headers.get("cookie", "")).get(COOKIE)
            given = query or (cookie.value if cookie else "")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                await self._refuse(scope, receive, send, "open the link with ?token= printed when the app started")
                return
            if query and scope["type"] == "http":
                await self.app(scope, receive, _with_cookie(send, self.token))
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope, receive, send, reason: str) -> None:
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1008, "reason": reason})
            return
        body = f"403 Forbidden: {reason}\n".encode()
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _with_cookie(send, token: str):
    async def wrapped(message) -> None:
        if message["type"] == "http.response.start":
            cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict".encode()
            message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
        await send(message)

    return wrapped
