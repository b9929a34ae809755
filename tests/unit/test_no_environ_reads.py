"""Settings are read in one place: no production module outside the binding place reads the environment.

`pipelines/settings.py` (the one settings module), `pipelines/definitions.py` (where resources are bound)
and `mediaembed/cli.py` (main passes the mapping down) may; `mediaembed/ingest.py` reads the settings it
checks before it loads Dagster. Every other setting is a resource field, or a mapping or flag the command
passes down.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("pipelines", "assets_defs", "resources", "mediaembed")
ALLOWED = {
    "pipelines/settings.py",
    "pipelines/definitions.py",
    "mediaembed/cli.py",
    "mediaembed/ingest.py",
}
READS = re.compile(r"os\.environ|getenv")


def _reads() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for folder in PRODUCTION:
        for file in sorted((ROOT / folder).rglob("*.py")):
            name = file.relative_to(ROOT).as_posix()
            for number, line in enumerate(file.read_text().splitlines(), 1):
                if READS.search(line):
                    found.setdefault(name, []).append(f"{name}:{number}: {line.strip()}")
    return found


def test_no_module_outside_the_binding_place_reads_the_environment() -> None:
    reads = _reads()
    new = [line for name, lines in reads.items() if name not in ALLOWED for line in lines]
    assert not new, "read the setting through pipelines/settings.py or a resource field:\n" + "\n".join(new)
