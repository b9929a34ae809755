"""The dagster-daemon processes a test's commands may have left."""

import psutil


def daemons_of(home: str) -> list[psutil.Process]:
    """The dagster-daemon processes serving `home` still alive."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            command = " ".join(process.info["cmdline"] or [])
            if "dagster-daemon" in command and process.environ().get("DAGSTER_HOME") == home:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found
