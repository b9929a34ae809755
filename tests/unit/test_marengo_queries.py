"""Queries beyond text: their request on each route, checked against the documented wire format, and every
documented limit refused before any network call, with a message naming the limit.

The provider clients here are real (boto3, the `twelvelabs` SDK) with transports that record what would go
on the wire; the limit tests assert that nothing reached them.
"""

from __future__ import annotations

import json
import wave
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import httpx
import numpy as np
import pytest
from botocore.validate import ParamValidator
from twelvelabs import TwelveLabs

from emulators.s3 import S3Emulator
from mediaembed.search import BadQuery, Searcher, SearchSettings
from resources.index.segment_index import SegmentIndex
from resources.providers.bedrock.marengo_bodies import query_body
from resources.providers.embedding_jobs import EmbeddingJob, EmbeddingOptions, SegmentEmbedding
from resources.providers.marengo_models import MARENGO_2_7, MARENGO_3_0, MARENGO_3_5
from resources.providers.model_routes import route
from resources.providers.twelvelabs.bodies import legacy_query_request, parse_legacy_embedding, query_request
from resources.search.marengo_query import MAX_BASE64_BYTES, MarengoQuery, QueryMedia, input_type
from resources.search.query_media import resolve_query_media
from resources.storage.s3_storage import S3Storage
from resources.tables.segment_schema import media_id, segments_table

URL = "https://bucket.s3.amazonaws.com/presigned/video.mp4?X-Amz-Signature=..."
PNG = b"iVBORw0KGgo="  # base64 of the PNG signature, as in the reference's captured requests
BEDROCK_3_0, BEDROCK_2_7 = route("bedrock", MARENGO_3_0.key), route("bedrock", MARENGO_2_7.key)
TL_3_0, TL_3_5 = route("twelvelabs", MARENGO_3_0.key), route("twelvelabs", MARENGO_3_5.key)
TL_2_7 = route("twelvelabs", MARENGO_2_7.key)


def s3_image(uri: str = "s3://bucket/outfit.png", name: str = "") -> QueryMedia:
    return QueryMedia("image", uri, 1000, s3_uri=uri, bucket_region="us-east-1", name=name)


def inline_image(data: bytes = b"\x89PNG\r\n\x1a\n", name: str = "") -> QueryMedia:
    return QueryMedia("image", "bag.png", len(data), data=data, name=name)


def presign(uri: str) -> str:
    assert uri.startswith("s3://")
    return URL


# --- the requests, against the documented JSON --------------------------------------------------------


def test_input_types_follow_from_what_a_query_carries() -> None:
    assert input_type(MarengoQuery("red")) == "text"
    assert input_type(MarengoQuery(media=(s3_image(),))) == "image"
    assert input_type(MarengoQuery("in red", (s3_image(),))) == "text_image"
    assert input_type(MarengoQuery("a", (s3_image(), s3_image()))) == "multi_input"
    assert input_type(MarengoQuery("wearing <@outfit>", (s3_image(name="outfit"),))) == "multi_input"
    clip = QueryMedia("audio", "hum.wav", 10, data=b"x", duration_sec=3.0)
    assert input_type(MarengoQuery(media=(clip,))) == "audio"


def test_bedrock_query_bodies() -> None:
    assert query_body(BEDROCK_3_0, MarengoQuery(media=(s3_image(),)), "123456789012") == {
        "inputType": "image",
        "image": {
            "mediaSource": {"s3Location": {"uri": "s3://bucket/outfit.png", "bucketOwner": "123456789012"}}
        },
    }
    assert query_body(BEDROCK_3_0, MarengoQuery("this shoe in red", (inline_image(),))) == {
        "inputType": "text_image",
        "text_image": {"inputText": "this shoe in red", "mediaSource": {"base64String": PNG.decode()}},
    }
    assert query_body(BEDROCK_2_7, MarengoQuery("a red circle", text_truncate="none")) == {
        "inputType": "text",
        "inputText": "a red circle",
        "textTruncate": "none",
    }
    assert query_body(BEDROCK_2_7, MarengoQuery(media=(inline_image(),))) == {
        "inputType": "image",
        "mediaSource": {"base64String": PNG.decode()},
    }


