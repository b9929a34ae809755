"""The provider-neutral core: model facts apart from provider routes, routing as configuration, a ledger
read per provider, and a lake written before there were two providers read with nothing submitted again."""

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from assets_defs.marengo.invocations import InvocationConfig, marengo_invocations
from pipelines.sensors import marengo_invocation_sensor
from resources.providers.base import MarengoProvider
from resources.providers.embedding_jobs import (
    EmbeddingJob,
    EmbeddingOptions,
    InvocationStatus,
    SegmentEmbedding,
    Submission,
)
from resources.providers.errors import SetupError
from resources.providers.marengo_models import (
    MARENGO_2_7,
    MARENGO_3_0,
    MARENGO_3_5,
    MarengoModel,
    marengo_model,
)
from resources.providers.marengo_resource import MarengoProviders
from resources.providers.model_routes import DEFAULT_PROVIDERS, ProviderName, parse_providers, route
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from resources.tables.submission_ledger import Outcome, SubmissionLedger

FIXTURE = Path(__file__).parent.parent / "fixtures" / "lake_before_providers"


@dataclass
class Calls:
    submitted: list[str] = field(default_factory=list)
    asked: list[dict[str, str]] = field(default_factory=list)


# What each provider was sent and asked, by name: Dagster may copy a resource, so the record lives here.
CALLS: dict[str, Calls] = {}


@pytest.fixture(autouse=True)
def fresh_calls() -> None:
    CALLS.clear()


