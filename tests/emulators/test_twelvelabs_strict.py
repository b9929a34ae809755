"""The TwelveLabs API emulator refuses what the documented API refuses, driven by the real SDK (1.3.6).

Limits (the embed-v2 "Input requirements", the SDK's docstrings, seeds 002 and 004), presigned media URLs
checked as S3 checks them, the `/assets` endpoints as the SDK calls them (and assets as media sources), the
`embedding_option` of multi_input items (seed 001), and several types in one legacy Marengo-retrieval-2.7 call
(seed 002).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.config import Config
from twelvelabs import TwelveLabs
from twelvelabs.errors import BadRequestError, ContentTooLargeError, NotFoundError

from emulators.s3 import S3Emulator
from emulators.sample_media import SampleObject, encode_image, make_audio, render
from emulators.twelvelabs_api import TwelveLabsEmulator
from tests.emulators.conftest import MEDIA_BUCKET, NO_RETRY, REGION, refusal, url_of

IMAGE = "images/green_triangle.png"
AUDIO = "audio/hum_220hz.wav"
VIDEO = "videos/shapes_a.mp4"


def put(s3_client: Any, key: str, data: bytes) -> str:
    """Upload test media and return its presigned URL."""
    s3_client.put_object(Bucket=MEDIA_BUCKET, Key=key, Body=data)
    return url_of(s3_client, key)


def picture(side: int, fmt: str = "png") -> bytes:
    return encode_image(render("circle", "red", "blue", side, side, side // 2), fmt)


def noise_png(side: int) -> bytes:
    """A PNG that does not compress: over 5 MB at 1400x1400."""
    return encode_image(np.random.default_rng(5).integers(0, 256, (side, side, 3), dtype=np.uint8), "png")


def flac_declaring(seconds: float) -> bytes:
    """A short FLAC whose STREAMINFO declares `seconds` of 16 kHz audio: what the platform reads as the
    file's length before it decodes a frame (a real four-hour file would be gigabytes of test data)."""
    data = bytearray(make_audio(220.0, 2.0, "flac"))
    field = int.from_bytes(data[18:26], "big")  # STREAMINFO: rate, channels, bits, then 36 bits of samples
    field = (field & ~((1 << 36) - 1)) | round(seconds * 16000)
    data[18:26] = field.to_bytes(8, "big")
    return bytes(data)


def image_body(input_type: str, source: dict[str, Any]) -> dict[str, Any]:
    """A sync embed of one image as each 3.0 input type that takes one."""
    if input_type == "image":
        return {"image": {"media_source": source}}
    if input_type == "text_image":
        return {"text_image": {"input_text": "a circle", "media_source": source}}
    return {"multi_input": {"input_text": "a circle", "media_sources": [{"media_type": "image", **source}]}}


def embed_image(sdk: TwelveLabs, input_type: str, source: dict[str, Any]) -> Any:
    return sdk.embed.v_2.create(
        input_type=input_type,
        model_name="marengo3.0",
        **image_body(input_type, source),
        request_options=NO_RETRY,
    )


# --- size and count limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("input_type", ["image", "text_image", "multi_input"])
def test_an_image_under_128x128_is_refused_400_naming_the_minimum(sdk: TwelveLabs, input_type: str) -> None:
    small = base64.b64encode(picture(64)).decode()
    error = refusal(lambda: embed_image(sdk, input_type, {"base64_string": small}))
    assert isinstance(error, BadRequestError)
    assert error.body["code"] == "parameter_invalid"
    assert "64x64" in error.body["message"] and "128x128" in error.body["message"]
    assert embed_image(sdk, input_type, {"base64_string": base64.b64encode(picture(128)).decode()}).data


def test_an_image_over_5_mb_is_413_by_url_and_by_base64(sdk: TwelveLabs, s3_client: Any) -> None:
    big = noise_png(1400)
    assert len(big) > 5 * 1024 * 1024
    by_url = refusal(lambda: embed_image(sdk, "image", {"url": put(s3_client, "strict/big.png", big)}))
    inline = refusal(lambda: embed_image(sdk, "image", {"base64_string": base64.b64encode(big).decode()}))
    for error in (by_url, inline):
        assert isinstance(error, ContentTooLargeError) and error.status_code == 413
        assert error.body.error.code == "file_too_large" and "5242880" in error.body.error.message


