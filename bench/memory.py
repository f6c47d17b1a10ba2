"""Memory of `serve` with open verifications: resident set size idle on an empty database,
then with N verifications waiting (each an order, its verification row and its timer job due
tomorrow), on SQLite. A verification's state and timers live in the database, so the
figure per open verification should be close to nothing (target: at most 0.5 KB).

    python bench/memory.py [--verifications N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest import run_cli, serving
from bench.shared import Row, print_table, target_note
from storage.db import Database
from storage.models import Job, Order, Shop, Verification

MAIN = Path(__file__).resolve().parent.parent / "main.py"
SETTLE_SECONDS = 5.0  # the worker's first turns, the first claims and prunes
CHUNK = 10_000
TARGET_KB = 0.5


def env_for(url: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ORDERTALK_")}
    return env | {
        "ORDERTALK_DATABASE__URL": url,
        "ORDERTALK_SECURITY__SECRET_KEY": "bench-memory-secret-key-0123456789abc",
        "ORDERTALK_SERVER__PORT": "0",
        "ORDERTALK_SERVER__LOG_LEVEL": "WARNING",
    }


async def fill(url: str, count: int) -> None:
    """`count` pending IVR verifications of one shop, each waiting for its timer tomorrow."""
    db = Database(url)
    now = datetime.now(UTC)
    tomorrow = now + timedelta(days=1)
    async with db.transaction() as session:
        shop = Shop(
            domain="memory.myshopify.com", status="installed", created_at=now, updated_at=now
        )
        session.add(shop)
        await session.flush()
        shop_id = shop.id
    for start in range(0, count, CHUNK):
        numbers = range(start, min(start + CHUNK, count))
        async with db.transaction() as session:
            await session.execute(
                Order.__table__.insert(),
                [
                    {
                        "id": n + 1,
                        "shop_id": shop_id,
                        "shopify_order_id": str(7_000_000 + n),
                        "name": f"#{1000 + n}",
                        "number": 1000 + n,
                        "phone": f"+9198{n:08d}",
                        "total_amount": "1499.00",
                        "currency": "INR",
                        "payment_method": "cod",
                        "gateways": ["Cash on Delivery (COD)"],
                        "tags": [],
                        "items": [],
                        "verification_status": "pending",
                        "placed_at": now,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for n in numbers
                ],
            )
            await session.execute(
                Verification.__table__.insert(),
                [
                    {
                        "id": n + 1,
                        "shop_id": shop_id,
                        "order_id": n + 1,
                        "method": "ivr",
                        "state": "pending",
                        "attempts": 1,
                        "data": {"status": "pending", "method": "ivr", "attempt": 1},
                        "next_action_at": tomorrow,
                        "version": 1,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for n in numbers
                ],
            )
            await session.execute(
                Job.__table__.insert(),
                [
                    {
                        "kind": "verification.timer",
                        "payload": {"verification_id": n + 1, "seq": 1},
                        "shop_id": shop_id,
                        "status": "queued",
                        "idempotency_key": f"verify:{n + 1}:timer:1",
                        "due_at": tomorrow,
                        "attempts": 0,
                        "max_attempts": 8,
                        "created_at": now,
                    }
                    for n in numbers
                ],
            )
    await db.close()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def serve_rss(url: str, directory: str) -> int:
    """RSS (KB) of `serve` on `url` once it has settled."""
    log = Path(directory) / "serve.log"
    async with serving(log, sys.executable, str(MAIN), "serve", env=env_for(url), cwd=directory):
        await asyncio.sleep(SETTLE_SECONDS)
        return rss_kb(serve_pid(directory))


def serve_pid(directory: str) -> int:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if str(MAIN).encode() in cmdline and b"serve" in cmdline and cwd == directory:
            return int(proc.name)
    raise RuntimeError("serve not found")


async def bench(count: int) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="ordertalk-memory-") as directory:
        empty = f"sqlite+aiosqlite:///{directory}/empty.db"
        loaded = f"sqlite+aiosqlite:///{directory}/loaded.db"
        for url in (empty, loaded):
            await run_cli(env_for(url), directory, "migrate")
        print(f"filling {count:,} waiting verifications", flush=True)
        await fill(loaded, count)
        idle = await serve_rss(empty, directory)
        full = await serve_rss(loaded, directory)
    per = (full - idle) / count
    rows.append(Row("serve idle, empty database", f"{idle / 1024:.1f} MB", "RSS"))
    rows.append(
        Row(
            f"serve with {count:,} verifications waiting",
            f"{full / 1024:.1f} MB",
            f"{per * 1024:.0f} bytes per open verification; "
            + target_note(per, TARGET_KB, False, "KB"),
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--verifications", type=int, default=100_000)
    args = parser.parse_args()
    print_table(asyncio.run(bench(args.verifications)), "")


if __name__ == "__main__":
    main()
