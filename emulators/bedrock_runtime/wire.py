"""Bedrock's rest-json wire: a request's JSON body, and the error answer botocore parses (the status, an
`x-amzn-ErrorType` header naming the error shape, and a `message`)."""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Request, Response

from emulators.bedrock_runtime import errors
from emulators.bedrock_runtime.errors import ServiceError
from emulators.http_base import json_response


def body_json(request: Request) -> Any:
    """The body as JSON (an empty body is `{}`); what does not parse is Bedrock's malformed-input answer."""
    raw = request.get_data(cache=True)
    try:
        return json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise errors.malformed(f"#: request body is not valid JSON ({exc.__class__.__name__})") from exc


def error_response(exc: ServiceError) -> Response:
    response = json_response({"message": exc.message}, exc.status)
    response.headers["x-amzn-ErrorType"] = f"{exc.code}:"
    return response
