"""Benchmark of the Shopify webhook endpoint on SQLite and PostgreSQL: signed orders/create
deliveries posted at fixed concurrency to `main.py serve`, then paced at 500 requests/s,
beside a floor measured in the same run (a bare aiohttp handler that checks the HMAC and
commits one row per request through SQLAlchemy, on the product's engine settings).

    python bench/ingest.py [--requests N] [--concurrency C] [--pg URL] [--databases LIST]

`serve` runs the job worker in the same process, so the product's figures include turning
each webhook into an order. Throughput is measured by wrk (C, 2 threads, 8 s at the given
concurrency) on the floor and on the product alike, when it is installed (`apt install wrk`).
A closed run from an aiohttp client in Python (its own CPU bounds its rate) then checks the
answers: every 100th request re-sends the delivery sent 50 requests before it (a Shopify
retry), which must be answered "duplicate" and stored once. The load comes from separate
processes; a closed run stops sending after 30 s, and a slower service is measured on the
requests sent by then.
--pg names a PostgreSQL server (default: $TEST_DATABASE_URL, else
postgresql://postgres@127.0.0.1:5432/test); the scratch database `ordertalk_bench_ingest` is
created there and dropped at the end. SQLite runs on a temporary file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import Column, Integer, MetaData, Table, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.shared import (
    Row,
    database_args,
    on_each_database,
    percentile,
    print_table,
    target_note,
)
from flows.shops.shopify_events import WEBHOOK_JOB
from providers.sandbox.shopify import API_VERSION, order_payload, webhook_hmac
from providers.shopify.webhooks import (
    API_VERSION_HEADER,
    EVENT_ID_HEADER,
    SHOP_HEADER,
    TOPIC_HEADER,
    TRIGGERED_AT_HEADER,
    WEBHOOK_ID_HEADER,
    verify_webhook,
)
from storage.db import Database
from storage.models import Job, Order, WebhookReceipt

SCRIPT = Path(__file__).resolve()
MAIN = SCRIPT.parent.parent / "main.py"
SCRATCH_DB = "ordertalk_bench_ingest"
SECRET = "bench-shopify-api-secret"
SHOP = "bench.myshopify.com"
TOPIC = "orders/create"
HMAC_HEADER = "X-Shopify-Hmac-Sha256"
PATH = "/webhooks/shopify"
FIRST_ORDER_ID = 7_000_000_000_000
DUPLICATE_EVERY = 100
DUPLICATE_BACK = 50
PACED_RATE = 500  # requests/s
PACED_SECONDS = 5
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 30
REQUEST_TIMEOUT_SECONDS = 30
DRAIN_TIMEOUT_SECONDS = 90
POLL_SECONDS = 0.1
CLOSED_LIMIT_SECONDS = 30
FAILURE_KINDS = 3
THROUGHPUT_TARGET = 2_000  # req/s
PACED_P99_TARGET_MS = 50
SERVING = re.compile(rb"serving on (http://\S+)")

FLOOR = Table(
    "floor_hits", MetaData(), Column("id", Integer, primary_key=True), Column("body_len", Integer)
)
sessions_key = web.AppKey("sessions", async_sessionmaker[AsyncSession])


@dataclass(frozen=True)
class LoadSpec:
    url: str
    requests: int
    concurrency: int
    first: int  # number of the first order, so every run posts orders of its own
    rate: float | None = None  # None: closed loop; else requests/s, open loop


@dataclass(frozen=True)
class LoadResult:
    requests: int  # sent
    distinct: int
    seconds: float
    offered: float  # requests/s sent
    p50_ms: float
    p99_ms: float
    codes: dict[str, int]  # HTTP status (or "error") -> count
    answers: dict[str, int]  # the JSON body's "status" of 2xx answers -> count
    failures: dict[str, int]  # the commonest non-2xx answers -> count

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def non_2xx(self) -> int:
        return sum(n for code, n in self.codes.items() if not code.startswith("2"))

    @property
    def latency(self) -> str:
        return f"p50 {self.p50_ms:.1f} / p99 {self.p99_ms:.1f} ms"


@dataclass(frozen=True)
class Floor:
    closed: LoadResult
    paced: LoadResult
    stored: int  # rows committed
    wrk: dict[str, float] | None  # the same wrk load as the product's, when wrk is installed


# --- wrk: a load generator in C, so the figure is the service's, not the generator's ---

WRK_SECONDS = 8
WRK_THREADS = 2
WRK_ORDERS = 40_000  # distinct orders the script can post (more than 8 s can use)
WRK_SCRIPT = """
local prefix, rest, first = %s, %s, %d
local sigs = {%s}
local started = 0
function setup(thread) thread:set("tid", started) started = started + 1 end
function init(args) counter = tid end
function request()
  local i = counter %% #sigs
  counter = counter + %d  -- the thread count: threads post disjoint orders
  local id = tostring(first + i)
  return wrk.format("POST", "%s", {
    ["Content-Type"] = "application/json", ["%s"] = "%s", ["%s"] = "%s",
    ["%s"] = sigs[i + 1], ["%s"] = "wh-" .. id, ["%s"] = "ev-" .. id,
    ["%s"] = "2026-01-15T10:30:05.000000Z", ["%s"] = "%s"}, prefix .. id .. rest)
