"""How a provider failure becomes a job outcome: retry later, retry with backoff, or stop."""

from __future__ import annotations

from providers.base import ProviderError
from storage.jobs import PermanentJobError, RetryLater


def provider_failure(exc: ProviderError) -> Exception:
    """The exception a job handler raises for `exc`, so the worker retries or stops rightly."""
    if not exc.retryable:
        return PermanentJobError(f"{exc.code or 'refused'}: {exc}")
    if exc.retry_after is not None:
        return RetryLater(exc.retry_after, f"{exc.code or 'retry'}: {exc}")
    return exc
