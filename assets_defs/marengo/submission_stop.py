"""Why a submission run left objects unsubmitted: a kind the sensor, `mediaembed ingest` and tests read.

The run's metadata carries both: `stop` (this kind, for code) and `deferred_reason` (the sentence, for a
person). Nothing decides by parsing the sentence.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

STOP_METADATA_KEY = "stop"


class SubmissionStop(StrEnum):
    NOTHING_DEFERRED = "nothing_deferred"
    # Objects wait for free slots under the provider's quota: the sensor submits them as jobs finish.
    QUOTA = "quota"
    # Over the version's budget: nothing more is submitted until a person raises it.
    OVER_BUDGET = "over_budget"
    # The provider refuses the set-up (access, region, buckets) for every request: a person must fix it.
    SETUP_REFUSED = "setup_refused"

    @property
    def waits_for_a_person(self) -> bool:
        return self in (SubmissionStop.OVER_BUDGET, SubmissionStop.SETUP_REFUSED)

    @classmethod
    def of(cls, metadata: Mapping[str, Any]) -> SubmissionStop:
        """The kind a submission run recorded (metadata values or their raw `.value`s). A run recorded before
        the kind existed counts as waiting for the quota when it deferred anything: at worst one more
        submission run, which records its kind."""
        raw = metadata.get(STOP_METADATA_KEY)
        raw = getattr(raw, "value", raw)
        if raw is not None:
            return cls(str(raw))
        deferred = metadata.get("deferred", 0)
        return cls.QUOTA if int(getattr(deferred, "value", deferred) or 0) else cls.NOTHING_DEFERRED
