"""`main.py serve` as a user runs it: migrates a fresh SQLite file, answers, stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("run_in_serve", ["true", "false"])
def test_serve_starts_on_a_fresh_sqlite_file_and_stops_on_sigterm(tmp_path, run_in_serve):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERTALK_")}
    env |= {
        "ORDERTALK_SERVER__PORT": "0",
        "ORDERTALK_JOBS__RUN_IN_SERVE": run_in_serve,
        "ORDERTALK_SECURITY__SECRET_KEY": "e2e-serve-secret-key-0123456789abcdef",
    }
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("ordertalk serving on http://127.0.0.1:"), line
        url = line.split()[3]
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:
            assert response.status == 200
        assert (tmp_path / "ordertalk.db").exists()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        process.stdout.close()
        errors = process.stderr.read()
        process.stderr.close()
    assert code == 0, errors
    assert "Traceback" not in errors
