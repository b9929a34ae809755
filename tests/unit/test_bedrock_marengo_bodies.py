"""Request bodies and response parsing against the JSON documented for Bedrock Marengo 2.7 and 3.0."""

import re

import botocore.session
import pytest
from botocore.validate import ParamValidator

from resources.providers.bedrock.marengo_bodies import (
    MAX_BASE64_BYTES,
    MarengoOutputError,
    async_media_input,
    async_model_input,
    async_text_image_input,
    async_text_input,
    base64_media_source,
    parse_segments,
    s3_media_source,
    text_query_body,
)
from resources.providers.embedding_jobs import EmbeddingJob, EmbeddingOptions, options_from_canonical
from resources.providers.marengo_models import MARENGO_2_7, MARENGO_3_0
from resources.providers.model_routes import route

URI = "s3://bucket/key.mp4"


def test_marengo_3_video_body_matches_documented_shape() -> None:
    options = EmbeddingOptions(segmentation="dynamic", min_segment_sec=4, scopes=("clip", "asset"))
    body = async_model_input(
        route("bedrock", MARENGO_3_0.key), "video", URI, options, bucket_owner="123456789012"
    )
    assert body == {
        "inputType": "video",
        "video": {
            "mediaSource": {"s3Location": {"uri": URI, "bucketOwner": "123456789012"}},
            "segmentation": {"method": "dynamic", "dynamic": {"minDurationSec": 4}},
            "embeddingOption": ["visual", "audio", "transcription"],
            "embeddingScope": ["clip", "asset"],
        },
    }


def test_marengo_3_fixed_segmentation_is_clamped_to_documented_range() -> None:
    body = async_model_input(
        route("bedrock", MARENGO_3_0.key),
        "audio",
        URI,
        EmbeddingOptions(segmentation="fixed", fixed_segment_sec=30),
    )
    assert body["audio"]["segmentation"] == {"method": "fixed", "fixed": {"durationSec": 10}}
    assert body["audio"]["embeddingOption"] == ["audio", "transcription"]
    assert "bucketOwner" not in body["audio"]["mediaSource"]["s3Location"]


def test_marengo_3_image_body_has_only_media_source() -> None:
    assert async_model_input(route("bedrock", MARENGO_3_0.key), "image", URI, EmbeddingOptions()) == {
        "inputType": "image",
        "image": {"mediaSource": {"s3Location": {"uri": URI}}},
    }


def test_marengo_2_7_bodies_are_flat() -> None:
    video = async_model_input(route("bedrock", MARENGO_2_7.key), "video", URI, EmbeddingOptions())
    assert video == {
        "inputType": "video",
        "mediaSource": {"s3Location": {"uri": URI}},
        "minClipSec": 4,
        "embeddingOption": ["visual-text", "visual-image", "audio"],
    }
    audio = async_model_input(
        route("bedrock", MARENGO_2_7.key),
        "audio",
        URI,
        EmbeddingOptions(segmentation="fixed", fixed_segment_sec=1),
    )
    assert audio == {
        "inputType": "audio",
        "mediaSource": {"s3Location": {"uri": URI}},
        "useFixedLengthSec": 2,
    }


V3 = route("bedrock", MARENGO_3_0.key)
V27 = route("bedrock", MARENGO_2_7.key)
IMAGE_URI = "s3://bucket/photo.png"


def test_async_text_bodies() -> None:
    assert async_text_input(V3, "red circle") == {"inputType": "text", "text": {"inputText": "red circle"}}
    assert async_text_input(V27, "red circle") == {"inputType": "text", "inputText": "red circle"}
    assert async_text_input(V27, "red circle", truncate=True)["textTruncate"] == "end"
    assert async_text_input(V27, "red circle", truncate=False)["textTruncate"] == "none"
    with pytest.raises(ValueError, match=re.escape("Marengo 3.0 has no textTruncate")):
        async_text_input(V3, "red circle", truncate=True)


