"""Settings are read in one place: no production module outside the binding place reads the environment.

`pipelines/settings.py` (the one settings module), `pipelines/definitions.py` (where resources are bound)
and `mediaembed/cli.py` (main passes the mapping down) may; `mediaembed/ingest.py` reads the settings it
checks before it loads Dagster. PENDING lists the modules that still read it until their
setting becomes a resource field; it may only shrink: a module that no longer reads the environment fails
here until it is taken off the list.
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
PENDING = {
    "assets_defs/migration/estimates.py",
    "resources/tables/serving_versions.py",
    "resources/providers/marengo_models.py",
    "resources/providers/base.py",
    "resources/providers/bedrock/pegasus.py",
    "resources/providers/model_routes.py",
    "resources/pegasus/prompts.py",
    "resources/migration/check_settings.py",
    "mediaembed/web.py",
    "mediaembed/search.py",
    "mediaembed/serving.py",
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
    new = [line for name, lines in reads.items() if name not in ALLOWED | PENDING for line in lines]
    assert not new, "read the setting through pipelines/settings.py or a resource field:\n" + "\n".join(new)


def test_the_pending_list_only_shrinks() -> None:
    done = sorted(PENDING - set(_reads()))
    assert not done, f"these no longer read the environment: take them off PENDING: {', '.join(done)}"
