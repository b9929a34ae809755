"""The seeds' own code samples, and the calls their prose describes, run against the emulators.

Seeds 001, 003 and 004 carry code samples: each is read from the seed text at test time (the copies under
`seeds/` are the user's documents, verbatim) and run as written, with only the endpoint (the environment
variables the SDK and boto3 read), the key and the `<...>` placeholders filled in; the placeholders get media
the tests generate (`emulators.sample_media`), uploaded to the local S3 and passed by presigned URL or S3 URI.
The documentation pages render code with its line numbers glued to each line and its indentation flattened
to one space, so each sample names the depth of the lines inside its blocks to give Python back its
structure; nothing else of the code changes. Seeds 000 (Bedrock Marengo) and 002 (legacy
Marengo-retrieval-2.7) describe their calls in prose only: each described call is made as the prose says.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError
from twelvelabs import TwelveLabs

from emulators.bedrock_runtime import BedrockRuntimeEmulator
from emulators.bedrock_runtime.models import ACCOUNT_ID
from emulators.s3 import S3Emulator
from emulators.sample_media import SampleObject
from emulators.twelvelabs_api import TwelveLabsEmulator
from tests.emulators.conftest import LAKE_BUCKET, MEDIA_BUCKET, REGION, refusal, url_of

SEEDS = Path(__file__).parent / "seeds"
IMAGE = "images/green_triangle.png"
JPEG = "images/purple_circle.jpg"
AUDIO = "audio/hum_220hz.wav"
VIDEO = "videos/shapes_a.mp4"
PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*>")


def seed_text(number: str) -> str:
    [path] = SEEDS.glob(f"{number}_*.txt")
    return path.read_text(encoding="utf-8")


def code_samples(text: str) -> list[list[str]]:
    """Every code sample of a seed: a run of lines numbered 1, 2, 3, ... with the number glued to the code
    (a blank code line is its number alone), returned without the numbers."""
    samples: list[list[str]] = []
    run: list[str] = []
    for line in [*text.splitlines(), ""]:
        numbered = re.fullmatch(r"(\d+)(.*)", line)
        if numbered and int(numbered.group(1)) == len(run) + 1 and (run or numbered.group(2)):
            run.append(numbered.group(2))
            continue
        if len(run) >= 3:  # a step list ("1", "2" alone on their lines) is no code
            samples.append(run)
        run = [numbered.group(2)] if numbered and numbered.group(1) == "1" and numbered.group(2) else []
    return samples


def sample_program(
    number: str, index: int, block_depth: Mapping[int, int], placeholders: Mapping[str, str]
) -> str:
    """Seed `number`'s code sample `index` as runnable Python: the lines inside blocks get their depth back
    (`block_depth`: line number -> depth, as the page numbers lines), and each placeholder its value."""
    samples = code_samples(seed_text(number))
    lines = samples[index]
    out = []
    for n, line in enumerate(lines, 1):
        depth = block_depth.get(n, 0) if line.strip() else 0
        assert not depth or line.startswith(" "), f"seed {number} line {n} is no longer indented: {line!r}"
        out.append("    " * depth + line.strip() if depth else line)
    program = "\n".join(out) + "\n"
    for placeholder, value in placeholders.items():
        assert placeholder in program, f"seed {number} sample {index + 1} no longer has {placeholder}"
        program = program.replace(placeholder, value)
    left = [ln for ln in program.splitlines() if PLACEHOLDER.search(ln.split("#", 1)[0])]
    assert not left, f"unfilled placeholders in code (not comments): {left}"
    return program


def run(program: str, capsys: pytest.CaptureFixture[str], name: str) -> tuple[dict[str, Any], str]:
    """Execute a sample as a script (its own namespace); return what it defined and what it printed."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(program, name, "exec"), namespace)
    return namespace, capsys.readouterr().out


