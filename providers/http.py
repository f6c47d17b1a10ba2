"""One HTTP exchange with a provider, and what a failed one means: a failure before the request
could be written (refused, unresolvable, no connection in time) is safe to retry, and so is a
read; a POST that timed out or lost its connection after that is *in doubt*: the provider may
have acted on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from providers.base import ProviderError

# Raised before a byte of the request went out.
_UNSENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, aiohttp.InvalidURL)
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: str | None  # the Retry-After header, as sent
    text: str


async def exchange(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    where: str,
    *,
    client_timeout: aiohttp.ClientTimeout,
    **request: Any,
) -> Answer:
    """Send one request and read the whole answer; `where` names it in errors."""
    try:
        async with http.request(
            method, url, timeout=_phased(client_timeout), **request
        ) as response:
            text = (await response.read()).decode("utf-8", "replace")
            return Answer(response.status, response.headers.get("Retry-After"), text)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise _transport_error(where, exc, method) from exc


def _phased(timeout: aiohttp.ClientTimeout) -> aiohttp.ClientTimeout:
    """`timeout` with a connect phase shorter than the whole, so a request that never got a
    connection fails as a ConnectionTimeoutError (nothing sent) rather than as the total
    timeout, which may strike after the body went out."""
    if timeout.total is None or timeout.connect is not None:
        return timeout
    return aiohttp.ClientTimeout(
        total=timeout.total,
        connect=timeout.total / 2,
        sock_read=timeout.sock_read,
        sock_connect=timeout.sock_connect,
        ceil_threshold=timeout.ceil_threshold,
    )


def _transport_error(where: str, exc: BaseException, method: str) -> ProviderError:
    """The retryable ProviderError of a request that got no answer; `in_doubt` unless it
    was a read or provably never left (see ProviderError)."""
    doubt = method.upper() not in _READS and not isinstance(exc, _UNSENT)
    if isinstance(exc, _UNSENT):
        return ProviderError(f"{where}: {exc}", retryable=True, code="CONNECTION")
    if isinstance(exc, TimeoutError):
        return ProviderError(f"{where}: timed out", retryable=True, code="TIMEOUT", in_doubt=doubt)
    return ProviderError(f"{where}: {exc}", retryable=True, code="CONNECTION", in_doubt=doubt)
