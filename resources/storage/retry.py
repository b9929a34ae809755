"""Bounded retries for the races between the lake's writers (a file folded away while listed, a Delta
commit that lost to another writer): every one ends, re-raising the last error."""

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential, wait_none


def race_retries(error: type[BaseException], attempts: int, backoff_sec: float = 0.0) -> Retrying:
    """Call a function through it (`race_retries(...)(read)`): again on `error`, at most `attempts` times
    in all, waiting `backoff_sec`, then twice that, and so on between tries (none by default)."""
    return Retrying(
        stop=stop_after_attempt(attempts),
        retry=retry_if_exception_type(error),
        wait=wait_exponential(multiplier=backoff_sec) if backoff_sec else wait_none(),
        reraise=True,
    )
