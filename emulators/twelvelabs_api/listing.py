"""Listings: list query parameters, and one page of a listing with its `page_info`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from werkzeug.wrappers import Response

from emulators.http_base import json_response
from emulators.twelvelabs_api.errors import invalid

MAX_PAGE_LIMIT = 50


def listed(values: Iterable[str]) -> list[str]:
    """A list query parameter, sent repeated (`a=1&a=2`) or comma-separated."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def int_arg(text: str, name: str, low: int, high: int) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise invalid(f"{name} must be a whole number from {low} to {high}, not {text!r}")
    return int(text)


def page(args: Mapping[str, str], items: list[dict[str, Any]]) -> Response:
    """One page of a listing (newest first) with its `page_info`; page_limit is at most 50."""
    number = int_arg(args.get("page", "1"), "page", 1, 10**9)
    limit = int_arg(args.get("page_limit", "10"), "page_limit", 1, MAX_PAGE_LIMIT)
    page_info = {
        "page": number,
        "limit_per_page": limit,
        "total_page": max(1, -(-len(items) // limit)),
        "total_results": len(items),
    }
    return json_response({"data": items[(number - 1) * limit : number * limit], "page_info": page_info})
