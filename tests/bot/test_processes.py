"""The bot in real processes, as a user runs them: `main.py serve` (which polls when no
webhook is set) and `main.py bot` on one SQLite file. Exactly one of them polls the (fake)
Bot API; when it stops (SIGTERM) the other takes over, and both exit cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from bot.handlers import fallback
from storage.db import Database
from storage.models import BotLease
from tests.conftest import ROOT, SECRET_KEY

START_SECONDS = 60.0  # a process imports, migrates and starts: seconds on a loaded machine
CHAT = 6001


class Process:
    def __init__(self, command: str, env: dict[str, str], tmp_path: Path) -> None:
        self.log = tmp_path / f"{command}.stderr"
        with self.log.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "main.py"), command],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )

    async def banner(self) -> str:
        return await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), START_SECONDS)

    async def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(self.proc.wait, START_SECONDS)
        self.proc.stdout.close()
        errors = self.log.read_text(errors="replace")
        assert code == 0, errors[-4000:]
        assert "Traceback" not in errors, errors[-4000:]


async def holder_pid(url: str) -> int:
    db = Database(url)
    try:
        async with db.sessions() as session:
            holder = await session.scalar(select(BotLease.holder))
    finally:
        await db.close()
    return int(holder.split(":")[1])


async def test_serve_and_the_bot_command_share_the_polling_one_at_a_time(tmp_path, telegram):
    url = f"sqlite+aiosqlite:///{tmp_path}/ordertalk.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERTALK_")}
    env |= {
        "ORDERTALK_SERVER__PORT": "0",
        "ORDERTALK_SECURITY__SECRET_KEY": SECRET_KEY,
        "ORDERTALK_DATABASE__URL": url,
        "ORDERTALK_TELEGRAM__TOKEN": telegram.token,
        "ORDERTALK_TELEGRAM__API_URL": telegram.base_url,
    }
    serve = Process("serve", env, tmp_path)
    processes = {serve}
    try:
        assert (await serve.banner()).startswith("ordertalk serving on")
        # Started once serve has migrated the file: two first migrations would race.
        alone = Process("bot", env, tmp_path)
        processes.add(alone)
        assert (await alone.banner()).strip() == "ordertalk bot ready"

        for text in ("one", "two", "three"):
            await telegram.type(CHAT, text)
        assert await telegram.replies(CHAT, 3) == [fallback.NOT_LINKED] * 3
        pid = await holder_pid(url)
        polling, waiting = (serve, alone) if pid == serve.proc.pid else (alone, serve)
        assert pid == polling.proc.pid

        processes.remove(polling)
        await polling.stop()
        await telegram.type(CHAT, "four")
        assert await telegram.replies(CHAT, 4) == [fallback.NOT_LINKED] * 4
        assert await holder_pid(url) == waiting.proc.pid
        assert telegram.conflicts == 0
    finally:
        for process in processes:
            await process.stop()
