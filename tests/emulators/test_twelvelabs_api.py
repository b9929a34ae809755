"""The TwelveLabs API emulator driven by the real `twelvelabs` SDK (1.3.6) through its base-URL option.

It must accept exactly what the SDK sends, answer what the SDK parses, refuse what the documented contract
refuses with the API's `{"code", "message"}` errors, and share the Bedrock emulator's content spaces.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from twelvelabs import TwelveLabs

from emulators.bedrock_runtime import BedrockRuntimeEmulator
from emulators.s3 import S3Emulator
from emulators.sample_media import SampleObject, make_audio
from emulators.twelvelabs_api import INJECTED_FAILURE_MESSAGE, TwelveLabsEmulator
from tests.emulators.conftest import LAKE_BUCKET, MEDIA_BUCKET, NO_RETRY, make_client, refusal, url_of


def test_a_wrong_key_is_401_api_key_invalid(api: TwelveLabsEmulator) -> None:
    wrong = TwelveLabs(api_key="not-the-key", base_url=api.base_url)
    error = refusal(lambda: wrong.embed.v_2.tasks.list(request_options=NO_RETRY))
    assert error.status_code == 401
    assert isinstance(error.body, dict) and error.body["code"] == "api_key_invalid"


def test_video_task_runs_and_matches_bedrock_segments_and_vectors(
    sdk: TwelveLabs, api: TwelveLabsEmulator, s3: S3Emulator, s3_client: Any, samples: dict[str, SampleObject]
) -> None:
    video = samples["videos/shapes_a.mp4"]
    created = sdk.embed.v_2.tasks.create(
        input_type="video",
        model_name="marengo3.0",
        video={
            "media_source": {"url": url_of(s3_client, video.key)},
            "embedding_option": ["visual", "audio"],
            "embedding_scope": ["clip"],
        },
    )
    assert created.status == "processing" and api.created_tasks == 1
    api.wait_until_idle()
    task = sdk.embed.v_2.tasks.retrieve(created.id)
    assert task.status == "ready" and task.data
    assert task.metadata is not None and task.metadata.duration == pytest.approx(14.0)
    spans = sorted({(d.start_sec, d.end_sec) for d in task.data})
    assert spans == [(s.start_sec, s.end_sec) for s in video.scenes]
    assert {d.embedding_option for d in task.data} == {"visual", "audio"}

    # The same request as a Bedrock async invocation: the same segments and the same vectors.
    bedrock = BedrockRuntimeEmulator(s3.endpoint, seed=7).start()
    try:
        arn = make_client(bedrock.endpoint).start_async_invoke(
            modelId="twelvelabs.marengo-embed-3-0-v1:0",
            modelInput={
                "inputType": "video",
                "video": {
                    "mediaSource": {"s3Location": {"uri": f"s3://{MEDIA_BUCKET}/{video.key}"}},
                    "embeddingOption": ["visual", "audio"],
                    "embeddingScope": ["clip"],
                },
            },
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{LAKE_BUCKET}/tl-compare"}},
        )["invocationArn"]
        bedrock.wait_until_idle()
    finally:
        bedrock.stop()
    output = s3_client.get_object(Bucket=LAKE_BUCKET, Key=f"tl-compare/{arn[-12:]}/output.json")
    expected = json.loads(output["Body"].read())["data"]
    got = {(d.embedding_option, d.start_sec): np.array(d.embedding) for d in task.data}
    assert len(expected) == len(got)
    for item in expected:
        assert np.allclose(got[(item["embeddingOption"], item["startSec"])], item["embedding"])


def test_fused_embedding_adds_one_vector_per_span(
    sdk: TwelveLabs, api: TwelveLabsEmulator, s3_client: Any
) -> None:
    created = sdk.embed.v_2.tasks.create(
        input_type="audio",
        model_name="marengo3.0",
        audio={
            "media_source": {"url": url_of(s3_client, "audio/hum_220hz.wav")},
            "embedding_option": ["audio", "transcription"],
            "embedding_scope": ["clip"],
            "embedding_type": ["separate_embedding", "fused_embedding"],
        },
    )
    api.wait_until_idle()
    data = sdk.embed.v_2.tasks.retrieve(created.id).data or []
    fused = [d for d in data if d.embedding_option == "fused"]
    separate = [d for d in data if d.embedding_option == "audio"]
    assert fused and len(fused) == len(separate)
    assert {(d.start_sec, d.end_sec) for d in fused} == {(d.start_sec, d.end_sec) for d in separate}


def test_sync_text_shares_bedrocks_space(sdk: TwelveLabs, s3: S3Emulator) -> None:
    response = sdk.embed.v_2.create(
        input_type="text", model_name="marengo3.0", text={"input_text": "yellow triangle"}
    )
    bedrock = BedrockRuntimeEmulator(s3.endpoint).start()
    try:
        raw = make_client(bedrock.endpoint).invoke_model(
            modelId="us.twelvelabs.marengo-embed-3-0-v1:0",
            body=json.dumps({"inputType": "text", "text": {"inputText": "yellow triangle"}}),
        )
    finally:
        bedrock.stop()
    assert np.allclose(response.data[0].embedding, json.loads(raw["body"].read())["data"][0]["embedding"])


def test_marengo_3_5_dimension_is_a_normalized_prefix(sdk: TwelveLabs) -> None:
    full = sdk.embed.v_2.create(
        input_type="multi_input", model_name="marengo3.5", multi_input={"input_text": "red"}
    )
    short = sdk.embed.v_2.create(
        input_type="multi_input",
        model_name="marengo3.5",
        multi_input={"input_text": "red"},
        embedding_dimension=256,
    )
    vector = np.array(short.data[0].embedding)
    assert len(full.data[0].embedding) == 512 and len(vector) == 256
    assert np.linalg.norm(vector) == pytest.approx(1.0)
    prefix = np.array(full.data[0].embedding[:256])
    assert np.allclose(vector, prefix / np.linalg.norm(prefix))


def test_image_by_base64_and_text_image(sdk: TwelveLabs, samples: dict[str, SampleObject]) -> None:
    image = samples["images/green_triangle.png"]
    encoded = base64.b64encode(image.data).decode()
    alone = sdk.embed.v_2.create(
        input_type="image", model_name="marengo3.0", image={"media_source": {"base64_string": encoded}}
    )
    both = sdk.embed.v_2.create(
        input_type="text_image",
        model_name="marengo3.0",
        text_image={"input_text": "green triangle", "media_source": {"base64_string": encoded}},
    )
    text = sdk.embed.v_2.create(
        input_type="text", model_name="marengo3.0", text={"input_text": "green triangle"}
    )
    img, mix, words = (np.array(r.data[0].embedding) for r in (alone, both, text))
    assert float(img @ words) > 0.5, "the image of a green triangle is near the words"
    assert float(mix @ img) > 0.8 and float(mix @ words) > 0.8


@pytest.mark.parametrize(
    ("request_body", "names"),
    [
        (
            {"input_type": "multi_input", "multi_input": {"input_text": "x", "media_sources": [{}] * 11}},
            "limit of 10",
        ),
        (
            {"input_type": "multi_input", "multi_input": {"input_text": "a <@shoe>", "media_sources": []}},
            "<@shoe>",
        ),
        ({"input_type": "text", "text": {"input_text": "word " * 501}}, "500-token"),
        (
            {"input_type": "video", "video": {"media_source": {"url": "s3://media/videos/shapes_a.mp4"}}},
            "url",
        ),
        ({"input_type": "text", "text": {"input_text": "x"}, "embedding_dimension": 256}, "marengo3.5"),
        (
            {"input_type": "image", "image": {"media_source": {"url": "https://a", "base64_string": "AA=="}}},
            "one of",
        ),
    ],
    ids=["11-images", "placeholder", "tokens", "s3-uri", "dimension-on-3.0", "two-sources"],
)
def test_sync_refusals_name_the_field(sdk: TwelveLabs, request_body: dict[str, Any], names: str) -> None:
    error = refusal(
        lambda: sdk.embed.v_2.create(model_name="marengo3.0", **request_body, request_options=NO_RETRY)
    )
    assert error.status_code == 400
    assert isinstance(error.body, dict) and error.body["code"] == "parameter_invalid"
    assert names in error.body["message"]


def test_sync_audio_over_ten_minutes_is_refused(sdk: TwelveLabs, s3_client: Any) -> None:
    s3_client.put_object(Bucket=MEDIA_BUCKET, Key="long/hum.flac", Body=make_audio(220.0, 601.0, "flac"))
    error = refusal(
        lambda: sdk.embed.v_2.create(
            input_type="audio",
            model_name="marengo3.0",
            audio={"media_source": {"url": url_of(s3_client, "long/hum.flac")}},
            request_options=NO_RETRY,
        )
    )
    assert error.status_code == 400 and "sync limit of 600 s" in error.body["message"]


def test_task_listing_is_newest_first_filtered_and_paged(
    sdk: TwelveLabs, api: TwelveLabsEmulator, s3_client: Any
) -> None:
    ids = [
        sdk.embed.v_2.tasks.create(
            input_type="audio",
            model_name="marengo3.0",
            audio={"media_source": {"url": url_of(s3_client, "audio/hum_220hz.wav")}},
        ).id
        for _ in range(3)
    ]
    api.wait_until_idle()
    listed = [t.id for t in sdk.embed.v_2.tasks.list(page_limit=2)]  # the pager walks every page
    assert listed == ids[::-1]
    assert [t.id for t in sdk.embed.v_2.tasks.list(status="processing")] == []
    assert len(list(sdk.embed.v_2.tasks.list(status="ready"))) == 3
    error = refusal(lambda: sdk.embed.v_2.tasks.list(page_limit=51, request_options=NO_RETRY))
    assert error.status_code == 400 and "page_limit" in error.body["message"]


def test_legacy_2_7_text_truncation_and_bedrock_space(sdk: TwelveLabs, s3: S3Emulator) -> None:
    long_text = "red " * 80
    strict = refusal(
        lambda: sdk.embed.create(
            model_name="Marengo-retrieval-2.7",
            text=long_text,
            request_options={"additional_body_parameters": {"text_truncate": "none"}, "max_retries": 0},
        )
    )
    assert strict.status_code == 400 and "77-token" in strict.body["message"]
    cut = sdk.embed.create(model_name="Marengo-retrieval-2.7", text=long_text)
    assert cut.text_embedding is not None and len(cut.text_embedding.segments[0].float_ or []) == 1024

    legacy = sdk.embed.create(model_name="Marengo-retrieval-2.7", text="a red circle")
    bedrock = BedrockRuntimeEmulator(s3.endpoint).start()
    try:
        raw = make_client(bedrock.endpoint).invoke_model(
            modelId="us.twelvelabs.marengo-embed-2-7-v1:0",
            body=json.dumps({"inputType": "text", "inputText": "a red circle"}),
        )
    finally:
        bedrock.stop()
    assert legacy.text_embedding is not None
    vector = legacy.text_embedding.segments[0].float_
    assert np.allclose(vector, json.loads(raw["body"].read())["data"][0]["embedding"])


def test_throttling_is_429_with_rate_limit_headers(api: TwelveLabsEmulator, sdk: TwelveLabs) -> None:
    api.throttle_rate = 1.0
    error = refusal(lambda: sdk.embed.v_2.tasks.list(request_options=NO_RETRY))
    assert error.status_code == 429
    headers = {k.lower(): v for k, v in (error.headers or {}).items()}
    assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after"} <= set(headers)


def test_server_errors_are_retried_by_the_sdk(api: TwelveLabsEmulator, sdk: TwelveLabs) -> None:
    api.server_error_rate = 1.0
    # SDK 1.3.6 counts retries from 2, so max_retries=4 is two retries (READ_RETRIES accounts for it).
    error = refusal(lambda: sdk.embed.v_2.tasks.list(request_options={"max_retries": 4}))
    assert error.status_code == 500
    assert api.calls["ListTasks"] == 3, "the SDK retried the 5xx twice"


def test_injected_failures_end_the_task_failed_with_a_message(
    api: TwelveLabsEmulator, sdk: TwelveLabs, s3_client: Any
) -> None:
    api.failure_rate = 1.0
    created = sdk.embed.v_2.tasks.create(
        input_type="audio",
        model_name="marengo3.0",
        audio={"media_source": {"url": url_of(s3_client, "audio/hum_220hz.wav")}},
    )
    api.wait_until_idle()
    task = sdk.embed.v_2.tasks.retrieve(created.id)
    assert task.status == "failed" and task.data is None
    assert task.error is not None and task.error.message == INJECTED_FAILURE_MESSAGE


def test_tasks_survive_a_restart_over_the_workdir_and_a_forgotten_one_is_404(
    tmp_path: Path, s3_client: Any
) -> None:
    first = TwelveLabsEmulator(workdir=tmp_path, latency_sec=3600).start()
    client = TwelveLabs(api_key=first.api_key, base_url=first.base_url)
    task_id = client.embed.v_2.tasks.create(
        input_type="audio",
        model_name="marengo3.0",
        audio={"media_source": {"url": url_of(s3_client, "audio/hum_220hz.wav")}},
    ).id
    first.stop()
    second = TwelveLabsEmulator(workdir=tmp_path).start()  # no latency now: the kept task finishes
    try:
        again = TwelveLabs(api_key=second.api_key, base_url=second.base_url)
        second.wait_until_idle()
        assert again.embed.v_2.tasks.retrieve(task_id).status == "ready"
        assert second.created_tasks == 1
        second.forget(task_id)
        assert (
            refusal(lambda: again.embed.v_2.tasks.retrieve(task_id, request_options=NO_RETRY)).status_code
            == 404
        )
    finally:
        second.stop()
