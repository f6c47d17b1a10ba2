"""Browser fixtures: a fresh `main.py sandbox` process per test and Debian's Chromium, driven
headless by Playwright's sync API (never a downloaded browser).

Without /usr/bin/chromium the browser tests skip, unless REQUIRE_SERVICES=1 (CI), where they
fail instead. Each test leaves a full-page screenshot of its last state in `artifacts/`.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import ROOT, missing_service

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts"
VIEWPORT = {"width": 1366, "height": 900}
BANNER = "ordertalk sandbox on "
START_SECONDS = 90.0  # aiogram's import (the sandbox runs the bot) is slow on a busy machine
STOP_SECONDS = 30.0
KOLKATA = ZoneInfo("Asia/Kolkata")


@dataclass(frozen=True)
class SandboxProcess:
    url: str  # the page, http://127.0.0.1:PORT/sandbox
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxProcess]:
    """`main.py sandbox` on a free port in an empty directory (so a fresh sandbox.db); stopped
    with SIGTERM at teardown, which must exit 0 without a traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERTALK_")}
    out, log = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    # Files, not pipes: nobody reads the server's log while the browser runs, and a full pipe
    # would block it.
    with out.open("wb") as stdout, log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "sandbox", "--port", "0"],
            cwd=tmp_path,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        url = _wait_for_banner(process, out, log)
        _to_the_morning(url)
        yield SandboxProcess(url, process, log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"the sandbox did not stop within {STOP_SECONDS:.0f} s of SIGTERM")
    errors = log.read_text(errors="replace")
    assert code == 0, f"the sandbox exited with {code}:\n{errors[-4000:]}"
    assert "Traceback" not in errors, errors[-4000:]


def _wait_for_banner(process: subprocess.Popen[bytes], out: Path, log: Path) -> str:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        first = out.read_text().partition("\n")
        if first[1]:
            assert first[0].startswith(BANNER), first[0]
            return first[0].removeprefix(BANNER).strip()
        if process.poll() is not None:
            pytest.fail(f"the sandbox exited with {process.returncode}:\n{log.read_text()}")
        time.sleep(0.05)
    pytest.fail(f"the sandbox printed no address within {START_SECONDS:.0f} s")


def _to_the_morning(url: str) -> None:
    """Move the sandbox clock to the next 10:00 in India, as the page's "+ minutes" would: the
    demo shop's calling window (9:00 to 21:00) is open then, whatever the hour the tests run."""
    with urllib.request.urlopen(f"{url}/api/state", timeout=30) as answer:
        now = datetime.fromisoformat(json.load(answer)["now"]).astimezone(KOLKATA)
    morning = datetime.combine(now.date(), clock_time(10), KOLKATA)
    if morning <= now:
        morning += timedelta(days=1)
    minutes = math.ceil((morning - now) / timedelta(minutes=1))
    move = urllib.request.Request(
        f"{url}/api/time",
        data=json.dumps({"minutes": minutes}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(move, timeout=30) as answer:
        assert answer.status == 200


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        missing_service(f"{CHROMIUM} is missing: the browser tests need Debian's chromium package")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(
    browser: Browser, sandbox: SandboxProcess, request: pytest.FixtureRequest
) -> Iterator[Page]:
    """The sandbox page, loaded and live; its last state is saved as artifacts/<test>.png."""
    context = browser.new_context(viewport=VIEWPORT, locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(10_000)
    tab = context.new_page()
    try:
        tab.goto(sandbox.url)
        expect(tab.get_by_test_id("connection-status")).to_have_text("Live")
        yield tab
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        tab.screenshot(path=ARTIFACTS / f"{request.node.name}.png", full_page=True)
        context.close()
