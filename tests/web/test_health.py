"""`/healthz` and `/metrics` on the real app, against real databases and Redis."""

from __future__ import annotations

import ipaddress
import socket
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from main import account_desk
from storage.db import Database
from storage.jobs import ClaimedJob, JobQueue, NewJob, Worker
from tests.conftest import missing_service
from web.app import AppDeps, build_app


@pytest.fixture
async def client(aiohttp_client, app_factory, db, queue):
    return await aiohttp_client(app_factory(db, queue))


async def test_healthz_ok_with_database(client):
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "database": "ok", "redis": "disabled"}


async def test_healthz_reports_redis(aiohttp_client, app_factory, db, queue, redis):
    client = await aiohttp_client(app_factory(db, queue, redis=redis))
    response = await client.get("/healthz")
    assert response.status == 200
    assert (await response.json())["redis"] == "ok"


# A port nothing listens on: connection refused. (An unopenable SQLite file is not used:
# aiosqlite finishes a failed connect on its thread after the test's loop has closed.)
UNREACHABLE = "postgresql+asyncpg://postgres@127.0.0.1:9/test"


async def test_healthz_503_when_database_unreachable(
    aiohttp_client, app_factory, clock, jobs_settings
):
    db = Database(UNREACHABLE)
    client = await aiohttp_client(app_factory(db, JobQueue(db, clock, jobs_settings)))
    response = await client.get("/healthz")
    assert response.status == 503
    assert await response.json() == {
        "status": "unavailable",
        "database": "unreachable",
        "redis": "disabled",
    }
    # Metrics still answer, without the job figures.
    assert (await client.get("/metrics")).status == 200
    await db.close()


async def test_healthz_503_when_redis_configured_but_down(aiohttp_client, app_factory, db, queue):
    redis = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=1)
    client = await aiohttp_client(app_factory(db, queue, redis=redis))
    response = await client.get("/healthz")
    assert response.status == 503
    assert (await response.json())["redis"] == "unreachable"
    await redis.aclose()


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or (line.startswith(name + "{") and " " in line):
            key, value = line.rsplit(" ", 1)
            if key == name:
                return float(value)
    raise AssertionError(f"{name} not in metrics")


async def test_failing_job_goes_dead_and_metrics_show_it(client, db, queue, clock, metrics):
    async def broken(job: ClaimedJob) -> None:
        raise TimeoutError("provider timed out")

    worker = Worker(
        queue,
        {"broken": broken},
        clock=clock,
        settings=queue.settings,
        wakeup=db.wakeup,
        metrics=metrics,
    )
    async with db.transaction() as session:
        await queue.enqueue(session, NewJob("broken"), NewJob("later", due_at=clock.now()))
    queued_lag_text = await (await client.get("/metrics")).text()
    assert metric(queued_lag_text, 'ordertalk_jobs{state="queued"}') == 2

    for _ in range(queue.settings.max_attempts):
        await worker.run_until_idle()
        clock.advance(timedelta(seconds=queue.settings.backoff_max_seconds))

    text = await (await client.get("/metrics")).text()
    assert metric(text, 'ordertalk_jobs{state="dead"}') == 2  # "later" has no handler
    assert metric(text, 'ordertalk_jobs{state="queued"}') == 0
    assert metric(text, 'ordertalk_job_runs_total{kind="broken",outcome="retry"}') == 2
    assert metric(text, 'ordertalk_job_runs_total{kind="broken",outcome="dead"}') == 1
    assert metric(text, 'ordertalk_job_start_lag_seconds_count{kind="broken"}') == 3
    assert metric(text, "ordertalk_job_lag_seconds") == 0


async def test_job_lag_gauge_shows_the_oldest_waiting_job(client, db, queue, clock):
    async with db.transaction() as session:
        await queue.enqueue(session, NewJob("waiting"))
    clock.advance(timedelta(seconds=90))
    text = await (await client.get("/metrics")).text()
    assert metric(text, "ordertalk_job_lag_seconds") == 90


# /metrics: a bearer token when server.metrics_token is set, else loopback only ------------

METRICS_TOKEN = "metrics-scraper-token-0123456789abc"


def outward_address() -> str | None:
    """This machine's address on its default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


@pytest.fixture
def build(clock, metrics, http, db, queue, settings, provider_clients):
    def make(**server: Any):
        configured = settings.model_copy(
            update={"server": settings.server.model_copy(update=server)}
        )
        accounts = account_desk(configured, db, queue, clock, provider_clients)
        return build_app(AppDeps(configured, clock, db, queue, metrics, http, accounts))

    return make


async def test_metrics_without_a_token_answer_loopback_only(aiohttp_server, build, http):
    server = await aiohttp_server(build(), host="0.0.0.0")
    local = await http.get(f"http://127.0.0.1:{server.port}/metrics")
    assert local.status == 200 and "ordertalk_http_requests_total" in await local.text()
    # Through a proxy on this machine, the client is whoever the proxy serves.
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        proxied = await http.get(
            f"http://127.0.0.1:{server.port}/metrics", headers={header: "203.0.113.9"}
        )
        assert proxied.status == 403
        assert (await proxied.json())["error"]["code"] == "forbidden"
    address = outward_address()
    if address is None:
        missing_service("no network address besides loopback to call /metrics from")
    remote = await http.get(f"http://{address}:{server.port}/metrics")
    assert remote.status == 403
    assert "server.metrics_token" in (await remote.json())["error"]["message"]


async def test_metrics_with_a_token_need_it_from_everywhere(aiohttp_server, build, http):
    server = await aiohttp_server(build(metrics_token=SecretStr(METRICS_TOKEN)), host="0.0.0.0")
    hosts = ["127.0.0.1", *filter(None, [outward_address()])]
    for host in hosts:
        url = f"http://{host}:{server.port}/metrics"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": METRICS_TOKEN}):
            refused = await http.get(url, headers=headers)
            assert refused.status == 401
            assert refused.headers["WWW-Authenticate"] == "Bearer"
            assert (await refused.json())["error"]["code"] == "unauthorized"
        scraped = await http.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert scraped.status == 200
        assert "ordertalk_jobs" in await scraped.text()
