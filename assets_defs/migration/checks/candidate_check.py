"""The check that runs the probe set against the serving version and the candidate: the searches are the
I/O here, the judging is side_by_side's."""

from pathlib import Path
from typing import Any

import dagster as dg

from assets_defs.inventory.media_inventory import read_inventory
from assets_defs.migration.checks.checked_version_asset import CHECKED, checked_model
from assets_defs.migration.checks.side_by_side import (
    ProbeOutcome,
    evaluate,
    ranked_objects,
    resolve_expected,
    side_by_side_outcome,
)
from resources.index.segment_index import SegmentIndex
from resources.migration.check_settings import ProbeSetError, VersionCheckSettings, load_probe_set
from resources.providers.errors import QueryEmbeddingError, SetupError
from resources.providers.marengo_models import MarengoModel, marengo_model
from resources.providers.marengo_resource import MarengoProviders
from resources.search.segment_search import IndexNotFound
from resources.storage.lake import Lake

# Shipped with the package beside the migration code (pyproject's package data; docs/configuration.md).
DEFAULT_PROBE_SET = Path(__file__).parent.parent / "probe_set.json"
# Segments fetched per query to find k distinct objects (an object has several spans and options).
SEGMENTS_PER_OBJECT = 20


def _search_objects(
    marengo: MarengoProviders, index: SegmentIndex, model: MarengoModel, text: str, k: int
) -> tuple[str, ...]:
    vector = marengo.serving(model).embed_text(text, model)
    hits = index.search(model, vector, k=k * SEGMENTS_PER_OBJECT)
    return ranked_objects([h.media_uri for h in hits])[:k]


@dg.asset_check(
    asset=CHECKED,
    name="candidate_matches_serving",
    blocking=True,
    description="Side by side: the probe set's queries run against the serving version and this one; "
    "overlap@k and each right answer's rank per version are recorded, and floors block the cut-over.",
)
def candidate_matches_serving(
    context: dg.AssetCheckExecutionContext,
    lake: Lake,
    segment_index: SegmentIndex,
    marengo: MarengoProviders,
    version_checks: VersionCheckSettings,
) -> dg.AssetCheckResult:
    candidate = checked_model(context)
    serving_key = lake.serving_versions().current().serving
    floors: dict[str, Any] = {
        "k": version_checks.probe_k,
        "min_overlap": version_checks.min_overlap,
        "max_expected_rank": version_checks.max_expected_rank,
    }
    base: dict[str, Any] = {"serving": serving_key, "candidate": candidate.key, **floors}
    if serving_key == candidate.key:
        return dg.AssetCheckResult(
            passed=True,
            description=f"{candidate.key} already serves search: nothing to compare it with",
            metadata={**base, "note": "candidate is the serving version"},
        )
    path = version_checks.probe_set_path(DEFAULT_PROBE_SET)
    base["probe_set"] = dg.MetadataValue.path(str(path))
    try:
        probes = load_probe_set(path)
    except ProbeSetError as error:
        return dg.AssetCheckResult(passed=False, description=f"{error}", metadata=base)
    serving = marengo_model(serving_key)
    library = set(read_inventory(lake)["media_uri"])
    k = version_checks.probe_k
    outcomes = []
    serving_note = None
    try:
        for probe in probes:
            try:
                served: tuple[str, ...] | None = (
                    None if serving_note else _search_objects(marengo, segment_index, serving, probe.query, k)
                )
            except IndexNotFound as error:
                served, serving_note = None, f"{error}: only the candidate's ranks are judged"
            found = _search_objects(marengo, segment_index, candidate, probe.query, k)
            outcomes.append(ProbeOutcome(probe, resolve_expected(probe.expected, library), served, found))
    except (IndexNotFound, QueryEmbeddingError, SetupError) as error:
        return dg.AssetCheckResult(
            passed=False,
            description=f"the probe {probe.query!r} could not run: {error}",
            metadata=base,
        )
    result = evaluate(outcomes, k, version_checks.min_overlap, version_checks.max_expected_rank)
    return side_by_side_outcome(
        outcomes, result, k, serving.key, candidate.key, base, serving_note
    ).check_result()
