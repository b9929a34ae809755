"""Only LanceDB's own "not found" means an empty index; any other ValueError (a refused listing) is raised."""

from pathlib import Path

import lancedb
import pytest

from resources.index.missing_table import is_missing_table


def test_lancedbs_not_found_is_a_missing_table(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as raised:
        lancedb.connect(str(tmp_path)).open_table("segments_absent")
    assert is_missing_table(raised.value)


def test_a_refused_listing_is_not_a_missing_table() -> None:
    refused = ValueError(
        "Generic S3 error: Error performing list request: HTTP status client error (403 Forbidden)"
    )
    assert not is_missing_table(refused)
