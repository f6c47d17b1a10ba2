"""Benchmark of the inbound-message intake: signed Twilio inbound SMS (1 in 5 a STOP, the rest
free text, each from its own phone) posted to `main.py serve` on SQLite and PostgreSQL, beside
a floor measured in the same run (a bare aiohttp handler that checks the Twilio signature and
commits one row per request through SQLAlchemy, on the product's engine settings).

    python bench/inbound.py [--concurrency C] [--pg URL] [--databases LIST]

Throughput: wrk (2 threads, 8 s at C connections) on the floor and on the product alike (needs
`wrk`: `apt install wrk`). Then, while wrk floods the product again, a prober in its own
process sends STOPs at PROBE_RATE/s and, as soon as each is answered 2xx, asks the send gate
(`flows.conversations.consent.opted_out`, on its own connection) whether that phone is opted
out, until it is: the time from the 2xx to the gate's yes is the STOP's "acceptance to
suppression in force". The STOP is committed before the 2xx, so the first look should say
yes; the figure is what one gate query costs under the flood.
`serve` runs the job worker in the same process: each accepted message becomes a job (its
sender is no customer of the shop, so the job logs and drops it).
--pg names a PostgreSQL server (default: $TEST_DATABASE_URL, else
postgresql://postgres@127.0.0.1:5432/test); the scratch database `ordertalk_bench_inbound` is
created there and dropped at the end. SQLite runs on a temporary file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from sqlalchemy import Column, Integer, MetaData, Table, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from twilio.request_validator import RequestValidator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest import child, connection, count, log_row, run_cli, serving, wrk_run
from bench.shared import (
    Row,
    database_args,
    on_each_database,
    percentile,
    print_table,
    target_note,
)
from flows.conversations.consent import opted_out
from storage.db import Database
from storage.models import LineConsent, Shop, WebhookReceipt

SCRIPT = Path(__file__).resolve()
MAIN = SCRIPT.parent.parent / "main.py"
SCRATCH_DB = "ordertalk_bench_inbound"
PUBLIC_URL = "https://bench.ordertalk.invalid"  # what Twilio signs; no request goes there
PATH = "/webhooks/twilio/messages"
ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench-inbound-twilio-auth-token"
OUR_NUMBER = "+14155550100"
SHOP = "bench.myshopify.com"
LINE = "twilio:platform"
STOP_EVERY = 5  # 20 % STOP, 80 % free text
FREE_TEXT = "Where is my order?"
WRK_SECONDS = 8
WRK_THREADS = 2
WRK_MESSAGES = 40_000  # distinct messages the script can post (more than 8 s can use)
PROBE_FIRST = 5_000_000  # the prober's phones and ids, apart from wrk's
PROBE_RATE = 40  # STOPs/s sent by the prober during the flood
PROBE_SECONDS = 5
PROBE_GIVE_UP_SECONDS = 5.0
REQUEST_TIMEOUT_SECONDS = 30
SETTLE_SECONDS = 0.5
THROUGHPUT_TARGET = 2_000  # accepted messages/s on SQLite

FLOOR = Table(
    "inbound_floor_hits",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("body_len", Integer),
)
sessions_key = web.AppKey("sessions", async_sessionmaker[AsyncSession])


# --- the messages: the same in Python (signatures, prober) and in wrk's Lua ---


def message(number: int, *, stop: bool) -> dict[str, str]:
    """The form Twilio posts for an inbound SMS, message `number` from phone `number`."""
    sid = f"SM{number:032d}"
    return {
        "ToCountry": "US",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": "STOP" if stop else FREE_TEXT,
        "To": OUR_NUMBER,
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": phone(number),
        "ApiVersion": "2010-04-01",
    }


def phone(number: int) -> str:
    return f"+9190{number:08d}"


def signature(form: dict[str, str]) -> str:
    return RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_URL + PATH, form)


WRK_SCRIPT = """
local first = %d
local sigs = {%s}
local started = 0
function setup(thread) thread:set("tid", started) started = started + 1 end
function init(args) counter = tid end
function request()
  local k = counter %% #sigs
  local i = first + k
  counter = counter + %d  -- the thread count: threads post disjoint messages
  local sid = string.format("SM%%032d", i)
  local body = "STOP"
  if i %% %d ~= 0 then body = %s end
  local form = "ToCountry=US&SmsMessageSid=" .. sid .. "&NumMedia=0&SmsSid=" .. sid
    .. "&SmsStatus=received&Body=" .. body .. "&To=%s&NumSegments=1&MessageSid=" .. sid
    .. "&AccountSid=%s&From=" .. string.format("%%%%2B9190%%08d", i) .. "&ApiVersion=2010-04-01"
  return wrk.format("POST", "%s", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Twilio-Signature"] = sigs[k + 1]}, form)
end
"""


def wrk_script(directory: str, first: int) -> Path:
    """A wrk script posting signed, distinct inbound SMS numbered from `first` (1 in
    STOP_EVERY a STOP)."""
    path = Path(directory) / f"wrk-inbound-{first}.lua"
    if path.exists():  # the floor and the product post the same load
        return path
    signatures = ",".join(
        json.dumps(signature(message(i, stop=i % STOP_EVERY == 0)))
        for i in range(first, first + WRK_MESSAGES)
    )
    free_text = urlencode({"Body": FREE_TEXT}).partition("=")[2]
    path.write_text(
        WRK_SCRIPT
        % (
            first,
            signatures,
            WRK_THREADS,
            STOP_EVERY,
            json.dumps(free_text),
            urlencode({"To": OUR_NUMBER}).partition("=")[2],
            ACCOUNT_SID,
            PATH,
        )
    )
    return path


# --- floor server (child process) ---


async def floor_hit(request: web.Request) -> web.Response:
    form = {key: str(value) for key, value in (await request.post()).items()}
    signed = request.headers.get("X-Twilio-Signature", "")
    if not RequestValidator(AUTH_TOKEN).validate(PUBLIC_URL + request.path_qs, form, signed):
        return web.Response(status=403)
    async with request.app[sessions_key].begin() as session:
        await session.execute(insert(FLOOR).values(body_len=len(form.get("Body", ""))))
    return web.Response(text="<Response/>", content_type="application/xml")


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


# --- STOP prober (child process) ---


@dataclass(frozen=True)
class ProbeSpec:
    base: str
    database_url: str
    stops: int
    rate: float


@dataclass(frozen=True)
class ProbeResult:
    sent: int
    accepted: int  # answered 2xx
    in_force: int  # the gate said opted out (within PROBE_GIVE_UP_SECONDS of the 2xx)
    first_look: int  # ... at its first query
    answer_p50_ms: float
    answer_p99_ms: float
    in_force_p50_ms: float
    in_force_p99_ms: float


async def probe_child(spec: ProbeSpec) -> None:
    # A plain engine: the product's SQLite sessions begin IMMEDIATE (they may write), and the
    # prober's reads, from another process, would fight the intake for the write lock.
    engine = create_async_engine(spec.database_url)
    sessions = async_sessionmaker(engine)
    async with sessions() as session:
        shop_id = await session.scalar(select(Shop.id).where(Shop.domain == SHOP))
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    answers: list[float] = []
    delays: list[float] = []
    first_looks = 0

    async def stop(number: int, due: float) -> None:
        nonlocal first_looks
        form = message(number, stop=True)
        headers = {"X-Twilio-Signature": signature(form)}
        async with http.post(spec.base + PATH, data=form, headers=headers) as response:
            await response.read()
            if response.status // 100 != 2:
                return
        answered = time.perf_counter()
        answers.append((answered - due) * 1000)
        looks = 0
        while time.perf_counter() - answered < PROBE_GIVE_UP_SECONDS:
            looks += 1
            async with sessions() as session:
                if await opted_out(session, shop_id, phone(number), "sms", LINE):
                    delays.append((time.perf_counter() - answered) * 1000)
                    first_looks += looks == 1
                    return

    async with aiohttp.ClientSession(timeout=timeout) as http:
        began = time.perf_counter()
        tasks = []
        for index in range(spec.stops):
            due = began + index / spec.rate
            await asyncio.sleep(due - time.perf_counter())
            tasks.append(asyncio.create_task(stop(PROBE_FIRST + index, due)))
        await asyncio.gather(*tasks)
    await engine.dispose()
    result = ProbeResult(
        sent=spec.stops,
        accepted=len(answers),
        in_force=len(delays),
        first_look=first_looks,
        answer_p50_ms=percentile(answers, 50),
        answer_p99_ms=percentile(answers, 99),
        in_force_p50_ms=percentile(delays, 50),
        in_force_p99_ms=percentile(delays, 99),
    )
    print(json.dumps(asdict(result)), flush=True)


async def probe(spec: ProbeSpec) -> ProbeResult:
    async with child(
        sys.executable,
        str(SCRIPT),
        "--probe-child",
        json.dumps(asdict(spec)),
        stdout=asyncio.subprocess.PIPE,
    ) as process:
        out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the prober failed with status {process.returncode}")
    return ProbeResult(**json.loads(out))


# --- the bench (parent process) ---


def service_env(url: str) -> dict[str, str]:
    """The environment without the caller's own ordertalk settings, plus the bench's."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ORDERTALK_")}
    return env | {
        "ORDERTALK_DATABASE__URL": url,
        "ORDERTALK_SECURITY__SECRET_KEY": "bench-inbound-secret-key-0123456789ab",
        "ORDERTALK_SERVER__PORT": "0",
        "ORDERTALK_SERVER__PUBLIC_URL": PUBLIC_URL,
        "ORDERTALK_SERVER__LOG_LEVEL": "WARNING",
        "ORDERTALK_PROVIDERS__TWILIO__ACCOUNT_SID": ACCOUNT_SID,
        "ORDERTALK_PROVIDERS__TWILIO__AUTH_TOKEN": AUTH_TOKEN,
        "ORDERTALK_PROVIDERS__TWILIO__SMS_FROM": OUR_NUMBER,
    }