def test_bedrock_query_parameters_satisfy_botocore_model() -> None:
    body = query_body(BEDROCK_3_0, MarengoQuery("in red", (s3_image(),)))
    params = {
        "modelId": BEDROCK_3_0.sync_model_id("us-east-1"),
        "body": json.dumps(body).encode(),
        "contentType": "application/json",
        "accept": "application/json",
    }
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    report = ParamValidator().validate(params, model.operation_model("InvokeModel").input_shape)
    assert not report.has_errors(), report.generate_report()


class Recorder:
    """An httpx transport that keeps each request and answers with a canned body."""

    def __init__(self, answer: dict[str, Any] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.answer = answer or {"data": [{"embedding": [0.5] * 512}]}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json=self.answer)


def sdk(recorder: Recorder) -> TwelveLabs:
    transport = httpx.Client(transport=httpx.MockTransport(recorder))
    return TwelveLabs(api_key="k", base_url="https://api.example/v1.3", httpx_client=transport)


def sent_json(recorder: Recorder) -> dict[str, Any]:
    [request] = recorder.requests
    assert (request.method, request.url.path) == ("POST", "/v1.3/embed-v2")
    return dict(json.loads(request.content))


def test_twelvelabs_multi_input_is_the_documented_request() -> None:
    recorder = Recorder()
    query = MarengoQuery(
        "A person wearing <@outfit> and holding <@bag>",
        (s3_image(name="outfit"), inline_image(name="bag")),
    )
    sdk(recorder).embed.v_2.create(**query_request(TL_3_0, query, presign))
    assert sent_json(recorder) == {
        "input_type": "multi_input",
        "model_name": "marengo3.0",
        "multi_input": {
            "input_text": "A person wearing <@outfit> and holding <@bag>",
            "media_sources": [
                {"name": "outfit", "media_type": "image", "url": URL},
                {"name": "bag", "media_type": "image", "base64_string": PNG.decode()},
            ],
        },
    }


def test_twelvelabs_image_text_image_and_audio_requests() -> None:
    for query, expected in [
        (
            MarengoQuery(media=(inline_image(),)),
            {"input_type": "image", "image": {"media_source": {"base64_string": PNG.decode()}}},
        ),
        (
            MarengoQuery("this shoe in red", (s3_image(),)),
            {
                "input_type": "text_image",
                "text_image": {"input_text": "this shoe in red", "media_source": {"url": URL}},
            },
        ),
        (
            MarengoQuery(
                media=(QueryMedia("audio", "s3://b/a.wav", 9, s3_uri="s3://b/a.wav", duration_sec=60),)
            ),
            {
                "input_type": "audio",
                "audio": {
                    "media_source": {"url": URL},
                    "embedding_option": ["audio"],
                    "embedding_scope": ["asset"],
                },
            },
        ),
    ]:
        recorder = Recorder()
        sdk(recorder).embed.v_2.create(**query_request(TL_3_0, query, presign))
        assert sent_json(recorder) == {"model_name": "marengo3.0", **expected}


def test_twelvelabs_3_5_sends_every_query_as_multi_input_with_its_dimension() -> None:
    recorder = Recorder()
    sdk(recorder).embed.v_2.create(**query_request(TL_3_5, MarengoQuery("red", (s3_image(),)), presign))
    assert sent_json(recorder) == {
        "input_type": "multi_input",
        "model_name": "marengo3.5",
        "multi_input": {
            "input_text": "red",
            "media_sources": [{"name": "image1", "media_type": "image", "url": URL}],
        },
        "embedding_dimension": MARENGO_3_5.dimension,
    }


def test_the_legacy_2_7_text_call_carries_text_truncate_as_a_form_field() -> None:
    answer = {
        "model_name": "Marengo-retrieval-2.7",
        "text_embedding": {"segments": [{"float": [0.25] * 1024}]},
    }
    recorder = Recorder(answer)
    request = legacy_query_request(TL_2_7, MarengoQuery("a red circle", text_truncate="none"), presign)
    options = request.pop("request_options")
    response = sdk(recorder).embed.create(**request, request_options=options)
    [sent] = recorder.requests
    assert (sent.method, sent.url.path) == ("POST", "/v1.3/embed")
    assert sent.headers["content-type"].startswith("multipart/form-data")
    form = sent.content.decode()
    for field, value in [
        ("model_name", "Marengo-retrieval-2.7"),
        ("text", "a red circle"),
        ("text_truncate", "none"),
    ]:
        assert f'name="{field}"\r\n\r\n{value}\r\n' in form
    vector = parse_legacy_embedding(response.dict(), MARENGO_2_7)
    assert len(vector) == 1024 and vector[0] == 0.25