def test_an_image_that_is_not_jpeg_or_png_is_refused(sdk: TwelveLabs) -> None:
    bmp = base64.b64encode(picture(160, "bmp")).decode()
    error = refusal(lambda: embed_image(sdk, "image", {"base64_string": bmp}))
    assert error.status_code == 400 and "JPEG or PNG" in error.body["message"]


def test_legacy_2_7_images_meet_the_same_requirements(sdk: TwelveLabs) -> None:
    error = refusal(
        lambda: sdk.embed.create(
            model_name="Marengo-retrieval-2.7",
            image_file=("small.png", picture(64)),
            request_options=NO_RETRY,
        )
    )
    assert error.status_code == 400 and "image_file" in error.body["message"]
    assert "128x128" in error.body["message"]


def test_sync_audio_must_be_wav_mp3_or_flac(sdk: TwelveLabs, s3_client: Any) -> None:
    """An MP4's audio track embeds fine as a task, but the sync call takes only the documented formats."""
    url = url_of(s3_client, VIDEO)
    error = refusal(
        lambda: sdk.embed.v_2.create(
            input_type="audio",
            model_name="marengo3.0",
            audio={"media_source": {"url": url}},
            request_options=NO_RETRY,
        )
    )
    assert error.status_code == 400 and "WAV, MP3 or FLAC" in error.body["message"]


def test_an_embed_task_over_four_hours_is_refused(
    sdk: TwelveLabs, api: TwelveLabsEmulator, s3_client: Any
) -> None:
    url = put(s3_client, "strict/four_hours.flac", flac_declaring(4 * 3600 + 60))
    error = refusal(
        lambda: sdk.embed.v_2.tasks.create(
            input_type="audio",
            model_name="marengo3.0",
            audio={"media_source": {"url": url}},
            request_options=NO_RETRY,
        )
    )
    assert isinstance(error, BadRequestError)
    assert "14460 s exceeds the embed task limit of 14400 s" in error.body["message"]
    assert api.created_tasks == 0


def test_marengo_3_5_syncs_only_multi_input(sdk: TwelveLabs) -> None:
    error = refusal(
        lambda: sdk.embed.v_2.create(
            input_type="text", model_name="marengo3.5", text={"input_text": "red"}, request_options=NO_RETRY
        )
    )
    assert error.status_code == 400 and "multi_input" in error.body["message"]


def test_marengo_3_5_text_over_2000_tokens_is_refused_unless_auto_truncated(sdk: TwelveLabs) -> None:
    long_text = "red " * 2001
    error = refusal(
        lambda: sdk.embed.v_2.create(
            input_type="multi_input",
            model_name="marengo3.5",
            multi_input={"input_text": long_text},
            request_options=NO_RETRY,
        )
    )
    assert error.status_code == 400 and "2000-token" in error.body["message"]
    cut = sdk.embed.v_2.create(
        input_type="multi_input",
        model_name="marengo3.5",
        multi_input={"input_text": long_text},
        auto_truncate=True,
    )
    assert cut.usage is not None and cut.usage.truncated and cut.usage.input_tokens == {"text": 2000}
    on_3_0 = refusal(
        lambda: sdk.embed.v_2.create(
            input_type="text",
            model_name="marengo3.0",
            text={"input_text": "red"},
            auto_truncate=True,
            request_options=NO_RETRY,
        )
    )
    assert on_3_0.status_code == 400 and "only accepted by marengo3.5" in on_3_0.body["message"]


# --- presigned media URLs ----------------------------------------------------------------------------------


def embed_by_url(sdk: TwelveLabs, url: str) -> Any:
    return sdk.embed.v_2.create(
        input_type="image",
        model_name="marengo3.0",
        image={"media_source": {"url": url}},
        request_options=NO_RETRY,
    )


