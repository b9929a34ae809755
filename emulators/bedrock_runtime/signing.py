"""Verify AWS Signature Version 4 the way AWS does, before any operation runs.

The `Authorization` header's credential scope (`Credential=AKID/20261203/us-east-1/bedrock/aws4_request`)
names the access key, the day, the region and the service the client signed for; the signature is
recomputed over the request exactly as received (method, raw path and query, the headers listed in
`SignedHeaders`, the body) with botocore's own SigV4 signer and the secret of that key, then compared.
Errors are the ones AWS answers: UnrecognizedClientException for an unknown key, InvalidSignatureException
for a wrong secret, scope or time, IncompleteSignatureException for a header missing a part.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

from emulators.bedrock_runtime import errors

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "bedrock"  # bedrock-runtime's signing name (botocore's model: signingName "bedrock")
MAX_CLOCK_SKEW = timedelta(minutes=5)  # SigV4: a request timestamp more than 5 minutes off is refused
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)


class Headers(Protocol):
    def getlist(self, key: str) -> list[str]: ...

    def get(self, key: str) -> str | None: ...


@dataclass(frozen=True)
class Authorization:
    """The parts of a SigV4 `Authorization` header."""

    access_key: str
    day: str  # YYYYMMDD
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(header: str) -> Authorization:
    """Split `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`; IncompleteSignature when a
    part is missing or the credential is not key/day/region/service/aws4_request."""
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise errors.incomplete_signature(
            f"Authorization header requires the {ALGORITHM} algorithm, got '{algorithm}'."
        )
    parts: dict[str, str] = {}
    for item in rest.split(","):
        name, sep, value = item.strip().partition("=")
        if sep:
            parts[name] = value
    missing = [p for p in ("Credential", "SignedHeaders", "Signature") if not parts.get(p)]
    if missing:
        needs = " ".join(f"Authorization header requires '{p}' parameter." for p in missing)
        raise errors.incomplete_signature(f"{needs} Authorization={header}")
    scope = parts["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not all(scope):
        raise errors.incomplete_signature(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, "
            f"got '{parts['Credential']}'"
        )
    key, day, region, service, _ = scope
    signed = tuple(parts["SignedHeaders"].split(";"))
    return Authorization(key, day, region, service, signed, parts["Signature"])


def request_time(headers: Headers) -> str:
    """The request's timestamp in SigV4 form, from `X-Amz-Date` or else `Date`."""
    amz_date = headers.get("X-Amz-Date")
    if amz_date:
        try:
            datetime.strptime(amz_date, SIGV4_TIMESTAMP)
        except ValueError as exc:
            raise errors.incomplete_signature(
                f"X-Amz-Date '{amz_date}' is not in the form {SIGV4_TIMESTAMP}."
            ) from exc
        return amz_date
    date = headers.get("Date")
    if date:
        try:
            return parsedate_to_datetime(date).astimezone(UTC).strftime(SIGV4_TIMESTAMP)
        except (TypeError, ValueError) as exc:
            raise errors.incomplete_signature(f"Date header '{date}' is not an HTTP date.") from exc
    raise errors.incomplete_signature(
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
    )


class _ReceivedRequestSigner(SigV4Auth):
    """botocore's SigV4 computation over exactly the headers the client said it signed."""

    def __init__(self, credentials: Credentials, region: str, signed: tuple[str, ...]) -> None:
        super().__init__(credentials, SERVICE, region)
        self._signed = signed

    def headers_to_sign(self, request: Any) -> HTTPHeaders:
        chosen = HTTPHeaders()
        for name in self._signed:
            for value in request.headers.get_all(name) or ():
                chosen[name] = value
        return chosen


def verify(
    *,
    authorization: str,
    method: str,
    raw_uri: str,
    headers: Headers,
    body: bytes,
    secrets: Mapping[str, str],
    region: str,
    now: datetime,
) -> str:
    """Check a request's SigV4 signature; returns the access key id it was signed with.

    `raw_uri` is the path and query string as sent (still percent-encoded), `secrets` maps each access key
    id the account has to its secret, `region` is the only region this endpoint serves."""
    auth = parse_authorization(authorization)
    if "host" not in auth.signed_headers:
        raise errors.incomplete_signature("'Host' must be a 'SignedHeader' in the AWS Authorization.")
    if auth.region != region:
        raise errors.invalid_signature(f"Credential should be scoped to a valid region, not '{auth.region}'.")
    if auth.service != SERVICE:
        raise errors.invalid_signature(f"Credential should be scoped to correct service: '{SERVICE}'.")
    secret = secrets.get(auth.access_key)
    if secret is None:
        raise errors.unrecognized_client()
    timestamp = request_time(headers)
    if timestamp[:8] != auth.day:
        raise errors.invalid_signature(
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{auth.day}' != '{timestamp[:8]}', from '{timestamp}'."
        )
    signed_at = datetime.strptime(timestamp, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
    stamp = now.astimezone(UTC).strftime(SIGV4_TIMESTAMP)
    if signed_at < now - MAX_CLOCK_SKEW:
        earliest = (now - MAX_CLOCK_SKEW).strftime(SIGV4_TIMESTAMP)
        raise errors.invalid_signature(
            f"Signature expired: {timestamp} is now earlier than {earliest} ({stamp} - 5 min.)"
        )
    if signed_at > now + MAX_CLOCK_SKEW:
        latest = (now + MAX_CLOCK_SKEW).strftime(SIGV4_TIMESTAMP)
        raise errors.invalid_signature(
            f"Signature not yet current: {timestamp} is still later than {latest} ({stamp} + 5 min.)"
        )
    received = HTTPHeaders()
    for name in auth.signed_headers:
        for value in headers.getlist(name):
            received[name] = value
    request = AWSRequest(method=method, url=f"http://{headers.get('Host') or ''}{raw_uri}", data=body)
    request.headers = received
    request.context["timestamp"] = timestamp
    signer = _ReceivedRequestSigner(Credentials(auth.access_key, secret), region, auth.signed_headers)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, auth.signature):
        raise errors.invalid_signature(MISMATCH)
    return auth.access_key
