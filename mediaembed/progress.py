"""`mediaembed ingest`'s progress: one updating line on a terminal, plain lines otherwise, and the count of
finished jobs it shows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

import pandas as pd

from resources.storage.clock import REAL_CLOCK, Clock
from resources.tables.submission_ledger import DONE_STATUSES

if TYPE_CHECKING:
    pass


class Progress:
    """One updating line on a terminal (tqdm), plain lines when the output is a file or a pipe; a plain
    line says how long since `started_at` on `clock` (default: since this was made)."""

    def __init__(
        self,
        stream: TextIO,
        tty: bool | None = None,
        clock: Clock = REAL_CLOCK,
        started_at: float | None = None,
    ) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self._bar: Any = None
        self._last = ""
        self._clock = clock
        self._started = clock.monotonic() if started_at is None else started_at

    def say(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def update(self, finished: int, total: int, detail: str) -> None:
        if self.tty:
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(
                    total=total,
                    desc="embedding",
                    bar_format="{desc} {bar} {n_fmt}/{total_fmt} jobs [{elapsed}{postfix}]",
                    file=self.stream,
                    dynamic_ncols=True,
                    leave=True,
                )
            self._bar.total = total
            self._bar.n = finished
            self._bar.set_postfix_str(detail, refresh=False)
            self._bar.refresh()
            return
        line = f"embedding: {finished}/{total} jobs finished, {detail}"
        if line != self._last:
            self._last = line
            elapsed = self._clock.monotonic() - self._started
            print(f"{line} ({elapsed:.0f} s)", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@dataclass
class Follower:
    """Progress after each sensor tick: of the jobs this command submitted (and any it found in flight),
    how many have finished and how. Reads the ledger again only when the set in flight changed."""

    progress: Progress
    read_jobs: Callable[[], pd.DataFrame]
    submit_runs: set[str]
    tracked: set[str] = field(default_factory=set)
    last_seen: tuple[frozenset[str], int] | None = None
    counts: tuple[int, int, str] = (0, 0, "")

    def __call__(self, in_flight: pd.DataFrame) -> None:
        tokens = frozenset(in_flight["client_token"])
        self.tracked |= tokens
        if (tokens, len(self.submit_runs)) != self.last_seen:
            self.last_seen = (tokens, len(self.submit_runs))
            jobs = self.read_jobs()
            ours = jobs[
                jobs["invocation_id"].notna()
                & (jobs["run_id"].isin(self.submit_runs) | jobs["client_token"].isin(self.tracked))
            ]
            done = ours[ours["status"] != "in_progress"]
            embedded = int(done["status"].isin(DONE_STATUSES).sum())
            failed = int((done["status"] == "failed").sum())
            detail = f"{embedded} embedded, {failed} failed, {len(tokens)} in flight"
            if len(done) > embedded + failed:
                detail += f", {len(done) - embedded - failed} to resubmit"
            self.counts = (len(done), len(ours), detail)
        self.progress.update(*self.counts)