def test_an_expired_presigned_url_is_refused_as_undownloadable(
    sdk: TwelveLabs, api: TwelveLabsEmulator, s3_client: Any
) -> None:
    url = url_of(s3_client, IMAGE, expires=60)
    assert embed_by_url(sdk, url).data
    api.clock = lambda: datetime.now(UTC) + timedelta(seconds=120)  # two minutes later, without waiting
    error = refusal(lambda: embed_by_url(sdk, url))
    assert error.status_code == 400 and error.body["code"] == "parameter_invalid"
    message = error.body["message"]
    assert message.startswith("image.media_source.url: the platform cannot download the media: HTTP 403")
    assert "expired" in message
    task = refusal(
        lambda: sdk.embed.v_2.tasks.create(
            input_type="audio",
            model_name="marengo3.0",
            audio={"media_source": {"url": url_of(s3_client, AUDIO, expires=60)}},
            request_options=NO_RETRY,
        )
    )
    assert task.status_code == 400 and "expired" in task.body["message"] and api.created_tasks == 0


def test_an_expired_sigv4_url_is_refused_too(
    sdk: TwelveLabs, api: TwelveLabsEmulator, s3: S3Emulator
) -> None:
    v4 = s3.client(signature_version="s3v4")
    url = url_of(v4, IMAGE, expires=60)
    assert "X-Amz-Date=" in url and "X-Amz-Expires=60" in url
    assert embed_by_url(sdk, url).data
    api.clock = lambda: datetime.now(UTC) + timedelta(seconds=61)
    assert "expired" in refusal(lambda: embed_by_url(sdk, url)).body["message"]


@pytest.mark.parametrize("signature_version", ["s3", "s3v4"])
def test_a_tampered_presigned_url_is_refused(sdk: TwelveLabs, s3: S3Emulator, signature_version: str) -> None:
    url = url_of(s3.client(signature_version=signature_version), IMAGE)
    other_object = url.replace("green_triangle.png", "purple_circle.jpg")
    longer = url.replace("Expires=600", "Expires=6000").replace("Expires=", "Expires=9", 1)
    for bad in (other_object, longer):
        assert bad != url
        error = refusal(lambda bad=bad: embed_by_url(sdk, bad))
        assert error.status_code == 400 and "HTTP 403" in error.body["message"]
    unsigned = url.split("?", 1)[0]
    assert "not presigned" in refusal(lambda: embed_by_url(sdk, unsigned)).body["message"]


def test_urls_are_checked_against_the_configured_s3_credentials(s3: S3Emulator, s3_client: Any) -> None:
    other = boto3.session.Session().client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name=REGION,
        aws_access_key_id="AKIALOCALOTHER",
        aws_secret_access_key="other-secret",
        config=Config(s3={"addressing_style": "path"}),
    )
    with TwelveLabsEmulator(s3_credentials={"AKIALOCALOTHER": "other-secret"}) as api:
        sdk = TwelveLabs(api_key=api.api_key, base_url=api.base_url)
        error = refusal(lambda: embed_by_url(sdk, url_of(s3_client, IMAGE)))  # signed with test/test
        assert "access key 'test'" in error.body["message"] and "does not exist" in error.body["message"]
        assert embed_by_url(sdk, url_of(other, IMAGE)).data


# --- assets ------------------------------------------------------------------------------------------------


def test_assets_are_created_by_url_and_by_direct_upload_and_retrieved_ready(
    sdk: TwelveLabs, s3_client: Any, samples: dict[str, SampleObject]
) -> None:
    by_url = sdk.assets.create(method="url", url=url_of(s3_client, IMAGE))
    assert by_url.id and by_url.method == "url" and by_url.status == "processing"
    assert by_url.filename == "green_triangle.png" and by_url.file_type == "image/png"
    audio = samples[AUDIO]
    direct = sdk.assets.create(
        method="direct",
        file=("hum.wav", audio.data),
        user_metadata=json.dumps({"source": "test"}),
        enable_hls=False,
    )
    assert direct.method == "direct" and direct.filename == "hum.wav"
    assert direct.user_metadata == {"source": "test"}
    image = sdk.assets.retrieve(by_url.id)
    assert image.status == "ready" and image.size == len(samples[IMAGE].data) and image.duration is None
    assert image.technical_metadata is not None and image.technical_metadata.image_width == 160
    sound = sdk.assets.retrieve(direct.id)
    assert sound.status == "ready" and sound.duration == pytest.approx(12.0)
    assert sound.technical_metadata is not None and sound.technical_metadata.audio_duration_seconds


