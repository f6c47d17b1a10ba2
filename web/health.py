"""Operational endpoints: `/healthz` (database and Redis reachability) and `/metrics`."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from web.keys import db_key, metrics_key, queue_key, redis_key

_LOGGER = logging.getLogger(__name__)
PROBE_TIMEOUT = 2.0


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


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
