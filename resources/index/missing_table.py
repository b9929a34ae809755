"""Telling a LanceDB table that does not exist from one that could not be read.

LanceDB raises `ValueError("Table 'x' was not found")` for a missing table, and a `ValueError` too when the
object store refuses the listing (an S3 403 without `s3:ListBucket`). Only the first means "nothing indexed
yet"; the second must reach the person, or a permission problem reads as an empty index and an ingest would
go on to create the table anew.
"""

NOT_FOUND = "was not found"


def is_missing_table(error: ValueError) -> bool:
    """Whether LanceDB's `open_table` failed because the table does not exist (not an I/O failure)."""
    return NOT_FOUND in str(error)
