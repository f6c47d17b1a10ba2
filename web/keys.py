"""Typed application keys: what the composition root hands to request handlers."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from clock import Clock
from flows.channels.account_desk import AccountDesk
from flows.verification.customer_page import CustomerDesk
from metrics import Metrics
from settings import Settings
from storage.crypto import SecretBox
from storage.db import Database
from storage.inbox import Inbox
from storage.jobs import JobQueue
from storage.ratelimit import RateLimiter

settings_key = web.AppKey("settings", Settings)
clock_key = web.AppKey("clock", Clock)
db_key = web.AppKey("db", Database)
queue_key = web.AppKey("queue", JobQueue)
inbox_key = web.AppKey("inbox", Inbox)
metrics_key = web.AppKey("metrics", Metrics)
secret_box_key = web.AppKey("secret_box", SecretBox)
# The customer's side of verifications: the /v/{token} page and the OTP API.
customer_desk_key = web.AppKey("customer_desk", CustomerDesk)
# The shared outbound HTTP session (provider calls made inside a request, e.g. OAuth).
http_key = web.AppKey("http", aiohttp.ClientSession)
# A redis.asyncio.Redis client, or None when Redis is not configured.
redis_key = web.AppKey("redis", Any)
# The provider-account use cases: connect, choose, the setup list.
accounts_key = web.AppKey("accounts", AccountDesk)
# Request rate limits (the OTP API's): in Redis when it is configured, else in-process.
rate_limiter_key = web.AppKey("rate_limiter", RateLimiter)
