"""Benchmark of the merchant bot in webhook mode: `/orders` from linked owner chats, each of
a shop with 1,000 orders, posted as signed Telegram updates to `main.py serve`
(`telegram.webhook = true`) on SQLite and on PostgreSQL + Redis, beside a floor measured in
the same run (a bare aiohttp app that checks the secret token and answers each update by
calling sendMessage the way aiogram does).

    python bench/bot.py [--concurrency C] [--pg URL] [--redis URL] [--databases LIST]

This process plays Telegram: it runs the fake Bot API (the tests' `FakeTelegram`) on
loopback, where `serve` (and the floor) register their webhook and send their replies.
Throughput: wrk (2 threads, 8 s at C connections) posts `/orders` updates from 2 x C owner
chats, with the secret token header, to the floor and to the product alike (needs `wrk`:
`apt install wrk`); updates/s counts the replies that reached the fake meanwhile (each must
be the chat's shop's report with its 1,000 orders in the totals), and the server's CPU time
per reply is read from /proc. Reply time: then the fake itself types `/orders` in C chats at
once, each chat again as soon as its update was answered, for 8 s: the time from the update
posted to the bot's sendMessage reaching the fake, every reply checked the same way.
--pg names a PostgreSQL server (default: $TEST_DATABASE_URL, else
postgresql://postgres@127.0.0.1:5432/test); the scratch database `ordertalk_bench_bot` is
created there and dropped at the end. SQLite runs on a temporary file, without Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy import insert, update
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest import log_row, run_cli, serving, wrk_run
from bench.shared import (
    Row,
    child_pid,
    cpu_seconds,
    database_args,
    on_each_database,
    percentile,
    print_table,
)
from bot.app import WEBHOOK_PATH, webhook_secret
from bot.fsm import FSM_PREFIX
from bot.handlers.reports import TOTALS
from clock import SystemClock
from flows.orders.reports import TOTALS as TOTAL_NAMES
from flows.shops.bot_links import ChatLinks, Outcome
from flows.shops.onboarding import create_shop
from providers.sandbox.telegram import FakeTelegram
from settings import Settings
from storage.crypto import SecretBox
from storage.db import Database
from storage.jobs import JobQueue
from storage.models import Order, Shop
from web.telegram import SECRET_HEADER

SCRIPT = Path(__file__).resolve()
MAIN = SCRIPT.parent.parent / "main.py"
SCRATCH_DB = "ordertalk_bench_bot"
# The bench's own bot (its id keys the FSM in Redis apart from the tests' bot).
TOKEN = "555000111:AABenchTokenForTheMerchantBotBench_01"
SECRET_KEY = "bench-bot-secret-key-0123456789abcdef"
SECRET = webhook_secret(SECRET_KEY)
ORDERS = 1_000  # per shop, spread over the last 6 days
STATUSES = ("confirmed", "confirmed", "cancelled", "pending", "callback_requested", "unverified")
FIRST_CHAT = 700_000_000
REPLY_SECONDS = 8
WRK_THREADS, WRK_SECONDS = 2, 8  # bench.ingest.wrk_run's
START_SECONDS = 60
DEFAULT_REDIS = "redis://127.0.0.1:6379/9"  # a database of its own: the tests scan db 0's


# --- Telegram's side: the fake Bot API, timing the replies, and the user typing ---


class TimedTelegram(FakeTelegram):
    """The fake Bot API, noting when each chat's last sendMessage arrived."""

    def __init__(self) -> None:
        super().__init__(TOKEN, username="ordertalk_bench_bot")
        self.arrived: dict[int, float] = {}

    async def _api_sendmessage(
        self, request: web.Request, params: dict[str, Any], files: dict[str, tuple[str, bytes]]
    ) -> Any:
        self.arrived[int(params.get("chat_id", 0))] = time.perf_counter()
        return await super()._api_sendmessage(request, params, files)


@dataclass(frozen=True)
class Replies:
    updates: int
    seconds: float
    non_2xx: int
    reply_p50: float  # update posted -> sendMessage at the fake, ms
    reply_p99: float
    answer_p99: float  # update posted -> webhook answered, ms
    wrong: int  # updates whose reply was missing or not the expected text

    @property
    def rate(self) -> float:
        return self.updates / self.seconds


