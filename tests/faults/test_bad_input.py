"""Bad input on the emulators: every kind of corrupt output, bad media beside hostile keys, a partial listing.

A bad object ends with its reason and stops nothing else; the invariants hold for the world as a whole and
for each bad object on its own (one summary row per kind).
"""

import json

import pytest

from assets_defs.inventory.media_inventory import read_inventory
from emulators.sample_media import SampleObject, Scene, frames_zeroed, make_image
from resources.providers.marengo_models import MARENGO_3_0, marengo_model
from tests.faults.conftest import MakeWorld
from tests.faults.invariants import MAX_ATTEMPTS
from tests.faults.world import extra_images
from tests.s3_key_matrix import hostile_keys

SAMPLES, USABLE_SAMPLES = 9, 7  # a corrupt .mp4 and a text file are skipped with a reason
VECTOR = [0.1] * marengo_model(MARENGO_3_0.key).dimension


def item(**fields: object) -> dict[str, object]:
    return {"embedding": VECTOR, "embeddingOption": "visual", "startSec": 0.0, "endSec": 1.0, **fields}


# Outputs that parse (or nearly) but are not Marengo's, and an output gone after Completed.
CORRUPT_OUTPUTS: dict[str, bytes | None] = {
    "invalid UTF-8": b'{"data": []}\xff\xfe',
    "non-numeric startSec": json.dumps({"data": [item(startSec="zero")]}).encode(),
    "non-string embeddingOption": json.dumps({"data": [item(embeddingOption=7)]}).encode(),
    "non-string embeddingScope": json.dumps({"data": [item(embeddingScope={"clip": True})]}).encode(),
    "null items": b'{"data": [null, null]}',
    "output gone (NoSuchKey)": None,
    # Parseable, of the documented types, and wrong: each was committed and recorded completed before.
    "a segment repeated 3 times": json.dumps({"data": [item(), item(), item()]}).encode(),
    "an all-zero vector": json.dumps({"data": [item(embedding=[0.0] * len(VECTOR))]}).encode(),
    "a span of 0 to 1e9 s": json.dumps({"data": [item(endSec=1e9)]}).encode(),
    "data as an object": json.dumps({"data": item()}).encode(),
}
# Kinds whose fault is about the media's duration: given to a video, whose duration the probe knows.
NEEDS_DURATION = {"a span of 0 to 1e9 s"}


def test_each_corrupt_output_kind_fails_its_job_alone_and_the_retry_embeds_it(
    make_world: MakeWorld, samples: list[SampleObject]
) -> None:
    world = make_world()
    world.put_samples(samples)
    world.put(extra_images(3))
    usable = USABLE_SAMPLES + 3
    assert world.submit()["submitted"] == usable
    world.bedrock.wait_until_idle()
    pending = world.ledger().in_progress(MARENGO_3_0.key)
    arns = dict(zip(pending["media_uri"], pending["invocation_id"], strict=True))
    videos = sorted(pending.loc[pending["modality"] == "video", "media_uri"])
    victims = dict(zip(sorted(NEEDS_DURATION), videos, strict=False))
    others = [uri for uri in sorted(arns) if uri not in victims.values()]
    victims |= dict(zip([k for k in CORRUPT_OUTPUTS if k not in NEEDS_DURATION], others, strict=False))
    assert len(victims) == len(CORRUPT_OUTPUTS) == usable
    for kind, uri in victims.items():
        body = CORRUPT_OUTPUTS[kind]
        key = world.bedrock.replace_output(arns[uri], body or b"")
        if body is None:
            world.s3.client().delete_object(Bucket=world.output_bucket, Key=key)

    world.converge()
    scopes: dict[str, set[str] | None] = {f"corrupt output: {k}": {u} for k, u in victims.items()}
    counts = world.check_each({**scopes, "corrupt outputs: the whole world": None})
    for kind in victims:
        row = counts[f"corrupt output: {kind}"]
        assert (row.seen, row.embedded, row.jobs_created) == (1, 1, 2), f"{kind}: failed once, retried once"
    whole = counts["corrupt outputs: the whole world"]
    assert (whole.seen, whole.embedded, whole.skipped) == (SAMPLES + 3, usable, 2)
    assert whole.jobs_created == usable + len(victims)
    jobs = world.jobs().set_index("client_token")
    failed = jobs[jobs["status"] == "failed"]
    assert sorted(failed["media_uri"]) == sorted(victims.values())
    assert failed["reason"].str.startswith("unusable output: ").all()
    assert world.errors == []


UNDECODABLE_KEY = (
    "undecodable/zeroed-frames.mp4"  # passes the pipeline's header probe; Bedrock cannot decode it
)