end
"""


def wrk_script(directory: str, first: int) -> Path:
    """A wrk script posting signed, distinct orders (only the order id differs)."""
    path = Path(directory) / f"wrk-{first}.lua"
    if path.exists():  # the floor and the product post the same load
        return path
    marker = 999_999_999_999_999
    template = json.dumps(order_payload(id=marker, order_number=4242))
    prefix, _, rest = template.partition(str(marker))
    signatures = ",".join(
        json.dumps(webhook_hmac(f"{prefix}{first + i}{rest}".encode(), SECRET))
        for i in range(WRK_ORDERS)
    )
    path.write_text(
        WRK_SCRIPT
        % (
            json.dumps(prefix),
            json.dumps(rest),
            first,
            signatures,
            WRK_THREADS,
            PATH,
            TOPIC_HEADER,
            TOPIC,
            SHOP_HEADER,
            SHOP,
            HMAC_HEADER,
            WEBHOOK_ID_HEADER,
            EVENT_ID_HEADER,
            TRIGGERED_AT_HEADER,
            API_VERSION_HEADER,
            API_VERSION,
        )
    )
    return path


async def wrk_run(base: str, script: Path, concurrency: int) -> dict[str, float]:
    """req/s, p50/p99 ms and non-2xx of a closed wrk run."""
    async with child(
        "wrk",
        "-t2",
        f"-c{concurrency}",
        f"-d{WRK_SECONDS}s",
        "--latency",
        "-s",
        str(script),
        base,
        stdout=asyncio.subprocess.PIPE,
    ) as process:
        out = (await process.communicate())[0].decode()

    def number(pattern: str) -> float:
        found = re.search(pattern, out)
        return float(found.group(1)) if found else 0.0

    def millis(label: str) -> float:
        found = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out)
        if not found:
            return 0.0
        return float(found.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]

    return {
        "rate": number(r"Requests/sec:\s+([\d.]+)"),
        "p50": millis(" 50"),
        "p99": millis(" 99"),
        "non_2xx": number(r"Non-2xx or 3xx responses:\s+(\d+)"),
    }


def wrk_row(name: str, result: dict[str, float], floor: Floor, concurrency: int) -> Row:
    floor_rate = floor.wrk["rate"] if floor.wrk else floor.closed.rate
    note = f"floor {floor_rate:,.0f} req/s (x{result['rate'] / floor_rate:.1f}); "
    note += target_note(result["rate"], THROUGHPUT_TARGET, True, "req/s")
    note += f"; non-2xx {result['non_2xx']:.0f}; {result['stored']:,.0f} new deliveries stored"
    return Row(
        f"{name} product, wrk {WRK_SECONDS} s @ {concurrency} conn",
        f"{result['rate']:,.0f} req/s, p50 {result['p50']:.1f} / p99 {result['p99']:.1f} ms",
        note,
    )


# --- load generator (child process) ---


def delivery(number: int) -> tuple[bytes, dict[str, str]]:
    order = order_payload(id=FIRST_ORDER_ID + number, order_number=1000 + number)
    body = json.dumps(order).encode()
    headers = {
        "Content-Type": "application/json",
        HMAC_HEADER: webhook_hmac(body, SECRET),
        TOPIC_HEADER: TOPIC,
        SHOP_HEADER: SHOP,
        WEBHOOK_ID_HEADER: str(uuid.uuid4()),
        EVENT_ID_HEADER: str(uuid.uuid4()),
        TRIGGERED_AT_HEADER: datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        API_VERSION_HEADER: API_VERSION,
    }
    return body, headers


def deliveries(spec: LoadSpec) -> list[tuple[bytes, dict[str, str]]]:
    """The requests to send, with every DUPLICATE_EVERY-th a retry of an earlier one."""
    sent: list[tuple[bytes, dict[str, str]]] = []
    for index in range(spec.requests):
        if index % DUPLICATE_EVERY == DUPLICATE_EVERY - 1:
            sent.append(sent[index - DUPLICATE_BACK])
        else:
            sent.append(delivery(spec.first + index))
    return sent


async def send(
    session: aiohttp.ClientSession, url: str, request: tuple[bytes, dict[str, str]], since: float
) -> tuple[float, str, str]:
    """(latency ms counted from `since`, HTTP status or "error", answer status or detail)."""
    body, headers = request
    try:
        async with session.post(url, data=body, headers=headers) as response:
            text = await response.text()
            code = str(response.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return (time.perf_counter() - since) * 1000, "error", repr(exc)
    elapsed = (time.perf_counter() - since) * 1000
    if response.status // 100 != 2:
        return elapsed, code, text[:200]
    return elapsed, code, json.loads(text).get("status", "")


async def closed_loop(
    session: aiohttp.ClientSession, spec: LoadSpec, requests: list[Any]
) -> list[tuple[float, str, str]]:
    """`spec.concurrency` lanes, each sending its next request when the last is answered,
    until all are sent or CLOSED_LIMIT_SECONDS have passed (the first ones are sent)."""
    results: list[Any] = [None] * len(requests)
    indexes = iter(range(len(requests)))
    deadline = time.perf_counter() + CLOSED_LIMIT_SECONDS

    async def lane() -> None:
        while time.perf_counter() < deadline and (index := next(indexes, None)) is not None:
            results[index] = await send(session, spec.url, requests[index], time.perf_counter())

    await asyncio.gather(*(lane() for _ in range(spec.concurrency)))
    return [result for result in results if result is not None]


async def open_loop(
    session: aiohttp.ClientSession, spec: LoadSpec, requests: list[Any], rate: float
) -> tuple[list[tuple[float, str, str]], float]:
    """Requests sent on a fixed schedule, whatever the answers, and the rate achieved;
    latency counts from the scheduled time, so a stalled server is charged for the requests
    it held up."""
    began = time.perf_counter()
    tasks = []
    for index, request in enumerate(requests):
        due = began + index / rate
        await asyncio.sleep(due - time.perf_counter())
        tasks.append(asyncio.create_task(send(session, spec.url, request, due)))
    offered = (len(requests) - 1) / (time.perf_counter() - began)
    return list(await asyncio.gather(*tasks)), offered


async def load_child(spec: LoadSpec) -> None:
    requests = deliveries(spec)
    connector = aiohttp.TCPConnector(limit=spec.concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        began = time.perf_counter()
        if spec.rate is None:
            results = await closed_loop(session, spec, requests)
            offered = len(results) / (time.perf_counter() - began)
        else:
            results, offered = await open_loop(session, spec, requests, spec.rate)
        seconds = time.perf_counter() - began
    requests = requests[: len(results)]
    latencies = [latency for latency, _, _ in results]
    result = LoadResult(
        requests=len(requests),
        distinct=len({headers[WEBHOOK_ID_HEADER] for _, headers in requests}),
        seconds=seconds,
        offered=offered,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        codes=dict(Counter(code for _, code, _ in results)),
        answers=dict(Counter(detail for _, code, detail in results if code[0] == "2")),
        failures=dict(
            Counter(
                f"{code} {detail}" for _, code, detail in results if code[0] != "2"
            ).most_common(FAILURE_KINDS)
        ),
    )
    print(json.dumps(asdict(result)), flush=True)


# --- floor server (child process) ---


async def floor_hit(request: web.Request) -> web.Response:
    body = await request.read()
    if not verify_webhook(body, request.headers.get(HMAC_HEADER), SECRET):
        return web.json_response({"status": "bad_signature"}, status=401)
    async with request.app[sessions_key].begin() as session:
        await session.execute(insert(FLOOR).values(body_len=len(body)))
    return web.json_response({"status": "accepted"})


async def floor_child(url: str) -> None:
    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.run_sync(FLOOR.metadata.create_all)
    app = web.Application()
    app[sessions_key] = db.sessions
    app.router.add_post(PATH, floor_hit)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(f"floor serving on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await db.close()


# --- the bench (parent process) ---


@asynccontextmanager
async def child(*command: str, **options: Any) -> AsyncIterator[asyncio.subprocess.Process]:
    """A subprocess that is stopped (SIGTERM, then SIGKILL) however the block ends."""
    process = await asyncio.create_subprocess_exec(*command, **options)
    try:
        yield process
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
            except TimeoutError:
                process.kill()
                await process.wait()


def service_env(url: str) -> dict[str, str]:
    """The environment without the caller's own ordertalk settings, plus the bench's."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ORDERTALK_")}
    return env | {
        "ORDERTALK_DATABASE__URL": url,
        "ORDERTALK_SHOPIFY__API_SECRET": SECRET,
        "ORDERTALK_SECURITY__SECRET_KEY": "bench-ingest-secret-key-0123456789ab",
        "ORDERTALK_SERVER__PORT": "0",
        "ORDERTALK_SERVER__LOG_LEVEL": "WARNING",
    }


