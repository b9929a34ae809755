"""The lake's bounded retries: again on the race's error, never on another, and always an end."""

import pytest

from resources.storage.retry import race_retries


class Flaky:
    def __init__(self, failures: int, error: type[Exception] = FileNotFoundError):
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"gone on call {self.calls}")
        return "read"


def test_a_race_lost_twice_is_read_on_the_third_try() -> None:
    flaky = Flaky(failures=2)
    assert race_retries(FileNotFoundError, 3)(flaky) == "read" and flaky.calls == 3


def test_it_ends_after_its_attempts_with_the_last_error() -> None:
    flaky = Flaky(failures=10)
    with pytest.raises(FileNotFoundError, match="gone on call 3"):
        race_retries(FileNotFoundError, 3)(flaky)
    assert flaky.calls == 3


def test_another_error_is_not_retried() -> None:
    flaky = Flaky(failures=1, error=PermissionError)
    with pytest.raises(PermissionError):
        race_retries(FileNotFoundError, 3)(flaky)
    assert flaky.calls == 1
