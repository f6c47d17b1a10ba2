"""One HTTP exchange with a provider; a timeout or connection failure is a retryable error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from providers.base import ProviderError


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
        async with http.request(method, url, timeout=client_timeout, **request) as response:
            text = (await response.read()).decode("utf-8", "replace")
            return Answer(response.status, response.headers.get("Retry-After"), text)
    except TimeoutError:
        raise ProviderError(f"{where}: timed out", retryable=True, code="TIMEOUT") from None
    except aiohttp.ClientError as exc:
        raise ProviderError(f"{where}: {exc}", retryable=True, code="CONNECTION") from exc
