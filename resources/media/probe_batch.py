"""How many new objects an inventory listing probes itself, and how many each probe run takes: the
MEDIAEMBED_PROBE_BATCH_OBJECTS setting, parsed (free of Dagster: the command checks it before loading it)."""

# A listing probes up to this many new or changed objects itself; more go to probe runs of this many each.
PROBE_BATCH_OBJECTS = 2_000


def parse_probe_batch(value: str | None) -> int:
    """MEDIAEMBED_PROBE_BATCH_OBJECTS as a count: a whole number above 0; unset or empty, the default."""
    text = (value or "").strip()
    if not text:
        return PROBE_BATCH_OBJECTS
    if not text.isdigit() or int(text) < 1:
        raise ValueError(
            f"MEDIAEMBED_PROBE_BATCH_OBJECTS={value!r} is not a whole number above 0: set a count of objects "
            f"(unset: {PROBE_BATCH_OBJECTS:,})"
        )
    return int(text)
