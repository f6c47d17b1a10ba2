"""`main.py sandbox` as a newcomer runs it: one process, a fresh SQLite file, the demo shop
seeded, the sandbox API answering, a clean stop on SIGTERM; a second start keeps the shop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "ordertalk sandbox on http://127.0.0.1:"


def start(cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERTALK_")}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "sandbox", "--port", "0"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=30)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    errors = process.stderr.read()
    process.stderr.close()
    return code, errors


def state(page: str) -> dict:
    url = page.removesuffix("/sandbox") + "/sandbox/api/state"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return json.load(response)


def test_sandbox_starts_seeded_answers_and_stops_on_sigterm(tmp_path):
    keys = []
    for _run in range(2):
        process = start(tmp_path)
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith(PREFIX) and line.rstrip().endswith("/sandbox"), line
            body = state(line.split()[3])
            assert body["shop"]["domain"] == "demo-store.myshopify.com"
            assert body["shop"]["api_key"].startswith("otk_")
            assert set(body["special_numbers"]) == {"dnd", "never_answers"}
            keys.append(body["shop"]["api_key"])
            assert (tmp_path / "sandbox.db").exists()
        finally:
            code, errors = stop(process)
        assert code == 0, errors
        assert "Traceback" not in errors
    assert keys[0] != keys[1]  # a new key at each start; the shop is the same one
