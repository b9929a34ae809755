"""deploy/iam-policy.json, proven on the emulators: the pipeline runs as an IAM user holding only that
policy, every call it makes is one the policy allows, and every statement is needed.

moto enforces IAM on every S3 request once its no-auth count is used up (`INITIAL_NO_AUTH_ACTION_COUNT`,
set here through moto's own `/moto-api/reset-auth` after the set-up: buckets, media, two users, their
keys); it checks the signature and the user's policies, but ignores conditions. The Bedrock emulator's IAM
mode checks the Bedrock actions, and the S3 reads and writes Bedrock makes for the caller, against the
same rendered policy. Its own S3 calls and the test's use a second user that may do anything.

One run (module fixture): the inventory and StartAsyncInvoke, the sensor's tick and the ingest with the
lake (Delta, the ledger) and the index (LanceDB, its writer lease) on S3, Pegasus descriptions, a search,
then an object's S3 event drained from the media queue (SQS, which moto authorizes too) by the media change
sensor and applied by the run it requests, which deletes the message.
Then, per statement, the call it protects is made through the production resource as the pipeline makes
it, once with the whole policy (it succeeds) and once without that statement (AccessDenied).
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest

from emulators.bedrock_runtime import BedrockRuntimeEmulator, IamCheck, Identity
from emulators.iam_policy import Policy, render
from emulators.s3 import S3Emulator
from emulators.sample_media import SampleObject, upload_sample_media
from emulators.stack import MEDIA_EVENT_QUEUE, LocalStack, notify_queue
from emulators.twelvelabs_api import TwelveLabsEmulator
from harness.local_env import local_settings
from harness.runner import SensorDriver, materialization_metadata, media_change_requests, run_job
from pipelines.definitions import pipeline_resources
from resources.pegasus.prompts import DEFAULT_PROMPTS
from resources.providers.embedding_jobs import EmbeddingJob, InvocationStatus
from resources.providers.marengo_models import MARENGO_3_0
from resources.storage.s3_objects import bucket_region
from resources.tables.embedding_table import EmbeddingTable
from resources.tables.submission_ledger import SubmissionLedger
from tests.iam_wire import WireCall, WireRecorder, iam_requests
from tests.pipeline.conftest import USABLE, World, ingest_when_idle, search_json, submit

pytestmark = pytest.mark.slow

POLICY_FILE = Path(__file__).parents[2] / "deploy" / "iam-policy.json"
REGION, ACCOUNT = "us-east-1", "123456789012"  # moto's account, and the Bedrock emulator's
MEDIA, OUTPUTS, LAKE, INDEX = "media", "outputs", "lake", "index"
SETTINGS = {
    "MEDIAEMBED_MEDIA_URI": f"s3://{MEDIA}/incoming/",
    "MEDIAEMBED_ASYNC_OUTPUT_URI": f"s3://{OUTPUTS}/marengo-async",
    "MEDIAEMBED_LAKE_URI": f"s3://{LAKE}/warehouse",
    "MEDIAEMBED_INDEX_URI": f"s3://{INDEX}/lancedb",
    "MEDIAEMBED_BUCKET_OWNER": ACCOUNT,
}
# The template's values for these settings (docs/deployment.md: a prefix is the URI's key and a "/").
VALUES = {
    "Region": REGION,
    "AccountId": ACCOUNT,
    "MediaBucket": MEDIA,
    "MediaPrefix": "incoming/",
    "OutputBucket": OUTPUTS,
    "OutputPrefix": "marengo-async/",
    "LakeBucket": LAKE,
    "LakePrefix": "warehouse/",
    "IndexBucket": INDEX,
    "IndexPrefix": "lancedb/",
    "MediaQueue": MEDIA_EVENT_QUEUE,
}
# Objects beside the pipeline's, in its buckets: nothing may touch them.
DECOYS = {MEDIA: "private/decoy.mp4", LAKE: "other-team/table.parquet", OUTPUTS: "other-job/output.json"}
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
POLICY_NAME = "mediaembed"
# Called only for a job missing from every listing (its drop case below calls it as the sweep does).
NOT_IN_A_PLAIN_RUN = {"GetAsyncInvocations"}


def rendered(drop: str | None = None) -> Policy:
    policy = Policy(render(POLICY_FILE.read_text(), VALUES))
    return policy.without([drop]) if drop else policy


def set_no_auth_count(endpoint: str, count: str) -> None:
    """moto's INITIAL_NO_AUTH_ACTION_COUNT in a running server: "0" checks every request from now on."""
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=count.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    urllib.request.urlopen(request).close()


