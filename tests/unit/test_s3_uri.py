"""S3 URIs keep every key S3 allows, exactly; reads go to exactly that key."""

import random
import re
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from emulators.bedrock_runtime.marengo_body import split_s3_uri
from emulators.s3 import S3Emulator
from resources.media.probe import modality_from_name
from resources.storage.s3_storage import ObjectChanged, S3Storage, S3Uri
from tests.s3_key_matrix import hostile_keys

MATRIX = {**hostile_keys(".png"), "newline": "new\nline.png", "only a slash": "/", "empty": ""}


@pytest.mark.parametrize("key", MATRIX.values(), ids=MATRIX.keys())
def test_parse_keeps_the_key_byte_for_byte(key: str) -> None:
    uri = f"s3://media/{key}"
    parsed = S3Uri.parse(uri)
    assert (parsed.bucket, parsed.key) == ("media", key)
    assert str(parsed) == uri
    assert S3Uri.parse(str(parsed)) == parsed


@pytest.mark.parametrize("key", [k for k in MATRIX.values() if k], ids=[n for n, k in MATRIX.items() if k])
def test_the_emulator_splits_like_production(key: str) -> None:
    assert split_s3_uri(f"s3://media/{key}") == ("media", key)


@pytest.mark.parametrize("uri", ["https://media/key.png", "s3:///key.png", "s3://", "media/key.png", ""])
def test_anything_else_is_refused_with_the_uri_named(uri: str) -> None:
    with pytest.raises(ValueError, match="s3://"):
        S3Uri.parse(uri)


def test_scheme_is_case_insensitive_and_bucket_only_means_the_root() -> None:
    assert S3Uri.parse("S3://media") == S3Uri("media", "")
    assert S3Uri.parse("s3://media/") == S3Uri("media", "")


def test_join_adds_one_slash_and_changes_nothing_else() -> None:
    assert str(S3Uri.parse("s3://lake/marengo-async").join("marengo-3.0", "abc")) == (
        "s3://lake/marengo-async/marengo-3.0/abc"
    )
    assert str(S3Uri.parse("s3://lake/out/").join("output.json")) == "s3://lake/out/output.json"
    assert str(S3Uri.parse("s3://lake").join("output.json")) == "s3://lake/output.json"
    assert str(S3Uri.parse("s3://lake//odd #1").join("x")) == "s3://lake//odd #1/x"


def test_arrow_paths_refuse_what_pyarrow_would_change() -> None:
    assert S3Uri.parse("s3://lake/warehouse/").arrow_path() == "lake/warehouse"
    assert S3Uri.parse("s3://lake/").arrow_path() == "lake"
    assert S3Uri.parse("s3://lake/a b/c#d").arrow_path() == "lake/a b/c#d"
    for prefix in ("s3://lake//warehouse", "s3://lake/a//b", "s3://lake/a/../b", "s3://lake/./a"):
        with pytest.raises(ValueError, match="pyarrow cannot address"):
            S3Uri.parse(prefix).arrow_path()


def test_a_trailing_space_does_not_hide_the_extension() -> None:
    assert modality_from_name("trailing-space.png ") == "image"
    assert modality_from_name("clip.MP4\t") == "video"


@pytest.fixture(scope="module")
def s3() -> Iterator[tuple[Any, S3Storage]]:
    """A boto3 client to arrange objects with, and the resource under test, on one S3 emulator."""
    with S3Emulator() as emulator:
        client = emulator.client()
        client.create_bucket(Bucket="media")
        resource = S3Storage(
            endpoint_url=emulator.endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        yield client, resource


@pytest.mark.parametrize("key", hostile_keys(".bin").values(), ids=hostile_keys(".bin").keys())
def test_open_object_reads_exactly_that_key(s3: tuple[Any, S3Storage], key: str) -> None:
    data = random.Random(key).randbytes(300_000)  # more than one read-ahead
    client, resource = s3
    client.put_object(Bucket="media", Key=key, Body=data, ContentType="application/x-test")
    client.put_object(Bucket="media", Key=key.replace("/", "_") + "-decoy", Body=b"decoy")
    with resource.open_object(S3Uri("media", key)) as handle:
        assert (handle.content_type, handle.size) == ("application/x-test", len(data))
        assert handle.read(10) == data[:10]
        handle.seek(-5, 2)
        assert handle.read() == data[-5:]
        handle.seek(1000)
        assert handle.read(290_000) == data[1000:291_000]
        assert handle.read() == data[291_000:]
        assert handle.read(1) == b""


def test_a_pinned_read_refuses_a_replaced_object(s3: tuple[Any, S3Storage]) -> None:
    client, resource = s3
    etag = client.put_object(Bucket="media", Key="pinned.bin", Body=b"one" * 100_000)["ETag"].strip('"')
    with resource.open_object(S3Uri("media", "pinned.bin"), etag=etag) as handle:
        assert handle.read(3) == b"one"
        client.put_object(Bucket="media", Key="pinned.bin", Body=b"two" * 100_000)
        handle.seek(290_000)  # past the read-ahead: a new ranged request
        with pytest.raises(ObjectChanged, match=re.escape("s3://media/pinned.bin changed while it was read")):
            handle.read(3)
    with pytest.raises(ObjectChanged, match=etag):
        resource.open_object(S3Uri("media", "pinned.bin"), etag=etag)


def test_a_missing_object_names_the_error(s3: tuple[Any, S3Storage]) -> None:
    with pytest.raises(ClientError, match="404"):
        s3[1].open_object(S3Uri("media", "not-there.png"))
