"""The TwelveLabs API's wire: RFC 3339 times, a JSON request body, and its error answers (a 429 carries the
rate-limit headers the SDK's callers read)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from emulators.http_base import json_response
from emulators.twelvelabs_api.errors import ApiFault, invalid


def rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str, name: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise invalid(f"{name} {text!r} is not an RFC 3339 date-time") from exc
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def json_body(request: Request) -> Any:
    if request.mimetype != "application/json":
        raise invalid(f"expected content-type application/json, got {request.mimetype or 'none'}")
    try:
        return json.loads(request.get_data(cache=True) or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise invalid("the request body is not valid JSON") from exc


def fault_response(fault: ApiFault, retry_after_sec: int, enveloped: bool = False) -> Response:
    response = json_response(fault.body(enveloped), fault.status)
    if fault.status == 429:
        response.headers.update(
            {
                "X-Ratelimit-Limit": "60",
                "X-Ratelimit-Remaining": "0",
                "X-Ratelimit-Used": "60",
                "X-Ratelimit-Reset": str(retry_after_sec),
                "Retry-After": str(retry_after_sec),
            }
        )
    return response
