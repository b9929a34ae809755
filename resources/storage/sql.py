"""SQL string literals for the predicates delta-rs (DataFusion) and LanceDB take as text."""

from collections.abc import Iterable


def sql_string(value: str) -> str:
    """A SQL string literal of `value` (any S3 key or id: quotes doubled, nothing else is special)."""
    return "'" + value.replace("'", "''") + "'"


def sql_list(values: Iterable[str]) -> str:
    """The literals of an `IN (...)` list."""
    return ", ".join(sql_string(v) for v in values)
