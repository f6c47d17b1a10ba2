"""The API secret keys of the custom apps that shops connected with, for the webhook intake.

Shopify signs a custom app's webhooks with that app's own secret, so the intake needs the
shop's secret before it can accept a delivery. The intake must not pay a database round trip
per webhook: every shop's secret is read in one query and kept, read again after
`REFRESH_SECONDS`, or sooner when a delivery fails verification (a secret stored a moment ago
by `shop add` in another process), at most once per `RETRY_SECONDS`, however many fail.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from sqlalchemy import select

from storage.crypto import SecretBox, SecretBoxError
from storage.db import Database
from storage.models import Shop

_LOGGER = logging.getLogger(__name__)
REFRESH_SECONDS = 60.0
RETRY_SECONDS = 1.0


def seal_app_secret(box: SecretBox, api_secret: str) -> str:
    return box.seal({"api_secret": api_secret}) if api_secret else ""


def open_app_secret(box: SecretBox, sealed: str) -> str:
    return str(box.open(sealed).get("api_secret", "")) if sealed else ""


class WebhookSecrets:
    def __init__(
        self, db: Database, box: SecretBox, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.db = db
        self.box = box
        self._monotonic = monotonic
        # domain -> (the sealed secret as stored, the secret): unchanged ones are not opened
        # again at each read.
        self._secrets: dict[str, tuple[str, str]] = {}
        self._read_at = -math.inf
        self._lock = asyncio.Lock()

    async def secret(self, domain: str, *, fresh: bool = False) -> str:
        """The custom app's secret of the shop with `domain` ("" if it has none). `fresh`:
        read them again first unless that was done within `RETRY_SECONDS`."""
        age = self._monotonic() - self._read_at
        if age > REFRESH_SECONDS or (fresh and age > RETRY_SECONDS):
            await self._read(fresh)
        return self._secrets.get(domain, ("", ""))[1]

    def forget(self) -> None:
        """A secret changed in this process: read them again at the next delivery."""
        self._read_at = -math.inf

    async def _read(self, fresh: bool) -> None:
        async with self._lock:
            age = self._monotonic() - self._read_at
            if age <= (RETRY_SECONDS if fresh else REFRESH_SECONDS):
                return  # read while this one waited for the lock
            self._read_at = self._monotonic()
            try:
                async with self.db.sessions() as session:
                    rows = (
                        await session.execute(
                            select(Shop.domain, Shop.app_secret).where(Shop.app_secret != "")
                        )
                    ).all()
            except Exception as exc:
                # The platform's secret still verifies; custom apps wait for the next read.
                _LOGGER.warning("custom apps' webhook secrets not read: %s", exc)
                return
            secrets = {}
            for domain, sealed in rows:
                known = self._secrets.get(domain)
                if known is not None and known[0] == sealed:
                    secrets[domain] = known
                    continue
                try:
                    secrets[domain] = (sealed, open_app_secret(self.box, sealed))
                except SecretBoxError:
                    _LOGGER.error("shop %s: its custom app's secret cannot be decrypted", domain)
            self._secrets = secrets
