"""Sale day: a burst of COD orders from signed webhooks to the first contact with each
customer, through a fake Exotel on loopback that enforces the account's rate limit.

    python bench/burst.py [--orders N] [--rate R] [--contact call|sms] [--layout L]
                          [--mix] [--pg URL]

Every shop is installed with its own Exotel account (its own caller id and SMS sender) and
the product's Exotel rate (`providers.exotel.calls_per_second` / `messages_per_second`) set
to --rate; the fake answers HTTP 429 (Retry-After: 1) beyond that rate per account, with a
burst of a tenth of a second's worth (at least 2). Orders are posted as signed orders/create
webhooks at
full speed (64 connections), one in five delivered twice (a Shopify retry); each order has
its own customer phone, so each contact is matched to its order.

Layouts: `sqlite` (one `serve`: web + worker), `pg` (PostgreSQL + Redis: 2 `serve` that only
answer HTTP + 2 `worker` processes, one account's limit shared through Redis). --mix posts
the fairness mix: one big shop with --orders orders and 20 small shops with 10 each,
interleaved as they come; the small shops' latency is printed beside a run of the small
shops alone. With calls, a further shop whose calling window is closed gets 5 orders: none
of its customers may be called (an OTP, the first SMS here, never waits for the window).

Printed: ingest rate and non-2xx answers (must be 0); the time from the first order posted
to the last first contact at the provider, against the provider-limited minimum (the
largest shop's orders / rate); p50/p99 of order-to-first-contact; 429s; contacts outside a
calling window and duplicate contacts (must be 0); peak RSS of every process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web
from sqlalchemy import delete, func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest import child, run_cli, serving
from bench.shared import DEFAULT_PG, Row, percentile, print_table, scratch_postgres, target_note
from clock import SystemClock
from flows.shops import config as shop_config
from flows.shops.onboarding import ShopifyAccess, create_shop
from main import ProviderClients, account_desk
from providers.sandbox.exotel import FakeExotel
from providers.sandbox.shopify import API_VERSION, order_payload, webhook_hmac
from providers.shopify.webhooks import (
    API_VERSION_HEADER,
    EVENT_ID_HEADER,
    SHOP_HEADER,
    TOPIC_HEADER,
    TRIGGERED_AT_HEADER,
    WEBHOOK_ID_HEADER,
)
from settings import Settings
from storage.crypto import SecretBox
from storage.db import Database
from storage.jobs import JobQueue
from storage.models import Job, Order, Shop

SCRIPT = Path(__file__).resolve()
MAIN = SCRIPT.parent.parent / "main.py"
# Its own per run: two runs at once on one server would drop each other's database.
SCRATCH_DB = f"ordertalk_bench_burst_{os.getpid()}"
SECRET = "bench-burst-app-secret"
SECRET_KEY = "bench-burst-secret-key-0123456789abcdef"
HMAC_HEADER = "X-Shopify-Hmac-Sha256"
CONNECTIONS = 64
DUPLICATE_EVERY = 5
SMALL_SHOPS, SMALL_ORDERS, CLOSED_ORDERS = 20, 10, 5
FLOW_ID = "214512"
DRAIN_LIMIT_SECONDS = 1800
SETTLE_SECONDS = 3.0  # after the last contact, to catch late duplicates
DRAIN_TARGET = 1.05  # x the provider-limited minimum
FAIRNESS_TARGET = 2.0  # x the small shops' p99 alone


@dataclass(frozen=True)
class BenchShop:
    number: int
    orders: int
    zone: str  # its calling window (9 to 21) is open now in this zone, or closed
    closed: bool = False

    @property
    def domain(self) -> str:
        return f"burst{self.number}.myshopify.com"

    @property
    def caller_id(self) -> str:
        return f"0804711{self.number:04d}"

    @property
    def sender(self) -> str:
        return "BN" + "".join(chr(ord("A") + int(d)) for d in f"{self.number:04d}")

    def phone(self, order: int) -> str:
        return f"+919{self.number:03d}{order:06d}"


# --- the fake provider (child process) ---


class LimitedExotel(FakeExotel):
    """The fake Exotel, limited to `rate` calls and SMS per second per caller id / sender;
    every accepted contact is logged as "time kind account customer"."""

    def __init__(self, rate: float, log: Path) -> None:
        super().__init__()
        self.interval = 1.0 / rate
        self.tolerance = max(1.0, rate * 0.1 - 1) * self.interval
        self.tat: dict[str, float] = {}
        self.log = log.open("a", buffering=1)
        self.throttled = 0

    def _allow(self, key: str) -> bool:
        now = time.time()
        tat = max(self.tat.get(key, now), now)
        if tat - self.tolerance > now:
            self.throttled += 1
            self.log.write(f"{now!r} throttled {key} -\n")
            return False
        self.tat[key] = tat + self.interval
        return True

    async def _limited(self, request: web.Request, kind: str, account: str, to: str) -> Any:
        if not self._allow(f"{kind}:{account}"):
            return web.json_response(
                {"RestException": {"Status": 429, "Message": "Too Many Requests"}},
                status=429,
                headers={"Retry-After": "1"},
            )
        answer = await (self._connect_now if kind == "call" else self._send_now)(request)
        if answer.status == 200:
            self.log.write(f"{time.time()!r} {kind} {account} {to}\n")
        return answer

    async def _connect(self, request: web.Request) -> web.Response:
        form = await request.post()
        return await self._limited(request, "call", str(form["CallerId"]), str(form["From"]))

    async def _send_sms(self, request: web.Request) -> web.Response:
        form = await request.post()
        return await self._limited(request, "sms", str(form["From"]), str(form["To"]))

    async def _connect_now(self, request: web.Request) -> web.Response:
        return await super()._connect(request)

    async def _send_now(self, request: web.Request) -> web.Response:
        return await super()._send_sms(request)


async def provider_child(rate: float, log: str, shops: int) -> None:
    fake = LimitedExotel(rate, Path(log))
    for number in range(max(shops, SMALL_SHOPS + 2)):
        fake.add_exophone(BenchShop(number, 0, "UTC").caller_id)
    await fake.start()
    print(fake.base_url, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(15, stop.set)
    await stop.wait()
    await fake.close()


# --- setup ---


def zone_where(open_now: bool) -> str:
    """A zone whose 9-to-21 window is open now (mid-window), or closed (mid-night)."""
    now = datetime.now(UTC)
    for hours in range(-11, 13):
        zone = f"Etc/GMT{'+' if hours <= 0 else '-'}{abs(hours)}"
        local = now.astimezone(ZoneInfo(zone)).hour
        if (11 <= local <= 18) if open_now else (local >= 23 or local <= 6):
            return zone
    raise RuntimeError("no zone found")


def settings_document(shop: BenchShop, contact: str) -> dict[str, Any]:
    return {
        "contact_phone": "+918040001234",
        "verification": {"type": "ivr" if contact == "call" else "otp"},
        "ivr": {
            "caller_id": shop.caller_id,
            "flow_id": FLOW_ID,
            "timezone": shop.zone,
            "window_start_hour": 9,
            "window_end_hour": 21,
        },
        "fallback": {
            "mode": "sms_link",
            "sms_link": {
                "sender_id": shop.sender,
                "dlt_entity_id": "1101",
                "dlt_template_id": "2",
            },
        },
        "otp": {"sender_id": shop.sender, "dlt_entity_id": "1101", "dlt_template_id": "1105"},
    }


def bench_settings(url: str, fake_url: str, rate: float, redis_url: str) -> Settings:
    return Settings(
        database={"url": url},
        security={"secret_key": SECRET_KEY},
        shopify={"api_secret": SECRET},
        providers={
            "exotel": {
                "api_url": fake_url,
                "calls_per_second": rate,
                "messages_per_second": rate,
            }
        },
        redis={"url": redis_url},
    )


async def install(settings: Settings, shops: list[BenchShop], contact: str) -> None:
    """Shops installed with the platform app's token, their settings and Exotel account."""
    clock = SystemClock()
    db = Database(settings.database.url)
    box = SecretBox(settings.secret_keys())
    queue = JobQueue(db, clock, settings.jobs)
    async with aiohttp.ClientSession() as http:
        clients = ProviderClients(settings, http, clock)
        desk = account_desk(settings, db, queue, clock, clients)
        for shop in shops:
            access = ShopifyAccess("shpat_bench", custom_app=False)
            done = await create_shop(db, queue, box, clock, shop.domain, access)
            await shop_config.save(db, box, clock, done.shop_id, settings_document(shop, contact))
            await desk.connect(
                done.shop_id,
                {
                    "provider": "exotel",
                    "subdomain": "api.in.exotel.com",
                    "account_sid": "ordertalk1",
                    "api_key": "fake-exotel-key",
                    "api_token": "fake-exotel-token",
                    "numbers": [shop.caller_id],
                },
            )
        await clients.aclose()
    async with db.transaction() as session:
        # The Shopify side of the install (webhook registration, shop details) is not
        # benchmarked: there is no fake Shopify here.
        await session.execute(delete(Job.__table__))
        statuses = Counter((await session.scalars(select(Shop.status))).all())
    await db.close()
    if statuses != {"installed": len(shops)}:
        raise RuntimeError(f"shops not installed: {dict(statuses)}")


