"""`make dev`: the local stack with sample media, plus the Dagster UI on the same settings."""

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from emulators.sample_media import upload_sample_media
from emulators.stack import start_local_stack
from harness.local_env import apply, local_settings, prepare_dagster_home

DEV_EMULATOR_PORTS = (4566, 4567, 4568)
STOP_SEC = 60  # what dagster dev takes to stop its services after Ctrl-C, at most
PROJECT_ROOT = Path(__file__).resolve().parents[1]  # where pyproject.toml's [tool.dg] is


def run_dev(workdir: Path, port: int, emulator_ports: tuple[int, int, int] = DEV_EMULATOR_PORTS) -> int:
    """`emulator_ports`: S3, Bedrock, TwelveLabs (0: any free port, as a test on a shared machine needs)."""
    s3_port, bedrock_port, twelvelabs_port = emulator_ports
    settings = local_settings(workdir)
    # Bedrock's jobs and the TwelveLabs API's tasks live under the work folder, so a restart over a kept
    # `.local` loses none of them; the media goes up before they start, so the jobs it carries on find it.
    with start_local_stack(
        s3_port=s3_port,
        bedrock_port=bedrock_port,
        twelvelabs_port=twelvelabs_port,
        latency_sec=2.0,
        workdir=workdir / "bedrock",
        twelvelabs_workdir=workdir / "twelvelabs",
        prepare_s3=lambda client: upload_sample_media(client, "media"),
        media_event_buckets=["media"],  # S3 events feed the inventory, as docs/deployment.md sets up
    ) as stack:
        env = {**stack.env(), **settings}
        apply(env)
        prepare_dagster_home(settings)
        env_file = workdir / "dev.env"
        env_file.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
        print(f"emulators up; settings in {env_file} (`. {env_file}` then `mediaembed search ...`)")
        # `dg dev` over the project's [tool.dg]: its code location `mediaembed`, in this interpreter's venv.
        venv = Path(sys.prefix)
        command = [str(venv / "bin" / "dg"), "dev", "-h", "127.0.0.1", "-p", str(port)]
        return run_dagster_dev(command, {**os.environ, "VIRTUAL_ENV": str(venv)})


def run_dagster_dev(command: list[str], env: dict[str, str]) -> int:
    """`dg dev` until it ends; then the emulators stop. Ctrl-C reaches the whole process group, and dagster
    dev shuts its webserver, daemon and code servers down itself. SIGTERM to this process alone (`kill`, a
    process manager), which dagster dev would ignore, is passed on as the Ctrl-C it stops on."""
    # A shell starts a background job (`make dev &`) with SIGINT ignored, and every child would inherit
    # that: dagster dev could then never be stopped. Its children get the default disposition instead.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env)

    def stop(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second interrupt would cut its shutdown short
        process.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, stop)
    try:
        return _ended(process.wait())
    except KeyboardInterrupt:  # Ctrl-C: dagster dev got it too, and is shutting its services down
        try:
            return _ended(process.wait(timeout=STOP_SEC))
        except subprocess.TimeoutExpired:
            process.kill()
            return 1


def _ended(code: int) -> int:
    """dagster dev's exit status, 0 when it was stopped as asked (Ctrl-C)."""
    return 0 if code in (0, -signal.SIGINT, 130) else code
