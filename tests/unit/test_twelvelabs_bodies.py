"""TwelveLabs request building and response parsing, checked against the SDK's wire format.

Each request goes through the real `twelvelabs` SDK with a recording transport (no network), and the JSON
it puts on the wire is compared with the captured SDK requests in ../shared/reference/twelvelabs-wire.md.
"""

import json
from typing import Any

import httpx
import numpy as np
import pytest
from twelvelabs import TwelveLabs

from resources.providers.embedding_jobs import EmbeddingOptions
from resources.providers.errors import MarengoOutputError, PermanentError, RetryableError, SetupError
from resources.providers.marengo_models import MARENGO_3_0, MARENGO_3_5
from resources.providers.model_routes import route
from resources.providers.twelvelabs.bodies import parse_embedding_data, task_request, text_request
from resources.providers.twelvelabs.client import provider_error

URL = "https://bucket.s3.amazonaws.com/presigned/video.mp4?X-Amz-Signature=..."
TL_3_0 = route("twelvelabs", MARENGO_3_0.key)
TL_3_5 = route("twelvelabs", MARENGO_3_5.key)


class Recorder:
    """An httpx transport that keeps each request and answers with a canned body."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.requests: list[httpx.Request] = []
        self.answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json=self.answer)


def client(recorder: Recorder) -> TwelveLabs:
    transport = httpx.MockTransport(recorder)
    return TwelveLabs(
        api_key="k", base_url="https://api.example/v1.3", httpx_client=httpx.Client(transport=transport)
    )


def sent(recorder: Recorder) -> tuple[str, str, dict[str, Any]]:
    [request] = recorder.requests
    return request.method, request.url.path, json.loads(request.content)


def test_a_video_task_is_the_documented_create_request() -> None:
    recorder = Recorder({"_id": "task-1", "status": "processing"})
    options = EmbeddingOptions(segmentation="fixed", fixed_segment_sec=6)
    request = task_request(TL_3_0, "video", URL, options)
    created = client(recorder).embed.v_2.tasks.create(**request)
    method, path, body = sent(recorder)
    assert (method, path, created.id) == ("POST", "/v1.3/embed-v2/tasks", "task-1")
    assert body == {
        "input_type": "video",
        "model_name": "marengo3.0",
        "video": {
            "media_source": {"url": URL},
            "segmentation": {"strategy": "fixed", "fixed": {"duration_sec": 6}},
            "embedding_option": ["visual", "audio", "transcription"],
            "embedding_scope": ["clip"],
            "embedding_type": ["separate_embedding"],
        },
    }


def test_dynamic_segmentation_and_audio_tasks() -> None:
    video = task_request(TL_3_0, "video", URL, EmbeddingOptions())
    assert video["video"]["segmentation"] == {"strategy": "dynamic", "dynamic": {"min_duration_sec": 4.0}}
    audio = task_request(TL_3_0, "audio", URL, EmbeddingOptions(scopes=("clip", "asset")))
    recorder = Recorder({"_id": "task-2", "status": "processing"})
    client(recorder).embed.v_2.tasks.create(**audio)
    _, _, body = sent(recorder)
    assert body == {
        "input_type": "audio",
        "model_name": "marengo3.0",
        "audio": {
            "media_source": {"url": URL},
            "embedding_option": ["audio", "transcription"],
            "embedding_scope": ["clip", "asset"],
            "embedding_type": ["separate_embedding"],
        },
    }


def test_marengo_3_5_carries_its_configured_dimension_and_queries_go_as_multi_input() -> None:
    assert task_request(TL_3_5, "video", URL, EmbeddingOptions())["embedding_dimension"] == 512
    recorder = Recorder({"data": [{"embedding": [0.1] * 512}]})
    client(recorder).embed.v_2.create(**text_request(TL_3_5, "a red circle"))
    method, path, body = sent(recorder)
    assert (method, path) == ("POST", "/v1.3/embed-v2")
    assert body == {
        "input_type": "multi_input",
        "model_name": "marengo3.5",
        "multi_input": {"input_text": "a red circle"},
        "embedding_dimension": 512,
    }


def test_a_3_0_text_query_is_the_documented_sync_request() -> None:
    recorder = Recorder({"data": [{"embedding": [0.1] * 512}]})
    client(recorder).embed.v_2.create(**text_request(TL_3_0, "a red circle on blue"))
    _, _, body = sent(recorder)
    assert body == {
        "input_type": "text",
        "model_name": "marengo3.0",
        "text": {"input_text": "a red circle on blue"},
    }


def test_an_s3_uri_never_reaches_the_api() -> None:
    with pytest.raises(ValueError, match="cannot read s3:// URIs"):
        task_request(TL_3_0, "video", "s3://media/a.mp4", EmbeddingOptions())


def test_ready_task_data_becomes_segments_with_fused_a_type_not_an_option() -> None:
    data = [
        {
            "embedding": [0.5] * 512,
            "embedding_option": "visual",
            "embedding_scope": "clip",
            "start_sec": 0,
            "end_sec": 6,
        },
        {
            "embedding": [0.25] * 512,
            "embedding_option": "fused",
            "embedding_scope": "clip",
            "start_sec": 0,
            "end_sec": 6,
        },
        {"embedding": [1.0] * 512, "embedding_option": "audio", "embedding_scope": "asset"},
    ]
    segments = parse_embedding_data(data, MARENGO_3_0, "video")
    assert [
        (s.embedding_option, s.embedding_type, s.embedding_scope, s.start_sec, s.end_sec) for s in segments
    ] == [
        ("visual", "separate", "clip", 0.0, 6.0),
        (None, "fused", "clip", 0.0, 6.0),
        ("audio", "separate", "asset", None, None),
    ]
    assert segments[1].vector.dtype == np.float32 and float(segments[1].vector[0]) == 0.25


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (None, "holds no 'data'"),
        ({"embedding": []}, "not a list"),
        ([{"embedding": [0.1] * 256}], "256-d vector; Marengo 3.0 returns 512-d"),
        ([{"embedding": [0.1] * 512, "start_sec": "zero"}], "startSec 'zero'"),
        ([None], "segment 0 is null"),
    ],
)
def test_unusable_task_data_is_a_named_output_error(data: Any, says: str) -> None:
    with pytest.raises(MarengoOutputError, match=says):
        parse_embedding_data(data, MARENGO_3_0, "video")


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, PermanentError),
        (413, PermanentError),
        (401, SetupError),
        (403, SetupError),
        (429, RetryableError),
        (503, RetryableError),
    ],
)
def test_sdk_errors_map_onto_the_neutral_family(status: int, kind: type) -> None:
    from twelvelabs.core.api_error import ApiError

    error = provider_error(
        ApiError(status_code=status, body={"code": "x", "message": "said why"}), "the task"
    )
    assert isinstance(error, kind) and "said why" in error.reason and str(status) in error.reason


def test_a_span_of_the_file_reaches_the_task_as_its_job_key_names_it() -> None:
    recorder = Recorder({"_id": "task-2", "status": "processing"})
    options = EmbeddingOptions(start_sec=4.0, end_sec=10.0)
    client(recorder).embed.v_2.tasks.create(**task_request(TL_3_0, "video", URL, options))
    _, _, body = sent(recorder)
    assert (body["video"]["start_sec"], body["video"]["end_sec"]) == (4.0, 10.0)
    whole = task_request(TL_3_0, "video", URL, EmbeddingOptions(start_sec=0.0))
    assert "start_sec" not in whole["video"] and "end_sec" not in whole["video"]


def test_a_marengo_3_5_task_wraps_its_segmentation_in_temporal_and_asks_for_no_transcription() -> None:
    recorder = Recorder({"_id": "task-2", "status": "processing"})
    client(recorder).embed.v_2.tasks.create(**task_request(TL_3_5, "video", URL, EmbeddingOptions()))
    _, _, body = sent(recorder)
    video = body["video"]
    # SDK 1.3.6: "With Marengo 3.5: Place your settings in the `temporal` object"; "transcription ...
    # Requires Marengo 3.0".
    assert video["segmentation"] == {"temporal": {"strategy": "dynamic", "dynamic": {"min_duration_sec": 4}}}
    assert video["embedding_option"] == ["visual", "audio"]
    audio = task_request(TL_3_5, "audio", URL, EmbeddingOptions(segmentation="fixed", fixed_segment_sec=6))
    assert audio["audio"]["segmentation"] == {"temporal": {"strategy": "fixed", "fixed": {"duration_sec": 6}}}
    assert audio["audio"]["embedding_option"] == ["audio"] and "embedding_type" not in audio["audio"]
