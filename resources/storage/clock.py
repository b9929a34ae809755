"""Monotonic time and sleeping as one argument, for the loops that wait: the real ones by default.

A loop that polls, backs off or stops at a deadline takes a `Clock` instead of calling `time` itself, so a
test can pass one that advances only when slept: how many polls, refusals or ticks fit before a deadline is
then a fixed number, whatever the load on the machine.
"""

import time


class Clock:
    """The real monotonic clock and sleep; a fake subclasses this and overrides both."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


REAL_CLOCK = Clock()