def test_async_text_image_body_is_3_0_only() -> None:
    source = s3_media_source(IMAGE_URI, "123456789012")
    assert async_text_image_input(V3, "a red circle", source) == {
        "inputType": "text_image",
        "text_image": {
            "inputText": "a red circle",
            "mediaSource": {"s3Location": {"uri": IMAGE_URI, "bucketOwner": "123456789012"}},
        },
    }
    with pytest.raises(ValueError, match=re.escape("Marengo 2.7 has no text_image input")):
        async_text_image_input(V27, "a red circle", source)


def test_media_sources_by_s3_location_or_inline() -> None:
    assert s3_media_source(IMAGE_URI) == {"s3Location": {"uri": IMAGE_URI}}
    assert base64_media_source(b"\x89PNG") == {"base64String": "iVBORw=="}
    with pytest.raises(ValueError, match="send it by S3 location"):
        base64_media_source(bytes(MAX_BASE64_BYTES + 1))
    inline = base64_media_source(b"\x89PNG")
    assert async_media_input(V3, "image", inline, EmbeddingOptions()) == {
        "inputType": "image",
        "image": {"mediaSource": inline},
    }
    assert async_media_input(V27, "audio", inline, EmbeddingOptions()) == {
        "inputType": "audio",
        "mediaSource": inline,
    }


def test_a_span_is_start_and_end_on_3_0_and_start_and_length_on_2_7() -> None:
    span = EmbeddingOptions(start_sec=5, end_sec=65)
    video3 = async_model_input(V3, "video", URI, span)["video"]
    assert (video3["startSec"], video3["endSec"]) == (5, 65)
    audio27 = async_model_input(V27, "audio", URI, span)
    assert (audio27["startSec"], audio27["lengthSec"]) == (5, 60)
    head = EmbeddingOptions(end_sec=30)  # from the start: only the end is sent
    assert "startSec" not in async_model_input(V3, "audio", URI, head)["audio"]
    assert async_model_input(V27, "video", URI, head)["lengthSec"] == 30
    tail = EmbeddingOptions(start_sec=10)  # to the end: only the start is sent
    assert "endSec" not in async_model_input(V3, "video", URI, tail)["video"]
    assert "lengthSec" not in async_model_input(V27, "video", URI, tail)
    for model_route in (V3, V27):  # images have no span; the whole file is the default, never spelled out
        image = async_model_input(model_route, "image", URI, span)
        assert "startSec" not in str(image) and "endSec" not in str(image)
        whole = async_model_input(model_route, "video", URI, EmbeddingOptions(start_sec=0))
        assert whole == async_model_input(model_route, "video", URI, EmbeddingOptions())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"start_sec": -1}, "start_sec must be"),
        ({"start_sec": float("nan")}, "start_sec must be"),
        ({"start_sec": 10, "end_sec": 10}, "end_sec must be after start_sec (10 s)"),
        ({"end_sec": 0}, "end_sec must be after start_sec (0 s)"),
    ],
)
def test_a_span_that_is_no_span_is_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        EmbeddingOptions(**options)  # type: ignore[arg-type]


def test_every_async_body_satisfies_botocore_model() -> None:
    """botocore's own validator on StartAsyncInvoke's input shape (modelInput is a document)."""
    inline = base64_media_source(b"\x89PNG")
    span = EmbeddingOptions(start_sec=1, end_sec=3)
    bodies = [
        async_text_input(V3, "red circle"),
        async_text_input(V27, "red circle", truncate=False),
        async_text_image_input(V3, "red circle", inline),
        async_media_input(V3, "image", inline, EmbeddingOptions()),
        async_model_input(V3, "video", URI, span, bucket_owner="123456789012"),
        async_model_input(V27, "audio", URI, span),
    ]
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    for body in bodies:
        params = {
            "modelId": V3.model_id,
            "modelInput": body,
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://out-bucket/marengo-3.0"}},
        }
        report = ParamValidator().validate(params, model.operation_model("StartAsyncInvoke").input_shape)
        assert not report.has_errors(), report.generate_report()


