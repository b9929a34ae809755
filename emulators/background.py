"""The work an emulator does after answering: a worker pool, and latency timers that hold jobs back.

Accepted jobs (Bedrock's async invocations, TwelveLabs' embed tasks and assets) finish in the background,
as they do at the provider. Stopping cancels the timers and abandons queued work; the job stays pending
in the emulator's state and carries on at the next start.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


class BackgroundWork:
    """A pool of `workers` threads while started, and the timers of work that is due later."""

    def __init__(self, workers: int, name: str) -> None:
        self._workers = workers
        self._name = name
        self._lock = threading.Lock()
        self._timers: set[threading.Timer] = set()
        self._stopping = threading.Event()
        self._pool: ThreadPoolExecutor | None = None

    @property
    def stopping(self) -> bool:
        """True from halt() to the next start(): work that starts now should not."""
        return self._stopping.is_set()

    def start(self) -> None:
        self._stopping.clear()
        self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix=self._name)

    def halt(self) -> None:
        """Stop taking work and cancel the timers (first, before the server stops answering)."""
        self._stopping.set()
        with self._lock:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()

    def close(self) -> None:
        """Shut the pool down: running work finishes, queued work is abandoned."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None

    def later(self, delay: float, work: Callable[[str], None], key: str) -> None:
        """Run `work(key)` in a timer thread after `delay` seconds; at once, in this thread, without one."""
        if delay <= 0:
            work(key)
            return
        timer = threading.Timer(float(delay), self._fire, args=(work, key))
        timer.daemon = True
        with self._lock:
            self._timers.add(timer)
        timer.start()

    def submit(self, work: Callable[[str], None], key: str) -> None:
        """Queue `work(key)` on the pool; nothing once stopping (the job stays pending)."""
        with self._lock:
            pool = self._pool
        if pool is None or self.stopping:
            return
        with contextlib.suppress(RuntimeError):  # pool shut down between the check and submit
            pool.submit(work, key)

    def _fire(self, work: Callable[[str], None], key: str) -> None:
        with self._lock:
            self._timers = {t for t in self._timers if t.is_alive() and t is not threading.current_thread()}
        work(key)
