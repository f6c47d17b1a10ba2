"""`main.py bot`, run as a user would: it says why it cannot run (no token; webhook mode,
which `serve` answers; a malformed token)."""

from __future__ import annotations

import pytest

from providers.sandbox.telegram import TOKEN
from tests.conftest import SECRET_KEY
from tests.test_config import run_main, write


@pytest.mark.parametrize(
    ("telegram", "status", "problem"),
    [
        ("", 1, "telegram.token: not set"),
        (f'token = "{TOKEN}"\nwebhook = true', 1, "telegram.webhook: true"),
        ('token = "abc"', 2, "telegram.token: must be empty or a bot token"),
    ],
)
def test_the_bot_command_says_why_it_cannot_run(tmp_path, telegram, status, problem):
    config = write(
        tmp_path,
        f'[security]\nsecret_key = "{SECRET_KEY}"\n[database]\n'
        f'url = "sqlite+aiosqlite:///{tmp_path}/bot.db"\n[telegram]\n{telegram}\n',
    )
    result = run_main("bot", "--config", str(config))
    assert result.returncode == status, result.stderr
    assert problem in result.stderr
