"""Verify S3 presigned GET URLs as S3 itself would, for the emulators that download media by URL.

moto's S3 serves any GET, signed or not, so an emulator that fetches a presigned URL from it would accept an
expired or tampered URL the real S3 answers with 403. This is that 403, decided before the download: the
expiry (`Expires` for SigV2; `X-Amz-Date` + `X-Amz-Expires` for SigV4) and the signature recomputed from the
URL and the secret of the access key it names. Both query-auth forms are checked, because botocore presigns
with SigV2 in the regions that still take it (us-east-1 among them) unless a client asks for `s3v4`.

Written from the S3 query-string authentication documents (SigV2 `RESTAuthenticationQueryStringAuth`, SigV4
`sigv4-query-string-auth`), not from botocore's signer: an independent check of what botocore produces.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote, urlsplit

# What every local client signs with (the S3 emulator's and the stack's credentials).
LOCAL_S3_CREDENTIALS: Mapping[str, str] = {"test": "test"}
SIGV4_MAX_EXPIRES_SEC = 7 * 24 * 3600  # S3 refuses a longer X-Amz-Expires
CLOCK_SKEW = timedelta(minutes=15)  # how far in the future S3 lets X-Amz-Date be
# SigV2 sub-resources that are part of the signed resource (the ones a GET object URL can carry).
_SIGV2_SUBRESOURCES = frozenset(
    {
        "versionId",
        "response-content-type",
        "response-content-language",
        "response-expires",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
    }
)


class PresignedUrlError(Exception):
    """Why S3 would answer the URL with 403 (a message naming the reason, never the secret)."""


def _pairs(query: str) -> list[tuple[str, str]]:
    """The query's (name, value) pairs, percent-decoded, in order; blank values kept."""
    out = []
    for part in query.split("&"):
        if part:
            name, _, value = part.partition("=")
            out.append((unquote(name), unquote(value)))
    return out


def _one(params: list[tuple[str, str]], name: str) -> str:
    values = [v for k, v in params if k == name]
    if len(values) != 1:
        raise PresignedUrlError(f"the URL has {len(values)} {name} parameters, not one")
    return values[0]


def _secret(credentials: Mapping[str, str], access_key: str) -> str:
    secret = credentials.get(access_key)
    if secret is None:
        raise PresignedUrlError(f"the access key {access_key!r} that signed the URL does not exist")
    return secret


def check_presigned_url(url: str, credentials: Mapping[str, str], now: datetime | None = None) -> None:
    """Raise PresignedUrlError unless `url` is an unexpired GET URL signed by one of `credentials`
    (access key -> secret key), in SigV4 or SigV2 query form."""
    now = now or datetime.now(UTC)
    parts = urlsplit(url)
    params = _pairs(parts.query)
    names = {k for k, _ in params}
    if "X-Amz-Signature" in names or "X-Amz-Algorithm" in names:
        _check_sigv4(parts.netloc, parts.scheme, parts.path, params, credentials, now)
    elif "Signature" in names:
        _check_sigv2(parts.path, params, credentials, now)
    else:
        raise PresignedUrlError("the URL is not presigned (S3 refuses anonymous reads of a private bucket)")


def _check_sigv2(
    path: str, params: list[tuple[str, str]], credentials: Mapping[str, str], now: datetime
) -> None:
    access_key = _one(params, "AWSAccessKeyId")
    expires = _one(params, "Expires")
    if not expires.isdigit():
        raise PresignedUrlError(f"Expires {expires!r} is not a time in epoch seconds")
    if now.timestamp() > int(expires):
        at = datetime.fromtimestamp(int(expires), UTC).isoformat()
        raise PresignedUrlError(f"the presigned URL expired at {at}")
    lowered = {k.lower(): v for k, v in params}
    amz = sorted((k.lower(), v) for k, v in params if k.lower().startswith("x-amz-"))
    resource = path
    sub = sorted((k, v) for k, v in params if k in _SIGV2_SUBRESOURCES)
    if sub:
        resource += "?" + "&".join(f"{k}={v}" for k, v in sub)
    lines = ["GET", lowered.get("content-md5", ""), lowered.get("content-type", ""), expires]
    lines += [f"{k}:{v}" for k, v in amz]
    to_sign = "\n".join([*lines, resource])
    digest = hmac.new(_secret(credentials, access_key).encode(), to_sign.encode(), hashlib.sha1).digest()
    if not hmac.compare_digest(base64.b64encode(digest).decode(), _one(params, "Signature")):
        raise PresignedUrlError("the URL's signature does not match (SignatureDoesNotMatch)")


def _host(netloc: str, scheme: str) -> str:
    """The Host header a client sends for this netloc: the default port of the scheme is left out."""
    default = {"http": ":80", "https": ":443"}.get(scheme)
    return netloc[: -len(default)] if default and netloc.endswith(default) else netloc


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def _check_sigv4(
    netloc: str,
    scheme: str,
    path: str,
    params: list[tuple[str, str]],
    credentials: Mapping[str, str],
    now: datetime,
) -> None:
    algorithm = _one(params, "X-Amz-Algorithm")
    if algorithm != "AWS4-HMAC-SHA256":
        raise PresignedUrlError(f"X-Amz-Algorithm {algorithm!r} is not AWS4-HMAC-SHA256")
    credential = _one(params, "X-Amz-Credential").split("/")
    if len(credential) != 5 or credential[4] != "aws4_request":
        raise PresignedUrlError("X-Amz-Credential is not <key>/<date>/<region>/<service>/aws4_request")
    access_key, day, region, service, _ = credential
    stamp = _one(params, "X-Amz-Date")
    try:
        signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise PresignedUrlError(f"X-Amz-Date {stamp!r} is not a yyyymmddThhmmssZ time") from exc
    if stamp[:8] != day:
        raise PresignedUrlError("X-Amz-Date is not on the day of the credential scope")
    expires = _one(params, "X-Amz-Expires")
    if not expires.isdigit() or not 1 <= int(expires) <= SIGV4_MAX_EXPIRES_SEC:
        raise PresignedUrlError(f"X-Amz-Expires {expires!r} is not 1 to {SIGV4_MAX_EXPIRES_SEC} seconds")
    if signed_at - CLOCK_SKEW > now:
        raise PresignedUrlError(f"the presigned URL is not valid yet (signed for {signed_at.isoformat()})")
    if now > signed_at + timedelta(seconds=int(expires)):
        at = (signed_at + timedelta(seconds=int(expires))).isoformat()
        raise PresignedUrlError(f"the presigned URL expired at {at}")
    signed_headers = _one(params, "X-Amz-SignedHeaders").split(";")
    if signed_headers != ["host"]:
        # A GET by a downloader carries no other header the signer could have fixed.
        raise PresignedUrlError(f"X-Amz-SignedHeaders {';'.join(signed_headers)!r} is not host")
    query = "&".join(
        f"{k}={v}" for k, v in sorted((_encode(k), _encode(v)) for k, v in params if k != "X-Amz-Signature")
    )
    payload = next((v for k, v in params if k == "X-Amz-Content-Sha256"), "UNSIGNED-PAYLOAD")
    canonical = "\n".join(["GET", path, query, f"host:{_host(netloc, scheme)}", "", "host", payload])
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{_secret(credentials, access_key)}".encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature, _one(params, "X-Amz-Signature")):
        raise PresignedUrlError("the URL's signature does not match (SignatureDoesNotMatch)")
