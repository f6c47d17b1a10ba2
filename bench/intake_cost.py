"""CPU cost of the Shopify webhook intake, per request: what `POST /webhooks/shopify` costs the
serving process, measured in CPU seconds (not wall time, so other work on the machine barely
moves it), with a cProfile of the same load.

    python bench/intake_cost.py [--requests N] [--concurrency C] [--pg URL | --no-pg]
                                [--log-level LEVEL] [--top K] [--no-profile]

The real app (`build_app` over `main.open_resources`, no job worker) listens on loopback; a
client in a child process posts N signed, real-sized orders/create deliveries (every 100th a
repeat of an earlier one) at C connections. The serving process's `time.process_time()` over
the run gives CPU seconds per 1,000 requests; a second run under cProfile gives the top
functions by own and by cumulative time. Logs go to /dev/null at LOG_LEVEL (default INFO,
the product's default). SQLite runs on a temporary file; PostgreSQL (default
$TEST_DATABASE_URL) on a scratch database `ordertalk_bench_intake_cost`, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import logging
import os
import pstats
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest import SECRET, SHOP, deliveries
from bench.shared import scratch_postgres
from clock import SystemClock
from flows.shops import onboarding
from logs import setup_logging
from main import open_resources
from settings import Settings
from storage import migrate
from storage.models import Job, WebhookReceipt
from web.app import AppDeps, build_app

SCRIPT = Path(__file__).resolve()
PATH = "/webhooks/shopify"
SCRATCH_DB = "ordertalk_bench_intake_cost"
WARMUP = 300
REQUEST_TIMEOUT_SECONDS = 60


# --- client (child process) ---


async def client(url: str, requests: int, concurrency: int, first: int) -> None:
    """Warm up, say "ready", wait for "go" on stdin, post the requests, print a summary."""
    spec = argparse.Namespace(requests=requests, first=first)
    warm = deliveries(argparse.Namespace(requests=WARMUP, first=first + requests + 1))
    sent = deliveries(spec)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def post_all(batch: list[tuple[bytes, dict[str, str]]]) -> Counter[str]:
            todo = iter(batch)
            seen: Counter[str] = Counter()

            async def lane() -> None:
                while (request := next(todo, None)) is not None:
                    body, headers = request
                    async with session.post(url, data=body, headers=headers) as response:
                        answer = await response.json(content_type=None)
                        seen[f"{response.status} {answer.get('status', answer)}"] += 1

            await asyncio.gather(*(lane() for _ in range(concurrency)))
            return seen

        await post_all(warm)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        began = time.perf_counter()
        seen = await post_all(sent)
        seconds = time.perf_counter() - began
    print(json.dumps({"answers": dict(seen), "seconds": seconds}), flush=True)


# --- the measured service (this process) ---


async def run_client(url: str, args: argparse.Namespace, first: int, measure: Any) -> dict:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        "--client",
        url,
        str(args.requests),
        str(args.concurrency),
        str(first),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stdin is not None
    try:
        line = await process.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"client failed: {line!r}")
        with measure():
            process.stdin.write(b"go\n")
            await process.stdin.drain()
            line = await process.stdout.readline()
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if not line:
        raise RuntimeError("client failed")
    return json.loads(line)


class CpuClock:
    def __init__(self, profile: cProfile.Profile | None = None) -> None:
        self.profile = profile
        self.cpu = 0.0

    def __call__(self) -> CpuClock:
        return self

    def __enter__(self) -> None:
        self.began = time.process_time()
        if self.profile:
            self.profile.enable()

    def __exit__(self, *exc: object) -> None:
        if self.profile:
            self.profile.disable()
        self.cpu = time.process_time() - self.began


async def measure_database(url: str, args: argparse.Namespace) -> None:
    settings = Settings(
        database={"url": url},
        security={"secret_key": "bench-intake-secret-key-0123456789ab"},
        shopify={"api_secret": SECRET},
        jobs={"run_in_serve": False},
    )
    async with open_resources(settings, SystemClock()) as res:
        await migrate.upgrade(res.db)
        await onboarding.create_shop(res.db, res.queue, res.box, res.clock, SHOP, None)
        app = build_app(
            AppDeps(
                settings,
                res.clock,
                res.db,
                res.queue,
                res.metrics,
                res.http,
                res.account_desk(),
                res.redis,
            )
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        base = f"http://{host}:{port}{PATH}"
        name = res.db.dialect
        try:
            runs = [("cpu", CpuClock())]
            if args.profile:
                runs.append(("profile", CpuClock(cProfile.Profile(time.process_time))))
            for number, (kind, clock) in enumerate(runs):
                first = 1 + number * 10 * (args.requests + WARMUP)
                result = await run_client(base, args, first, clock)
                per_k = clock.cpu / args.requests * 1000
                answers = ", ".join(f"{n:,} x {a}" for a, n in sorted(result["answers"].items()))
                print(
                    f"{name} {kind}: {args.requests:,} requests, {clock.cpu:.2f} CPU s "
                    f"= {per_k * 1000:.0f} ms CPU per 1,000 requests "
                    f"({result['seconds']:.1f} s wall; {answers})",
                    flush=True,
                )
                if clock.profile:
                    print_profile(clock.profile, args.top)
        finally:
            await runner.cleanup()
        async with res.db.transaction() as session:
            receipts = await session.scalar(select(func.count()).select_from(WebhookReceipt))
            jobs = await session.scalar(select(func.count()).select_from(Job))
        print(f"{name}: {receipts:,} receipts, {jobs:,} jobs stored", flush=True)


def print_profile(profile: cProfile.Profile, top: int) -> None:
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out)
        stats.sort_stats(order).print_stats(top)
        text = out.getvalue()
        print(text[text.index("   ncalls") :].rstrip(), flush=True)
        print()


async def bare_hit(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"status": "accepted"})


async def measure_bare(args: argparse.Namespace) -> None:
    """The floor: a bare aiohttp handler that reads the body and answers, nothing else."""
    app = web.Application()
    app.router.add_post(PATH, bare_hit)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        clock = CpuClock()
        await run_client(f"http://{host}:{port}{PATH}", args, 1, clock)
    finally:
        await runner.cleanup()
    per_k = clock.cpu / args.requests * 1000
    print(f"bare aiohttp handler: {per_k * 1000:.0f} ms CPU per 1,000 requests", flush=True)


def log_to_devnull(level: str) -> None:
    """The product's logging (JSON lines at `level`), written to /dev/null."""
    setup_logging(level)
    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(devnull)


async def main(args: argparse.Namespace) -> None:
    await measure_bare(args)
    with tempfile.TemporaryDirectory() as directory:
        await measure_database(f"sqlite+aiosqlite:///{directory}/intake.db", args)
    if args.pg:
        async with scratch_postgres(args.pg, SCRATCH_DB) as url:
            await measure_database(url, args)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pg", default=os.environ.get("TEST_DATABASE_URL", ""))
    parser.add_argument("--no-pg", dest="pg", action="store_const", const="")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    return parser.parse_args()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        url, requests, concurrency, first = sys.argv[2:6]
        asyncio.run(client(url, int(requests), int(concurrency), int(first)))
    else:
        arguments = parse_args()
        log_to_devnull(arguments.log_level)
        asyncio.run(main(arguments))