async def run_cli(env: dict[str, str], directory: str, *args: str) -> None:
    async with child(
        sys.executable,
        str(MAIN),
        *args,
        env=env,
        cwd=directory,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    ) as process:
        out, err = await asyncio.wait_for(process.communicate(), START_TIMEOUT_SECONDS)
    if process.returncode != 0:
        raise RuntimeError(f"main.py {' '.join(args)} failed:\n{(out + err).decode()}")


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


async def announced_url(process: asyncio.subprocess.Process, log: Path) -> str:
    """The URL in the server's "... serving on http://HOST:PORT" line."""
    assert process.stdout is not None
    while line := await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_SECONDS):
        if found := SERVING.search(line):
            return found.group(1).decode()
    await process.wait()
    raise RuntimeError(f"the server exited with status {process.returncode}:\n{tail(log)}")


@asynccontextmanager
async def serving(log: Path, *command: str, **options: Any) -> AsyncIterator[str]:
    """A server subprocess, its stderr in `log`; yields its URL once it is listening."""
    with log.open("wb") as stderr:
        async with child(
            *command, stdout=asyncio.subprocess.PIPE, stderr=stderr, **options
        ) as process:
            yield await announced_url(process, log)


async def load(spec: LoadSpec) -> LoadResult:
    async with child(
        sys.executable,
        str(SCRIPT),
        "--load-child",
        json.dumps(asdict(spec)),
        stdout=asyncio.subprocess.PIPE,
    ) as process:
        out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the load generator failed with status {process.returncode}")
    return LoadResult(**json.loads(out))