def test_a_span_is_part_of_the_job_only_when_there_is_one() -> None:
    def token(modality: str, **options: float) -> str:
        return EmbeddingJob(URI, "e", modality, MARENGO_3_0, EmbeddingOptions(**options)).client_token  # type: ignore[arg-type]

    assert token("video") == token("video", start_sec=0)  # the whole file, spelled two ways
    assert token("image") == token("image", start_sec=5, end_sec=9)  # images have no span
    spans = {
        token("audio"),
        token("audio", end_sec=9),
        token("audio", start_sec=5),
        token("audio", start_sec=5, end_sec=9),
    }
    assert len(spans) == 4
    assert "start_sec" not in EmbeddingOptions().canonical()
    for options in (
        EmbeddingOptions(),
        EmbeddingOptions(start_sec=5),
        EmbeddingOptions(start_sec=1, end_sec=2),
    ):
        assert options_from_canonical(options.canonical()) == options


def test_text_query_bodies() -> None:
    assert text_query_body(route("bedrock", MARENGO_3_0.key), "red circle") == {
        "inputType": "text",
        "text": {"inputText": "red circle"},
    }
    assert text_query_body(route("bedrock", MARENGO_2_7.key), "red circle") == {
        "inputType": "text",
        "inputText": "red circle",
    }


def test_start_async_invoke_parameters_satisfy_botocore_model() -> None:
    job = EmbeddingJob(URI, "etag-1", "video", MARENGO_3_0, EmbeddingOptions())
    params = {
        "clientRequestToken": job.client_token,
        "modelId": route("bedrock", MARENGO_3_0.key).model_id,
        "modelInput": async_model_input(route("bedrock", MARENGO_3_0.key), "video", URI, job.options),
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://out-bucket/marengo-3.0"}},
    }
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    report = ParamValidator().validate(params, model.operation_model("StartAsyncInvoke").input_shape)
    assert not report.has_errors(), report.generate_report()


def test_client_token_is_stable_and_changes_with_what_is_billed() -> None:
    base = EmbeddingJob(URI, "etag-1", "video", MARENGO_3_0, EmbeddingOptions())
    assert (
        base.client_token
        == EmbeddingJob(URI, "etag-1", "video", MARENGO_3_0, EmbeddingOptions()).client_token
    )
    variants = [
        EmbeddingJob(URI, "etag-2", "video", MARENGO_3_0, EmbeddingOptions()),
        EmbeddingJob(URI, "etag-1", "video", MARENGO_2_7, EmbeddingOptions()),
        EmbeddingJob(URI, "etag-1", "video", MARENGO_3_0, EmbeddingOptions(segmentation="fixed")),
        EmbeddingJob(URI, "etag-1", "video", MARENGO_3_0, EmbeddingOptions(), attempt=2),
        EmbeddingJob("s3://bucket/other.mp4", "etag-1", "video", MARENGO_3_0, EmbeddingOptions()),
    ]
    tokens = {base.client_token, *(v.client_token for v in variants)}
    assert len(tokens) == 6
    assert all(len(t) <= 256 and all("!" <= c <= "~" for c in t) for t in tokens)


