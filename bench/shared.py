"""What the benchmarks share: result rows, targets, percentiles, scratch PostgreSQL databases,
the databases to run on, the child-process command lines and the CPU time children use."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

DEFAULT_PG = os.environ.get("TEST_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Row:
    scenario: str
    figure: str
    note: str


def percentile(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100)[pct - 1]


def target_note(value: float, target: float, at_least: bool, unit: str) -> str:
    met = value >= target if at_least else value <= target
    return f"target {'>=' if at_least else '<='} {target:,} {unit}: {'met' if met else 'MISSED'}"


def print_table(rows: list[Row], notes: str) -> None:
    table = [Row("scenario", "figure", notes), *rows]
    first = max(len(row.scenario) for row in table)
    second = max(len(row.figure) for row in table)
    print()
    for row in table:
        print(f"{row.scenario:<{first}}  {row.figure:<{second}}  {row.note}".rstrip())


async def admin(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@asynccontextmanager
async def scratch_postgres(server_url: str, name: str) -> AsyncIterator[str]:
    """A fresh, empty database `name` on the server; dropped afterwards."""
    server = make_url(server_url)
    dsn = server.set(drivername="postgresql").render_as_string(hide_password=False)
    drop = f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    await admin(dsn, drop, f"CREATE DATABASE {name}")
    try:
        scratch = server.set(drivername="postgresql+asyncpg", database=name)
        yield scratch.render_as_string(hide_password=False)
    finally:
        await admin(dsn, drop)


def database_args(parser: argparse.ArgumentParser) -> None:
    """--pg and --databases, as every benchmark that runs on both databases takes them."""
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL server URL")
    parser.add_argument(
        "--databases",
        default="sqlite,postgresql",
        type=lambda value: value.split(","),
        help="which to run, comma-separated (default: sqlite,postgresql)",
    )


async def on_each_database(
    args: argparse.Namespace,
    scratch_name: str,
    run: Callable[[str, str, argparse.Namespace], Awaitable[list[Row]]],
) -> list[Row]:
    """`run(url, directory, args)` on a fresh SQLite file and on a scratch PostgreSQL database,
    as `args.databases` asks; their rows together."""
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ordertalk-bench-") as directory:
        if "sqlite" in args.databases:
            rows += await run(f"sqlite+aiosqlite:///{directory}/bench.db", directory, args)
        if "postgresql" in args.databases:
            async with scratch_postgres(args.pg, scratch_name) as url:
                rows += await run(url, directory, args)
    return rows


def child_pid(marker: str) -> int:
    """The id of this process's child whose command line has the argument `marker`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # ended meanwhile
        if parent == os.getpid() and marker.encode() in arguments:
            return int(entry.name)
    raise LookupError(f"no child process runs {marker!r}")


def cpu_seconds(pid: int) -> float:
    """The user and system CPU time process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
