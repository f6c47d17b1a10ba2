"""Operational endpoints: `/healthz` (database and Redis reachability) and `/metrics`.

`/metrics` tells how busy the service is and how its jobs fare: with `server.metrics_token`
set it answers only `Authorization: Bearer <token>`; without, only clients on this machine's
loopback that did not come through a proxy (a proxy's forwarding headers mark them).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from web.errors import json_error
from web.keys import db_key, metrics_key, queue_key, redis_key, settings_key

_LOGGER = logging.getLogger(__name__)
PROBE_TIMEOUT = 2.0
FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


async def healthz(request: web.Request) -> web.Response:
    checks = {"database": "ok", "redis": "disabled"}
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await request.app[db_key].ping()
    except Exception as exc:
        _LOGGER.warning("health: database unreachable: %s", exc)
        checks["database"] = "unreachable"
    redis = request.app[redis_key]
    if redis is not None:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            _LOGGER.warning("health: redis unreachable: %s", exc)
            checks["redis"] = "unreachable"
    healthy = "unreachable" not in checks.values()
    return web.json_response(
        {"status": "ok" if healthy else "unavailable", **checks}, status=200 if healthy else 503
    )


async def metrics(request: web.Request) -> web.Response:
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    registry = request.app[metrics_key]
    queue = request.app[queue_key]
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            for state, count in (await queue.counts()).items():
                registry.jobs.labels(state).set(count)
            registry.job_backlog_age.set(await queue.oldest_due_lag())
    except Exception as exc:
        _LOGGER.warning("metrics: job figures unavailable: %s", exc)
    return web.Response(
        body=generate_latest(registry.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def _refusal(request: web.Request) -> web.Response | None:
    """Why this client may not read the metrics, or None if it may."""
    token = request.app[settings_key].server.metrics_token.get_secret_value()
    if token:
        presented = request.headers.get("Authorization", "").encode()
        if hmac.compare_digest(presented, f"Bearer {token}".encode()):
            return None
        refused = json_error(
            401, "send Authorization: Bearer <server.metrics_token>", "unauthorized"
        )
        refused.headers["WWW-Authenticate"] = "Bearer"
        return refused
    if _from_loopback(request):
        return None
    return json_error(
        403,
        "metrics answer loopback clients only; set server.metrics_token to scrape from elsewhere",
        "forbidden",
    )


def _from_loopback(request: web.Request) -> bool:
    if any(name in request.headers for name in FORWARDING_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
