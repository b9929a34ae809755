"""Whole-version checks on `migration/checked_version`: what must be true of a model version (its embedding
table and its index) before search may be served from it.

The in-asset checks look at what one run wrote; these look at the whole version (one partition): every
eligible object embedded at its current ETag, every vector sound, every row of this version, the index
equal to the embedding table, and the side-by-side evaluation against the serving version. All are
blocking: in the cut-over job a failure stops the switch, and names the objects to fix or exclude.

The rules are pure functions over pandas/Arrow tables (table_rules, side_by_side) returning typed outcomes
(table_evaluations, outcome); the Dagster definitions (table_checks, candidate_check) only read and report.
"""

from assets_defs.migration.checks.candidate_check import candidate_matches_serving
from assets_defs.migration.checks.checked_version_asset import checked_version
from assets_defs.migration.checks.table_checks import table_checks

# Selected by the cut-over job (AssetSelection.checks(*WHOLE_VERSION_CHECKS)); registered in definitions.
# The cut-over gate (assets_defs/search/serving.py) requires every one of their check keys to pass in its run.
WHOLE_VERSION_CHECKS = (table_checks, candidate_matches_serving)

__all__ = ["WHOLE_VERSION_CHECKS", "checked_version"]