async def bench_database(url: str, directory: str, args: argparse.Namespace) -> list[Row]:
    name = make_url(url).get_backend_name()
    script = wrk_script(directory, 0)
    print(f"{name}: floor, wrk {WRK_SECONDS} s at {args.concurrency} connections", flush=True)
    log = Path(directory) / f"floor-{name}.log"
    async with serving(log, sys.executable, str(SCRIPT), "--floor-child", url) as base:
        floor = await wrk_run(base, script, args.concurrency)
    floor_rows = await count(url, FLOOR)

    env = service_env(url)
    await run_cli(env, directory, "migrate")
    await run_cli(env, directory, "shop", "add", "--domain", SHOP)
    log = Path(directory) / f"serve-{name}.log"
    print(f"{name}: serve, wrk {WRK_SECONDS} s at {args.concurrency} connections", flush=True)
    async with serving(log, sys.executable, str(MAIN), "serve", env=env, cwd=directory) as base:
        product = await wrk_run(base, script, args.concurrency)
        await settle(url)
        receipts, stops_sent = await stops_accepted(url)
        stops = await count(url, LineConsent)
        print(f"{name}: serve, STOPs probed at {PROBE_RATE}/s during a second flood", flush=True)
        second = wrk_script(directory, WRK_MESSAGES)  # new messages, not repeats
        flood = asyncio.create_task(wrk_run(base, second, args.concurrency))
        probed = await probe(ProbeSpec(base, url, PROBE_RATE * PROBE_SECONDS, PROBE_RATE))
        await flood
    return [
        Row(
            f"{name} floor, wrk {WRK_SECONDS} s @ {args.concurrency} conn",
            f"{floor['rate']:,.0f} req/s, p50 {floor['p50']:.1f} / p99 {floor['p99']:.1f} ms",
            f"1 commit per request; non-2xx {floor['non_2xx']:.0f}; {floor_rows:,} rows",
        ),
        Row(
            f"{name} product, wrk {WRK_SECONDS} s @ {args.concurrency} conn",
            f"{product['rate']:,.0f} msg/s, p50 {product['p50']:.1f} / "
            f"p99 {product['p99']:.1f} ms",
            f"floor x{product['rate'] / floor['rate']:.1f}; "
            + target_note(product["rate"], THROUGHPUT_TARGET, True, "msg/s")
            + f"; non-2xx {product['non_2xx']:.0f}",
        ),
        Row(
            f"{name} product, STOPs committed",
            f"{stops:,} line consents, {receipts:,} messages accepted",
            f"{'ok' if stops == stops_sent else 'WRONG'}: {stops_sent:,} of them STOPs "
            f"(1 in {STOP_EVERY}, each from its own phone)",
        ),
        Row(
            f"{name} product, STOP 2xx -> gate says opted out, under wrk",
            f"p50 {probed.in_force_p50_ms:.1f} / p99 {probed.in_force_p99_ms:.1f} ms",
            f"{'ok' if probed.first_look == probed.accepted == probed.sent else 'WRONG'}: "
            f"{probed.first_look} of {probed.sent} in force at the gate's first query (the "
            f"figure is that query's time); the STOPs answered p50 "
            f"{probed.answer_p50_ms:.1f} / p99 {probed.answer_p99_ms:.1f} ms",
        ),
        log_row(name, log),
    ]


