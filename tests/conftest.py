"""Shared fixtures: databases (SQLite always, PostgreSQL when reachable), Redis, the app.

PostgreSQL and Redis come from TEST_DATABASE_URL / TEST_REDIS_URL. Without them their tests
skip, unless REQUIRE_SERVICES=1 (CI), where a missing service fails the run instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url

from clock import ManualClock
from main import ProviderClients, Resources, account_desk, make_worker
from metrics import Metrics
from providers.shopify.admin import ShopifyAdmin
from settings import JobsSettings, Settings
from storage import migrate
from storage.crypto import SecretBox
from storage.db import Database
from storage.jobs import JobQueue, Worker
from storage.models import Base
from storage.ratelimit import LocalRateLimiter
from web.app import AppDeps, build_app

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "the-test-suite-secret-key-0123456789"
SECURITY = {"secret_key": SECRET_KEY}


def missing_service(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def run_blocking(make_coro: Any) -> Any:
    """Run a coroutine to completion on its own loop, even from inside a running loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make_coro())).result()


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url:
        missing_service("TEST_DATABASE_URL is not set")

    async def probe() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(url), timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        missing_service(f"PostgreSQL at TEST_DATABASE_URL is unreachable: {exc}")
    return url


@pytest.fixture(scope="session")
def pg_scratch(pg_server_url: str) -> Iterator[Any]:
    """A factory of fresh, empty PostgreSQL databases, all dropped at the end of the run."""
    created: list[str] = []
    server = make_url(pg_server_url)

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(asyncpg_dsn(pg_server_url))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def create() -> str:
        name = f"ordertalk_test_{uuid.uuid4().hex[:12]}"
        run_blocking(lambda: admin(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return server.set(drivername="postgresql+asyncpg", database=name).render_as_string(
            hide_password=False
        )

    yield create
    for name in created:
        run_blocking(lambda name=name: admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_migrated_url(pg_scratch: Any) -> str:
    url = pg_scratch()

    async def up() -> None:
        db = Database(url)
        await migrate.upgrade(db)
        await db.close()

    asyncio.run(up())
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "migrated.db"

    async def up() -> None:
        db = Database(f"sqlite+aiosqlite:///{path}")
        await migrate.upgrade(db)
        await db.close()

    asyncio.run(up())
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "ordertalk.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url = request.getfixturevalue("pg_migrated_url")

    async def empty() -> None:
        db = Database(url)
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        async with db.transaction() as session:
            await session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        await db.close()

    asyncio.run(empty())
    return url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def jobs_settings() -> JobsSettings:
    return JobsSettings(max_attempts=3, backoff_base_seconds=10, backoff_max_seconds=600)


@pytest.fixture
def queue(db: Database, clock: ManualClock, jobs_settings: JobsSettings) -> JobQueue:
    return JobQueue(db, clock, jobs_settings)


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL", "")
    if not url:
        missing_service("TEST_REDIS_URL is not set")
    return url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        missing_service(f"Redis at TEST_REDIS_URL is unreachable: {exc}")
    yield client
    await client.aclose()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database={"url": database_url}, security=SECURITY)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    session = aiohttp.ClientSession()
    yield session
    await session.close()


@pytest.fixture
async def provider_clients(
    settings: Settings, clock: ManualClock, http: aiohttp.ClientSession
) -> AsyncIterator[ProviderClients]:
    clients = ProviderClients(settings, http, clock)
    yield clients
    await clients.aclose()


@pytest.fixture
def app_factory(
    settings: Settings,
    clock: ManualClock,
    metrics: Metrics,
    http: aiohttp.ClientSession,
    provider_clients: ProviderClients,
) -> Any:
    def make(db: Database, queue: JobQueue, redis: Any = None) -> Any:
        accounts = account_desk(settings, db, queue, clock, provider_clients)
        return build_app(AppDeps(settings, clock, db, queue, metrics, http, accounts, redis))

    return make


@pytest.fixture
def resources(
    settings: Settings,
    clock: ManualClock,
    db: Database,
    queue: JobQueue,
    metrics: Metrics,
    http: aiohttp.ClientSession,
    provider_clients: ProviderClients,
) -> Resources:
    """What the worker's job handlers use, built as main.py does, on the test's database,
    clock and settings (provider clients for the providers the settings configure)."""
    shopify = ShopifyAdmin(http, settings.shopify.admin_url, settings.shopify.api_version)
    return Resources(
        settings,
        clock,
        db,
        queue,
        metrics,
        None,
        http,
        SecretBox(settings.secret_keys()),
        shopify,
        provider_clients,
        LocalRateLimiter(clock),
    )


@pytest.fixture
def worker(resources: Resources) -> Worker:
    return make_worker(resources)