# --- load ---


def delivery(shop: BenchShop, order: int) -> tuple[bytes, dict[str, str]]:
    now = datetime.now(UTC).isoformat()
    payload = order_payload(
        id=shop.number * 10_000_000 + order + 1,
        order_number=1000 + order,
        created_at=now,
        processed_at=now,
    )
    for address in ("shipping_address", "billing_address"):
        payload[address] = {**payload[address], "phone": shop.phone(order)}
    body = json.dumps(payload).encode()
    return body, {
        "Content-Type": "application/json",
        HMAC_HEADER: webhook_hmac(body, SECRET),
        TOPIC_HEADER: "orders/create",
        SHOP_HEADER: shop.domain,
        WEBHOOK_ID_HEADER: str(uuid.uuid4()),
        EVENT_ID_HEADER: str(uuid.uuid4()),
        TRIGGERED_AT_HEADER: datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        API_VERSION_HEADER: API_VERSION,
    }


def interleaved(shops: list[BenchShop]) -> list[tuple[BenchShop, int]]:
    """Every shop's orders spread evenly over the burst, as customers would place them."""
    placed = [
        ((order + 0.5) / shop.orders, shop.number, shop, order)
        for shop in shops
        for order in range(shop.orders)
    ]
    return [(shop, order) for _, _, shop, order in sorted(placed, key=lambda p: p[:2])]