@dataclass
class IamWorld:
    world: World
    iam: Any  # an IAM client of the unrestricted user
    user_arn: str
    pipeline_key: str
    wire: list[WireCall]  # every S3 request of the run
    bedrock_checks: tuple[IamCheck, ...]  # every Bedrock authorization of the run
    submitted: dict[str, Any]
    ingest: SensorDriver
    described: dg.ExecuteInProcessResult
    hits: list[dict[str, Any]]
    event_runs: list[dict[str, Any]]  # the inventory metadata of the runs the media change sensor asked for
    messages_left: int

    @property
    def bedrock(self) -> BedrockRuntimeEmulator:
        return self.world.stack.bedrock

    def hold(self, policy: Policy) -> None:
        """Give the pipeline's user `policy` (in moto and in the Bedrock emulator)."""
        document = json.dumps(policy.document)
        self.iam.put_user_policy(UserName="pipeline", PolicyName=POLICY_NAME, PolicyDocument=document)
        self.bedrock.iam_identities[self.pipeline_key] = Identity(self.user_arn, policy)


def _iam(endpoint: str, key: str = "x", secret: str = "x") -> Any:
    return boto3.session.Session().client(
        "iam", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=key, aws_secret_access_key=secret
    )


def _users(endpoint: str) -> tuple[Any, dict[str, tuple[str, str]], str]:
    """Before IAM is enforced: the user `emulators` (may do anything: the emulators' own S3 calls and this
    test's policy changes) and `pipeline` (holds only the rendered policy). Returns an IAM client of the
    first, both key pairs, and the pipeline user's ARN."""
    iam, keys, arns = _iam(endpoint), {}, {}
    for user, document in (("emulators", ALLOW_ALL), ("pipeline", rendered().document)):
        arns[user] = iam.create_user(UserName=user)["User"]["Arn"]
        iam.put_user_policy(UserName=user, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(document))
        made = iam.create_access_key(UserName=user)["AccessKey"]
        keys[user] = (made["AccessKeyId"], made["SecretAccessKey"])
    return _iam(endpoint, *keys["emulators"]), keys, arns["pipeline"]


