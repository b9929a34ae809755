"""`mediaembed search --local`: search what `make demo` built, after its emulators are gone.

The demo's index is a directory under the work folder, so only the query embedding needs a provider.
This starts the Bedrock runtime and TwelveLabs API emulators alone for as long as the block runs (a text
query never reads S3, so no S3 emulator unless asked for; the local searcher, harness/local_searcher.py,
holds one such block for many commands) and points the standard AWS and TwelveLabs variables at them, so
a query is embedded by whichever provider MEDIAEMBED_PROVIDERS names; the search itself is the production
code path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from emulators.bedrock_runtime import BedrockRuntimeEmulator
from emulators.twelvelabs_api import TwelveLabsEmulator
from harness.local_env import local_settings
from mediaembed.search import SearchError

REGION = "us-east-1"
# The emulator's S3 client is only used for media and async results; a text query never touches it.
NO_S3 = "http://127.0.0.1:9"


@contextmanager
def local_search_env(workdir: Path, with_media: bool = False) -> Iterator[dict[str, str]]:
    """Settings of the local work folder plus a running Bedrock emulator, applied to this process for the
    duration of the block (and restored after it).

    `with_media` (for `mediaembed serve --local`, and the local searcher's first query by an s3:// image or
    clip) also starts an S3 emulator holding the sample media the demo indexed (generated again,
    deterministically), so the page's presigned links open the media and an s3:// query finds it."""
    settings = local_settings(workdir)
    index = Path(settings["MEDIAEMBED_INDEX_URI"])
    if not index.is_dir():
        raise SearchError(
            f"no local index at {index}: run `make demo` first, or pass --workdir to the folder it used"
        )
    s3 = None
    if with_media:  # moto and the media generator only for a query or page that reads S3
        from emulators.s3 import S3Emulator
        from emulators.sample_media import upload_sample_media

        s3 = S3Emulator(region=REGION).start()
        client = s3.client()
        client.create_bucket(Bucket="media")
        upload_sample_media(client, "media")
    emulator = BedrockRuntimeEmulator(s3.endpoint if s3 else NO_S3, region=REGION).start()
    twelvelabs = TwelveLabsEmulator().start()
    env = {
        "TWELVELABS_BASE_URL": twelvelabs.base_url,
        "TWELVELABS_API_KEY": twelvelabs.api_key,
        "MEDIAEMBED_INDEX_URI": str(index),
        "MEDIAEMBED_LAKE_URI": settings["MEDIAEMBED_LAKE_URI"],
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": emulator.endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        **({"AWS_ENDPOINT_URL_S3": s3.endpoint} if s3 is not None else {}),
    }
    saved = {name: os.environ.get(name) for name in (*env, "AWS_SESSION_TOKEN", "AWS_PROFILE")}
    try:
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):  # real credentials never reach the emulator
            os.environ.pop(name, None)
        os.environ.update(env)
        yield env
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        emulator.stop()
        twelvelabs.stop()
        if s3 is not None:
            s3.stop()