async def typed_orders(
    fake: TimedTelegram, chats: list[int], expected: dict[int, tuple[str, ...]] | None
) -> Replies:
    """Each chat types `/orders` again as soon as its last one was answered, for
    REPLY_SECONDS; `expected` maps a chat to what its reply must contain (None: the floor's
    echo)."""
    replies: list[float] = []
    answers: list[float] = []
    failed = wrong = 0
    deadline = time.perf_counter() + REPLY_SECONDS

    async def chat(chat_id: int) -> None:
        nonlocal failed, wrong
        while time.perf_counter() < deadline:
            fake.arrived.pop(chat_id, None)
            posted = time.perf_counter()
            status = await fake.type(chat_id, "/orders")
            answers.append((time.perf_counter() - posted) * 1000)
            failed += status // 100 != 2
            arrived = fake.arrived.get(chat_id)
            text = fake.chat(chat_id).texts[-1:]
            if arrived is None or not text or not right(expected, chat_id, text[0]):
                wrong += 1
                continue
            replies.append((arrived - posted) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(chat(chat_id) for chat_id in chats))
    seconds = time.perf_counter() - began
    for chat_id in chats:
        fake.chat(chat_id).messages.clear()
    return Replies(
        updates=len(answers),
        seconds=seconds,
        non_2xx=failed,
        reply_p50=percentile(replies, 50),
        reply_p99=percentile(replies, 99),
        answer_p99=percentile(answers, 99),
        wrong=wrong,
    )


def right(expected: dict[int, tuple[str, ...]] | None, chat_id: int, text: str) -> bool:
    """Whether `text` is the reply the chat should get: its shop's report with the totals,
    or the floor's echo (`expected` None)."""
    return all(part in text for part in (expected[chat_id] if expected else ("/orders",)))


async def registered(fake: TimedTelegram, url: str) -> None:
    """Wait until `url` is the webhook Telegram posts to (set by the server as it starts)."""
    began = time.perf_counter()
    while fake.webhook_url != url:
        if time.perf_counter() - began > START_SECONDS:
            raise RuntimeError(f"no webhook registered at {url} (it is {fake.webhook_url!r})")
        await asyncio.sleep(0.05)
    if fake.webhook_secret != SECRET:
        raise RuntimeError("the webhook was registered with another secret token")


# --- wrk: the same updates from Lua ---

WRK_SCRIPT = """
local chats, first_chat, threads = %d, %d, %d
local started = 0
function setup(thread) thread:set("tid", started) started = started + 1 end
function init(args) counter = tid end
function request()
  -- threads take turns (counter steps by the thread count), so their chats differ
  local chat = first_chat + counter %% chats
  local id = counter + 1
  counter = counter + threads
  local body = string.format('{"update_id":%%d,"message":{"message_id":%%d,"date":%d,'
    .. '"chat":{"id":%%d,"type":"private","first_name":"Owner"},'
    .. '"from":{"id":%%d,"is_bot":false,"first_name":"Owner"},"text":"/orders",'
    .. '"entities":[{"type":"bot_command","offset":0,"length":7}]}}', id, id, chat, chat)
  return wrk.format("POST", "%s", {
    ["Content-Type"] = "application/json", ["%s"] = "%s"}, body)
end
"""


def wrk_script(directory: str, chats: int) -> Path:
    path = Path(directory) / f"wrk-bot-{chats}.lua"
    now = int(time.time())
    path.write_text(
        WRK_SCRIPT % (chats, FIRST_CHAT, WRK_THREADS, now, WEBHOOK_PATH, SECRET_HEADER, SECRET)
    )
    return path


# --- floor server (child process) ---


