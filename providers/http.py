"""One HTTP exchange with a provider, and what a failed one means: a failure before the request
could be written (refused, unresolvable, no connection in time) is safe to retry; a timeout or a
dropped connection after that is *in doubt*: the provider may have acted on the request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from providers.base import ProviderError

# Raised before a byte of the request went out.
_UNSENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, aiohttp.InvalidURL)


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
            method, url, timeout=phased(client_timeout), **request
        ) as response:
            text = (await response.read()).decode("utf-8", "replace")
            return Answer(response.status, response.headers.get("Retry-After"), text)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise transport_error(where, exc) from exc


def phased(timeout: aiohttp.ClientTimeout) -> aiohttp.ClientTimeout:
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


def transport_error(where: str, exc: BaseException) -> ProviderError:
    """The retryable ProviderError of a request that got no answer; `in_doubt` unless the
    request provably never left (see ProviderError)."""
    if isinstance(exc, _UNSENT):
        return ProviderError(f"{where}: {exc}", retryable=True, code="CONNECTION")
    if isinstance(exc, TimeoutError):
        return ProviderError(f"{where}: timed out", retryable=True, code="TIMEOUT", in_doubt=True)
    return ProviderError(f"{where}: {exc}", retryable=True, code="CONNECTION", in_doubt=True)