def depths(*spans: tuple[int, int, int]) -> dict[int, int]:
    """(first line, last line, depth) spans, inner spans after outer ones."""
    out: dict[int, int] = {}
    for first, last, depth in spans:
        out.update(dict.fromkeys(range(first, last + 1), depth))
    return out


@pytest.fixture()
def api(s3: S3Emulator, samples: dict[str, SampleObject]) -> Iterator[TwelveLabsEmulator]:
    """The TwelveLabs emulator a seed's code reaches through TWELVELABS_BASE_URL; tasks finish as they are
    created, so seed 004's polling loop finds its task ready at the first retrieve and never sleeps."""
    emulator = TwelveLabsEmulator(complete_on_create=True).start()
    yield emulator
    emulator.stop()


@pytest.fixture()
def sdk(api: TwelveLabsEmulator, monkeypatch: pytest.MonkeyPatch) -> TwelveLabs:
    """The endpoint, as the samples' clients find it (TWELVELABS_BASE_URL); a client to check them with."""
    monkeypatch.setenv("TWELVELABS_BASE_URL", api.base_url)
    return TwelveLabs(api_key=api.api_key)


@pytest.fixture()
def aws_env(s3: S3Emulator, bedrock: BedrockRuntimeEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """What an unmodified boto3 client reads to reach the emulators (the samples pass only a region)."""
    for name, value in {
        "AWS_ENDPOINT_URL_S3": s3.endpoint,
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": bedrock.endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)


def test_the_seeds_hold_the_samples_these_tests_run() -> None:
    """Seeds 001, 003 and 004 hold 1, 1 and 2 code samples; 000 and 002 none (their calls are prose)."""
    found = {n: [len(s) for s in code_samples(seed_text(n))] for n in ("000", "001", "002", "003", "004")}
    assert found == {"000": [], "001": [40], "002": [], "003": [31], "004": [69, 53]}


# --- seed 001: one combined embedding from an image asset and text -----------------------------------------


def test_seed_001_sample_text_and_image_embedding_from_an_asset(
    sdk: TwelveLabs, api: TwelveLabsEmulator, s3_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    image_url = url_of(s3_client, IMAGE)
    fill = {"<YOUR_API_KEY>": api.api_key, "<YOUR_IMAGE_URL>": image_url, "<YOUR_TEXT>": "a green triangle"}
    names, out = run(sample_program("001", 0, depths((39, 40, 1)), fill), capsys, "seed 001 sample 1")
    asset, response = names["asset"], names["response"]
    assert f"Created asset: id={asset.id}\n" in out
    assert "Number of embeddings: 1\nEmbedding dimensions: 512\nFirst 10 values: [" in out
    [item] = response.data
    assert item.embedding_option == "fused", "seed 001: each embedding object names its embedding_option"
    by_url = sdk.embed.v_2.create(
        input_type="multi_input",
        model_name="marengo3.0",
        multi_input={
            "media_sources": [{"media_type": "image", "url": image_url}],
            "input_text": "a green triangle",
        },
    )
    assert np.allclose(item.embedding, by_url.data[0].embedding), "the asset embeds as the image it holds"


# --- seed 004: audio embeddings, as a task and synchronously ------------------------------------------------


def audio_summary(out: str, count: int) -> list[str]:
    """The `[i/n] OPTION | SCOPE` lines seed 004's samples print, checked for the shape they print."""
    assert f"EMBEDDINGS SUMMARY: {count} total embeddings" in out
    heads = re.findall(r"^\[(\d+)/(\d+)\] (\w+) \| (\w+)$", out, flags=re.MULTILINE)
    assert [int(i) for i, _, _, _ in heads] == list(range(1, count + 1))
    assert out.count("├─ Dimensions: 512\n") == count
    return sorted({f"{option} | {scope}" for _, _, option, scope in heads})


def test_seed_004_sample_1_audio_embed_task_polled_until_ready(
    sdk: TwelveLabs, api: TwelveLabsEmulator, s3_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    fill = {"<YOUR_API_KEY>": api.api_key, "<YOUR_AUDIO_URL>": url_of(s3_client, AUDIO)}
    blocks = depths((46, 56, 1), (49, 50, 2), (52, 53, 2), (55, 56, 2), (65, 69, 1))
    names, out = run(sample_program("004", 0, blocks, fill), capsys, "seed 004 sample 1")
    task = names["task"]
    assert f"Task ID: {task.id}\nTask completed\n" in out
    assert "Task still processing" not in out, "the first retrieve found the task ready: no sleep"
    assert task.status == "ready" and api.created_tasks == 1
    # The documented defaults (audio and transcription; clip and asset): a hum has no speech to transcribe.
    assert audio_summary(out, len(task.data)) == ["AUDIO | ASSET", "AUDIO | CLIP"]
    assert "├─ Time range: 0.0s - 12.0s" in out, "the asset-scope vector spans the 12 s file"


def test_seed_004_sample_2_short_audio_embedded_synchronously(
    sdk: TwelveLabs, api: TwelveLabsEmulator, s3_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    fill = {"<YOUR_API_KEY>": api.api_key, "<YOUR_AUDIO_URL>": url_of(s3_client, AUDIO)}
    names, out = run(sample_program("004", 1, depths((49, 53, 1)), fill), capsys, "seed 004 sample 2")
    response = names["response"]
    assert f"Created asset: id={names['asset'].id}\n" in out
    assert audio_summary(out, len(response.data)) == ["AUDIO | ASSET", "AUDIO | CLIP"]
    assert api.created_tasks == 0
    by_url = sdk.embed.v_2.create(
        input_type="audio", model_name="marengo3.0", audio={"media_source": {"url": url_of(s3_client, AUDIO)}}
    )
    assert [np.round(d.embedding, 6).tolist() for d in response.data] == [
        np.round(d.embedding, 6).tolist() for d in by_url.data
    ], "the asset embeds as the file it was made from"


# --- seed 003: Pegasus 1.2 on Bedrock ----------------------------------------------------------------------


def test_seed_003_sample_pegasus_invoke_model_on_an_s3_video(
    aws_env: None, bedrock: BedrockRuntimeEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    fill = {
        "<YOUR_REGION>": REGION,
        "<INFERENCE_PROFILE_ID>": "us.twelvelabs.pegasus-1-2-v1:0",
        "<YOUR_PROMPT>": "Summarize this video",
        "<YOUR_ACCOUNT_ID>": ACCOUNT_ID,
        "<YOUR_BUCKET_NAME>": MEDIA_BUCKET,
        "<YOUR_VIDEO_FILE>": VIDEO,
    }
    names, out = run(sample_program("003", 0, {}, fill), capsys, "seed 003 sample 1")
    answer = names["response_body"]
    assert set(answer) == {"message", "finishReason"} and answer["finishReason"] == "stop"
    assert answer["message"].startswith("A 14-second video in 3 scenes.")
    assert out == f"{answer}\n"
    [call] = bedrock.pegasus_calls
    assert call.outcome == "stop"


# --- seed 002: legacy Marengo-retrieval-2.7 embeddings (prose) ----------------------------------------------

LEGACY = "Marengo-retrieval-2.7"


def floats(part: Any) -> list[list[float]]:
    assert part is not None and part.segments, "the response holds this type's embedding"
    vectors = [list(s.float_ or []) for s in part.segments]
    assert all(len(v) == 1024 for v in vectors)
    return vectors


def test_seed_002_text_embedding(sdk: TwelveLabs) -> None:
    response = sdk.embed.create(model_name=LEGACY, text="Man with a dog crossing the street")
    assert response.model_name == LEGACY
    assert len(floats(response.text_embedding)) == 1
    assert response.image_embedding is None and response.audio_embedding is None


@pytest.mark.parametrize("truncate", ["start", "end", "none", None])
def test_seed_002_text_over_77_tokens_is_cut_by_text_truncate(sdk: TwelveLabs, truncate: str | None) -> None:
    """start: the platform truncates the start; end (the default): the end; none: an error."""
    words = [f"w{i}" for i in range(90)]
    options: Any = {"max_retries": 0}
    if truncate is not None:  # SDK 1.3.6 has no text_truncate argument: it rides as one more form field
        options["additional_body_parameters"] = {"text_truncate": truncate}

    def embed(text: str, request_options: Any = None) -> Any:
        return sdk.embed.create(model_name=LEGACY, text=text, request_options=request_options)

    if truncate == "none":
        error = refusal(lambda: embed(" ".join(words), options))
        assert error.status_code == 400 and "77-token" in error.body["message"]
        return
    kept = words[-77:] if truncate == "start" else words[:77]
    got = floats(embed(" ".join(words), options).text_embedding)
    assert np.allclose(got, floats(embed(" ".join(kept)).text_embedding))


@pytest.mark.parametrize("how", ["image_url", "image_file"])
def test_seed_002_image_embedding(
    sdk: TwelveLabs, s3_client: Any, samples: dict[str, SampleObject], how: str
) -> None:
    source: Any = url_of(s3_client, JPEG) if how == "image_url" else ("circle.jpg", samples[JPEG].data)
    response = sdk.embed.create(model_name=LEGACY, **{how: source})
    [vector] = floats(response.image_embedding)
    words = floats(sdk.embed.create(model_name=LEGACY, text="purple circle").text_embedding)[0]
    other = floats(sdk.embed.create(model_name=LEGACY, text="green triangle").text_embedding)[0]
    assert float(np.dot(vector, words)) > float(np.dot(vector, other)), "the image is nearer its own words"


@pytest.mark.parametrize("how", ["audio_url", "audio_file"])
def test_seed_002_audio_embedding_from_an_offset(
    sdk: TwelveLabs, s3_client: Any, samples: dict[str, SampleObject], how: str
) -> None:
    source: Any = url_of(s3_client, AUDIO) if how == "audio_url" else ("hum.wav", samples[AUDIO].data)
    whole = sdk.embed.create(model_name=LEGACY, **{how: source}).audio_embedding
    later = sdk.embed.create(model_name=LEGACY, audio_start_offset_sec=4.0, **{how: source}).audio_embedding
    floats(whole), floats(later)
    assert whole is not None and later is not None
    assert whole.segments[0].start_offset_sec == 0.0
    assert later.segments[0].start_offset_sec == 4.0, "the platform skips the first 4 s"
    assert later.segments[-1].end_offset_sec == whole.segments[-1].end_offset_sec == pytest.approx(12.0)


def test_seed_002_multiple_types_of_embeddings_in_a_single_call(sdk: TwelveLabs, s3_client: Any) -> None:
    response = sdk.embed.create(
        model_name=LEGACY,
        text="a green triangle",
        image_url=url_of(s3_client, IMAGE),
        audio_url=url_of(s3_client, AUDIO),
    )
    for part in (response.text_embedding, response.image_embedding, response.audio_embedding):
        floats(part)


# --- seed 000: Marengo on Bedrock, InvokeModel and StartAsyncInvoke (prose) ---------------------------------

MARENGO = {"3.0": "twelvelabs.marengo-embed-3-0-v1:0", "2.7": "twelvelabs.marengo-embed-2-7-v1:0"}
DIMENSION = {"3.0": 512, "2.7": 1024}


def s3_source(key: str) -> dict[str, Any]:
    return {"s3Location": {"uri": f"s3://{MEDIA_BUCKET}/{key}", "bucketOwner": ACCOUNT_ID}}


def model_input(version: str, input_type: str, samples: dict[str, SampleObject]) -> dict[str, Any]:
    """The body seed 000 describes: 3.0 nests each input under its type, 2.7 is flat."""
    key = {"video": VIDEO, "audio": AUDIO, "image": IMAGE, "text_image": IMAGE}.get(input_type)
    source: dict[str, Any] = s3_source(key) if key else {}
    if input_type == "image_base64":
        input_type, source = "image", {"base64String": base64.b64encode(samples[IMAGE].data).decode()}
    if version == "2.7":
        body: dict[str, Any] = {"inputType": input_type}
        return (
            {**body, "inputText": "a green triangle"}
            if input_type == "text"
            else {**body, "mediaSource": source}
        )
    fields: dict[str, Any] = {"mediaSource": source} if source else {}
    if input_type in ("text", "text_image"):
        fields["inputText"] = "a green triangle"
    return {"inputType": input_type, input_type: fields}


@pytest.mark.parametrize(
    ("version", "input_type"),
    [
        *[("3.0", t) for t in ("text", "image", "image_base64", "text_image")],
        *[("2.7", t) for t in ("text", "image", "image_base64")],
    ],
)
def test_seed_000_invoke_model_with_the_inference_profile(
    aws_env: None, samples: dict[str, SampleObject], version: str, input_type: str
) -> None:
    bedrock = boto3.client("bedrock-runtime", region_name=REGION)
    response = bedrock.invoke_model(
        modelId=f"us.{MARENGO[version]}", body=json.dumps(model_input(version, input_type, samples))
    )
    [item] = json.loads(response["body"].read())["data"]
    assert len(item["embedding"]) == DIMENSION[version]


@pytest.mark.parametrize(
    ("version", "input_type"),
    [
        *[("3.0", t) for t in ("video", "audio", "image", "text", "text_image")],
        *[("2.7", t) for t in ("video", "audio", "image", "text")],
    ],
)
def test_seed_000_start_async_invoke_writes_manifest_and_output_per_invocation(
    aws_env: None,
    bedrock: BedrockRuntimeEmulator,
    s3_client: Any,
    samples: dict[str, SampleObject],
    version: str,
    input_type: str,
) -> None:
    client = boto3.client("bedrock-runtime", region_name=REGION)
    prefix = f"seed000/{version}/{input_type}"
    arn = client.start_async_invoke(
        modelId=MARENGO[version],
        modelInput=model_input(version, input_type, samples),
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{LAKE_BUCKET}/{prefix}"}},
    )["invocationArn"]
    bedrock.wait_until_idle()
    assert client.get_async_invoke(invocationArn=arn)["status"] == "Completed"
    listed = s3_client.list_objects_v2(Bucket=LAKE_BUCKET, Prefix=f"{prefix}/")["Contents"]
    invocation = arn.rsplit("/", 1)[-1]
    assert sorted(o["Key"] for o in listed) == [
        f"{prefix}/{invocation}/{f}" for f in ("manifest.json", "output.json")
    ]
    output = json.loads(
        s3_client.get_object(Bucket=LAKE_BUCKET, Key=f"{prefix}/{invocation}/output.json")["Body"].read()
    )
    assert output["data"] and all(len(d["embedding"]) == DIMENSION[version] for d in output["data"])


def test_seed_000_buckets_outside_the_models_region_are_a_validation_exception(
    aws_env: None, s3_client: Any
) -> None:
    bucket = "seed000-eu-west-1"
    if bucket not in {b["Name"] for b in s3_client.list_buckets()["Buckets"]}:
        s3_client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    client = boto3.client("bedrock-runtime", region_name=REGION)
    with pytest.raises(ClientError) as caught:
        client.start_async_invoke(
            modelId=MARENGO["3.0"],
            modelInput={"inputType": "audio", "audio": {"mediaSource": s3_source(AUDIO)}},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{bucket}/out"}},
        )
    assert caught.value.response["Error"]["Code"] == "ValidationException"
