"""`mediaembed ingest` ends: past its wait, counted from the command's start, it stops naming what is in
flight and how long it waited; a re-run collects it."""

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest

from emulators.sample_media import Scene, make_image
from emulators.stack import start_local_stack
from harness.local_env import local_settings
from mediaembed.cli import main as cli
from mediaembed.ingest import EXIT_STILL_IN_FLIGHT, run_ingest
from resources.providers.marengo_models import MARENGO_3_0
from tests.fake_clock import FakeClock

STARTUP_SEC = 12.0
TIMEOUT_SEC = 15.0
# How long the daemon may take to run the submission before the test fails instead of hanging.
SUBMISSION_LIMIT_SEC = 300.0


def submission_ended() -> bool:
    """Whether the daemon has run the command's `embed_new_media` to its end."""
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(dg.RunsFilter(job_name="embed_new_media"))
    return bool(runs) and all(run.is_finished for run in runs)


@dataclass
class SlowStart(FakeClock):
    """The command reads its start first; loading Dagster and the code location then takes `startup_sec`
    before any later reading (and, as on any fake clock, a sleep takes exactly what it asks for).

    Time on it starts to pass once the daemon has run the submission (`ready`): the command's wait is then
    a wait on the provider, which is what its timeout bounds, however long the daemon took on this machine.
    """

    startup_sec: float = STARTUP_SEC
    started: bool = False
    ready: Callable[[], bool] = field(default=submission_ended)

    def monotonic(self) -> float:
        now = self.now
        if not self.started:
            self.started, self.now = True, self.now + self.startup_sec
        return now

    def sleep(self, seconds: float) -> None:
        limit = time.monotonic() + SUBMISSION_LIMIT_SEC
        while not self.ready():
            assert time.monotonic() < limit, (
                f"the daemon did not run the submission in {SUBMISSION_LIMIT_SEC} s"
            )
            time.sleep(0.2)  # the daemon works in other processes: poll for its run's end
        super().sleep(seconds)


def test_ingest_stops_waiting_at_its_timeout_from_the_command_start_and_names_the_time_waited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with start_local_stack(latency_sec=3600.0) as stack:  # Bedrock never finishes within the wait
        for name, value in {**stack.env(), **local_settings(tmp_path)}.items():
            monkeypatch.setenv(name, value)
        picture = make_image(Scene(0, 0, "circle", "red", "white", 0.0), "png")
        stack.s3.client().put_object(Bucket="media", Key="mine/pic.png", Body=picture)
        clock = SlowStart()
        argv = ["ingest", "s3://media/mine/", "--model", MARENGO_3_0.key, "--timeout", str(TIMEOUT_SEC)]

        code = cli(argv, clock=clock)

        captured = capsys.readouterr()
        assert code == EXIT_STILL_IN_FLIGHT, captured.err
        # The deadline is the start plus the timeout: after a 12 s start-up, 3 s are left to wait.
        assert clock.slept == pytest.approx(TIMEOUT_SEC - STARTUP_SEC)
        assert clock.now == pytest.approx(TIMEOUT_SEC)
        last = captured.err.strip().splitlines()[-1]
        assert last.startswith(
            "mediaembed ingest: stopped waiting: 1 invocations still in flight after 15 s: "
            "s3://media/mine/pic.png;"
        ), last
        assert "run the same command again to collect them" in last
        assert captured.out.startswith(
            "s3://media/mine/: 1 seen, 0 embedded, 0 skipped, 0 failed, 1 still in flight\n"
        )
        assert stack.bedrock.created_invocations == 1

        # Bedrock finishes; the same command collects it without submitting (or billing) it again.
        stack.bedrock.latency_sec = 0.0
        stack.bedrock.stop()
        stack.bedrock.start()  # a restart carries on the jobs it kept, now with no latency, on a new port
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", stack.bedrock.endpoint)
        stack.bedrock.wait_until_idle(timeout=30)
        out, err = io.StringIO(), io.StringIO()
        assert run_ingest("s3://media/mine/", MARENGO_3_0.key, out=out, err=err, tty=False) == 0, (
            err.getvalue()
        )
        assert out.getvalue().startswith("s3://media/mine/: 1 seen, 1 embedded, 0 skipped, 0 failed\n")
        assert "0 invocations submitted now" in out.getvalue()
        assert stack.bedrock.created_invocations == 1


def test_objects_waiting_for_the_quota_are_submitted_as_it_frees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bedrock takes one job at a time: ingest submits the rest as jobs end, one submission run per job."""
    with start_local_stack(latency_sec=1.5, max_concurrent_invocations=1) as stack:
        for name, value in {**stack.env(), **local_settings(tmp_path)}.items():
            monkeypatch.setenv(name, value)
        for colour in ("red", "green", "blue"):
            picture = make_image(Scene(0, 0, "circle", colour, "white", 0.0), "png")
            stack.s3.client().put_object(Bucket="media", Key=f"q/{colour}.png", Body=picture)
        out, err = io.StringIO(), io.StringIO()

        assert run_ingest("s3://media/q/", MARENGO_3_0.key, out=out, err=err, tty=False) == 0, err.getvalue()

        assert out.getvalue().startswith("s3://media/q/: 3 seen, 3 embedded, 0 skipped, 0 failed\n")
        assert "3 invocations submitted now (3 completed, 0 failed)" in out.getvalue()
        assert stack.bedrock.created_invocations == 3
        with dg.DagsterInstance.get() as instance:
            submissions = instance.get_runs(dg.RunsFilter(job_name="embed_new_media"))
        # At most one run per accepted job and a last one that finds nothing left: none while the quota is
        # full (a busy loop would start runs until the first job ended).
        assert len(submissions) <= stack.bedrock.created_invocations + 1