@pytest.mark.parametrize("undecodable_media", ["refuse", "fail"], ids=["refused-at-submit", "failed-later"])
def test_bad_media_beside_hostile_keys_ends_each_object_with_a_reason(
    make_world: MakeWorld, samples: list[SampleObject], undecodable_media: str
) -> None:
    """Bad media the pipeline's probe catches is never sent. An object whose header is fine but whose frames
    are not reaches Bedrock, which refuses it at submit (it is skipped with Bedrock's reason), or accepts the
    job and fails it (it ends failed with the reason after the one retry with a new token)."""
    world = make_world(undecodable_media=undecodable_media)
    world.put_samples(samples)  # includes a corrupt .mp4 and a text file
    picture = make_image(Scene(0.0, 0.0, "circle", "red", "white", 0.0), "png")
    keys = hostile_keys(".png")
    world.put((key, picture) for key in keys.values())
    misnamed = [
        ("empty/zero-bytes.png", b""),
        ("misnamed/text-as-video.mp4", b"not a video at all"),
        ("misnamed/picture-as-video.mp4", picture),  # a PNG: content decides, it is no video
    ]
    world.put(misnamed)
    video = next(s.data for s in samples if s.key == "videos/shapes_a.mp4")
    [undecodable] = world.put([(UNDECODABLE_KEY, frames_zeroed(video))])

    world.converge()
    label = {"refuse": "refused at submit", "fail": "failed when run"}[undecodable_media]
    counts, bad = world.check_each(
        {
            f"bad media (6) beside 15 hostile keys, undecodable {label}": None,
            f"undecodable media, {label}": {undecodable},
        }
    ).values()
    seen, usable = SAMPLES + len(keys) + len(misnamed) + 1, USABLE_SAMPLES + len(keys)
    refused = undecodable_media == "refuse"
    assert (counts.seen, counts.embedded) == (seen, usable)
    skipped = 2 + len(misnamed)  # the samples' corrupt .mp4 and text file, and the misnamed ones
    assert (counts.failed, counts.skipped) == ((0, skipped + 1) if refused else (1, skipped))
    inventory = read_inventory(world.lake).set_index("media_uri")
    assert inventory.loc[world.uri("misnamed/picture-as-video.mp4"), "reason"].startswith(
        "content is a PNG image, but its name (.mp4) says video"
    )
    # Bad media the probe catches is never sent; the undecodable video costs its two attempts, or none.
    assert counts.jobs_created == usable + (0 if refused else MAX_ATTEMPTS)
    jobs = world.jobs()
    mine = jobs[jobs["media_uri"] == undecodable].sort_values("attempt")
    if refused:
        assert (bad.skipped, bad.jobs_created) == (1, 0)
        assert list(mine["status"]) == ["rejected"]
    else:
        assert (bad.failed, bad.jobs_created) == (1, MAX_ATTEMPTS)
        assert list(mine["status"]) == ["failed"] * MAX_ATTEMPTS
        assert list(mine["attempt"]) == list(range(1, MAX_ATTEMPTS + 1))
        assert mine["client_token"].nunique() == MAX_ATTEMPTS, "the retry has a new token"
        assert {job.status for job in world.provider_jobs() if job.request.media.uri == undecodable} == {
            "Failed"
        }
    assert mine["reason"].str.contains(f"media at {undecodable}", regex=False).all(), list(mine["reason"])
    embedded = set(jobs.loc[jobs["status"] == "completed", "media_uri"])
    assert {world.uri(key) for key in keys.values()} <= embedded, "every hostile key embedded as it is"
    assert world.errors == []


@pytest.mark.parametrize("confirm", [False, True], ids=["held", "confirmed"])
def test_a_partial_listing_never_shrinks_the_index_until_confirmed(
    make_world: MakeWorld, samples: list[SampleObject], monkeypatch: pytest.MonkeyPatch, confirm: bool
) -> None:
    world = make_world()
    world.put_samples(samples)
    world.converge()
    before = world.check("partial listing: before, all 9 listed")
    assert (before.seen, before.embedded) == (SAMPLES, USABLE_SAMPLES)

    prefix = world.uri("images/purple")  # a wrong prefix: 1 of the 7 usable objects is listed
    monkeypatch.setenv("MEDIAEMBED_MEDIA_URI", prefix)
    world.env["MEDIAEMBED_MEDIA_URI"] = prefix
    assert world.submit()["submitted"] == 0
    world.ingest(confirm_removals=confirm)
    listed = {world.uri("images/purple_circle.jpg")}
    embedded = {world.uri(s.key) for s in samples if s.modality is not None}
    held = set() if confirm else embedded - listed
    label = "confirmed, 6 removed" if confirm else "6 held until confirmed"
    after = world.check(f"partial listing: 1 of 7 listed, {label}", held=held)
    assert (after.seen, after.embedded) == (1, 1)
    if confirm:
        assert after.index_rows < before.index_rows
    else:
        assert after.index_rows == before.index_rows, "the index kept every unlisted object"
    assert world.errors == []