# --- every limit, before any network call ----------------------------------------------------------


class Tripwire:
    """The provider calls a search makes, counted: boto3 and the SDK with transports that record, refuse."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.bedrock = boto3.session.Session().client(
            "bedrock-runtime",
            region_name="us-east-1",
            endpoint_url="http://127.0.0.1:9",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        self.bedrock.meta.events.register("before-send.*", self._refuse_aws)
        self.twelvelabs = TwelveLabs(
            api_key="k",
            base_url="http://127.0.0.1:9/v1.3",
            httpx_client=httpx.Client(transport=httpx.MockTransport(self._refuse_http)),
        )

    def _refuse_aws(self, request: Any, **_: Any) -> None:
        self.calls.append(f"{request.method} {request.url}")
        raise AssertionError("a provider call was made")

    def _refuse_http(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url}")
        raise AssertionError("a provider call was made")


@pytest.fixture
def tripwire() -> Tripwire:
    return Tripwire()


def searcher(
    tripwire: Tripwire, provider: str, tmp_path: Path, s3: Any = None, index: Path | None = None
) -> Searcher:
    settings = SearchSettings(
        index_uri=str(index or tmp_path / "no-index-yet"),
        region="us-east-1",
        providers={MARENGO_2_7.key: provider, MARENGO_3_0.key: provider, MARENGO_3_5.key: "twelvelabs"},  # type: ignore[dict-item]
        twelvelabs_api_key="k",
    )
    clients = {"bedrock": tripwire.bedrock, "twelvelabs": tripwire.twelvelabs, "s3": s3}
    return Searcher(settings, clients={k: v for k, v in clients.items() if v is not None})


def one_segment_index(root: Path) -> Path:
    """An index holding one Marengo 3.0 segment: enough for a search to get as far as its query."""
    job = EmbeddingJob("s3://bucket/a.mp4", "etag", "video", MARENGO_3_0, EmbeddingOptions())
    vector = np.ones(MARENGO_3_0.dimension, dtype=np.float32).tolist()
    rows = segments_table(
        job,
        [SegmentEmbedding("visual", "clip", 0.0, 1.0, vector)],
        route=BEDROCK_3_0,
        invocation_id="inv-1",
        ingested_at=datetime.now(UTC),
    )
    index = SegmentIndex(uri=str(root), storage=S3Storage(region_name="us-east-1"))
    index.replace_media(MARENGO_3_0, rows, [media_id(job.media_uri)])
    return root


def test_the_tripwire_sees_a_query_that_is_sent(tripwire: Tripwire, tmp_path: Path) -> None:
    """The control: a search within every limit, of an index that exists, does reach each provider's
    transport, through the same `search` the limit tests below call."""
    index = one_segment_index(tmp_path / "index")
    for provider in ("bedrock", "twelvelabs"):
        search = searcher(tripwire, provider, tmp_path, index=index)
        with pytest.raises(AssertionError, match="a provider call was made"):
            search.search(MarengoQuery("red circle"), 5, MARENGO_3_0.key)
    assert len(tripwire.calls) == 2 and "127.0.0.1:9" in tripwire.calls[0]


def refused(search: Searcher, query: MarengoQuery, model: str = MARENGO_3_0.key) -> str:
    with pytest.raises(BadQuery) as raised:
        search.search(query, 5, model)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_inline_media_over_36_mb_is_refused_unread(tripwire: Tripwire, tmp_path: Path) -> None:
    big = tmp_path / "huge.png"
    with big.open("wb") as file:  # sparse: 36 MB + 1 byte without writing them
        file.truncate(MAX_BASE64_BYTES + 1)
    media = resolve_query_media(str(big), "image", None)
    assert media.data is None and media.size_bytes == MAX_BASE64_BYTES + 1, "not read into memory"
    for provider in ("bedrock", "twelvelabs"):
        message = refused(searcher(tripwire, provider, tmp_path), MarengoQuery(media=(media,)))
        assert "36 MB limit of inline (base64) media" in message and "huge.png" in message
    assert tripwire.calls == []


def test_eleven_images_in_a_multi_input_are_refused(tripwire: Tripwire, tmp_path: Path) -> None:
    images = tuple(inline_image(name=f"i{n}") for n in range(11))
    message = refused(searcher(tripwire, "twelvelabs", tmp_path), MarengoQuery("look", images))
    assert "11 images exceed the multi-input limit of 10" in message
    assert tripwire.calls == []


def test_a_multi_input_on_bedrock_is_refused_naming_who_serves_it(tripwire: Tripwire, tmp_path: Path) -> None:
    two = (inline_image(name="a"), inline_image(name="b"))
    message = refused(searcher(tripwire, "bedrock", tmp_path), MarengoQuery("look", two))
    assert "not multi_input" in message and "TwelveLabs API" in message
    assert tripwire.calls == []


def write_silence(path: Path, seconds: float, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(rate)
        out.writeframes(b"\x80" * int(seconds * rate))


def test_twenty_minutes_of_audio_are_refused_for_a_sync_call(tripwire: Tripwire, tmp_path: Path) -> None:
    long_clip = tmp_path / "meeting.wav"
    write_silence(long_clip, 20 * 60)
    media = resolve_query_media(str(long_clip), "audio", None)
    assert media.duration_sec == pytest.approx(1200, abs=1)
    message = refused(searcher(tripwire, "twelvelabs", tmp_path), MarengoQuery(media=(media,)))
    assert "20.0 minutes of audio exceed the 10-minute limit of a synchronous embedding" in message
    short = tmp_path / "hum.wav"
    write_silence(short, 3)
    assert resolve_query_media(str(short), "audio", None).duration_sec == pytest.approx(3, abs=0.1)
    assert tripwire.calls == []


def test_text_over_the_token_limit_is_refused(tripwire: Tripwire, tmp_path: Path) -> None:
    words = "red circle " * 40  # 440 bytes: over 77, under 500
    for provider in ("bedrock", "twelvelabs"):
        search = searcher(tripwire, provider, tmp_path)
        message = refused(search, MarengoQuery(words, text_truncate="none"), MARENGO_2_7.key)
        assert "Marengo 2.7's 77-token text limit" in message
        message = refused(search, MarengoQuery(words * 2), MARENGO_3_0.key)
        assert "Marengo 3.0's 500-token text limit" in message
        message = refused(search, MarengoQuery(words, text_truncate="end"), MARENGO_3_0.key)
        assert "Marengo 2.7 option" in message
    assert tripwire.calls == []


@pytest.fixture
def s3() -> Iterator[S3Emulator]:
    with S3Emulator() as emulator:
        yield emulator


def test_a_bucket_in_another_region_than_the_model_is_refused(
    tripwire: Tripwire, tmp_path: Path, s3: S3Emulator
) -> None:
    client = s3.client()
    client.create_bucket(Bucket="eu-media", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    client.put_object(Bucket="eu-media", Key="shoe.png", Body=b"\x89PNG\r\n\x1a\n")
    media = resolve_query_media("s3://eu-media/shoe.png", "image", lambda: client)
    assert (media.bucket_region, media.size_bytes) == ("eu-west-1", 8)
    message = refused(searcher(tripwire, "bedrock", tmp_path, client), MarengoQuery(media=(media,)))
    assert "bucket eu-media is in eu-west-1" in message and "runs in us-east-1" in message
    assert tripwire.calls == []
    with pytest.raises(ValueError, match="no such object"):
        resolve_query_media("s3://eu-media/missing.png", "image", lambda: client)


def test_the_legacy_2_7_call_takes_an_image_or_a_clip_by_url_or_as_a_file() -> None:
    answer = {
        "model_name": "Marengo-retrieval-2.7",
        "image_embedding": {"segments": [{"float": [0.5] * 1024}]},
    }
    clip = QueryMedia("audio", "s3://b/hum.wav", 9, s3_uri="s3://b/hum.wav", duration_sec=12.0)
    for query, field, value in [
        (MarengoQuery(media=(s3_image(),)), "image_url", URL),
        (MarengoQuery(media=(clip,)), "audio_url", URL),
        (MarengoQuery(media=(inline_image(),)), "image_file", None),
    ]:
        recorder = Recorder(answer)
        response = sdk(recorder).embed.create(**legacy_query_request(TL_2_7, query, presign))
        [request] = recorder.requests
        form = request.content.decode("latin-1")
        assert 'name="model_name"\r\n\r\nMarengo-retrieval-2.7\r\n' in form
        if value is None:
            assert f'name="{field}"; filename="bag.png"' in form and "\x89PNG" in form
        else:
            assert f'name="{field}"\r\n\r\n{value}\r\n' in form
        assert len(parse_legacy_embedding(response.dict(), MARENGO_2_7)) == 1024