async def post_orders(
    urls: list[str], orders: list[tuple[BenchShop, int]]
) -> tuple[dict[str, float], Counter[str], float]:
    """Post every order (one in five twice); (first post time by phone, statuses, seconds)."""
    requests = []
    for index, (shop, order) in enumerate(orders):
        request = delivery(shop, order)
        requests.append((shop.phone(order), request))
        if index % DUPLICATE_EVERY == DUPLICATE_EVERY - 1:
            requests.append((shop.phone(order), request))
    posted: dict[str, float] = {}
    statuses: Counter[str] = Counter()
    pending = iter(enumerate(requests))
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    began = time.time()
    async with aiohttp.ClientSession(connector=connector) as session:

        async def lane() -> None:
            while (item := next(pending, None)) is not None:
                index, (phone, (body, headers)) = item
                posted.setdefault(phone, time.time())
                url = urls[index % len(urls)] + "/webhooks/shopify"
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        answer = await response.read()
                        statuses[str(response.status)] += 1
                        if response.status // 100 != 2 and statuses[str(response.status)] == 1:
                            print(f"first {response.status}: {answer[:300]!r}", flush=True)
                except aiohttp.ClientError as exc:
                    statuses[type(exc).__name__] += 1

        await asyncio.gather(*(lane() for _ in range(CONNECTIONS)))
    return posted, statuses, time.time() - began


@dataclass
class Contact:
    at: float
    kind: str
    account: str
    phone: str