def test_asset_listing_pages_newest_first_and_filters(sdk: TwelveLabs, s3_client: Any) -> None:
    ids = [sdk.assets.create(method="url", url=url_of(s3_client, key)).id for key in (IMAGE, AUDIO, VIDEO)]
    assert [a.id for a in sdk.assets.list(page_limit=2)] == ids[::-1], "the pager walks both pages"
    pages = [sdk.assets.list(page=n, page_limit=2).items for n in (1, 2, 3)]
    assert [[a.id for a in page or []] for page in pages] == [ids[:0:-1], ids[:1], []]
    assert [a.id for a in sdk.assets.list(asset_types=["audio", "video"])] == ids[:0:-1]
    assert [a.id for a in sdk.assets.list(filename="TRIANGLE")] == [ids[0]]
    assert [a.id for a in sdk.assets.list(asset_ids=[ids[0], ids[2]])] == [ids[2], ids[0]]
    error = refusal(lambda: sdk.assets.list(page_limit=51, request_options=NO_RETRY))
    assert error.status_code == 400 and "page_limit" in error.body["message"]


def test_a_deleted_or_unknown_asset_is_404_resource_not_exist(sdk: TwelveLabs, s3_client: Any) -> None:
    asset = sdk.assets.create(method="url", url=url_of(s3_client, IMAGE))
    sdk.assets.delete(asset.id)
    error = refusal(lambda: sdk.assets.retrieve(asset.id, request_options=NO_RETRY))
    assert isinstance(error, NotFoundError)
    assert error.body == {
        "code": "resource_not_exist",
        "message": f"Resource with id {asset.id} does not exist in assets.",
    }
    assert refusal(lambda: sdk.assets.delete("nope", request_options=NO_RETRY)).status_code == 404


def test_asset_create_refuses_a_bad_form_and_fails_an_unreadable_file(
    sdk: TwelveLabs, api: TwelveLabsEmulator, s3_client: Any, samples: dict[str, SampleObject]
) -> None:
    no_url = refusal(lambda: sdk.assets.create(method="url", request_options=NO_RETRY))
    assert no_url.status_code == 400 and "url" in no_url.body["message"]
    both = refusal(
        lambda: sdk.assets.create(method="direct", url="https://a/b.png", file=b"x", request_options=NO_RETRY)
    )
    assert both.status_code == 400
    expired = url_of(s3_client, IMAGE, expires=60)
    api.clock = lambda: datetime.now(UTC) + timedelta(minutes=5)
    gone = refusal(lambda: sdk.assets.create(method="url", url=expired, request_options=NO_RETRY))
    assert gone.status_code == 400 and "expired" in gone.body["message"]
    corrupt = sdk.assets.create(method="direct", file=("corrupt.mp4", samples["videos/corrupt.mp4"].data))
    failed = sdk.assets.retrieve(corrupt.id)
    assert (
        failed.status == "failed"
        and failed.error is not None
        and "could not be processed" in failed.error.message
    )
    unusable = refusal(lambda: embed_image(sdk, "image", {"asset_id": corrupt.id}))
    assert unusable.status_code == 400 and "failed, not ready" in unusable.body["message"]


