"""What stands in front of an engine service that other machines reach: a rate limit per token, and a log.

The rate limit counts requests per token (the `limits` library, moving window, in memory); requests without
the right token are counted per client address instead, so guessing tokens is slowed down too. An answer
over the limit is 429 with `Retry-After`. The request log holds method, path, status and time: never a
header (so never a token) and never a body (so never a prompt).
On loopback, a request whose Host header is not a loopback name is refused (DNS rebinding).
A body that declares a length over the limit is refused here at once, with the API's JSON error; a body
sent without a length is counted by FastAPI's own limit (`FastAPI(max_body_size=...)`, set in `create_app`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import secrets
import time

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("dreamtray.serve")


def presented_token(header: str) -> str:
    """The token an Authorization header carries: `Bearer TOKEN`, or basic auth (what A1111 clients send for
    its `--api-auth`) with the token as the password and any user name; '' for anything else."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() != "basic":
        return ""
    try:
        return base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
    except (binascii.Error, ValueError):
        return ""


def token_matches(header: str, token: str) -> bool:
    """Whether an Authorization header carries `token` (compared in constant time)."""
    return secrets.compare_digest(presented_token(header).encode(), token.encode())


class RateLimit:
    """ASGI middleware: at most `per_minute` requests a minute for each token (or client without one)."""

    def __init__(self, app: ASGIApp, token: str, per_minute: int):
        self.app, self.per_minute, self.token = app, per_minute, token
        self.item = RateLimitItemPerMinute(per_minute)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def key(self, scope: Scope) -> str:
        given = dict(scope.get("headers") or ()).get(b"authorization", b"")
        if given and token_matches(given.decode("latin-1"), self.token):
            return "token:" + hashlib.sha256(self.token.encode()).hexdigest()[:16]
        client = scope.get("client") or ("unknown", 0)
        return f"client:{client[0]}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.limiter.hit(self.item, self.key(scope)):
            await self.app(scope, receive, send)
            return
        reset = self.limiter.get_window_stats(self.item, self.key(scope)).reset_time
        wait = max(1, math.ceil(reset - time.time()))
        message = f"Too many requests: at most {self.per_minute} a minute; try again in {wait} s."
        await _send_error(send, 429, message, "rate_limit_error", ((b"retry-after", str(wait).encode()),))


class DeclaredBodyLimit:
    """ASGI middleware: 413, in the API's error shape, for a request whose Content-Length is over the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = dict(scope.get("headers") or ()).get(b"content-length", b"") if scope["type"] == "http" else b""
        if not (length.isdigit() and int(length) > self.max_bytes):
            await self.app(scope, receive, send)
            return
        await _send_error(send, 413, too_large_message(self.max_bytes), "invalid_request_error")


async def _send_error(
    send: Send, status: int, message: str, kind: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = json.dumps({"error": {"message": message, "type": kind}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestLog:
    """ASGI middleware: one log line per request, with no header, query string or body in it."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            client = (scope.get("client") or ("-", 0))[0]
            elapsed = (time.perf_counter() - started) * 1000
            log.info("%s %s %s -> %d in %.0f ms", client, scope["method"], scope["path"], status, elapsed)


def too_large_message(limit: int) -> str:
    size = f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit} bytes"
    return f"The request body is larger than the {size} this engine accepts."


def loopback_hosts() -> frozenset[str]:
    """The Host names a loopback service answers to."""
    return frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


class HostCheck:
    """ASGI middleware: refuse requests whose Host header is not one of `allowed` (any port).

    A service on loopback uses it against DNS rebinding: a web page whose name now points at 127.0.0.1
    still sends its own name as Host, and gets 403 before the token is even looked at.
    """

    def __init__(self, app: ASGIApp, allowed: frozenset[str]):
        self.app, self.allowed = app, allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _host_name(scope) in self.allowed:
            await self.app(scope, receive, send)
            return
        message = "This engine listens on loopback and answers only to the Host names localhost, 127.0.0.1 and [::1]."
        await _send_error(send, 403, message, "permission_error")


def _host_name(scope: Scope) -> str:
    """The Host header without its port, lower-case ('' when there is none)."""
    host = dict(scope.get("headers") or ()).get(b"host", b"").decode("latin-1").strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def guarded(
    app: ASGIApp, token: str, per_minute: int, max_body_bytes: int, hosts: frozenset[str] | None = None
) -> ASGIApp:
    """`app` behind the request log, the Host check (when `hosts` is given), the declared-size check and
    (`per_minute` above 0) the rate limit."""
    app = DeclaredBodyLimit(app, max_body_bytes)
    if per_minute > 0:
        app = RateLimit(app, token, per_minute)
    if hosts is not None:
        app = HostCheck(app, hosts)
    return RequestLog(app)