async def settle(url: str) -> None:
    """Wait until the receipts stop growing: requests wrk left in flight may still commit."""
    before = -1
    while (counted := await count(url, WebhookReceipt)) != before:
        before = counted
        await asyncio.sleep(SETTLE_SECONDS)


async def stops_accepted(url: str) -> tuple[int, int]:
    """(messages accepted, how many of them were STOPs): message i is a STOP when
    i % STOP_EVERY == 0, and its receipt's delivery id is "in:SM{i:032d}"."""
    async with connection(url) as conn:
        ids = (await conn.execute(select(WebhookReceipt.delivery_id))).scalars().all()
    numbers = [int(delivery_id.removeprefix("in:SM")) for delivery_id in ids]
    return len(numbers), sum(1 for n in numbers if n % STOP_EVERY == 0)


async def bench(args: argparse.Namespace) -> list[Row]:
    if not shutil.which("wrk"):
        raise SystemExit("bench/inbound.py needs wrk (apt install wrk)")
    return await on_each_database(args, SCRATCH_DB, bench_database)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=32, help="connections held open")
    database_args(parser)
    parser.add_argument("--probe-child", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--floor-child", metavar="URL", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.probe_child:
        asyncio.run(probe_child(ProbeSpec(**json.loads(args.probe_child))))
        return
    if args.floor_child:
        asyncio.run(floor_child(args.floor_child))
        return
    began = time.perf_counter()
    print_table(asyncio.run(bench(args)), "floor / target / check")
    print(f"\n(total {time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