async def floor_child(api_url: str, port: int) -> None:
    """A bare aiohttp app: the secret checked, the update read, sendMessage called with the
    same form encoding as aiogram's, then answered."""
    http = aiohttp.ClientSession()
    send_url = f"{api_url}/bot{TOKEN}/sendMessage"

    async def receive(request: web.Request) -> web.Response:
        token = request.headers.get(SECRET_HEADER, "")
        if not secrets.compare_digest(token.encode(), SECRET.encode()):
            return web.json_response({"error": "secret"}, status=401)
        message = json.loads(await request.read())["message"]
        form = aiohttp.FormData(quote_fields=False)
        form.add_field("chat_id", str(message["chat"]["id"]))
        form.add_field("text", message["text"])
        async with http.post(send_url, data=form) as sent:
            await sent.read()
        return web.json_response({})

    app = web.Application()
    app.router.add_post(WEBHOOK_PATH, receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    webhook = {"url": f"http://127.0.0.1:{port}{WEBHOOK_PATH}", "secret_token": SECRET}
    async with http.post(f"{api_url}/bot{TOKEN}/setWebhook", json=webhook) as answer:
        answer.raise_for_status()
    print(f"floor serving on http://127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await http.close()


# --- the shops ---


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chat_ids(count: int) -> list[int]:
    return [FIRST_CHAT + index for index in range(count)]


async def seed(url: str, chats: list[int]) -> dict[int, tuple[str, ...]]:
    """A shop per chat, linked as its owner with the shop's one-time code, with ORDERS orders
    placed over the last days; what each chat's report must show."""
    clock = SystemClock()
    settings = Settings(database={"url": url}, security={"secret_key": SECRET_KEY})
    db = Database(url)
    queue = JobQueue(db, clock, settings.jobs)
    box = SecretBox(settings.secret_keys())
    links = ChatLinks(db, clock)
    now = clock.now()
    titles = {}
    try:
        for number, chat_id in enumerate(chats):
            shop = await create_shop(db, queue, box, clock, f"bench{number}.myshopify.com", None)
            assert shop.bot_link_code is not None
            linking = await links.link(chat_id, chat_id, "Owner", shop.bot_link_code)
            if linking.outcome != Outcome.LINKED or linking.link is None:
                raise RuntimeError(f"chat {chat_id} not linked: {linking.outcome}")
            async with db.transaction() as session:
                await session.execute(
                    update(Shop)
                    .where(Shop.id == shop.shop_id)
                    .values(
                        country="IN",
                        timezone="Asia/Kolkata",
                        status="installed",
                        # Each chat's messages are the replies to its updates.
                        settings={"alerts": {"daily_summary": False}},
                    )
                )
                await session.execute(insert(Order), orders(shop.shop_id, now))
            titles[chat_id] = f"Orders of {linking.link.shop_name}, "
    finally:
        await db.close()
    counts = Counter(STATUSES[index % len(STATUSES)] for index in range(ORDERS))
    totals = TOTALS.format(total=ORDERS, **{status: counts[status] for status in TOTAL_NAMES})
    return {chat_id: (title, totals) for chat_id, title in titles.items()}


def orders(shop_id: int, now: datetime) -> list[dict[str, Any]]:
    step = timedelta(days=6) / ORDERS
    return [
        {
            "shop_id": shop_id,
            "shopify_order_id": str(5_000_000 + index),
            "name": f"#{1001 + index}",
            "number": 1001 + index,
            "phone": f"+9198{index:08d}",
            "total_amount": "1499.00",
            "currency": "INR",
            "payment_method": "cod",
            "verification_status": STATUSES[index % len(STATUSES)],
            "placed_at": now - step * index,
            "created_at": now,
            "updated_at": now,
        }
        for index in range(ORDERS)
    ]


# --- the bench (this process) ---


def service_env(url: str, redis_url: str, api_url: str, port: int) -> dict[str, str]:
    """The environment without the caller's own ordertalk settings, plus the bench's."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ORDERTALK_")}
    return env | {
        "ORDERTALK_DATABASE__URL": url,
        "ORDERTALK_REDIS__URL": redis_url,
        "ORDERTALK_SECURITY__SECRET_KEY": SECRET_KEY,
        "ORDERTALK_SERVER__HOST": "127.0.0.1",
        "ORDERTALK_SERVER__PORT": str(port),
        "ORDERTALK_SERVER__PUBLIC_URL": f"http://127.0.0.1:{port}",
        "ORDERTALK_SERVER__LOG_LEVEL": "WARNING",
        "ORDERTALK_TELEGRAM__TOKEN": TOKEN,
        "ORDERTALK_TELEGRAM__API_URL": api_url,
        "ORDERTALK_TELEGRAM__WEBHOOK": "true",
    }


async def forget_states(redis_url: str) -> None:
    """Drop the bench bot's FSM keys (states, data, locks) from Redis."""
    redis = Redis.from_url(redis_url)
    try:
        async for key in redis.scan_iter(f"{FSM_PREFIX}:{TOKEN.split(':')[0]}:*"):
            await redis.delete(key)
    finally:
        await redis.aclose()


async def measured(
    fake: TimedTelegram,
    base: str,
    marker: str,
    script: Path,
    args: argparse.Namespace,
    expected: dict[int, tuple[str, ...]] | None,
) -> tuple[dict[str, float], Replies]:
    """The wrk flood, with the replies it drew ("sent"), how many of them said what they
    should ("right") and the server's CPU time per reply ("cpu_ms", the server being the
    child process run with `marker`); then the chats typing."""
    await registered(fake, base + WEBHOOK_PATH)
    pid, before = child_pid(marker), len(fake.calls)
    used = cpu_seconds(pid)
    flood = await wrk_run(base, script, args.concurrency)
    used = cpu_seconds(pid) - used
    sent = [(int(p["chat_id"]), p["text"]) for m, p in fake.calls[before:] if m == "sendMessage"]
    flood["sent"] = len(sent)
    flood["right"] = sum(right(expected, chat_id, text) for chat_id, text in sent)
    flood["cpu_ms"] = used * 1000 / max(len(sent), 1)
    replies = await typed_orders(fake, chat_ids(args.concurrency), expected)
    return flood, replies


async def bench_database(url: str, directory: str, args: argparse.Namespace) -> list[Row]:
    name = make_url(url).get_backend_name()
    redis_url = args.redis if name == "postgresql" else ""
    label = "PostgreSQL + Redis" if redis_url else "SQLite"
    chats = chat_ids(2 * args.concurrency)
    script = wrk_script(directory, len(chats))
    phases = f"wrk {args.concurrency} conn, then {REPLY_SECONDS} s typed"
    fake = TimedTelegram()
    await fake.start()
    try:
        print(f"{label}: floor, {phases}", flush=True)
        log = Path(directory) / f"floor-{name}.log"
        command = (sys.executable, str(SCRIPT), "--floor-child", fake.base_url, str(free_port()))
        async with serving(log, *command) as base:
            floor = await measured(fake, base, "--floor-child", script, args, None)

        env = service_env(url, redis_url, fake.base_url, free_port())
        await run_cli(env, directory, "migrate")
        print(f"{label}: {len(chats)} shops of {ORDERS:,} orders, each its owner's", flush=True)
        expected = await seed(url, chats)
        print(f"{label}: serve, {phases}", flush=True)
        log = Path(directory) / f"serve-{name}.log"
        if redis_url:
            await forget_states(redis_url)
        try:
            command = (sys.executable, str(MAIN), "serve")
            async with serving(log, *command, env=env, cwd=directory) as base:
                product = await measured(fake, base, "serve", script, args, expected)
        finally:
            if redis_url:
                await forget_states(redis_url)
    finally:
        await fake.close()
    return [*rows(label, args, floor, product), log_row(label, log)]


def rows(
    label: str,
    args: argparse.Namespace,
    floor: tuple[dict[str, float], Replies],
    product: tuple[dict[str, float], Replies],
) -> list[Row]:
    (floor_wrk, floor_typed), (wrk, typed) = floor, product
    conns = f"wrk {WRK_SECONDS} s @ {args.concurrency} conn"
    ratio = wrk["sent"] / max(floor_wrk["sent"], 1)
    return [
        flood_row(f"{label} floor", conns, floor_wrk, "echo through sendMessage"),
        flood_row(f"{label} product", conns, wrk, f"floor x{ratio:.3f}"),
        typed_row(f"{label} floor", args, floor_typed),
        typed_row(f"{label} product", args, typed),
    ]


def flood_row(who: str, conns: str, flood: dict[str, float], note: str) -> Row:
    """Updates/s counts the replies sent while wrk ran (wrk's own rate leaves out the
    requests it gave up on after 2 s); latencies are wrk's."""
    ok = flood["right"] == flood["sent"] and flood["non_2xx"] == 0
    return Row(
        f"{who}, {conns}",
        f"{flood['sent'] / WRK_SECONDS:,.0f} updates/s, {flood['cpu_ms']:.2f} ms CPU each",
        f"{note}; {'ok' if ok else 'WRONG'}: {flood['right']:,.0f} of {flood['sent']:,.0f} "
        f"replies right, non-2xx {flood['non_2xx']:.0f}; wrk {flood['rate']:,.0f} answered/s, "
        f"p50 {flood['p50']:.1f} / p99 {flood['p99']:.1f} ms",
    )


def typed_row(who: str, args: argparse.Namespace, typed: Replies) -> Row:
    return Row(
        f"{who}, {args.concurrency} chats typing",
        f"reply p50 {typed.reply_p50:.1f} / p99 {typed.reply_p99:.1f} ms",
        f"{'ok' if typed.wrong == 0 else 'WRONG'}: {typed.updates:,} updates "
        f"({typed.rate:,.0f}/s), {typed.wrong} replies missing or wrong, non-2xx "
        f"{typed.non_2xx}; answered p99 {typed.answer_p99:.1f} ms",
    )


async def bench(args: argparse.Namespace) -> list[Row]:
    if not shutil.which("wrk"):
        raise SystemExit("bench/bot.py needs wrk (apt install wrk)")
    return await on_each_database(args, SCRATCH_DB, bench_database)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=32, help="connections held open")
    database_args(parser)
    parser.add_argument(
        "--redis", default=DEFAULT_REDIS, help="Redis for the PostgreSQL run (its FSM storage)"
    )
    parser.add_argument("--floor-child", nargs=2, metavar=("API", "PORT"), help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.floor_child:
        api_url, port = args.floor_child
        asyncio.run(floor_child(api_url, int(port)))
        return
    began = time.perf_counter()
    print_table(asyncio.run(bench(args)), "floor / check")
    print(f"\n(total {time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
