"""Configuration as a user meets it: `main.py` run as a subprocess, exit status and output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from main import SANDBOX_SECRET_KEY, sandbox_settings
from settings import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def run_main(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, timeout=60):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORDERTALK_")}
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        cwd=cwd,
        timeout=timeout,
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def assert_config_error(result, *expected_lines: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    for expected in expected_lines:
        assert any(line.startswith(expected) for line in lines), (expected, lines)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_example_config_is_valid_and_covers_every_key(tmp_path):
    result = run_main("check-config", "--config", str(ROOT / "config.example.toml"))
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    example = load_settings(ROOT / "config.example.toml")
    assert shown == json.loads(json.dumps(example.model_dump(mode="json")))
    import tomllib

    written = tomllib.loads((ROOT / "config.example.toml").read_text())

    def keys(data: dict, prefix: str = "") -> set[str]:
        found = set()
        for key, value in data.items():
            found |= keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
        return found

    assert keys(written) == keys(shown)


def test_invalid_values_and_unknown_keys_name_the_key(tmp_path):
    config = write(
        tmp_path,
        '[server]\nport = "eighty"\nhots = "x"\n[database]\nurl = "mysql://db/x"\n'
        "[jobs]\nmax_attempts = 0\n",
    )
    result = run_main("check-config", "--config", str(config))
    assert_config_error(
        result,
        "server.port: ",
        "server.hots: unknown key",
        "database.url: only sqlite and postgresql databases are supported",
        "jobs.max_attempts: ",
    )
    assert len(result.stderr.strip().splitlines()) == 4


def test_environment_overrides_and_their_errors():
    ok = run_main(
        "check-config",
        env={
            "ORDERTALK_DATABASE__URL": "postgresql://app:pw@db.internal/ordertalk",
            "ORDERTALK_PROVIDERS__TWILIO__API_URL": "http://127.0.0.1:9999",
        },
    )
    assert ok.returncode == 0, ok.stderr
    shown = json.loads(ok.stdout)
    assert shown["database"]["url"] == "postgresql+asyncpg://app:***@db.internal/ordertalk"
    assert shown["providers"]["twilio"]["api_url"] == "http://127.0.0.1:9999"

    bad = run_main(
        "serve",
        env={"ORDERTALK_DATABASE__URL": "oracle://x", "ORDERTALK_SERVR__PORT": "1"},
    )
    assert_config_error(bad, "database.url: ", "ORDERTALK_SERVR__PORT: unknown key servr.port")


def test_secrets_are_masked_in_check_config(tmp_path):
    config = write(
        tmp_path,
        '[security]\nsecret_key = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-42"\n'
        '[providers.twilio]\naccount_sid = "AC42"\nauth_token = "tw-token-1234"\n'
        '[redis]\nurl = "redis://:redispw@127.0.0.1:6379/0"\n',
    )
    result = run_main("check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    for secret in ("s3cr3t", "tw-token-1234", "redispw"):
        assert secret not in result.stdout
    shown = json.loads(result.stdout)
    assert shown["security"]["secret_key"] == "********"
    twilio = shown["providers"]["twilio"]
    assert (twilio["account_sid"], twilio["auth_token"]) == ("AC42", "********")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[server\nport=1", "config: "),
        ('[security]\nsecret_key = "short"\n', "security.secret_key: must be at least 32"),
        ('[security]\nadmin_token = "short-admin"\n', "security.admin_token: must be at least 32"),
        (
            f'[security]\nsecret_key = "{"k" * 32}"\nprevious_secret_keys = ["{"p" * 32}", "p"]\n',
            "security.previous_secret_keys: each must be at least 32",
        ),
        (
            f'[security]\nprevious_secret_keys = ["{"p" * 32}"]\n',
            "security.secret_key: required with security.previous_secret_keys",
        ),
        ('[database]\nurl = "sqlite+aiosqlite://"\n', "database.url: a SQLite URL needs a file"),
        ('[database]\nurl = "postgresql+psycopg2://h/db"\n', "database.url: use the "),
        ('[redis]\nurl = "localhost:6379"\n', "redis.url: must be empty or start with"),
        ('[shopify]\nadmin_url = "https://x/graphql"\n', "shopify.admin_url: must contain"),
    ],
)
def test_each_kind_of_problem_exits_2(tmp_path, content, expected):
    assert_config_error(
        run_main("check-config", "--config", str(write(tmp_path, content))), expected
    )


def test_missing_config_file_exits_2(tmp_path):
    result = run_main("serve", "--config", str(tmp_path / "nope.toml"))
    assert_config_error(result, "config: file not found")


def test_defaults_are_the_sandbox_and_have_no_key(tmp_path):
    result = run_main("check-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["sandbox"]["enabled"] is True
    assert shown["database"]["url"] == "sqlite+aiosqlite:///ordertalk.db"
    assert shown["security"]["secret_key"] == ""
    with pytest.raises(ConfigError, match=r"security\.secret_key: required"):
        load_settings(None).secret_key()


def test_the_sandbox_key_is_only_the_sandboxs_and_only_without_a_key(tmp_path):
    world = SimpleNamespace(
        shopify=SimpleNamespace(api_key="k", api_secret="s", admin_url_template="{shop}{version}"),
        exotel=SimpleNamespace(base_url="http://127.0.0.1:1"),
        twilio=SimpleNamespace(base_url="http://127.0.0.1:4"),
        telegram=SimpleNamespace(token="1:t", base_url="http://127.0.0.1:5"),
        gupshup=SimpleNamespace(
            api_key="g", app_name="a", source="1", base_url="http://127.0.0.1:2"
        ),
    )
    bare = sandbox_settings(Settings(), world, "http://127.0.0.1:3")
    assert bare.secret_key() == SANDBOX_SECRET_KEY
    own = Settings(security={"secret_key": "an-operator-chosen-key-0123456789abc"})
    assert sandbox_settings(own, world, "http://127.0.0.1:3").secret_key() == own.secret_key()


def test_the_sandbox_refuses_a_configuration_that_says_it_is_not_for_it(tmp_path):
    config = write(tmp_path, "[sandbox]\nenabled = false\n")
    result = run_main("sandbox", "--config", str(config), "--port", "0", cwd=tmp_path)
    assert_config_error(result, "sandbox.enabled: false")
    assert not (tmp_path / "sandbox.db").exists()


def test_shop_add_registers_a_shop_once(tmp_path):
    env = {
        "ORDERTALK_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db",
        "ORDERTALK_SECURITY__SECRET_KEY": "cli-test-secret-key-0123456789abcdef",
    }
    first = run_main("shop", "add", "--domain", "Cli-Shop.myshopify.com", env=env)
    assert first.returncode == 0, first.stderr
    assert "shop cli-shop.myshopify.com" in first.stdout
    assert "API key (shown once): otk_" in first.stdout
    again = run_main("shop", "add", "--domain", "cli-shop.myshopify.com", env=env)
    assert again.returncode == 1
    assert "already exists" in again.stderr and "Traceback" not in again.stderr
    bad = run_main("shop", "add", "--domain", "not-shopify.com", env=env)
    assert bad.returncode == 2
    assert bad.stderr.startswith("--domain: ")
    del env["ORDERTALK_SECURITY__SECRET_KEY"]
    keyless = run_main("shop", "add", "--domain", "other.myshopify.com", env=env)
    assert_config_error(keyless, "security.secret_key: required")


@pytest.mark.parametrize("command", ["serve", "worker"])
@pytest.mark.parametrize("sandbox", [None, "true", "false"])
def test_serve_and_worker_without_a_secret_key_exit_2(tmp_path, command, sandbox):
    env = {
        "ORDERTALK_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path}/never.db",
        "ORDERTALK_SERVER__PORT": "0",
    }
    if sandbox is not None:
        env["ORDERTALK_SANDBOX__ENABLED"] = sandbox
    result = run_main(command, env=env, cwd=tmp_path, timeout=20)
    assert_config_error(result, "security.secret_key: required")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "never.db").exists()


def test_shop_commands_cover_a_shops_life(tmp_path):
    env = {
        "ORDERTALK_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db",
        "ORDERTALK_SECURITY__SECRET_KEY": "cli-test-secret-key-0123456789abcdef",
    }
    added = run_main("shop", "add", "--domain", "life.myshopify.com", env=env)
    first_key = added.stdout.split("API key (shown once): ")[1].split()[0]
    listed = run_main("shop", "list", env=env)
    assert listed.returncode == 0 and "life.myshopify.com\tpartially_installed" in listed.stdout
    status = run_main("shop", "status", "--domain", "life.myshopify.com", env=env)
    assert status.returncode == 0, status.stderr
    assert "partially_installed" in status.stdout and "voice: no account" in status.stdout
    assert "shopify.access_token: connect the shop to Shopify" in status.stdout
    setup = run_main("shop", "setup", "--domain", "life.myshopify.com", env=env)
    assert setup.returncode == 0 and "missing for installed:" in setup.stdout
    assert "/webhooks/shipments/" in setup.stdout  # the carrier's URL, under "the shop"
    rotated = run_main("shop", "rotate-key", "--domain", "life.myshopify.com", env=env)
    assert rotated.returncode == 0, rotated.stderr
    new_key = rotated.stdout.split()[-1]
    assert new_key.startswith("otk_") and new_key != first_key
    unknown = run_main("shop", "status", "--domain", "nope.myshopify.com", env=env)
    assert unknown.returncode == 1 and "no shop nope.myshopify.com" in unknown.stderr


def test_a_rotation_from_the_environment_is_shown_masked():
    previous = ["previous-key-one-0123456789abcdefgh", "previous-key-two-0123456789abcdefgh"]
    result = run_main(
        "check-config",
        env={
            "ORDERTALK_SECURITY__SECRET_KEY": "the-current-key-0123456789abcdefghij",
            "ORDERTALK_SECURITY__PREVIOUS_SECRET_KEYS": json.dumps(previous),
        },
    )
    assert result.returncode == 0, result.stderr
    assert "previous-key" not in result.stdout
    assert json.loads(result.stdout)["security"]["previous_secret_keys"] == ["********"] * 2
