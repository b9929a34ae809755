"""Who may call `mediaembed serve`: an optional bearer token (MEDIAEMBED_API_TOKEN), and the rule that an
address other than loopback is served only with one, since the index and the presigned media links it hands
out would otherwise be open to the network."""

from __future__ import annotations

import hmac
import ipaddress
import json

from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_SETTING = "MEDIAEMBED_API_TOKEN"
# Reachable without the token: the stylesheet and script, and the API's description.
PUBLIC_PREFIXES = ("/static/", "/api/openapi.json")


class BindRefused(Exception):
    """`str()`: one line saying why the address is refused and what to do."""


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str) -> None:
    """Refuse a non-loopback address without a token."""
    if not token and not is_loopback(host):
        raise BindRefused(
            f"refusing to serve on {host} without {TOKEN_SETTING}: anyone who reaches it could search the "
            f"index and open its media; set {TOKEN_SETTING} to a secret (clients send `Authorization: "
            "Bearer <token>`), or bind --host 127.0.0.1"
        )


class BearerAuth:
    """Every request but PUBLIC_PREFIXES needs `Authorization: Bearer <token>` (compared in constant
    time); without it, 401 with one JSON line."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", [])).get(b"authorization", b"")
        scheme, _, credential = given.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(credential.strip(), self.token):
            await self.app(scope, receive, send)
            return
        reason = "a wrong bearer token" if given else "no bearer token"
        message = f"{reason}: send `Authorization: Bearer <token>` with the server's {TOKEN_SETTING}"
        body = json.dumps({"error": message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="mediaembed"'),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})
