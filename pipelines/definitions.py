"""The code location: every asset, check, job, schedule, sensor and resource of the pipeline.

All configuration comes from the environment, bound here and only here: every setting is a resource field
(the UI shows it, with its description, as the variable it comes from). Endpoints follow the standard AWS
variables (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_BEDROCK_RUNTIME, AWS_ENDPOINT_URL_SQS for the media
bucket's event queue) and the TwelveLabs SDK's (TWELVELABS_BASE_URL), so the same definitions run against
AWS and TwelveLabs or the local emulators.
MEDIAEMBED_PROVIDERS picks the provider per Marengo version.
"""

import os

import dagster as dg

from assets_defs.inventory.media_inventory import media_inventory
from assets_defs.marengo.embeddings import marengo_embeddings
from assets_defs.marengo.invocations import marengo_invocations
from assets_defs.migration.checks import WHOLE_VERSION_CHECKS, checked_version
from assets_defs.migration.plan import migration_plan
from assets_defs.pegasus.description_index import search_descriptions
from assets_defs.pegasus.descriptions import pegasus_chapters, pegasus_descriptions
from assets_defs.search.segment_index import marengo_segment_index
from assets_defs.search.serving import serving_version
from pipelines.jobs import (
    cut_over_job,
    describe_media_job,
    embed_new_media_job,
    ingest_marengo_job,
    probe_media_job,
    roll_back_job,
    submit_marengo_job,
)
from pipelines.media_sensors import inventory_probe_sensor, media_change_sensor
from pipelines.schedules import (
    describe_new_media_schedule,
    embed_new_media_schedule,
    reconcile_media_inventory_schedule,
)
from pipelines.sensors import marengo_invocation_sensor
from pipelines.settings import OPTIONAL_SETTINGS, unknown_setting_warnings, use_model_settings
from resources.index.description_index import DescriptionIndex
from resources.index.segment_index import SegmentIndex
from resources.media.event_queue import MediaEventQueue
from resources.media.source import MediaSource
from resources.migration.check_settings import VersionCheckSettings
from resources.providers.bedrock.marengo import BedrockMarengo
from resources.providers.bedrock.pegasus import BedrockPegasus
from resources.providers.marengo_resource import MarengoProviders
from resources.providers.twelvelabs.marengo import TwelveLabsMarengo
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage


def when_set(name: str) -> dg.EnvVar | None:
    """An optional setting: its EnvVar where the variable is set (resolved when a run starts, so the UI
    shows its name), else None, the field's default. An unset EnvVar would fail the resource even for an
    optional field (dagster issue 16232); an empty value reads as unset."""
    assert name in OPTIONAL_SETTINGS, f"{name}: list it in pipelines/settings.py OPTIONAL_SETTINGS"
    return dg.EnvVar(name) if name in os.environ else None


# The `media` resource's optional fields and the settings they are bound from.
MEDIA_SETTINGS = {"probe_batch": "MEDIAEMBED_PROBE_BATCH_OBJECTS"}


def media_config(uri: str) -> dict[str, object]:
    """Run config of the `media` resource for another prefix. Config given at launch replaces the bound
    values of the fields it leaves out (an EnvVar-bound optional field reads as its default), so the
    settings bound here are passed on as the same environment variables."""
    return {
        "uri": uri,
        **{field: {"env": name} for field, name in MEDIA_SETTINGS.items() if name in os.environ},
    }


use_model_settings(os.environ)  # Marengo 3.5's vector length, before anything looks a model up
storage = S3Storage(region_name=dg.EnvVar("AWS_REGION"))
quotas, prices = when_set("MEDIAEMBED_QUOTAS"), when_set("MEDIAEMBED_PRICES")

pipeline_resources = {
    "media": MediaSource(
        uri=dg.EnvVar("MEDIAEMBED_MEDIA_URI"),
        storage=storage,
        **{field: when_set(name) for field, name in MEDIA_SETTINGS.items()},
    ),
    "media_events": MediaEventQueue(
        queue_url=when_set("MEDIAEMBED_MEDIA_QUEUE_URL"), region_name=dg.EnvVar("AWS_REGION")
    ),
    "lake": Lake(
        root=dg.EnvVar("MEDIAEMBED_LAKE_URI"),
        serving_version=when_set("MEDIAEMBED_SERVING_VERSION"),
        storage=storage,
    ),
    "marengo": MarengoProviders(
        bedrock=BedrockMarengo(
            region_name=dg.EnvVar("AWS_REGION"),
            output_s3_uri=dg.EnvVar("MEDIAEMBED_ASYNC_OUTPUT_URI"),
            async_quotas=quotas,
            prices=prices,
            storage=storage,
        ),
        # Bound only with a key: a Bedrock-only deployment has none, and an unset EnvVar would fail the
        # whole code location. The key stays an EnvVar: the UI shows its name, never its value.
        twelvelabs=TwelveLabsMarengo(
            api_key=dg.EnvVar("TWELVELABS_API_KEY"),
            output_s3_uri=dg.EnvVar("MEDIAEMBED_ASYNC_OUTPUT_URI"),
            async_quotas=quotas,
            prices=prices,
            storage=storage,
        )
        if os.environ.get("TWELVELABS_API_KEY")
        else None,
        providers=when_set("MEDIAEMBED_PROVIDERS"),
        budget_usd=when_set("MEDIAEMBED_BUDGET_USD"),
        budget_media_seconds=when_set("MEDIAEMBED_BUDGET_MEDIA_SECONDS"),
    ),
    "pegasus": BedrockPegasus(
        region_name=dg.EnvVar("AWS_REGION"),
        bucket_owner=when_set("MEDIAEMBED_BUCKET_OWNER"),
        profile_scope=when_set("MEDIAEMBED_PEGASUS_PROFILE"),
        transport=when_set("MEDIAEMBED_PEGASUS_TRANSPORT"),
        prompts_file=when_set("MEDIAEMBED_PEGASUS_PROMPTS"),
        storage=storage,
    ),
    "segment_index": SegmentIndex(uri=dg.EnvVar("MEDIAEMBED_INDEX_URI"), storage=storage),
    "description_index": DescriptionIndex(uri=dg.EnvVar("MEDIAEMBED_INDEX_URI"), storage=storage),
    "version_checks": VersionCheckSettings(
        exclude_setting=when_set("MEDIAEMBED_MIGRATION_EXCLUDE"), probe_set=when_set("MEDIAEMBED_PROBE_SET")
    ),
}

defs = dg.Definitions(
    assets=[
        media_inventory,
        migration_plan,
        marengo_invocations,
        marengo_embeddings,
        marengo_segment_index,
        checked_version,
        serving_version,
        pegasus_descriptions,
        pegasus_chapters,
        search_descriptions,
    ],
    asset_checks=[*WHOLE_VERSION_CHECKS],
    jobs=[
        embed_new_media_job,
        submit_marengo_job,
        ingest_marengo_job,
        cut_over_job,
        roll_back_job,
        describe_media_job,
        probe_media_job,
    ],
    schedules=[embed_new_media_schedule, reconcile_media_inventory_schedule, describe_new_media_schedule],
    sensors=[marengo_invocation_sensor, media_change_sensor, inventory_probe_sensor],
    resources=pipeline_resources,
    # Every job is a chain of steps: one process per run, not one more per step (each would load the code
    # location again for no parallelism).
    executor=dg.in_process_executor,
)


for _line in unknown_setting_warnings(os.environ):
    dg.get_dagster_logger("mediaembed").warning(_line)