# Computed before EmbeddingOptions had any field beyond these four: every ledger in use holds keys and
# tokens like these, and a change that altered them would re-submit (and re-bill) every object.
PINNED_KEYS = [
    (
        EmbeddingJob("s3://media/videos/shapes_a.mp4", "etag-1", "video", MARENGO_3_0, EmbeddingOptions()),
        "me-710d19dc2a338c7f8c1c05f116ece518bf246651-a1",
    ),
    (
        EmbeddingJob(
            "s3://media/videos/shapes_a.mp4",
            "etag-1",
            "audio",
            MARENGO_3_0,
            EmbeddingOptions(segmentation="fixed", fixed_segment_sec=6),
        ),
        "me-1be2eeb58c4eb44f93d6d6a62924f8c32c9a5b88-a1",
    ),
    (
        EmbeddingJob(
            "s3://media/images/green_triangle.png", "etag-2", "image", MARENGO_3_0, EmbeddingOptions()
        ),
        "me-7ab03856bb526755f11d7ed5979e60cfbb85c4ea-a1",
    ),
    (
        EmbeddingJob(
            "s3://media/videos/shapes_a.mp4",
            "etag-1",
            "video",
            MARENGO_2_7,
            EmbeddingOptions(scopes=("clip", "asset")),
            attempt=2,
        ),
        "me-e964aaa5b0bf7d02003800e1f05889ef94484fe7-a2",
    ),
]


@pytest.mark.parametrize(("job", "token"), PINNED_KEYS)
def test_job_keys_and_tokens_are_those_the_ledgers_already_hold(job: EmbeddingJob, token: str) -> None:
    assert job.client_token == token
    assert job.job_key == token.removeprefix("me-").rsplit("-a", 1)[0]


def test_canonical_options_are_those_the_ledgers_already_hold() -> None:
    assert EmbeddingOptions().canonical() == (
        '{"fixed_segment_sec":6.0,"min_segment_sec":4.0,"scopes":["clip"],"segmentation":"dynamic"}'
    )


def test_client_token_ignores_options_that_do_not_shape_the_request() -> None:
    def token(modality: str, **options: object) -> str:
        return EmbeddingJob(URI, "e", modality, MARENGO_3_0, EmbeddingOptions(**options)).client_token  # type: ignore[arg-type]

    assert token("image") == token("image", segmentation="fixed", fixed_segment_sec=3, min_segment_sec=2)
    assert token("video") == token("video", fixed_segment_sec=3)  # dynamic: the fixed length is not sent
    assert token("video") != token("video", min_segment_sec=5)
    assert token("audio") == token("audio", min_segment_sec=5)  # audio has no dynamic segmentation
    assert token("audio", segmentation="fixed") != token("audio", segmentation="fixed", fixed_segment_sec=3)


def test_parse_documented_marengo_3_output() -> None:
    payload = {
        "data": [
            {
                "embedding": [0.1] * 512,
                "embeddingOption": "visual",
                "embeddingScope": "clip",
                "startSec": 0.0,
                "endSec": 6.0,
            },
            {
                "embedding": [0.2] * 512,
                "embeddingOption": "audio",
                "embeddingScope": "asset",
                "startSec": 0,
                "endSec": 12.5,
            },
        ]
    }
    first, second = parse_segments(payload, MARENGO_3_0, "video")
    assert (first.embedding_option, first.embedding_scope, first.start_sec, first.end_sec) == (
        "visual",
        "clip",
        0.0,
        6.0,
    )
    assert (second.embedding_scope, second.end_sec) == ("asset", 12.5)
    assert len(first.vector) == 512


def test_parse_documented_marengo_2_7_output_defaults_scope() -> None:
    payload = {
        "data": [
            {"embedding": [0.0, 1.0] * 512, "embeddingOption": "visual-text", "startSec": 0.0, "endSec": 6.0}
        ]
    }
    [segment] = parse_segments(payload, MARENGO_2_7, "video")
    assert segment.embedding_scope == "clip" and segment.embedding_option == "visual-text"