def read_contacts(log: Path) -> tuple[list[Contact], int]:
    contacts, throttled = [], 0
    for line in log.read_text().splitlines():
        at, kind, account, to = line.split()
        if kind == "throttled":
            throttled += 1
        else:
            contacts.append(Contact(float(at), kind, account, "+91" + to.lstrip("0")[-10:]))
    return contacts, throttled


def customers_contacted(log: Path) -> int:
    return len({c.phone for c in read_contacts(log)[0]}) if log.exists() else 0


async def wait_for_contacts(log: Path, expected: int) -> None:
    began = time.time()
    seen, last_change = -1, time.time()
    while time.time() - began < DRAIN_LIMIT_SECONDS:
        count = customers_contacted(log)
        if count != seen:
            seen, last_change = count, time.time()
        if count >= expected and time.time() - last_change >= SETTLE_SECONDS:
            return
        if count < expected and time.time() - last_change > 120:
            raise RuntimeError(f"stuck at {count} of {expected} first contacts")
        await asyncio.sleep(0.5)
    raise RuntimeError(f"only {seen} of {expected} first contacts after {DRAIN_LIMIT_SECONDS}s")


async def job_summary(url: str) -> str:
    """What the jobs are doing, for a run that stalls."""
    db = Database(url)
    async with db.sessions() as session:
        rows = (
            await session.execute(
                select(Job.kind, Job.status, func.count(), func.max(Job.last_error)).group_by(
                    Job.kind, Job.status
                )
            )
        ).all()
        orders = (
            await session.execute(
                select(
                    Order.verification_status, func.max(Order.skip_reason), func.count()
                ).group_by(Order.verification_status)
            )
        ).all()
    await db.close()
    lines = [f"{kind} {status}: {n} ({error[:200]})" for kind, status, n, error in rows]
    lines += [f"orders {status}: {n} ({reason})" for status, reason, n in orders]
    return "\n".join(lines)


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has spent so far (start-up included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- one run ---


@dataclass
class Run:
    name: str
    shops: list[BenchShop]
    contacts: list[Contact]
    posted: dict[str, float]
    statuses: Counter[str]
    ingest_seconds: float
    throttled: int
    rss: dict[str, float]
    cpu: dict[str, float]


def service_env(url: str, redis_url: str, rate: float, fake_url: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ORDERTALK_")}
    return env | {
        "ORDERTALK_DATABASE__URL": url,
        "ORDERTALK_REDIS__URL": redis_url,
        "ORDERTALK_SECURITY__SECRET_KEY": SECRET_KEY,
        "ORDERTALK_SHOPIFY__API_SECRET": SECRET,
        "ORDERTALK_SERVER__PORT": "0",
        "ORDERTALK_SERVER__LOG_LEVEL": os.environ.get("BURST_LOG_LEVEL", "WARNING"),
        "ORDERTALK_PROVIDERS__EXOTEL__API_URL": fake_url,
        "ORDERTALK_PROVIDERS__EXOTEL__CALLS_PER_SECOND": str(rate),
        "ORDERTALK_PROVIDERS__EXOTEL__MESSAGES_PER_SECOND": str(rate),
    }


@contextlib.asynccontextmanager
async def provider(rate: float, log: Path, shops: int) -> AsyncIterator[tuple[str, int]]:
    async with child(
        sys.executable,
        str(SCRIPT),
        "--provider-child",
        str(rate),
        str(log),
        str(shops),
        stdout=asyncio.subprocess.PIPE,
    ) as process:
        assert process.stdout is not None
        url = (await asyncio.wait_for(process.stdout.readline(), 60)).decode().strip()
        yield url, process.pid


async def run(
    name: str, url: str, redis_url: str, layout: str, shops: list[BenchShop], args: Any
) -> Run:
    directory = tempfile.mkdtemp(prefix="ordertalk-burst-")
    log = Path(directory) / "provider.log"
    print(f"{name}: {sum(s.orders for s in shops):,} orders, {len(shops)} shops", flush=True)
    async with contextlib.AsyncExitStack() as stack:
        fake_url, fake_pid = await stack.enter_async_context(provider(args.rate, log, len(shops)))
        env = service_env(url, redis_url, args.rate, fake_url)
        await run_cli(env, directory, "migrate")
        await install(bench_settings(url, fake_url, args.rate, redis_url), shops, args.contact)
        pids: dict[str, int] = {"provider": fake_pid}
        serves = 1 if layout == "sqlite" else 2
        in_serve = "true" if layout == "sqlite" else "false"
        urls = []
        for n in range(serves):
            serve_env = env | {"ORDERTALK_JOBS__RUN_IN_SERVE": in_serve}
            urls.append(
                await stack.enter_async_context(
                    serving(
                        Path(directory) / f"serve{n}.log",
                        sys.executable,
                        str(MAIN),
                        "serve",
                        env=serve_env,
                        cwd=directory,
                    )
                )
            )
        workers = []
        if layout != "sqlite":
            for n in range(2):
                worker = await stack.enter_async_context(
                    child(
                        sys.executable,
                        str(MAIN),
                        "worker",
                        env=env,
                        cwd=directory,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=(Path(directory) / f"worker{n}.log").open("wb"),
                    )
                )
                pids[f"worker {n}"] = worker.pid
                workers.append(worker)
        # Started up and listening: a loaded machine takes seconds, which are not the burst's.
        for worker in workers:
            assert worker.stdout is not None
            await asyncio.wait_for(worker.stdout.readline(), 120)
        for n, pid in enumerate(serve_pids(directory, serves)):
            pids[f"serve {n}"] = pid
        posted, statuses, seconds = await post_orders(urls, interleaved(shops))
        print(f"{name}: posted in {seconds:.1f} s, answers {dict(statuses)}", flush=True)
        expected = sum(s.orders for s in shops if not s.closed)
        try:
            await wait_for_contacts(log, expected)
        except RuntimeError:
            print(await job_summary(url), file=sys.stderr)
            raise
        rss = {who: peak_rss_mb(pid) for who, pid in pids.items()}
        cpu = {who: cpu_seconds(pid) for who, pid in pids.items()}
    contacts, throttled = read_contacts(log)
    return Run(name, shops, contacts, posted, statuses, seconds, throttled, rss, cpu)


def serve_pids(directory: str, count: int) -> list[int]:
    """The serve processes' ids: the children of this process running `main.py serve`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
            if b"serve" in cmdline and cwd == directory:
                found.append(int(entry.name))
    return sorted(found)[:count]


# --- figures ---


def rows_of(run: Run, rate: float) -> list[Row]:
    by_phone: dict[str, list[Contact]] = {}
    for contact in run.contacts:
        by_phone.setdefault(contact.phone, []).append(contact)
    zone_of = {shop.phone(o): shop.zone for shop in run.shops for o in range(shop.orders)}
    closed = {shop.phone(o) for shop in run.shops if shop.closed for o in range(shop.orders)}
    duplicates = sum(len(found) - 1 for found in by_phone.values())
    outside = 0
    for phone, found in by_phone.items():
        for contact in found:
            local = datetime.fromtimestamp(contact.at, ZoneInfo(zone_of[phone]))
            outside += phone in closed or not 9 <= local.hour < 21
    biggest = max(shop.orders for shop in run.shops if not shop.closed)
    minimum = biggest / rate
    latencies = [min(c.at for c in found) - run.posted[p] for p, found in by_phone.items()]
    first = min(run.posted.values())
    last = max(min(c.at for c in found) for found in by_phone.values())
    sent = sum(run.statuses.values())
    non_2xx = sum(n for status, n in run.statuses.items() if not status.startswith("2"))
    drained = last - first
    rows = [
        Row(
            f"{run.name}: ingest",
            f"{sent / run.ingest_seconds:,.0f} webhooks/s",
            f"{sent:,} posted ({sent - len(run.posted):,} retries), {non_2xx} non-2xx",
        ),
        Row(
            f"{run.name}: last first contact",
            f"{drained:.1f} s",
            f"provider-limited minimum {minimum:.1f} s (x{drained / minimum:.2f}); "
            + target_note(drained / minimum, DRAIN_TARGET, False, "x"),
        ),
        Row(
            f"{run.name}: order to first contact",
            f"p50 {percentile(latencies, 50):.2f} / p99 {percentile(latencies, 99):.2f} s",
            f"{len(by_phone):,} customers contacted; {run.throttled} HTTP 429 at the provider",
        ),
        Row(
            f"{run.name}: outside windows / duplicates",
            f"{outside} / {duplicates}",
            "must be 0 / 0",
        ),
        Row(
            f"{run.name}: peak RSS",
            ", ".join(f"{who} {mb:.0f} MB" for who, mb in run.rss.items()),
            "",
        ),
        Row(
            f"{run.name}: CPU",
            ", ".join(f"{who} {seconds:.1f} s" for who, seconds in run.cpu.items()),
            "start-up included",
        ),
    ]
    return rows


def small_p99(run: Run) -> float:
    small = {
        shop.phone(o)
        for shop in run.shops
        if shop.orders == SMALL_ORDERS and not shop.closed
        for o in range(shop.orders)
    }
    firsts: dict[str, float] = {}
    for contact in run.contacts:
        if contact.phone in small:
            firsts[contact.phone] = min(firsts.get(contact.phone, contact.at), contact.at)
    return percentile([at - run.posted[p] for p, at in firsts.items()], 99)


# --- main ---


def shops_for(args: Any, *, big: bool, small: bool) -> list[BenchShop]:
    open_zone, closed_zone = zone_where(open_now=True), zone_where(open_now=False)
    shops = []
    if big:
        shops.append(BenchShop(0, args.orders, open_zone))
    if small:
        shops += [BenchShop(n, SMALL_ORDERS, open_zone) for n in range(1, SMALL_SHOPS + 1)]
    if args.contact == "call":
        # An OTP never waits for the calling window (the customer is at the checkout).
        shops.append(BenchShop(SMALL_SHOPS + 1, CLOSED_ORDERS, closed_zone, closed=True))
    return shops


@contextlib.asynccontextmanager
async def database(layout: str, args: Any) -> AsyncIterator[str]:
    if layout == "sqlite":
        with tempfile.TemporaryDirectory(prefix="ordertalk-burst-db-") as directory:
            yield f"sqlite+aiosqlite:///{directory}/burst.db"
    else:
        async with scratch_postgres(args.pg, SCRATCH_DB) as url:
            yield url


async def bench(args: Any) -> list[Row]:
    redis_url = args.redis if args.layout == "pg" else ""
    rows: list[Row] = []
    runs = [("burst", True, False)]
    if args.mix:
        runs = [("small shops alone", False, True), ("mix", True, True)]
    results = {}
    for name, big, small in runs:
        label = f"{args.layout} {args.contact} {name}"
        async with database(args.layout, args) as url:
            if redis_url:
                await flush_redis(redis_url)
            result = await run(
                label, url, redis_url, args.layout, shops_for(args, big=big, small=small), args
            )
        results[name] = result
        rows += rows_of(result, args.rate)
    if args.mix:
        alone, mixed = small_p99(results["small shops alone"]), small_p99(results["mix"])
        rows.append(
            Row(
                f"{args.layout} {args.contact} fairness",
                f"small shops' p99 {mixed:.2f} s beside the big shop, {alone:.2f} s alone",
                target_note(mixed / alone, FAIRNESS_TARGET, False, "x"),
            )
        )
    return rows


async def flush_redis(url: str) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(url)
    async for key in redis.scan_iter("ordertalk:*"):
        await redis.delete(key)
    await redis.aclose()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=1000, help="orders of the (big) shop")
    parser.add_argument("--rate", type=float, default=50, help="provider limit per second")
    parser.add_argument("--contact", choices=("call", "sms"), default="call")
    parser.add_argument("--layout", choices=("sqlite", "pg"), default="sqlite")
    parser.add_argument("--mix", action="store_true", help="the fairness mix")
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL server URL")
    parser.add_argument(
        "--redis", default=os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
    )
    parser.add_argument("--provider-child", nargs=3, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.provider_child:
        rate, log, shops = args.provider_child
        asyncio.run(provider_child(float(rate), log, int(shops)))
        return
    rows = asyncio.run(bench(args))
    print_table(rows, f"--orders {args.orders} --rate {args.rate}/s")


if __name__ == "__main__":
    main()
