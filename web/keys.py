"""Typed application keys: what the composition root hands to request handlers."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from clock import Clock
from metrics import Metrics
from settings import Settings
from storage.db import Database
from storage.jobs import JobQueue

settings_key = web.AppKey("settings", Settings)
clock_key = web.AppKey("clock", Clock)
db_key = web.AppKey("db", Database)
queue_key = web.AppKey("queue", JobQueue)
metrics_key = web.AppKey("metrics", Metrics)
# A redis.asyncio.Redis client, or None when Redis is not configured.
redis_key = web.AppKey("redis", Any)