@asynccontextmanager
async def connection(url: str) -> AsyncIterator[AsyncConnection]:
    """A plain connection of its own, so the bench's reads never wait on the service's pool."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


async def count(url: str, table: Any) -> int:
    async with connection(url) as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar_one()


async def webhook_jobs(url: str) -> Counter[str]:
    statement = (
        select(Job.status, func.count()).where(Job.kind == WEBHOOK_JOB).group_by(Job.status)
    )
    async with connection(url) as conn:
        return Counter(dict((await conn.execute(statement)).all()))


async def drain(url: str) -> tuple[Counter[str], float]:
    """Wait until the worker has no webhook job left to run; (job counts, seconds waited)."""
    began = time.perf_counter()
    while (jobs := await webhook_jobs(url))["queued"] + jobs["running"]:
        if time.perf_counter() - began > DRAIN_TIMEOUT_SECONDS:
            break
        await asyncio.sleep(POLL_SECONDS)
    return jobs, time.perf_counter() - began


SPLIT_OFFSET = 10_000_000


def closed_spec(url: str, args: argparse.Namespace, offset: int = 0) -> LoadSpec:
    return LoadSpec(url + PATH, args.requests, args.concurrency, first=offset + 1)


def paced_spec(url: str, args: argparse.Namespace, offset: int = 0) -> LoadSpec:
    count = PACED_RATE * PACED_SECONDS
    first = offset + args.requests + 1
    return LoadSpec(url + PATH, count, args.concurrency, first=first, rate=PACED_RATE)


def failures(*results: LoadResult) -> str:
    seen = sum((Counter(result.failures) for result in results), Counter[str]())
    return "; ".join(f"{count:,} x {answer[:150]}" for answer, count in seen.most_common())


async def bench_floor(url: str, directory: str, args: argparse.Namespace) -> Floor:
    name = make_url(url).get_backend_name()
    print(
        f"{name}: floor, {args.requests:,} requests at {args.concurrency} connections", flush=True
    )
    log = Path(directory) / f"floor-{name}.log"
    async with serving(log, sys.executable, str(SCRIPT), "--floor-child", url) as base:
        wrk = None
        if shutil.which("wrk"):
            script = wrk_script(directory, FIRST_ORDER_ID + 5_000_000)
            wrk = await wrk_run(base, script, args.concurrency)
        closed = await load(closed_spec(base, args))
        print(f"{name}: floor, paced at {PACED_RATE}/s for {PACED_SECONDS} s", flush=True)
        paced = await load(paced_spec(base, args))
    return Floor(closed, paced, await count(url, FLOOR), wrk)


def closed_run(result: LoadResult, args: argparse.Namespace) -> str:
    return f"{result.requests:,} req @ {args.concurrency} conn"


def floor_rows(name: str, args: argparse.Namespace, floor: Floor) -> list[Row]:
    closed, paced = floor.closed, floor.paced
    note = f"1 commit per request; {floor.stored:,} rows for {closed.requests + paced.requests:,}"
    if floor.wrk:
        note += " and the wrk run"
    if non_2xx := closed.non_2xx + paced.non_2xx:
        note += f"; non-2xx {non_2xx}: {failures(closed, paced)}"
    wrk = floor.wrk
    return [
        *(
            [
                Row(
                    f"{name} floor, wrk {WRK_SECONDS} s @ {args.concurrency} conn",
                    f"{wrk['rate']:,.0f} req/s, p50 {wrk['p50']:.1f} / p99 {wrk['p99']:.1f} ms",
                    f"non-2xx {wrk['non_2xx']:.0f}",
                )
            ]
            if wrk
            else []
        ),
        Row(
            f"{name} floor, {closed_run(closed, args)}",
            f"{closed.rate:,.0f} req/s",
            closed.latency,
        ),
        Row(f"{name} floor, paced @ {paced.offered:,.0f}/s", paced.latency, note),
    ]


async def bench_product(
    url: str, directory: str, args: argparse.Namespace, floor: Floor, split: bool
) -> list[Row]:
    """One layout: `serve` alone (web + worker), or split (`serve` + a `worker` process)."""
    name = make_url(url).get_backend_name() + (" split" if split else "")
    env = service_env(url) | {"ORDERTALK_JOBS__RUN_IN_SERVE": "false" if split else "true"}
    if not split:
        await run_cli(env, directory, "migrate")
        await run_cli(env, directory, "shop", "add", "--domain", SHOP)
    log = Path(directory) / f"serve-{name.replace(' ', '-')}.log"
    print(
        f"{name}: serve, {args.requests:,} requests at {args.concurrency} connections", flush=True
    )
    async with contextlib.AsyncExitStack() as stack:
        if split:
            await stack.enter_async_context(
                child(
                    sys.executable,
                    str(MAIN),
                    "worker",
                    env=env,
                    cwd=directory,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            )
        base = await stack.enter_async_context(
            serving(log, sys.executable, str(MAIN), "serve", env=env, cwd=directory)
        )
        offset = SPLIT_OFFSET if split else 0  # new orders, not retries of the first run's
        wrk = None
        if shutil.which("wrk"):
            script = wrk_script(directory, FIRST_ORDER_ID + offset + 5_000_000)
            before = await count(url, WebhookReceipt)
            wrk = await wrk_run(base, script, args.concurrency)
            wrk["stored"] = await count(url, WebhookReceipt) - before
            await drain(url)
        receipts_before = await count(url, WebhookReceipt)
        closed = await load(closed_spec(base, args, offset))
        backlog = (await webhook_jobs(url))["queued"]
        jobs, waited = await drain(url)
        print(f"{name}: serve, paced at {PACED_RATE}/s for {PACED_SECONDS} s", flush=True)
        paced = await load(paced_spec(base, args, offset))
        jobs, _ = await drain(url)
    receipts = await count(url, WebhookReceipt) - receipts_before
    orders = await count(url, Order) - receipts_before
    jobs["done"] -= receipts_before
    return [
        *([wrk_row(name, wrk, floor, args.concurrency)] if wrk else []),
        *product_rows(name, args, floor, closed, paced),
        processing_row(name, closed, backlog, waited),
        dedup_row(name, closed, paced, receipts, orders, jobs),
        log_row(name, log),
    ]


def product_rows(
    name: str, args: argparse.Namespace, floor: Floor, closed: LoadResult, paced: LoadResult
) -> list[Row]:
    non_2xx = closed.non_2xx + paced.non_2xx
    rate_note = f"floor x{closed.rate / floor.closed.rate:.1f}; "
    if floor.wrk:  # wrk measured the throughput; this client's own CPU bounds its rate
        rate_note += "client-bound (aiohttp client in Python); checks answers and dedup"
    else:
        rate_note += target_note(closed.rate, THROUGHPUT_TARGET, True, "req/s")
    non_2xx_note = target_note(non_2xx, 0, False, "non-2xx")
    if non_2xx:
        non_2xx_note += f"; {failures(closed, paced)}"
    return [
        Row(f"{name} product, {closed_run(closed, args)}", f"{closed.rate:,.0f} req/s", rate_note),
        Row(
            f"{name} product, {closed_run(closed, args)}",
            closed.latency,
            f"floor {floor.closed.latency}",
        ),
        Row(
            f"{name} product, paced @ {paced.offered:,.0f}/s",
            paced.latency,
            f"floor {floor.paced.latency}; "
            + target_note(paced.p99_ms, PACED_P99_TARGET_MS, False, "ms p99"),
        ),
        Row(
            f"{name} product, non-2xx",
            f"{non_2xx:,} of {closed.requests + paced.requests:,}",
            non_2xx_note,
        ),
    ]


def processing_row(name: str, closed: LoadResult, backlog: int, waited: float) -> Row:
    processed = closed.distinct / (closed.seconds + waited)
    return Row(
        f"{name} product, stored + processed",
        f"{processed:,.0f} webhooks/s",
        f"worker jobs queued when the load ended: {backlog:,}, drained in {waited:.1f} s",
    )


def dedup_row(
    name: str,
    closed: LoadResult,
    paced: LoadResult,
    receipts: int,
    orders: int,
    jobs: Counter[str],
) -> Row:
    distinct = closed.distinct + paced.distinct
    duplicates = closed.requests + paced.requests - distinct
    answered = Counter(closed.answers) + Counter(paced.answers)
    ok = (
        receipts == distinct
        and answered["accepted"] == distinct
        and answered["duplicate"] == duplicates
        and jobs["done"] == distinct
    )
    return Row(
        f"{name} product, dedup + durability",
        f"{receipts:,} receipts / {distinct:,} distinct",
        f"{'ok' if ok else 'WRONG'}: answers {dict(answered)}, {duplicates} re-sent; "
        f"jobs {dict(jobs)}; {orders:,} orders",
    )


def log_row(name: str, log: Path) -> Row:
    lines = log.read_text(errors="replace").splitlines()
    first = f"first: {log_message(lines[0])}" if lines else ""
    return Row(f"{name} product, serve log", f"{len(lines):,} lines", first)


def log_message(line: str) -> str:
    """A JSON log line as `LEVEL logger: message`, with the exception's last line."""
    try:
        entry = json.loads(line)
    except ValueError:
        return line[:200]
    exception = entry.get("exc", "").strip().splitlines()[-1:]
    return " | ".join([f"{entry['level']} {entry['logger']}: {entry['msg']}", *exception])


async def bench_database(url: str, directory: str, args: argparse.Namespace) -> list[Row]:
    floor = await bench_floor(url, directory, args)
    rows = floor_rows(make_url(url).get_backend_name(), args, floor)
    rows += await bench_product(url, directory, args, floor, split=False)
    if make_url(url).get_backend_name() == "sqlite":
        return rows  # one process per SQLite file: a second one fights for its write lock
    return rows + await bench_product(url, directory, args, floor, split=True)


async def bench(args: argparse.Namespace) -> list[Row]:
    return await on_each_database(args, SCRATCH_DB, bench_database)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10_000, help="requests per closed run")
    parser.add_argument("--concurrency", type=int, default=32, help="connections held open")
    database_args(parser)
    parser.add_argument("--load-child", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--floor-child", metavar="URL", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.load_child:
        asyncio.run(load_child(LoadSpec(**json.loads(args.load_child))))
        return
    if args.floor_child:
        asyncio.run(floor_child(args.floor_child))
        return
    began = time.perf_counter()
    print_table(asyncio.run(bench(args)), "floor / target / check")
    print(f"\n(total {time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
