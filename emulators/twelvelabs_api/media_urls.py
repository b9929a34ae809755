"""Downloading media by URL as the platform does: only loopback URLs are reachable (the local S3's presigned
URLs), and each is checked as S3 would check it before moto serves it (moto's S3 serves any GET); what
cannot be downloaded is refused as `parameter_invalid`, "<field>: the platform cannot download the media"."""

from __future__ import annotations

import ipaddress
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import urlsplit

from emulators.presigned import PresignedUrlError, check_presigned_url
from emulators.twelvelabs_api.errors import ApiFault, invalid


def fetch_url(url: str, path: str, credentials: Mapping[str, str], now: datetime) -> bytes:
    """The bytes behind a media URL named at `path` of the request, its presigned signature checked
    against `credentials` (access key -> secret) and its expiry judged at `now`."""

    def refuse(reason: str) -> ApiFault:
        return invalid(f"{path}: the platform cannot download the media: {reason}")

    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise refuse(f"{parts.netloc or url} is not reachable")
    try:
        check_presigned_url(url, credentials, now)
    except PresignedUrlError as exc:
        raise refuse(f"HTTP 403 ({exc})") from exc
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        raise refuse(f"HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise refuse(str(exc)) from exc
