"""What a whole-version check found, as a typed value: the check rules return a `CheckOutcome`, and the
Dagster definitions only turn it into their `AssetCheckResult`."""

from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd

NAMES_SHOWN = 20


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    description: str | None
    metadata: dict[str, Any]

    def check_result(self, check: dg.AssetCheckKey | None = None) -> dg.AssetCheckResult:
        """The result to yield; `check` names it where one op yields several checks."""
        return dg.AssetCheckResult(
            asset_key=None if check is None else check.asset_key,
            check_name=None if check is None else check.name,
            passed=self.passed,
            description=self.description,
            metadata=self.metadata,
        )


def names_md(problems: pd.DataFrame, limit: int = NAMES_SHOWN) -> dg.MetadataValue:
    """At most `limit` objects with their problem, and how many more."""
    if problems.empty:
        return dg.MetadataValue.md("_(none)_")
    shown = problems.sort_values("media_uri").head(limit)
    lines = [f"- `{u}`: {p}" for u, p in zip(shown["media_uri"], shown["problem"], strict=True)]
    if len(problems) > limit:
        lines.append(f"\n_and {len(problems) - limit} more_")
    return dg.MetadataValue.md("\n".join(lines))


def uri_list_md(uris: list[str], limit: int = NAMES_SHOWN) -> dg.MetadataValue:
    if not uris:
        return dg.MetadataValue.md("_(none)_")
    lines = [f"- `{u}`" for u in sorted(uris)[:limit]]
    if len(uris) > limit:
        lines.append(f"\n_and {len(uris) - limit} more_")
    return dg.MetadataValue.md("\n".join(lines))


def problems_outcome(problems: pd.DataFrame, what: str, fix: str, metadata: dict[str, Any]) -> CheckOutcome:
    """Passed when there are no problems; else one line naming the first objects and what to do, and the
    first NAMES_SHOWN of them with their problem in the metadata."""
    count = int(problems["media_uri"].nunique()) if not problems.empty else 0
    description = None
    if count:
        first = ", ".join(sorted(problems["media_uri"].unique())[:3])
        more = f" and {count - 3} more" if count > 3 else ""
        description = f"{count} objects {what}: {first}{more}; {fix}"
    return CheckOutcome(
        passed=count == 0,
        description=description,
        metadata={**metadata, "failing_objects": count, "failures": names_md(problems)},
    )
