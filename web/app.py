"""The aiohttp application factory: middlewares, typed keys and routes, nothing global."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from clock import Clock
from metrics import Metrics
from settings import Settings
from storage.db import Database
from storage.jobs import JobQueue
from web import health
from web.keys import clock_key, db_key, metrics_key, queue_key, redis_key, settings_key
from web.middlewares import errors, observe


def build_app(
    settings: Settings,
    *,
    clock: Clock,
    db: Database,
    queue: JobQueue,
    metrics: Metrics,
    redis: Any = None,
) -> web.Application:
    app = web.Application(
        client_max_size=settings.server.max_body_bytes, middlewares=[observe, errors]
    )
    app[settings_key] = settings
    app[clock_key] = clock
    app[db_key] = db
    app[queue_key] = queue
    app[metrics_key] = metrics
    app[redis_key] = redis
    health.setup_routes(app)
    return app
