"""The submission run's stop kind: what code reads instead of the sentence beside it."""

import dagster as dg
import pytest

from assets_defs.marengo.submission_stop import SubmissionStop


@pytest.mark.parametrize("stop", list(SubmissionStop))
def test_the_recorded_kind_is_read_back_from_plain_or_metadata_values(stop: SubmissionStop) -> None:
    assert SubmissionStop.of({"stop": stop.value, "deferred": 3}) is stop
    assert SubmissionStop.of({"stop": dg.MetadataValue.text(stop.value)}) is stop


def test_only_a_budget_or_a_refused_set_up_waits_for_a_person() -> None:
    waiting = {s for s in SubmissionStop if s.waits_for_a_person}
    assert waiting == {SubmissionStop.OVER_BUDGET, SubmissionStop.SETUP_REFUSED}


def test_a_run_recorded_before_the_kind_existed_is_read_by_what_it_deferred() -> None:
    legacy = {"deferred_reason": "stopped: over budget: 6 objects", "deferred": dg.MetadataValue.int(6)}
    assert SubmissionStop.of(legacy) is SubmissionStop.QUOTA, "one more run, which records its kind"
    assert SubmissionStop.of({"deferred": 0}) is SubmissionStop.NOTHING_DEFERRED


def test_an_unknown_kind_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'paused'"):
        SubmissionStop.of({"stop": "paused"})