def test_assets_are_media_sources_of_sync_embeds_multi_input_and_tasks(
    sdk: TwelveLabs, api: TwelveLabsEmulator, s3_client: Any
) -> None:
    image = sdk.assets.create(method="url", url=url_of(s3_client, IMAGE)).id
    audio = sdk.assets.create(method="url", url=url_of(s3_client, AUDIO)).id
    by_asset = embed_image(sdk, "image", {"asset_id": image}).data[0].embedding
    by_url = embed_image(sdk, "image", {"url": url_of(s3_client, IMAGE)}).data[0].embedding
    assert np.allclose(by_asset, by_url), "an asset embeds as the file it was made from"
    mixed = embed_image(sdk, "multi_input", {"asset_id": image}).data[0].embedding
    assert np.allclose(
        mixed, embed_image(sdk, "multi_input", {"url": url_of(s3_client, IMAGE)}).data[0].embedding
    )
    task = sdk.embed.v_2.tasks.create(
        input_type="audio", model_name="marengo3.0", audio={"media_source": {"asset_id": audio}}
    )
    api.wait_until_idle()
    done = sdk.embed.v_2.tasks.retrieve(task.id)
    assert done.status == "ready" and done.data and done.metadata is not None
    assert done.metadata.duration == pytest.approx(12.0)
    wrong_kind = refusal(lambda: embed_image(sdk, "image", {"asset_id": audio}))
    assert wrong_kind.status_code == 400 and "is audio, not image" in wrong_kind.body["message"]


@pytest.mark.parametrize("where", ["sync", "multi_input", "task"])
def test_an_unknown_asset_id_is_refused_not_found(
    sdk: TwelveLabs, api: TwelveLabsEmulator, where: str
) -> None:
    if where == "task":

        def call() -> Any:
            return sdk.embed.v_2.tasks.create(
                input_type="video",
                model_name="marengo3.0",
                video={"media_source": {"asset_id": "0123456789abcdef01234567"}},
                request_options=NO_RETRY,
            )

    else:

        def call() -> Any:
            source = {"asset_id": "0123456789abcdef01234567"}
            return embed_image(sdk, "image" if where == "sync" else "multi_input", source)

    error = refusal(call)
    assert error.status_code == 404 and error.body["code"] == "resource_not_exist"
    assert "0123456789abcdef01234567 does not exist in assets" in error.body["message"]
    assert api.created_tasks == 0


def test_an_asset_still_processing_is_refused_until_ready(s3: S3Emulator, s3_client: Any) -> None:
    with TwelveLabsEmulator(latency_sec=3600) as api:
        sdk = TwelveLabs(api_key=api.api_key, base_url=api.base_url)
        asset = sdk.assets.create(method="url", url=url_of(s3_client, IMAGE))
        assert sdk.assets.retrieve(asset.id).status == "processing"
        assert sdk.assets.retrieve(asset.id).technical_metadata is None
        error = refusal(lambda: embed_image(sdk, "image", {"asset_id": asset.id}))
        assert error.status_code == 400 and "is processing, not ready" in error.body["message"]


def test_assets_survive_a_restart_over_the_workdir(tmp_path: Path, s3_client: Any) -> None:
    with TwelveLabsEmulator(workdir=tmp_path) as first:
        sdk = TwelveLabs(api_key=first.api_key, base_url=first.base_url)
        asset = sdk.assets.create(method="url", url=url_of(s3_client, IMAGE)).id
        before = embed_image(sdk, "image", {"asset_id": asset}).data[0].embedding
    with TwelveLabsEmulator(workdir=tmp_path) as second:
        sdk = TwelveLabs(api_key=second.api_key, base_url=second.base_url)
        assert sdk.assets.retrieve(asset).status == "ready"
        assert np.allclose(embed_image(sdk, "image", {"asset_id": asset}).data[0].embedding, before)


# --- multi_input items and the legacy call -----------------------------------------------------------------


def test_multi_input_items_carry_their_embedding_option(
    sdk: TwelveLabs, samples: dict[str, SampleObject]
) -> None:
    encoded = base64.b64encode(samples[IMAGE].data).decode()
    source = {"name": "shape", "media_type": "image", "base64_string": encoded}

    def option(multi_input: dict[str, Any]) -> Any:
        response = sdk.embed.v_2.create(
            input_type="multi_input", model_name="marengo3.0", multi_input=multi_input
        )
        assert len(response.data) == 1
        return response.data[0].embedding_option

    assert option({"input_text": "a <@shape> on grey", "media_sources": [source]}) == "fused"
    assert option({"media_sources": [source]}) == "visual"
    assert option({"input_text": "a green triangle"}) == "text"


