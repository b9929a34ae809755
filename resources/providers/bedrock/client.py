"""The bedrock-runtime client and the synchronous text-query embedding, free of Dagster.

`BedrockMarengo` builds its client and embeds queries through these functions; `mediaembed search` calls
the same two without loading the code location, so a query costs the same request either way.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as EndpointUnreachable

from resources.providers.bedrock.marengo_bodies import parse_segments, query_body
from resources.providers.errors import MarengoOutputError, QueryEmbeddingError
from resources.providers.marengo_models import MarengoModel
from resources.providers.model_routes import ModelRoute
from resources.search.marengo_query import MarengoQuery, QueryLimitError, check_query

RetryMode = Literal["standard", "adaptive", "legacy"]


def runtime_client(
    region_name: str,
    endpoint_url: str | None,
    retry_mode: RetryMode,
    max_attempts: int,
    read_timeout_sec: float | None = None,
) -> Any:
    """A bedrock-runtime client with botocore's own retry modes; `endpoint_url=None` follows the standard
    AWS configuration chain (AWS_ENDPOINT_URL_BEDROCK_RUNTIME included). `read_timeout_sec` for calls that
    answer slowly: botocore retries a read timeout, which for a billed call means paying twice."""
    config = Config(retries={"mode": retry_mode, "max_attempts": max_attempts})
    if read_timeout_sec:
        config = config.merge(Config(read_timeout=read_timeout_sec, connect_timeout=10))
    return boto3.session.Session().client(
        "bedrock-runtime", region_name=region_name, endpoint_url=endpoint_url, config=config
    )


def embed_text(client: Any, route: ModelRoute, region_name: str, text: str) -> list[float]:
    return embed_query(client, route, region_name, MarengoQuery.of_text(text))


def embed_query(
    client: Any, route: ModelRoute, region_name: str, query: MarengoQuery, bucket_owner: str | None = None
) -> list[float]:
    """A query vector in the route's model space from InvokeModel; every failure becomes a
    QueryEmbeddingError. The query's limits are checked before anything is sent."""
    model = route.model
    try:
        check_query(query, route, region_name)
    except QueryLimitError as error:
        raise QueryEmbeddingError(str(error)) from None
    try:
        model_id = route.sync_model_id(region_name)
    except ValueError as error:
        hint = "set AWS_REGION to us-east-1, eu-west-1 or ap-northeast-2"
        raise QueryEmbeddingError(f"{error}; {hint}") from None
    endpoint = client.meta.endpoint_url
    try:
        response = client.invoke_model(
            modelId=model_id,
            body=json.dumps(query_body(route, query, bucket_owner)),
            contentType="application/json",
            accept="application/json",
        )
        payload = json.loads(response["body"].read())
    except ClientError as error:
        raise QueryEmbeddingError(_refusal(error, model, model_id, region_name)) from None
    except (NoCredentialsError, PartialCredentialsError):
        raise QueryEmbeddingError(
            "no usable AWS credentials for Bedrock: configure the standard AWS chain "
            "(AWS_PROFILE, `aws configure`, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        ) from None
    except NoRegionError:
        raise QueryEmbeddingError("no AWS region for Bedrock: set AWS_REGION") from None
    except (EndpointUnreachable, HTTPClientError) as error:  # refused, timed out, dropped, TLS
        raise QueryEmbeddingError(
            f"cannot reach the Bedrock runtime endpoint {endpoint} ({type(error).__name__}): check "
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME, the network, or start the emulators (`mediaembed emulate`)"
        ) from None
    except BotoCoreError as error:
        raise QueryEmbeddingError(f"Bedrock call to {endpoint} failed: {_one_line(str(error))}") from None
    except json.JSONDecodeError as error:
        raise QueryEmbeddingError(f"Bedrock at {endpoint} answered with non-JSON: {error}") from None
    try:
        segments = parse_segments(payload, model)
    except MarengoOutputError as error:
        raise QueryEmbeddingError(f"Bedrock returned an unusable query embedding: {error}") from None
    if not segments:
        raise QueryEmbeddingError("InvokeModel returned no embedding for the query")
    return segments[0].vector.tolist()


def _refusal(error: ClientError, model: MarengoModel, model_id: str, region: str) -> str:
    code = error.response.get("Error", {}).get("Code", "") or "error"
    message = _one_line(error.response.get("Error", {}).get("Message", ""))
    said = f"Bedrock refused the query ({code}: {message})"
    if code == "AccessDeniedException":
        return (
            f"{said}: enable model access to TwelveLabs Marengo Embed {model.version} in {region} "
            "and allow bedrock:InvokeModel on it"
        )
    if code == "ResourceNotFoundException":
        return f"{said}: {model_id} is not offered in {region}; use us-east-1, eu-west-1 or ap-northeast-2"
    if code in ("ThrottlingException", "ServiceUnavailableException", "ModelNotReadyException"):
        return f"{said} after botocore's retries: try again in a moment"
    return said


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
