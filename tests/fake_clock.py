"""A clock for tests of loops that wait: time moves only when the code under test sleeps."""

from collections.abc import Callable
from dataclasses import dataclass, field

from resources.storage.clock import Clock


@dataclass
class FakeClock(Clock):
    """Starts at `now`; every `sleep` is recorded and advances it by exactly that much, at once.

    `on_sleep(n)`, if given, runs after the n-th sleep (1-based): the world changing while the code waits.
    """

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)
    on_sleep: Callable[[int], None] | None = None

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, f"slept {seconds} s"
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))

    @property
    def slept(self) -> float:
        return sum(self.sleeps)
