"""ordertalk's composition root and command line.

    python main.py serve [--config PATH]     web + job worker in one process (the default)
    python main.py worker [--config PATH]    job workers only
    python main.py migrate [--config PATH]   apply (or roll back) schema migrations
    python main.py check-config [--config PATH]

This is the only module that knows every concrete class. An invalid configuration exits
with status 2 and one line per problem naming the key.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from clock import Clock, SystemClock
from logs import setup_logging
from metrics import Metrics
from settings import ConfigError, Settings, load_settings, masked
from storage import migrate
from storage.db import JOBS_CHANNEL, Database
from storage.jobs import Handler, JobQueue, Worker
from storage.wakeup import PostgresWakeup, RedisWakeup, Wakeup
from web.app import build_app

_LOGGER = logging.getLogger("ordertalk")


@dataclass
class Resources:
    settings: Settings
    clock: Clock
    db: Database
    queue: JobQueue
    metrics: Metrics
    redis: Redis | None


@contextlib.asynccontextmanager
async def open_resources(settings: Settings, clock: Clock) -> AsyncIterator[Resources]:
    redis = Redis.from_url(settings.redis.url) if settings.redis.url else None
    url = make_url(settings.database.url)
    wakeup: Wakeup
    if url.get_backend_name() == "postgresql":
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        wakeup = PostgresWakeup(dsn, JOBS_CHANNEL)
    elif redis is not None:
        wakeup = RedisWakeup(redis, JOBS_CHANNEL)
    else:
        wakeup = Wakeup()
    db = Database(settings.database.url, wakeup)
    try:
        await wakeup.start()
        yield Resources(settings, clock, db, JobQueue(db, clock, settings.jobs), Metrics(), redis)
    finally:
        await wakeup.stop()
        await db.close()
        if redis is not None:
            await redis.aclose()


def job_handlers(resources: Resources) -> Mapping[str, Handler]:
    """Every job kind the product knows, bound to its dependencies."""
    return {}


def make_worker(resources: Resources) -> Worker:
    return Worker(
        resources.queue,
        job_handlers(resources),
        clock=resources.clock,
        settings=resources.settings.jobs,
        wakeup=resources.db.wakeup,
        metrics=resources.metrics,
    )


class StartupError(Exception):
    """The process cannot start; the message says why and what to do."""


async def ensure_schema(db: Database) -> None:
    """SQLite files are migrated on start; PostgreSQL must be migrated explicitly."""
    try:
        if db.dialect == "sqlite":
            await migrate.upgrade(db)
            return
        current = await migrate.current_revision(db)
    except Exception as exc:
        raise StartupError(f"database: cannot open {_safe(db.url)}: {exc}") from exc
    if current != migrate.head_revision():
        raise StartupError(
            f"database: schema is at {current or 'nothing'}, this release needs "
            f"{migrate.head_revision()}; run `python main.py migrate` first"
        )


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve(settings: Settings) -> None:
    async with open_resources(settings, SystemClock()) as res:
        await ensure_schema(res.db)
        app = build_app(
            settings,
            clock=res.clock,
            db=res.db,
            queue=res.queue,
            metrics=res.metrics,
            redis=res.redis,
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.server.host, settings.server.port)
        await site.start()
        worker = make_worker(res)
        worker_task = asyncio.create_task(worker.run(), name="worker")
        host, port = runner.addresses[0][:2]
        mode = " (sandbox mode)" if settings.sandbox.enabled else ""
        print(f"ordertalk serving on http://{host}:{port}{mode}", flush=True)
        try:
            await _until_signalled()
        finally:
            worker.stop()
            await worker_task
            await runner.cleanup()


async def run_workers(settings: Settings) -> None:
    async with open_resources(settings, SystemClock()) as res:
        await ensure_schema(res.db)
        worker = make_worker(res)
        task = asyncio.create_task(worker.run(), name="worker")
        print(f"ordertalk worker {worker.id} ready", flush=True)
        try:
            await _until_signalled()
        finally:
            worker.stop()
            await task


async def run_migrate(settings: Settings, downgrade_to: str | None) -> None:
    db = Database(settings.database.url)
    try:
        if downgrade_to:
            await migrate.downgrade(db, downgrade_to)
        else:
            await migrate.upgrade(db)
        print(f"database {_safe(db.url)} at revision {await migrate.current_revision(db)}")
    except Exception as exc:
        raise StartupError(f"database: migration failed on {_safe(db.url)}: {exc}") from exc
    finally:
        await db.close()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="main.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--config", type=Path, help="TOML file (default: config.toml if any)")
        return sub

    command("serve", "web server and job worker in one process")
    command("worker", "job workers only")
    command("check-config", "validate the configuration and print it, secrets masked")
    migrate_cmd = command("migrate", "bring the database schema to this release")
    migrate_cmd.add_argument("--downgrade", metavar="REVISION", help="roll back to REVISION")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(json.dumps(masked(settings), indent=2))
        return 0
    setup_logging(settings.server.log_level)
    runs: dict[str, Any] = {
        "serve": lambda: serve(settings),
        "worker": lambda: run_workers(settings),
        "migrate": lambda: run_migrate(settings, args.downgrade),
    }
    try:
        asyncio.run(runs[args.command]())
    except StartupError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
