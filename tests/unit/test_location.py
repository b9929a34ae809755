"""One storage layer: a location parsed once gives the same paths, URIs, options and writes, on a local
disk and on S3 (the emulator), as the lake, the index, the serving record and the writer lock used before."""

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from emulators.s3 import S3Emulator
from resources.index.writer_lock import LocalWriterLock, S3WriterLease, table_writer_lock
from resources.storage.location import (
    BotoAccess,
    LocalLocation,
    S3Keys,
    S3Location,
    arrow_s3_filesystem,
    location,
    object_store_options,
)
from resources.storage.s3_objects import media_link

TEMPORARY = re.compile(r"\.parquet\.[0-9a-f]{32}\.tmp$")


@pytest.fixture(scope="module")
def emulator() -> Iterator[S3Emulator]:
    s3 = S3Emulator().start()
    try:
        s3.client().create_bucket(Bucket="lake")
        yield s3
    finally:
        s3.stop()


@pytest.fixture
def on_s3(
    emulator: S3Emulator, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> S3Location:
    # pyarrow takes its keys from the AWS chain when none are configured, as in a deployment.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    found = location(f"s3://lake/{request.node.name}/", BotoAccess(emulator.client))
    assert isinstance(found, S3Location)
    return found


def test_a_uri_is_parsed_once_into_its_kind() -> None:
    local = location("~/lake")
    assert isinstance(local, LocalLocation) and local.path == Path("~/lake").expanduser().resolve()
    s3 = location("s3://bucket/some/prefix/")
    assert isinstance(s3, S3Location) and (s3.prefix.bucket, s3.prefix.key) == ("bucket", "some/prefix")
    assert isinstance(location("relative/dir"), LocalLocation)
    assert (local.bucket(), s3.bucket()) == (None, "bucket")
    with pytest.raises(ValueError, match="local directory or under s3://"):
        location("gs://bucket/lake")
    with pytest.raises(ValueError, match="no bucket"):
        location("s3:///lake")


def test_table_libraries_get_the_uris_they_always_got(tmp_path: Path) -> None:
    local = location(str(tmp_path / "lake"))
    assert local.delta_table("tables/x") == (str(tmp_path / "lake" / "tables/x"), None)
    assert local.lance_database() == (str(tmp_path / "lake"), None)
    assert local.arrow_path("ledger/a.parquet") == f"{tmp_path}/lake/ledger/a.parquet"
    assert local.arrow_paths(["/abs/f.parquet"]) == ["/abs/f.parquet"]

    class Options(BotoAccess):
        def lance_storage_options(self) -> dict[str, str]:
            return {"aws_region": "r"}

    s3 = location("s3://b/warehouse/", Options(lambda: None))
    assert s3.delta_table("tables/x") == ("s3://b/warehouse/tables/x", {"aws_region": "r"})
    assert s3.lance_database() == ("s3://b/warehouse/", {"aws_region": "r"})  # as configured
    assert s3.arrow_path("ledger/a.parquet") == "b/warehouse/ledger/a.parquet"
    assert s3.arrow_paths(["s3://b/warehouse/t/f.parquet"]) == ["b/warehouse/t/f.parquet"]
    with pytest.raises(ValueError, match="pyarrow cannot address"):
        location("s3://b/a/../c").arrow_path("x")


def test_an_s3_location_without_access_says_so_when_used() -> None:
    bare = location("s3://b/lake")  # parsing alone needs no client: a local lake never makes one
    with pytest.raises(ValueError, match="no S3 client"):
        bare.read_bytes("serving/x.json")


def test_object_store_options_follow_the_client_endpoint() -> None:
    assert object_store_options("http://127.0.0.1:9000", "us-east-1", S3Keys()) == {
        "aws_region": "us-east-1",
        "aws_endpoint": "http://127.0.0.1:9000",
        "allow_http": "true",
    }
    keyed = object_store_options("https://s3.eu-west-1.amazonaws.com", "eu-west-1", S3Keys("k", "s", "t"))
    assert keyed == {
        "aws_region": "eu-west-1",
        "aws_endpoint": "https://s3.eu-west-1.amazonaws.com",
        "aws_access_key_id": "k",
        "aws_secret_access_key": "s",
        "aws_session_token": "t",
    }
    assert "aws_access_key_id" not in object_store_options("https://e", "r", S3Keys("k", None))
    fs = arrow_s3_filesystem("http://127.0.0.1:9000", "us-east-1", S3Keys("k", "s"))
    assert fs.region == "us-east-1"


def test_create_if_absent_wins_once_on_both_kinds(tmp_path: Path, on_s3: S3Location) -> None:
    for where in (location(str(tmp_path)), on_s3):
        assert where.create_if_absent("serving/f/00000001.json", b"{}")
        assert not where.create_if_absent("serving/f/00000001.json", b'{"other": 1}')
        assert where.read_bytes("serving/f/00000001.json") == b"{}"
        assert where.create_if_absent("serving/f/00000002.json", b"2")
        assert where.create_if_absent("serving/f/deeper/00000003.json", b"3")
        assert where.list_names("serving/f", suffix=".json") == ["00000001.json", "00000002.json"]
        assert where.list_names("serving/none", suffix=".json") == []
    assert not list((tmp_path / "serving" / "f").glob(".*")), "no temporary file is left behind"


def test_whole_writes_read_back_through_the_filesystem(tmp_path: Path, on_s3: S3Location) -> None:
    table = pa.table({"a": [1, 2]})
    for where in (location(str(tmp_path)), on_s3):
        where.write_whole("ledger/x.parquet", lambda path, fs: pq.write_table(table, path, filesystem=fs))
        path = where.arrow_path("ledger/x.parquet")
        assert pq.read_table(path, filesystem=where.filesystem()).equals(table)
        assert pq.read_table("ledger/x.parquet", filesystem=where.rooted_filesystem()).equals(table)
    assert sorted(os.listdir(tmp_path / "ledger")) == ["x.parquet"]


def test_only_stale_local_temporaries_are_swept(tmp_path: Path, on_s3: S3Location) -> None:
    folder = tmp_path / "ledger" / "deep"
    folder.mkdir(parents=True)
    stale, fresh, other = (
        folder / f"a.parquet.{'0' * 32}.tmp",
        folder / f"b.parquet.{'1' * 32}.tmp",
        folder / "c",
    )
    for path in (stale, fresh, other):
        path.write_bytes(b"")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    here = location(str(tmp_path))
    assert here.remove_stale_temporaries("ledger", TEMPORARY, 3600, recursive=False) == []
    assert here.remove_stale_temporaries("ledger", TEMPORARY, 3600, recursive=True) == [
        f"ledger/deep/a.parquet.{'0' * 32}.tmp"
    ]
    assert sorted(p.name for p in folder.iterdir()) == sorted([fresh.name, other.name])
    assert on_s3.remove_stale_temporaries("", TEMPORARY, 0, recursive=True) == []


def test_writer_locks_live_where_they_always_did(tmp_path: Path, on_s3: S3Location) -> None:
    local = table_writer_lock(location(str(tmp_path / "index")), "segments_x", "run a", 60)
    assert (
        isinstance(local, LocalWriterLock) and local.path == tmp_path / "index" / "_locks" / "segments_x.lock"
    )
    lease: Any = table_writer_lock(on_s3, "segments_x", "run a", 60)
    assert isinstance(lease, S3WriterLease)
    assert (lease.bucket, lease.key) == ("lake", f"{on_s3.prefix.key}/_locks/segments_x.lease")
    lease.acquire(1)
    try:
        assert on_s3.list_names("_locks") == ["segments_x.lease"]
    finally:
        lease.release()
    assert on_s3.list_names("_locks") == []


def test_media_links_presign_s3_objects_only(emulator: S3Emulator) -> None:
    made: list[Any] = []

    def client() -> Any:
        made.append(emulator.client())
        return made[-1]

    assert media_link(client, "https://example.com/v.mp4", 60) == "https://example.com/v.mp4"
    assert media_link(client, "/local/v.mp4", 60) == "/local/v.mp4"
    assert made == [], "no client is made for a URI that needs none"
    link = media_link(client, "s3://lake/videos/a b.mp4", 60)
    assert link.startswith(f"{emulator.endpoint}/lake/videos/a%20b.mp4?") and "Expires=" in link
