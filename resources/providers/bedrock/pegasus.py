"""Pegasus 1.2 served by Amazon Bedrock: one synchronous InvokeModel per video and prompt.

Throttling is botocore's to absorb (adaptive retry mode: a client-side rate limiter plus backoff), so a
busy account slows the run down instead of failing it; what still fails after the retries fails that one
call, never the run.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any, Literal

import boto3
import dagster as dg
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field, PrivateAttr

from resources.pegasus.prompts import PROMPTS_ENV, PegasusPrompt
from resources.providers.bedrock.client import runtime_client
from resources.providers.bedrock.marengo_bodies import s3_media_source
from resources.providers.bedrock.pegasus_bodies import (
    PEGASUS_MODEL_ID,
    PEGASUS_REGIONS,
    PegasusAnswer,
    PegasusOutputError,
    Transport,
    base64_source,
    parse_answer,
    pegasus_body,
    pegasus_model_id,
)
from resources.storage.s3_objects import bucket_region
from resources.storage.s3_storage import ObjectChanged, S3Storage, S3Uri

BUCKET_OWNER_ENV = "MEDIAEMBED_BUCKET_OWNER"
TRANSPORT_ENV = "MEDIAEMBED_PEGASUS_TRANSPORT"
PROFILE_ENV = "MEDIAEMBED_PEGASUS_PROFILE"
ACCOUNT = re.compile(r"[0-9]{12}")


class PegasusCallError(RuntimeError):
    """One call failed (after botocore's retries); the reason is one line for the table."""


class BedrockPegasus(dg.ConfigurableResource):
    """Pegasus 1.2 on Bedrock in the model's region; the media bucket must be in that region too."""

    region_name: str = Field(description="AWS region of the model and the media bucket.")
    endpoint_url: str | None = Field(
        default=None, description="bedrock-runtime endpoint override (else AWS_ENDPOINT_URL_BEDROCK_RUNTIME)."
    )
    bucket_owner: str | None = Field(
        default=None,
        description="12-digit account id owning the media bucket, sent as s3Location.bucketOwner; bound "
        f"from {BUCKET_OWNER_ENV} where it is set. Unset or empty: the caller's own account (STS "
        "GetCallerIdentity).",
    )
    # Plain strings (Dagster config has no optional Literal); checked where used.
    profile_scope: str | None = Field(
        default=None,
        description=f"Inference profile: geographic (us./eu./apac.) or global; bound from {PROFILE_ENV} "
        "where it is set. Unset or empty: geographic.",
    )
    transport: str | None = Field(
        default=None,
        description="How videos reach Pegasus: s3 (s3Location, up to 2 GB) or base64 (inline, up to 36 MB); "
        f"bound from {TRANSPORT_ENV} where it is set. Unset or empty: s3.",
    )
    prompts_file: str | None = Field(
        default=None,
        description="A JSON or YAML file of prompts over the defaults (docs/pegasus.md); bound from "
        f"{PROMPTS_ENV} where it is set, and a run's `prompts_file` config overrides it. Unset or empty: "
        "the defaults (summary, chapters, keywords).",
    )
    retry_mode: Literal["standard", "adaptive", "legacy"] = Field(default="adaptive")
    max_attempts: int = Field(
        default=10,
        description="botocore's attempts per call, the first included (throttling waits through them).",
    )
    read_timeout_sec: float = Field(
        default=3600.0,
        gt=0,
        description="How long one call may take to answer. Pegasus answers an hour of video in well under "
        "this; botocore retries a read timeout, and a retried call is billed again, so keep it long.",
    )
    storage: S3Storage
    _client: Any = PrivateAttr(default=None)
    _owner: tuple[str | None, str | None] | None = PrivateAttr(default=None)
    _owner_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def client(self) -> Any:
        if self._client is None:
            self._client = runtime_client(
                self.region_name, self.endpoint_url, self.retry_mode, self.max_attempts, self.read_timeout_sec
            )
        return self._client

    @property
    def base_model_id(self) -> str:
        """What the tables key on: the model, whichever profile routed the call."""
        return PEGASUS_MODEL_ID

    def chosen_transport(self) -> Transport:
        chosen = self.transport or "s3"
        if chosen not in ("s3", "base64"):
            raise ValueError(f"{TRANSPORT_ENV}={chosen!r}: choose s3 or base64")
        return chosen  # type: ignore[return-value]

    def model_id(self) -> str:
        scope = self.profile_scope or "geographic"
        if scope not in ("geographic", "global"):
            raise ValueError(f"{PROFILE_ENV}={scope!r}: choose geographic or global")
        return pegasus_model_id(self.region_name, scope)  # type: ignore[arg-type]

    def chosen_bucket_owner(self) -> str:
        """Pegasus requires `bucketOwner` with every S3 location: the configured account, else the
        caller's own (same-account buckets, the common case), asked of STS once per resource."""
        configured = self.bucket_owner
        if configured:
            if not ACCOUNT.fullmatch(configured):
                raise ValueError(f"{BUCKET_OWNER_ENV}={configured!r}: give the 12-digit AWS account id")
            return configured
        with self._owner_lock:
            if self._owner is None:
                self._owner = self.caller_account()
        account, problem = self._owner
        if account is None:
            raise ValueError(
                f"no bucket owner for Pegasus ({problem}): set {BUCKET_OWNER_ENV} to the 12-digit account id "
                "that owns the media bucket"
            )
        return account

    def caller_account(self) -> tuple[str | None, str | None]:
        """The account of the credentials in use (STS GetCallerIdentity), or None and why not."""
        try:
            sts = boto3.session.Session().client("sts", region_name=self.region_name)
            return str(sts.get_caller_identity()["Account"]), None
        except (BotoCoreError, ClientError, KeyError) as error:
            return None, f"STS GetCallerIdentity failed: {' '.join(str(error).split())[:200]}"

    def unusable_buckets(self, buckets: set[str]) -> dict[str, str]:
        """Bedrock reads S3 media only in the model's region: videos in other buckets are skipped, with
        the reason, instead of each call being refused. Inline (base64) media have no such rule."""
        if self.chosen_transport() != "s3":
            return {}
        refused = {}
        for bucket in sorted(buckets):
            region = self.bucket_region(bucket)
            if region is not None and region != self.region_name:
                hint = f", or set AWS_REGION to {region}" if region in PEGASUS_REGIONS else ""
                refused[bucket] = (
                    f"media bucket {bucket} is in {region}, but Pegasus runs in {self.region_name} and "
                    "Bedrock reads only buckets in the model's region: replicate the objects to "
                    f"{self.region_name}{hint}, or send them inline ({TRANSPORT_ENV}=base64)"
                )
        return refused

    # --- the I/O edges (a test's fake overrides these) ----------------------------------------------------

    def bucket_region(self, bucket: str) -> str | None:
        """GetBucketLocation; None when S3 will not say (no permission): Bedrock's answer decides then."""
        try:
            return bucket_region(self.storage.get_client(), bucket)
        except (ClientError, BotoCoreError):
            return None

    def invoke(self, model_id: str, body: dict[str, Any]) -> tuple[Any, dict[str, str]]:
        """One InvokeModel: the decoded JSON body and the response headers."""
        response = self.client().invoke_model(
            modelId=model_id, body=json.dumps(body), contentType="application/json", accept="application/json"
        )
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return json.loads(response["body"].read()), dict(headers)

    def read_media(self, media_uri: str, etag: str) -> bytes:
        """The object's bytes at exactly that ETag, for the base64 transport."""
        with self.storage.open_object(S3Uri.parse(media_uri), etag) as file:
            return file.read()

    # --- one description ------------------------------------------------------------------------------------

    def describe(self, media_uri: str, etag: str, prompt: PegasusPrompt) -> PegasusAnswer:
        """Pegasus's answer for one video and prompt; every failure is a PegasusCallError with one line."""
        try:
            if self.chosen_transport() == "base64":
                source = base64_source(self.read_media(media_uri, etag))
            else:
                source = s3_media_source(media_uri, self.chosen_bucket_owner())
            body = pegasus_body(
                prompt.prompt, source, prompt.temperature, prompt.max_output_tokens, prompt.json_schema
            )
            payload, headers = self.invoke(self.model_id(), body)
            return parse_answer(payload, headers)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "") or "error"
            message = " ".join(str(error.response.get("Error", {}).get("Message", "")).split())
            hint = (
                f" after {self.max_attempts} retries: the next run tries again"
                if code in ("ThrottlingException", "ServiceUnavailableException", "ModelNotReadyException")
                else ""
            )
            raise PegasusCallError(f"{code}: {message}{hint}"[:500]) from None
        except ObjectChanged as error:
            raise PegasusCallError(f"{error}: re-run media/inventory") from None
        except (BotoCoreError, PegasusOutputError, ValueError) as error:
            raise PegasusCallError(f"{type(error).__name__}: {' '.join(str(error).split())}"[:500]) from None
