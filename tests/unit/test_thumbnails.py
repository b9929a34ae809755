"""Poster frames: the pure function on generated media (the exact frame of each start, scaled, as JPEG),
and the ingest that writes them beside the table once per object version, never failing for one."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pytest

from assets_defs.inventory.media_inventory import INVENTORY_SCHEMA
from assets_defs.marengo.embeddings import IngestConfig, build_ingest, materialize_result
from emulators.sample_media import IMAGE_SCENES, PALETTE, VIDEO_SCENES, make_audio, make_image, make_video
from resources.media.poster_frames import PosterFrameError, poster_frames
from resources.media.thumbnails import (
    ThumbnailStore,
    make_thumbnails,
    pick_thumbnail,
    s3_media_opener,
    thumbnail_name,
    thumbnail_path,
    version_marker,
)
from resources.providers.marengo_models import MARENGO_3_0
from resources.providers.marengo_resource import MarengoProviders
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from resources.tables.embedding_table import EmbeddingTable
from resources.tables.inventory_table import InventoryTable
from resources.tables.segment_schema import media_id
from tests.unit.test_ingest_outcomes import ScriptedProvider, ingest, job_row, submit

SCENES = VIDEO_SCENES["videos/shapes_a.mp4"]  # blue 0-4 s, black 4-9 s, white 9-14 s backgrounds


def picture(jpeg: bytes) -> np.ndarray:
    assert jpeg.startswith(b"\xff\xd8"), "a JPEG"
    with av.open(io.BytesIO(jpeg)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def background(jpeg: bytes) -> str:
    corner = picture(jpeg)[2, 2].astype(int)
    return min(PALETTE, key=lambda name: int(np.abs(corner - np.array(PALETTE[name])).sum()))


def test_each_start_gets_the_frame_shown_at_that_second_scaled_to_160_px() -> None:
    video = make_video(SCENES)
    frames = poster_frames(video, [9.0, 0.0, 3.9, 4.0, 8.96, 40.0], "video")
    assert set(frames) == {0.0, 3.9, 4.0, 8.96, 9.0, 40.0}
    assert {start: background(jpeg) for start, jpeg in frames.items()} == {
        0.0: "blue",
        3.9: "blue",
        4.0: "black",  # the first frame of the second scene, not the keyframe before it
        8.96: "black",
        9.0: "white",
        40.0: "white",  # past the end: the last frame
    }
    assert all(picture(jpeg).shape == (120, 160, 3) for jpeg in frames.values())
    assert all(len(jpeg) < 10_000 for jpeg in frames.values()), "small"
    with open_file(video) as file:  # a seekable file (what S3 ranged reads give) works the same
        assert background(poster_frames(file, [5.0], "video")[5.0]) == "black"


def open_file(data: bytes) -> io.BufferedReader:
    return io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]


def test_an_image_is_its_own_poster_and_audio_has_none() -> None:
    image = make_image(IMAGE_SCENES["images/purple_circle.jpg"], "jpeg")
    frames = poster_frames(image, [None], "image")
    assert list(frames) == [None] and picture(frames[None]).shape == (160, 160, 3)
    assert background(frames[None]) == "white"
    assert poster_frames(make_audio(220.0, 2.0, "wav"), [0.0, 1.0], "audio") == {}


def test_media_that_cannot_be_decoded_is_one_clear_error() -> None:
    with pytest.raises(PosterFrameError, match="cannot decode video: Invalid data"):
        poster_frames(b"not a video at all" * 64, [0.0], "video")
    with pytest.raises(PosterFrameError, match="no video stream"):
        poster_frames(make_audio(220.0, 1.0, "wav"), [0.0], "video")


def test_a_thumbnail_path_is_only_ever_one_this_module_makes() -> None:
    media = media_id("s3://m/a.mp4")
    assert thumbnail_path("marengo-3.0", media, "4000.jpg") == f"thumbnails/marengo-3.0/{media}/4000.jpg"
    assert thumbnail_name(4.0) == "4000.jpg" and thumbnail_name(None) == "whole.jpg"
    assert thumbnail_name(0.0004) == "0.jpg"
    for model, media_part, name in [
        ("../tables", media, "4000.jpg"),
        ("marengo-3.0", "../../tables", "4000.jpg"),
        ("marengo-3.0", media, "../x.jpg"),
        ("marengo-3.0", media, version_marker("e1")),
    ]:
        assert thumbnail_path(model, media_part, name) is None


def test_a_hit_shows_its_own_segments_poster_else_the_one_before_it() -> None:
    names = {"0.jpg", "4000.jpg", "9000.jpg"}
    assert pick_thumbnail(names, 4.0) == "4000.jpg"
    assert pick_thumbnail(names, 6.5) == "4000.jpg", "a description's span inside a segment"
    assert pick_thumbnail(names, None) == "0.jpg"
    assert pick_thumbnail({"whole.jpg"}, 3.0) == "whole.jpg" and pick_thumbnail({"whole.jpg"}, None)
    assert pick_thumbnail({"4000.jpg"}, 1.0) is None and pick_thumbnail(set(), 1.0) is None


@pytest.fixture
def media_lake(tmp_path: Path) -> tuple[Lake, str, str]:
    """A lake whose inventory holds a good video and one whose bytes are not a video (local files, read
    as the ingest reads s3:// objects)."""
    good, bad = tmp_path / "media" / "shapes.mp4", tmp_path / "media" / "broken.mp4"
    good.parent.mkdir()
    good.write_bytes(make_video(SCENES))
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated" * 8)
    lake = Lake(root=str(tmp_path / "lake"), storage=S3Storage(region_name="us-east-1"))
    rows = [
        {"media_uri": str(p), "etag": "e1", "modality": "video", "status": "ok", "size_bytes": 10}
        | {"duration_sec": 9.0}
        for p in (good, bad)
    ]
    InventoryTable(lake).replace_all(pa.Table.from_pylist(rows, schema=INVENTORY_SCHEMA))
    return lake, str(good), str(bad)


def test_the_ingest_makes_each_committed_objects_posters_once(
    media_lake: tuple[Lake, str, str],
) -> None:
    lake, good, _ = media_lake
    submit(lake, good)
    first = ingest(ScriptedProvider(), lake).metadata or {}
    assert (first["objects_embedded"], first["thumbnails_made"], first["thumbnail_failures"]) == (1, 1, 0)
    store = ThumbnailStore(lake.location)
    jpeg = store.read(MARENGO_3_0.key, media_id(good), "0.jpg")
    assert jpeg is not None and background(jpeg) == "blue", "the frame at the segment's start (0 s)"
    assert store.names(MARENGO_3_0.key, media_id(good)) == {"0.jpg"}

    again = ingest(ScriptedProvider(), lake).metadata or {}
    assert (again["invocations_finished"], again["thumbnails_made"]) == (0, 0), "nothing new committed"

    # The same rows committed again (a run killed after its commit, before its outcomes): not redone.
    table = EmbeddingTable(lake, MARENGO_3_0).read([media_id(good)])
    counts = make_thumbnails(lake.location, table, MARENGO_3_0.key, s3_media_opener(lambda: None))
    assert (counts.made, counts.already_there, counts.problems) == (0, 1, ())
    # A new version of the object (another ETag) gets its posters again.
    changed = table.set_column(table.schema.get_field_index("etag"), "etag", pa.array(["e2"] * len(table)))
    counts = make_thumbnails(lake.location, changed, MARENGO_3_0.key, s3_media_opener(lambda: None))
    assert (counts.made, counts.objects, counts.already_there) == (1, 1, 0)


def test_the_posters_of_an_object_that_left_the_table_go(media_lake: tuple[Lake, str, str]) -> None:
    lake, good, _ = media_lake
    submit(lake, good)
    ingest(ScriptedProvider(), lake)
    store = ThumbnailStore(lake.location)
    assert store.names(MARENGO_3_0.key, media_id(good)) == {"0.jpg"}
    gone = media_id("s3://m/never-had-posters.mp4")
    assert store.remove(MARENGO_3_0.key, [media_id(good), gone, "../../tables"]) == []
    assert store.names(MARENGO_3_0.key, media_id(good)) == set()
    assert (Path(lake.root) / "tables").is_dir(), "nothing outside the object's folder"


def test_a_video_that_cannot_be_decoded_is_logged_and_the_ingest_still_commits(
    media_lake: tuple[Lake, str, str],
) -> None:
    lake, good, bad = media_lake
    submit(lake, good, bad)
    settings = IngestConfig()
    providers = MarengoProviders(bedrock=ScriptedProvider())
    report = build_ingest(settings, lake, providers, MARENGO_3_0, "ingest-run").run()
    [line] = report.thumbnails.problems
    assert line.startswith(f"{bad}: no thumbnail (PosterFrameError: cannot decode video") and "\n" not in line
    result = materialize_result(report, settings).metadata or {}
    assert (result["objects_embedded"], result["thumbnails_made"], result["thumbnail_failures"]) == (2, 1, 1)
    assert EmbeddingTable(lake, MARENGO_3_0).read([media_id(bad)]).num_rows == 1, "its rows are committed"
    assert job_row(lake, bad)["status"] == "completed"
    assert ThumbnailStore(lake.location).read(MARENGO_3_0.key, media_id(bad), "0.jpg") is None


class BytesBucket:
    """The boto3 S3 calls the media opener makes, over one object in memory, counting the GETs."""

    def __init__(self, body: bytes, etag: str) -> None:
        self.body, self.etag, self.gets = body, f'"{etag}"', 0

    def head_object(self, Bucket: str, Key: str, IfMatch: str) -> dict[str, object]:
        assert IfMatch == self.etag
        return {"ContentLength": len(self.body), "ETag": self.etag}

    def get_object(self, Bucket: str, Key: str, IfMatch: str, Range: str = "") -> dict[str, object]:
        assert IfMatch == self.etag, "only the version that was embedded"
        self.gets += 1
        first, _, last = Range.removeprefix("bytes=").partition("-")
        body = self.body[int(first) : int(last) + 1] if Range else self.body
        return {"ContentLength": len(self.body), "Body": io.BytesIO(body)}


def test_media_is_read_in_one_get_and_a_large_one_in_ranges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = make_video(SCENES)
    rows = pa.Table.from_pylist(
        [{"media_uri": "s3://m/v.mp4", "etag": "e1", "modality": "video", "start_sec": s} for s in (0.0, 9.0)]
    )
    bucket = BytesBucket(video, "e1")
    lake = Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1")).location
    assert make_thumbnails(lake, rows, "marengo-3.0", s3_media_opener(lambda: bucket)).made == 2
    assert bucket.gets == 1

    monkeypatch.setattr("resources.media.thumbnails.WHOLE_GET_BYTES", 1024)
    monkeypatch.setattr("resources.media.thumbnails.RANGE_BYTES", 16 * 1024)
    large = BytesBucket(video, "e2")
    changed = rows.set_column(1, "etag", pa.array(["e2", "e2"]))
    assert make_thumbnails(lake, changed, "marengo-3.0", s3_media_opener(lambda: large)).made == 2
    assert 1 < large.gets <= len(video) // (16 * 1024) + 3, "ranged reads, none of them twice over"
    poster = ThumbnailStore(lake).read("marengo-3.0", media_id("s3://m/v.mp4"), "9000.jpg")
    assert poster is not None and background(poster) == "white"
