"""What every HTTP response of `mediaembed serve` gets, as one ASGI middleware around the whole app:

- security headers (a Content-Security-Policy that allows only the page's own script and style, media from
  any URL a hit links to, and no framing; nosniff; no referrer, so a query never leaks in a Referer);
- one access-log line per request (client, method, path, status, milliseconds; the query string is left
  out, as it holds what people search for);
- no traceback, ever: an exception that got past the app's handlers is one log line, and a 500 with one
  line if nothing was sent yet (MEDIAEMBED_DEBUG logs the traceback as well).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ACCESS_LOG = logging.getLogger("mediaembed.web.access")
ERROR_LOG = logging.getLogger("mediaembed.web.error")
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: http: https:; "
    "media-src http: https: blob:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_NAMES = {name for name, _ in SECURITY_HEADERS}


def one_line(error: BaseException) -> str:
    reason = " ".join(str(error).split())[:300]
    return f"unexpected {type(error).__name__}: {reason} (MEDIAEMBED_DEBUG=1 logs the traceback)"


class Guard:
    def __init__(self, app: ASGIApp, debug: bool = False) -> None:
        self.app = app
        self.debug = debug

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None

        async def guarded_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [h for h in message.get("headers", []) if h[0].lower() not in _NAMES]
                message = {**message, "headers": headers + SECURITY_HEADERS}
            await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except Exception as error:  # the last line of defence: one line, never a traceback
            if self.debug:
                ERROR_LOG.exception("mediaembed serve: %s %s", scope.get("method"), scope.get("path"))
            else:
                ERROR_LOG.error("mediaembed serve: %s", one_line(error))
            if status is None:
                await _plain_500(guarded_send, scope, error)
        finally:
            _log_access(scope, status, started)


async def _plain_500(send: Send, scope: Scope, error: Exception) -> None:
    body: Any
    if str(scope.get("path", "")).startswith("/api/"):
        body, kind = json.dumps({"error": one_line(error)}).encode(), b"application/json"
    else:
        body, kind = (one_line(error) + "\n").encode(), b"text/plain; charset=utf-8"
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _log_access(scope: Scope, status: int | None, started: float) -> None:
    client = scope.get("client")
    who = f"{client[0]}:{client[1]}" if client else "-"
    ms = (time.perf_counter() - started) * 1000
    ACCESS_LOG.info(
        '%s "%s %s HTTP/%s" %s %.1fms',
        who,
        scope.get("method", "-"),
        scope.get("path", "-"),
        scope.get("http_version", "1.1"),
        status if status is not None else "-",
        ms,
    )