@pytest.fixture(scope="module")
def iam_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IamWorld]:
    with ExitStack() as stack, pytest.MonkeyPatch.context() as env:
        s3 = stack.enter_context(S3Emulator(region=REGION))
        setup = s3.client()
        for bucket in (MEDIA, OUTPUTS, LAKE, INDEX):
            setup.create_bucket(Bucket=bucket)
        samples: list[SampleObject] = upload_sample_media(setup, MEDIA, "incoming/")
        for bucket, key in DECOYS.items():
            setup.put_object(Bucket=bucket, Key=key, Body=b"not the pipeline's")
        queue_url = notify_queue(s3, REGION, [MEDIA])  # events from here on: the samples were listed
        iam, keys, user_arn = _users(s3.endpoint)
        (pipeline_key, pipeline_secret), admin = keys["pipeline"], keys["emulators"]
        bedrock = stack.enter_context(
            BedrockRuntimeEmulator(
                s3.endpoint,
                region=REGION,
                account_id=ACCOUNT,
                access_key_id=pipeline_key,
                secret_access_key=pipeline_secret,
                s3_credentials=admin,
                iam_identities={pipeline_key: Identity(user_arn, rendered())},
            )
        )
        twelvelabs = stack.enter_context(
            TwelveLabsEmulator(retry_after_sec=0, s3_credentials={pipeline_key: pipeline_secret})
        )
        local = LocalStack(s3, bedrock, twelvelabs, REGION, pipeline_key, pipeline_secret, queue_url)
        folder = tmp_path_factory.mktemp("iam")
        for name, value in {**local.env(), **local_settings(folder), **SETTINGS}.items():
            env.setenv(name, value)
        env.setenv("AWS_ENDPOINT_URL_STS", s3.endpoint)  # moto's STS, for the caller's account
        set_no_auth_count(s3.endpoint, "0")
        stack.callback(set_no_auth_count, s3.endpoint, "inf")
        world = World(local, samples, dg.DagsterInstance.ephemeral(), None)
        with s3.intercept(WireRecorder) as recorder:
            submitted = submit(world)
            ingest = ingest_when_idle(world)
            described = run_job(world.instance, "describe_media", None)
            hits = search_json("yellow triangle", top_k=1)
            admin_s3 = boto3.session.Session().client(
                "s3",
                endpoint_url=s3.endpoint,
                region_name=REGION,
                aws_access_key_id=admin[0],
                aws_secret_access_key=admin[1],
            )
            admin_s3.put_object(Bucket=MEDIA, Key="incoming/notes/readme.txt", Body=b"not media")
            event_runs = drain_media_events(world)
        attributes = (
            boto3.session.Session()
            .client(
                "sqs",
                endpoint_url=s3.endpoint,
                region_name=REGION,
                aws_access_key_id=admin[0],
                aws_secret_access_key=admin[1],
            )
            .get_queue_attributes(
                QueueUrl=queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
        )
        yield IamWorld(
            world,
            iam,
            user_arn,
            pipeline_key,
            recorder.calls,
            bedrock.iam_checks,
            submitted,
            ingest,
            described,
            hits,
            event_runs,
            sum(int(n) for n in attributes.values()),
        )


def drain_media_events(world: World) -> list[dict[str, Any]]:
    """One media change sensor tick, as the daemon makes it, and the runs it requests; their inventories."""
    requests = media_change_requests(world.instance)
    assert requests, "the event reached no run"
    runs = []
    for request in requests:
        assert isinstance(request.run_config, dict)
        run = run_job(world.instance, "embed_new_media", request.partition_key, run_config=request.run_config)
        runs.append(materialization_metadata(run, ["media", "inventory"]))
    return runs


def test_the_pipeline_completes_as_a_user_holding_only_the_policy(iam_world: IamWorld) -> None:
    assert iam_world.submitted["submitted"] == USABLE and iam_world.submitted["rejected"] == 0
    [ingest] = iam_world.ingest.results
    embedded = materialization_metadata(ingest, ["marengo", "embeddings"])
    assert embedded["objects_embedded"] == USABLE and embedded["objects_failed"] == 0
    index = materialization_metadata(ingest, ["search", "marengo_segments"])
    with dg.build_resources({"lake": pipeline_resources["lake"]}) as built:
        table_rows = EmbeddingTable(built.lake, MARENGO_3_0).read().num_rows
        assert SubmissionLedger(built.lake, None).in_progress().empty
    assert index["dagster/row_count"] == table_rows > USABLE, "index rows = table rows"
    checks = [*ingest.get_asset_check_evaluations(), *iam_world.described.get_asset_check_evaluations()]
    assert checks and all(c.passed for c in checks), [(c.check_name, c.passed) for c in checks]
    described = materialization_metadata(iam_world.described, ["search", "description_index"])
    assert described["objects_updated"] == 3 and described["unindexed_rows"] == 0
    [top] = iam_world.hits
    assert (top["media_uri"], top["start_sec"], top["end_sec"]) == (
        f"s3://{MEDIA}/incoming/videos/shapes_a.mp4",
        4.0,
        9.0,
    )
    assert iam_world.bedrock.created_invocations == USABLE
    refused = [str(c) for c in iam_world.wire if c.access_key == iam_world.pipeline_key and c.status == 403]
    assert not refused, f"S3 refused the pipeline: {refused}"
    assert iam_world.bedrock_checks and all(c.allowed for c in iam_world.bedrock_checks), "Bedrock refused"
    [event_run] = iam_world.event_runs
    assert (event_run["mode"], event_run["probed_this_run"], event_run["unusable_objects"]) == (
        "events",
        1,
        3,
    )
    assert iam_world.messages_left == 0, "the sensor and the run deleted every message they took"


def test_every_call_is_allowed_and_every_action_of_every_statement_is_used(iam_world: IamWorld) -> None:
    """The wire's calls checked against the policy with its conditions (moto ignores them): none outside
    what it allows, none it does not know, and every (statement, action) pair used by at least one."""
    policy = rendered()
    ours = [c for c in iam_world.wire if c.access_key == iam_world.pipeline_key]
    assert ours and {c.service for c in ours} == {"s3", "sqs"}, {c.service for c in ours}
    unknown = [str(c) for c in ours if iam_requests(c) is None]
    assert not unknown, f"calls the wire mapping does not know: {unknown}"
    asked = [request for c in ours for request in iam_requests(c) or []]
    asked += [
        (c.action, c.resource, {}) for c in iam_world.bedrock_checks if c.access_key == iam_world.pipeline_key
    ]
    used: set[tuple[str, str]] = set()
    for action, resource, context in asked:
        decision = policy.evaluate(action, resource, context)
        assert decision.allowed, f"{action} on {resource} {context or ''} is not allowed by the policy"
        used |= {(sid, action) for sid in decision.statements}
    declared = {(s.sid, a) for s in policy.statements for a in s.actions if s.sid not in NOT_IN_A_PLAIN_RUN}
    assert used >= declared, f"never used: {sorted(declared - used)}"
    touched = {f"{c.bucket}/{c.key}" for c in ours if c.key}
    assert not touched & {f"{b}/{k}" for b, k in DECOYS.items()}, "the pipeline touched another's object"


# --- each statement and the call it protects ------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One call the pipeline makes, as it makes it, and what its refusal must say."""

    name: str
    make: Callable[[Any, IamWorld], object]
    refusal: str  # a regular expression the error must match when the statement is gone


def _video_job(resources: Any) -> tuple[EmbeddingJob, InvocationStatus]:
    """The run's job for shapes_a and its invocation, rebuilt from the ledger (the same client token)."""
    rows = SubmissionLedger(resources.lake, "bedrock").submissions()
    row = rows[rows["media_uri"].str.endswith("videos/shapes_a.mp4")].iloc[0]
    job = EmbeddingJob.from_record(row, MARENGO_3_0, row["provider"])
    assert job.client_token == row["client_token"]
    status = InvocationStatus(
        row["invocation_id"], job.client_token, "completed", None, None, None, row["output_uri"]
    )
    return job, status


def _media_object(resources: Any) -> Any:
    return next(o for o in resources.media.list_objects() if o.key.endswith("videos/shapes_a.mp4"))


def _looked_up(resources: Any, world: IamWorld) -> str:
    job, status = _video_job(resources)
    found = resources.marengo.bedrock._look_up(job.client_token, status.invocation_id)
    if found.state != "completed":
        raise RuntimeError(found.failure_message)
    return found.state


def _lease(resources: Any, world: IamWorld) -> None:
    with resources.segment_index.writer(MARENGO_3_0, holder="iam-test"):
        pass


def _submit(resources: Any, world: IamWorld) -> str:
    """A replay of the run's own submission (same token and body: Bedrock starts and bills nothing new)."""
    before = world.bedrock.created_invocations
    try:
        return resources.marengo.bedrock.submit(_video_job(resources)[0]).invocation_id
    finally:
        assert world.bedrock.created_invocations == before, "a refused or replayed submission started a job"


def _describe(resources: Any, world: IamWorld) -> object:
    video = _media_object(resources)
    return resources.pegasus.describe(video.uri, video.etag, DEFAULT_PROMPTS[0])


MARENGO_ID, PEGASUS_ID = "twelvelabs.marengo-embed-3-0-v1:0", "twelvelabs.pegasus-1-2-v1:0"
DENIED_S3 = r"\(AccessDenied\) when calling the {} operation"
DENIED_BEDROCK = (
    r"AccessDeniedException.*User: arn:aws:iam::\d{{12}}:user/pipeline is not authorized to perform: {} "
    r"on resource: {}"
)
# moto answers SQS's JSON protocol with its XML error: the operation and the IAM action it was refused as.
DENIED_SQS = r"when calling the {} operation: .*not authorized to perform: sqs:{}<"
SUBMIT = "BedrockMarengo.submit (StartAsyncInvoke)"

PROTECTS: dict[str, list[Call]] = {
    "ListMedia": [
        Call(
            "MediaSource.list_objects (ListObjectsV2)",
            lambda r, w: list(r.media.list_objects()),
            DENIED_S3.format("ListObjectsV2"),
        )
    ],
    "ReadMedia": [
        Call(
            "MediaSource.probe (HeadObject, ranged GetObject)",
            lambda r, w: r.media.probe(_media_object(r)),
            r"\(403\) when calling the HeadObject operation: Forbidden",
        ),
        Call(
            SUBMIT + ": Bedrock reads the media as the caller",
            _submit,
            DENIED_BEDROCK.format("s3:GetObject", f"arn:aws:s3:::{MEDIA}/incoming/videos/shapes_a.mp4"),
        ),
    ],
    "ReadMediaEvents": [
        Call(
            "MediaEventQueue.receive (ReceiveMessage, the media change sensor)",
            lambda r, w: r.media_events.receive(limit=1),
            DENIED_SQS.format("ReceiveMessage", "ReceiveMessage"),
        ),
        Call(
            "MediaEventQueue.delete (DeleteMessageBatch, after the run's commit)",
            lambda r, w: r.media_events.delete(["a-receipt-handle-of-no-message"]),
            DENIED_SQS.format("DeleteMessageBatch", "DeleteMessage"),
        ),
    ],
    "FindBucketRegions": [
        Call(
            "bucket_region (GetBucketLocation)",
            lambda r, w: bucket_region(r.media.storage.get_client(), MEDIA),
            DENIED_S3.format("GetBucketLocation"),
        )
    ],
    "AsyncOutput": [
        Call(
            "BedrockMarengo.fetch_segments (GetObject output.json)",
            lambda r, w: r.marengo.bedrock.fetch_segments(_video_job(r)[1], _video_job(r)[0]),
            rf"cannot read s3://{OUTPUTS}/marengo-async/\S+/output.json: AccessDenied",
        ),
        Call(
            SUBMIT + ": Bedrock writes the results as the caller",
            _submit,
            DENIED_BEDROCK.format("s3:PutObject", f"arn:aws:s3:::{OUTPUTS}/marengo-async/"),
        ),
    ],
    "ListLake": [
        Call(
            "Lake.list_files (pyarrow lists the ledger)",
            lambda r, w: r.lake.list_files("ledger/submissions"),
            r"AWS Error ACCESS_DENIED during ListObjectsV2 operation",
        )
    ],
    "LakeObjects": [
        Call(
            "EmbeddingTable.read (delta-rs reads the log)",
            lambda r, w: EmbeddingTable(r.lake, MARENGO_3_0).read().num_rows,
            r"_delta_log/_last_checkpoint .* 403 Forbidden",
        ),
        Call(
            "SubmissionLedger.submissions (pyarrow reads the Parquet)",
            lambda r, w: len(SubmissionLedger(r.lake, None).submissions()),
            r"AWS Error ACCESS_DENIED during HeadObject operation",
        ),
    ],
    "ListIndex": [
        Call(
            "SegmentIndex.connect (LanceDB lists the namespace's versions)",
            lambda r, w: r.segment_index.connect(),
            r"ListRequest .* status: 403, body: .*<Code>AccessDenied</Code>",
        ),
        Call(
            # Refused, not read as an empty index (which an ingest would go on to create anew).
            "SegmentIndex.state (the table's row count, as the index checks read it)",
            lambda r, w: r.segment_index.state(MARENGO_3_0),
            r"403",
        ),
    ],
    "IndexObjects": [
        Call("SegmentIndex.writer (the writer lease, PutObject)", _lease, DENIED_S3.format("PutObject"))
    ],
    "ListAsyncInvocations": [
        Call(
            "BedrockMarengo.preflight (ListAsyncInvokes)",
            lambda r, w: r.marengo.bedrock.preflight(),
            DENIED_BEDROCK.format("bedrock:ListAsyncInvokes", r"\*"),
        )
    ],
    "StartAsyncInvocations": [
        Call(
            SUBMIT,
            _submit,
            DENIED_BEDROCK.format(
                "bedrock:StartAsyncInvoke", f"arn:aws:bedrock:{REGION}::foundation-model/{MARENGO_ID}"
            ),
        )
    ],
    "GetAsyncInvocations": [
        Call(
            "BedrockMarengo._look_up (GetAsyncInvoke, the sweep)",
            _looked_up,
            DENIED_BEDROCK.format(
                "bedrock:GetAsyncInvoke", rf"arn:aws:bedrock:{REGION}:{ACCOUNT}:async-invoke/"
            ),
        )
    ],
    "EmbedQueries": [
        Call(
            "BedrockMarengo.embed_text (InvokeModel)",
            lambda r, w: len(r.marengo.bedrock.embed_text("red circle", MARENGO_3_0)),
            DENIED_BEDROCK.format(
                "bedrock:InvokeModel",
                rf"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/us.{MARENGO_ID}",
            ),
        )
    ],
    "DescribeWithPegasus": [
        Call(
            "BedrockPegasus.describe (InvokeModel)",
            _describe,
            DENIED_BEDROCK.format(
                "bedrock:InvokeModel",
                rf"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/us.{PEGASUS_ID}",
            ),
        )
    ],
}


def test_every_statement_names_the_calls_it_protects() -> None:
    assert set(PROTECTS) == {s.sid for s in rendered().statements}


def outcome(call: Call, resources: Any, world: IamWorld) -> tuple[bool, str]:
    try:
        return True, repr(call.make(resources, world))[:200]
    except Exception as error:  # the call's own error, whatever its type: its text is what is checked
        return False, f"{type(error).__name__}: {' '.join(str(error).split())}"


@pytest.mark.parametrize("sid", sorted(PROTECTS))
def test_dropping_a_statement_denies_the_call_it_protects(iam_world: IamWorld, sid: str) -> None:
    with dg.build_resources(pipeline_resources) as resources:
        for call in PROTECTS[sid]:
            ok, said = outcome(call, resources, iam_world)
            assert ok, f"{call.name} fails with the whole policy: {said}"
    iam_world.hold(rendered(drop=sid))
    try:
        with dg.build_resources(pipeline_resources) as resources:  # fresh clients: nothing cached
            for call in PROTECTS[sid]:
                ok, said = outcome(call, resources, iam_world)
                assert not ok, f"without {sid}, {call.name} still succeeds: {said}"
                assert re.search(call.refusal, said), f"without {sid}, {call.name} failed otherwise: {said}"
    finally:
        iam_world.hold(rendered())


def test_sts_get_caller_identity_needs_no_statement(iam_world: IamWorld) -> None:
    """AWS answers GetCallerIdentity whatever the policy says (its API reference: "No permissions are
    required ... even if ... explicitly denies"), so the policy holds no sts statement. Pegasus asks it for
    the bucket owner when MEDIAEMBED_BUCKET_OWNER is unset."""
    assert not any(a.lower().startswith("sts:") for s in rendered().statements for a in s.actions)
    with dg.build_resources({"pegasus": pipeline_resources["pegasus"]}) as resources:
        assert resources.pegasus.caller_account() == (ACCOUNT, None)