@pytest.mark.parametrize(
    "payload",
    [
        {"data": {"embedding": [0.5] * 512}},
        {"embedding": [0.5] * 512},
        {"data": [{"embedding": [0.5] * 512}]},
    ],
)
def test_parse_accepts_single_object_variants(payload: dict) -> None:
    [segment] = parse_segments(payload, MARENGO_3_0, "image")
    assert segment.start_sec is None and segment.embedding_scope == "asset"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"data": [{"embedding": [0.1] * 1024}]}, "1024-d vector; Marengo 3.0 returns 512-d"),
        ({"data": [{"embedding": [float("nan")] * 512}]}, "non-finite"),
        ({"data": [{"vector": []}]}, "no 'embedding'"),
        ({"data": [{"embedding": ["x"] * 512}]}, "non-numeric"),
        ({"result": []}, "no 'data'"),
        ([1, 2], "expected a JSON object"),
        ({"data": [{"embedding": [0.1] * 512, "startSec": 5, "endSec": 1}]}, "ends (1) before it starts (5)"),
        # Each of these once left its job open for ever: output that parses but is not Marengo's.
        ({"data": [None]}, "segment 0 is null, not an object"),
        ({"data": [{"embedding": [0.1] * 512}, 7]}, "segment 1 is a int, not an object"),
        ({"data": None}, "'data' is null, not a list of segments"),
        ({"data": "ok"}, "'data' is a str, not a list of segments"),
        ({"data": [{"embedding": [0.1] * 512, "startSec": "0"}]}, "startSec '0', not a non-negative number"),
        ({"data": [{"embedding": [0.1] * 512, "endSec": [6]}]}, "endSec [6], not a non-negative number"),
        ({"data": [{"embedding": [0.1] * 512, "startSec": True}]}, "startSec True, not a non-negative"),
        ({"data": [{"embedding": [0.1] * 512, "startSec": -1}]}, "startSec -1, not a non-negative number"),
        ({"data": [{"embedding": [0.1] * 512, "endSec": 10**400}]}, "not a non-negative number"),
        ({"data": [{"embedding": [0.1] * 512, "embeddingOption": 3}]}, "embeddingOption 3, not a string"),
        (
            {"data": [{"embedding": [0.1] * 512, "embeddingScope": ["clip"]}]},
            "embeddingScope ['clip'], not a",
        ),
        ({"data": [{"embedding": [True] * 512}]}, "non-numeric"),
        ({"data": [{"embedding": [None] * 512}]}, "non-numeric"),
        ({"data": [{"embedding": [10**400] * 512}]}, "non-finite"),
    ],
)
def test_parse_rejects_unusable_output_with_a_reason(payload: object, message: str) -> None:
    with pytest.raises(MarengoOutputError, match=re.escape(message)):
        parse_segments(payload, MARENGO_3_0, "video")


def test_parse_accepts_no_segments_and_null_optional_fields() -> None:
    assert parse_segments({"data": []}, MARENGO_3_0, "video") == []
    item = {"embedding": [0.5] * 512, "embeddingOption": None, "embeddingScope": None, "startSec": None}
    [segment] = parse_segments({"data": [item]}, MARENGO_3_0, "video")
    assert (segment.embedding_option, segment.embedding_scope, segment.start_sec) == (None, "clip", None)


def test_inference_profiles_and_limits() -> None:
    assert (
        route("bedrock", MARENGO_3_0.key).sync_model_id("us-east-1") == "us.twelvelabs.marengo-embed-3-0-v1:0"
    )
    assert (
        route("bedrock", MARENGO_2_7.key).sync_model_id("ap-northeast-2")
        == "apac.twelvelabs.marengo-embed-2-7-v1:0"
    )
    assert (
        route("bedrock", MARENGO_3_0.key).sync_model_id("ap-northeast-2")
        == "twelvelabs.marengo-embed-3-0-v1:0"
    )  # no apac. profile
    with pytest.raises(ValueError, match="no inference profile"):
        route("bedrock", MARENGO_3_0.key).sync_model_id("sa-east-1")
    assert MARENGO_3_0.limit_violation("image", 5_000_001, None) is not None
    assert (
        MARENGO_3_0.limit_violation("video", 10_000, 5 * 3600)
        == "18000 s exceeds Marengo 3.0's limit of 14400 s"
    )
    assert MARENGO_3_0.limit_violation("video", 10_000, 60) is None
