"""What every provider shares: the typed error that tells the job system whether to retry."""

from __future__ import annotations


class ProviderError(Exception):
    """A provider refused or failed a request.

    `retryable` errors (5xx, timeouts, throttling) are retried by the job system, after
    `retry_after` seconds when the provider said how long to wait; the others (invalid number,
    opted out, order already cancelled) are recorded with `code` and not retried.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        code: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code
        self.retry_after = retry_after