def test_legacy_2_7_embeds_several_types_in_one_call(
    sdk: TwelveLabs, s3_client: Any, samples: dict[str, SampleObject]
) -> None:
    model = "Marengo-retrieval-2.7"
    image_url = url_of(s3_client, IMAGE)
    both = sdk.embed.create(model_name=model, text="a green triangle", image_url=image_url)
    assert (
        both.text_embedding is not None and both.image_embedding is not None and both.audio_embedding is None
    )
    alone_text = sdk.embed.create(model_name=model, text="a green triangle").text_embedding
    alone_image = sdk.embed.create(model_name=model, image_url=image_url).image_embedding
    assert alone_text is not None and alone_image is not None
    assert np.allclose(both.text_embedding.segments[0].float_, alone_text.segments[0].float_)
    assert np.allclose(both.image_embedding.segments[0].float_, alone_image.segments[0].float_)
    three = sdk.embed.create(
        model_name=model, text="a hum", image_url=image_url, audio_file=("hum.wav", samples[AUDIO].data)
    )
    assert three.audio_embedding is not None and three.audio_embedding.segments
    assert all(len(s.float_ or []) == 1024 for s in three.audio_embedding.segments)
    twice = refusal(
        lambda: sdk.embed.create(
            model_name=model, image_url=image_url, image_file=samples[IMAGE].data, request_options=NO_RETRY
        )
    )
    assert twice.status_code == 400 and "image_url and image_file" in twice.body["message"]


def test_segment_lengths_are_whole_seconds_within_the_documented_bounds(
    sdk: TwelveLabs, s3_client: Any
) -> None:
    """Dynamic segments at least 2 to 5 s, fixed ones 2 to 10 s, in whole seconds (SDK 1.3.6 types)."""

    def create(strategy: str, seconds: float) -> Any:
        key = "min_duration_sec" if strategy == "dynamic" else "duration_sec"
        return sdk.embed.v_2.tasks.create(
            input_type="video",
            model_name="marengo3.0",
            video={
                "media_source": {"url": url_of(s3_client, VIDEO)},
                "segmentation": {"strategy": strategy, strategy: {key: seconds}},
            },
            request_options=NO_RETRY,
        )

    for strategy, seconds in (("dynamic", 2), ("dynamic", 5), ("fixed", 2), ("fixed", 10)):
        assert create(strategy, seconds).id
    for strategy, seconds in (("dynamic", 1), ("dynamic", 6), ("fixed", 1), ("fixed", 11), ("fixed", 4.5)):
        error = refusal(lambda strategy=strategy, seconds=seconds: create(strategy, seconds))
        assert error.status_code == 400 and "whole number of seconds from" in error.body["message"]


def test_marengo_3_5_takes_segmentation_only_in_temporal_and_no_transcription(
    sdk: TwelveLabs, api: TwelveLabsEmulator, s3_client: Any
) -> None:
    """SDK 1.3.6 documents both: 3.5 wraps its segmentation in `temporal`, and transcription needs 3.0."""
    url = url_of(s3_client, VIDEO)
    dynamic = {"strategy": "dynamic", "dynamic": {"min_duration_sec": 4}}
    for model, video, says in [
        ("marengo3.5", {"segmentation": dynamic}, "temporal"),
        ("marengo3.5", {"embedding_option": ["visual", "transcription"]}, "transcription"),
        ("marengo3.0", {"segmentation": {"temporal": dynamic}}, "only accepted by marengo3.5"),
    ]:
        error = refusal(
            lambda m=model, v=video: sdk.embed.v_2.tasks.create(
                input_type="video",
                model_name=m,
                video={"media_source": {"url": url}, **v},
                request_options=NO_RETRY,
            )
        )
        assert isinstance(error, BadRequestError) and says in error.body["message"], error.body
    assert api.created_tasks == 0
    sdk.embed.v_2.tasks.create(
        input_type="video",
        model_name="marengo3.5",
        video={"media_source": {"url": url}, "segmentation": {"temporal": dynamic}},
    )
    assert api.created_tasks == 1