class RecordingProvider(MarengoProvider):
    """Accepts every job and answers that nothing finished; records what it was sent and asked."""

    name: str

    @property
    def calls(self) -> Calls:
        return CALLS.setdefault(self.name, Calls())

    @property
    def provider_name(self) -> ProviderName:
        return "bedrock" if self.name == "bedrock" else "twelvelabs"

    def submit(self, job: EmbeddingJob) -> Submission:
        self.calls.submitted.append(job.media_uri)
        return Submission(job, f"{self.name}-{job.client_token}", None, datetime.now(UTC))

    def finished_invocations(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        self.calls.asked.append(dict(open_jobs))
        return []

    def newly_finished(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        return self.finished_invocations(open_jobs, submitted_after)

    def fetch_segments(self, invocation: InvocationStatus, job: EmbeddingJob) -> list[SegmentEmbedding]:
        raise NotImplementedError

    def embed_text(self, text: str, model: MarengoModel) -> list[float]:
        raise NotImplementedError


def fixture_lake(tmp_path: Path) -> Lake:
    shutil.copytree(FIXTURE, tmp_path / "lake")
    return Lake(root=str(tmp_path / "lake"), storage=S3Storage(region_name="us-east-1"))


def submit_all(lake: Lake, providers: MarengoProviders, model_key: str = MARENGO_3_0.key) -> dict:
    result = dg.materialize(
        [marengo_invocations],
        partition_key=model_key,
        resources={"marengo": providers, "lake": lake},
        run_config=dg.RunConfig(ops={"marengo__invocations": InvocationConfig()}),
    )
    [materialization] = result.asset_materializations_for_node("marengo__invocations")
    return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}


def test_the_fixture_ledger_keys_are_the_keys_the_new_code_computes(tmp_path: Path) -> None:
    """Job keys and client tokens of Bedrock jobs written before the reshape are unchanged."""
    jobs = SubmissionLedger(fixture_lake(tmp_path), "bedrock").jobs(MARENGO_3_0.key)
    assert len(jobs) == 7 and set(jobs["provider"]) == {"bedrock"}
    for row in jobs.to_dict("records"):
        job = EmbeddingJob.from_record(row, MARENGO_3_0, "bedrock")
        assert (job.job_key, job.client_token) == (row["job_key"], row["client_token"])


@pytest.mark.parametrize("serving", ["bedrock", "twelvelabs"])
def test_a_lake_from_before_providers_is_read_with_no_new_submission(tmp_path: Path, serving: str) -> None:
    """Nothing is re-embedded, whichever provider now serves 3.0: a job's key names the object and the
    model, not who embedded it."""
    lake = fixture_lake(tmp_path)
    bedrock, twelvelabs = RecordingProvider(name="bedrock"), RecordingProvider(name="twelvelabs")
    providers = MarengoProviders(bedrock=bedrock, twelvelabs=twelvelabs, providers=f"marengo-3.0={serving}")
    meta = submit_all(lake, providers)
    assert (meta["submitted"], meta["already_handled"], meta["provider"]) == (0, 7, serving)
    assert bedrock.calls.submitted == twelvelabs.calls.submitted == []


def test_each_provider_is_asked_only_about_its_own_open_jobs(tmp_path: Path) -> None:
    lake = Lake(root=str(tmp_path / "lake"), storage=S3Storage(region_name="us-east-1"))
    options = EmbeddingOptions()
    for provider, uri in (("bedrock", "s3://m/a.mp4"), ("twelvelabs", "s3://m/b.mp4")):
        job = EmbeddingJob(uri, "e", "video", MARENGO_3_0, options, provider=provider)
        submission = Submission(job, f"{provider}-task", None, datetime.now(UTC))
        SubmissionLedger(lake, provider).record_submissions([submission], {}, "run")
    bedrock, twelvelabs = RecordingProvider(name="bedrock"), RecordingProvider(name="twelvelabs")
    providers = MarengoProviders(bedrock=bedrock, twelvelabs=twelvelabs)
    with (
        dg.DagsterInstance.ephemeral() as instance,
        dg.build_sensor_context(instance=instance, resources={"marengo": providers, "lake": lake}) as context,
    ):
        marengo_invocation_sensor(context)
    [asked_bedrock] = bedrock.calls.asked
    [asked_twelvelabs] = twelvelabs.calls.asked
    assert list(asked_bedrock.values()) == ["bedrock-task"]
    assert list(asked_twelvelabs.values()) == ["twelvelabs-task"]
    assert SubmissionLedger(lake, "bedrock").in_progress()["media_uri"].tolist() == ["s3://m/a.mp4"]
    assert SubmissionLedger(lake, "twelvelabs").in_progress()["media_uri"].tolist() == ["s3://m/b.mp4"]
    assert sorted(SubmissionLedger(lake, None).in_progress()["media_uri"]) == ["s3://m/a.mp4", "s3://m/b.mp4"]


def test_a_token_names_its_provider_and_bedrock_tokens_keep_their_form() -> None:
    args = ("s3://m/a.mp4", "e", "video", MARENGO_3_0, EmbeddingOptions(), 2)
    bedrock, twelvelabs = EmbeddingJob(*args), EmbeddingJob(*args, provider="twelvelabs")
    assert bedrock.job_key == twelvelabs.job_key
    assert bedrock.client_token == f"me-{bedrock.job_key}-a2"
    assert twelvelabs.client_token == f"me-{bedrock.job_key}-a2-twelvelabs"


def test_a_ledger_read_across_providers_cannot_write(tmp_path: Path) -> None:
    lake = Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1"))
    job = EmbeddingJob("s3://m/a.mp4", "e", "video", MARENGO_3_0, EmbeddingOptions())
    with pytest.raises(ValueError, match="cannot record"):
        SubmissionLedger(lake, None).record_submissions(
            [Submission(job, "x", None, datetime.now(UTC))], {}, "r"
        )


def test_routing_is_configuration_with_one_line_errors() -> None:
    assert parse_providers("") == DEFAULT_PROVIDERS
    assert parse_providers("marengo-3.0=twelvelabs")[MARENGO_3_0.key] == "twelvelabs"
    for text, says in (
        ("marengo-3.5=bedrock", "bedrock does not embed media with marengo-3.5; it is offered by twelvelabs"),
        (
            "marengo-2.7=twelvelabs",
            "twelvelabs does not embed media with marengo-2.7; it is offered by bedrock",
        ),
        ("marengo-4.0=bedrock", "unknown model 'marengo-4.0'"),
        ("marengo-3.0=aws", "unknown provider 'aws'"),
    ):
        with pytest.raises(ValueError, match=says):
            parse_providers(text)


def test_model_facts_and_routes_are_apart() -> None:
    assert {MARENGO_2_7.dimension, MARENGO_3_0.dimension, MARENGO_3_5.dimension} == {1024, 512}
    bedrock = route("bedrock", MARENGO_3_0.key)
    assert bedrock.model_id == "twelvelabs.marengo-embed-3-0-v1:0"
    assert bedrock.sync_model_id("eu-west-1") == "eu.twelvelabs.marengo-embed-3-0-v1:0"
    assert bedrock.sync_model_id("ap-northeast-2") == "twelvelabs.marengo-embed-3-0-v1:0"
    assert route("twelvelabs", MARENGO_3_0.key).model_id == "marengo3.0"
    assert route("twelvelabs", MARENGO_3_5.key).model_id == "marengo3.5"
    assert route("twelvelabs", MARENGO_2_7.key).model_id == "Marengo-retrieval-2.7"
    assert not route("twelvelabs", MARENGO_2_7.key).embeds_media
    assert bedrock.priced and not route("twelvelabs", MARENGO_3_0.key).priced
    assert marengo_model("marengo-3.5") is MARENGO_3_5


def test_a_provider_that_is_not_configured_is_a_setup_error_naming_the_variable() -> None:
    providers = MarengoProviders(bedrock=RecordingProvider(name="bedrock"))
    with pytest.raises(SetupError, match="TWELVELABS_API_KEY"):
        providers.serving(MARENGO_3_5)
    assert providers.serving(MARENGO_3_0).provider_name == "bedrock"


def test_a_job_failed_at_bedrock_is_retried_at_twelvelabs_as_the_next_attempt(tmp_path: Path) -> None:
    lake = fixture_lake(tmp_path)
    ledger = SubmissionLedger(lake, "bedrock")
    row = ledger.jobs(MARENGO_3_0.key).iloc[0]
    failed = Outcome(
        row["job_key"],
        row["client_token"],
        MARENGO_3_0.key,
        row["media_uri"],
        row["etag"],
        row["invocation_id"],
        "failed",
        "unusable output",
    )
    ledger.record_outcomes([failed], "a-later-ingest")
    providers = MarengoProviders(
        bedrock=RecordingProvider(name="bedrock"),
        twelvelabs=RecordingProvider(name="twelvelabs"),
        providers="marengo-3.0=twelvelabs",
    )
    meta = submit_all(lake, providers)
    assert (meta["submitted"], meta["already_handled"]) == (1, 6)
    assert CALLS["twelvelabs"].submitted == [row["media_uri"]] and "bedrock" not in CALLS
    [retry] = SubmissionLedger(lake, "twelvelabs").in_progress().to_dict("records")
    assert (retry["attempt"], retry["job_key"]) == (2, row["job_key"])
    assert retry["client_token"] == f"me-{row['job_key']}-a2-twelvelabs"


def test_prices_come_from_configuration_over_the_published_ones() -> None:
    """The providers' `prices` field, which the definitions bind from MEDIAEMBED_PRICES."""
    from resources.providers.model_routes import route

    prices = "twelvelabs/marengo-3.5:video=0.0005,audio=0.0001,image=0.0002; bedrock/marengo-3.0:video=0.001"
    assert route("twelvelabs", "marengo-3.5").priced is False  # no published price
    assert RecordingProvider(name="twelvelabs").route(MARENGO_3_5).priced is False
    priced = RecordingProvider(name="twelvelabs", prices=prices).route(MARENGO_3_5)
    assert priced == route("twelvelabs", "marengo-3.5", prices)
    assert priced.priced and priced.estimated_cost_usd("video", 10.0) == pytest.approx(0.005)
    bedrock = RecordingProvider(name="bedrock", prices=prices).route(MARENGO_3_0)
    assert bedrock.estimated_cost_usd("video", 10.0) == pytest.approx(0.01)
    assert bedrock.usd_per_image == 0.0001, "the rest stays as published"
    with pytest.raises(ValueError, match="MEDIAEMBED_PRICES: 'bedrock/marengo-9' is not a route"):
        RecordingProvider(name="bedrock", prices="bedrock/marengo-9:video=1").route(MARENGO_3_0)
    with pytest.raises(ValueError, match="write video=, audio="):
        route("bedrock", "marengo-3.0", "bedrock/marengo-3.0:video=cheap")
