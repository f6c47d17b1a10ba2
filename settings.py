"""Process settings: one TOML file plus `ORDERTALK_<SECTION>__<KEY>` environment overrides.

Validated once at start-up (pydantic-settings, unknown keys rejected) and passed explicitly
to whatever needs it. `load_settings` raises `ConfigError` with one line per problem, each
naming the key, so the CLI can print them and exit with status 2.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_CONFIG_PATH = Path("config.toml")

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _long_if_set(value: SecretStr) -> SecretStr:
    """A key or token is empty (not set) or 32+ characters: shorter ones can be guessed."""
    if value.get_secret_value() and len(value.get_secret_value()) < 32:
        raise ValueError("must be at least 32 characters")
    return value


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_url: str = "http://127.0.0.1:8080"
    max_body_bytes: int = Field(1_048_576, ge=1024, le=64 * 1_048_576)
    log_level: str = "INFO"
    # Empty: /metrics answers loopback clients only (not through a proxy); set: any client
    # sending `Authorization: Bearer <metrics_token>`, and no other.
    metrics_token: SecretStr = SecretStr("")

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return level

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token(cls, value: SecretStr) -> SecretStr:
        return _long_if_set(value)


class DatabaseSettings(Section):
    url: str = "sqlite+aiosqlite:///ordertalk.db"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL ({exc})") from None
        backend = url.get_backend_name()
        if backend not in _ASYNC_DRIVERS:
            raise ValueError("only sqlite and postgresql databases are supported")
        driver = url.drivername
        if driver == backend:
            driver = _ASYNC_DRIVERS[backend]
        if driver != _ASYNC_DRIVERS[backend]:
            raise ValueError(f"use the {_ASYNC_DRIVERS[backend]} driver, not {driver}")
        if backend == "sqlite" and not url.database:
            raise ValueError("a SQLite URL needs a file path (in-memory databases lose jobs)")
        return url.set(drivername=driver).render_as_string(hide_password=False)


class RedisSettings(Section):
    url: str = ""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be empty or start with redis://, rediss:// or unix://")
        return value


class SecuritySettings(Section):
    secret_key: SecretStr = SecretStr("")
    # Keys replaced by secret_key, still accepted for what they made (never used to make).
    previous_secret_keys: list[SecretStr] = []
    admin_token: SecretStr = SecretStr("")

    @field_validator("secret_key", "admin_token")
    @classmethod
    def _key_or_token(cls, value: SecretStr) -> SecretStr:
        return _long_if_set(value)

    @field_validator("previous_secret_keys")
    @classmethod
    def _previous(cls, values: list[SecretStr]) -> list[SecretStr]:
        if any(len(value.get_secret_value()) < 32 for value in values):
            raise ValueError("each must be at least 32 characters")
        return values


class ShopifySettings(Section):
    api_key: str = ""
    api_secret: SecretStr = SecretStr("")
    api_version: str = "2025-10"
    admin_url: str = "https://{shop}/admin/api/{version}/graphql.json"

    @field_validator("admin_url")
    @classmethod
    def _admin_url(cls, value: str) -> str:
        if "{shop}" not in value or "{version}" not in value:
            raise ValueError("must contain the {shop} and {version} placeholders")
        return value


class TelegramSettings(Section):
    # The merchant bot's token from @BotFather; empty: no bot.
    token: SecretStr = SecretStr("")
    # The Bot API server (scheme and host): Telegram's, or a local one for tests and sandboxes.
    api_url: str = "https://api.telegram.org"
    # true: Telegram posts updates to {server.public_url}/webhooks/telegram; false: polling.
    webhook: bool = False

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value()
        bot_id, _, secret = token.partition(":")
        if token and not (bot_id.isdigit() and secret and not any(c.isspace() for c in token)):
            raise ValueError("must be empty or a bot token from @BotFather (<digits>:<secret>)")
        return value

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class SandboxSettings(Section):
    enabled: bool = True


class JobsSettings(Section):
    concurrency: int = Field(100, ge=1, le=1000)
    poll_seconds: float = Field(1.0, gt=0, le=60)
    lease_seconds: float = Field(30.0, ge=1, le=3600)
    max_attempts: int = Field(8, ge=1, le=100)
    backoff_base_seconds: float = Field(5.0, gt=0, le=3600)
    backoff_max_seconds: float = Field(3600.0, gt=0, le=86400)
    shutdown_grace_seconds: float = Field(10.0, ge=0, le=600)
    keep_done_hours: float = Field(72.0, ge=0, le=24 * 365)
    # Dead jobs hold raw webhook bodies (names, addresses, phones): deleted after this long.
    keep_dead_days: float = Field(30.0, ge=0, le=3650)
    # false: `serve` only answers HTTP and `main.py worker` processes run every job.
    run_in_serve: bool = True
    # While webhooks are arriving, the share of `serve`'s time that turning them into orders
    # may take (1: no limit); the backlog waits, durable, until the flood ends or its oldest
    # job has waited flood_max_delay_seconds.
    flood_share: float = Field(0.2, gt=0, le=1)
    flood_max_delay_seconds: float = Field(60.0, ge=0, le=3600)


class MessageRate(Section):
    # Sends per second per sending identity (a number or sender id), shared by all processes.
    messages_per_second: float = Field(1.0, gt=0, le=1000)


class MessageAndCallRate(MessageRate):
    calls_per_second: float = Field(1.0, gt=0, le=1000)


class TwilioSettings(MessageAndCallRate):
    account_sid: str = ""
    auth_token: SecretStr = SecretStr("")
    api_url: str = "https://api.twilio.com"
    sms_from: str = ""  # the platform's SMS number (E.164)
    whatsapp_from: str = ""  # the platform's WhatsApp sender (E.164)


class ExotelSettings(MessageAndCallRate):
    account_sid: str = ""
    api_key: str = ""
    api_token: SecretStr = SecretStr("")
    subdomain: str = "api.exotel.com"
    api_url: str = ""  # empty: https://{subdomain}; set to reach a test or sandbox server
    messages_per_second: float = Field(3.0, gt=0, le=1000)  # Exotel allows 200 requests/min
    calls_per_second: float = Field(3.0, gt=0, le=1000)


class GupshupSettings(MessageRate):
    api_key: SecretStr = SecretStr("")
    app_name: str = ""
    source: str = ""
    api_url: str = "https://api.gupshup.io"
    messages_per_second: float = Field(10.0, gt=0, le=1000)


class RingCentralSettings(MessageRate):
    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    jwt: SecretStr = SecretStr("")
    api_url: str = "https://platform.ringcentral.com"
    sms_from: str = ""  # an SMS-enabled number of the JWT user's extension (E.164)


class ProvidersSettings(Section):
    twilio: TwilioSettings = TwilioSettings()
    exotel: ExotelSettings = ExotelSettings()
    gupshup: GupshupSettings = GupshupSettings()
    ringcentral: RingCentralSettings = RingCentralSettings()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ORDERTALK_", env_nested_delimiter="__", extra="forbid"
    )

    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    security: SecuritySettings = SecuritySettings()
    shopify: ShopifySettings = ShopifySettings()
    telegram: TelegramSettings = TelegramSettings()
    sandbox: SandboxSettings = SandboxSettings()
    jobs: JobsSettings = JobsSettings()
    providers: ProvidersSettings = ProvidersSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init values; the environment overrides it.
        return env_settings, init_settings

    def secret_key(self) -> str:
        """The key that encrypts secrets at rest and signs links and callback tokens."""
        return self.secret_keys()[0]

    def secret_keys(self) -> tuple[str, ...]:
        """Every key that decrypts and verifies: `secret_key` (which alone encrypts and
        signs) first, then `previous_secret_keys`."""
        key = self.security.secret_key.get_secret_value()
        if not key:
            raise ConfigError([MISSING_SECRET_KEY])
        previous = (value.get_secret_value() for value in self.security.previous_secret_keys)
        return (key, *previous)


MISSING_SECRET_KEY = (
    "security.secret_key: required (32+ characters); only `main.py sandbox` runs without one"
)


class ConfigError(Exception):
    """The configuration is invalid; `problems` holds one `key: reason` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_settings(path: Path | None = None, *, secret_key_required: bool = False) -> Settings:
    """Read `path` (default `config.toml` if it exists, else built-in sandbox defaults).

    `secret_key_required`: for every command that keeps or serves real data, that is all
    but `main.py sandbox` (which has its own key) and those that touch no secret.
    """
    data: dict[str, Any] = {}
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError([f"config: file not found: {path}"]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([f"config: cannot read {path}: {exc}"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"config: {path} is not valid TOML: {exc}"]) from None
    problems = _unknown_environment()
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError([_describe(error) for error in exc.errors()] + problems) from None
    if not settings.security.secret_key.get_secret_value():
        if secret_key_required:
            problems.append(MISSING_SECRET_KEY)
        elif settings.security.previous_secret_keys:
            problems.append("security.secret_key: required with security.previous_secret_keys")
    if problems:
        raise ConfigError(problems)
    return settings


def _describe(error: Any) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "config"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    return f"{key}: {message}"


def _unknown_environment() -> list[str]:
    return [
        f"{name}: unknown key {'.'.join(path)}"
        for name, path in _prefixed_environment()
        if not _is_known(Settings, path)
    ]


def require_sandbox_allowed(settings: Settings) -> None:
    """Raise ConfigError when the configuration says it is not for `main.py sandbox`."""
    if not settings.sandbox.enabled:
        raise ConfigError(
            ["sandbox.enabled: false: this configuration may not be run by `main.py sandbox`"]
        )


def _prefixed_environment() -> list[tuple[str, list[str]]]:
    prefix = Settings.model_config["env_prefix"]
    return [
        (name, name[len(prefix) :].lower().split("__"))
        for name in os.environ
        if name.upper().startswith(prefix)
    ]


def _is_known(model: type[BaseModel], path: list[str]) -> bool:
    field = model.model_fields.get(path[0])
    if field is None:
        return False
    if len(path) == 1:
        return True
    annotation = field.annotation
    return (
        isinstance(annotation, type)
        and issubclass(annotation, BaseModel)
        and _is_known(annotation, path[1:])
    )


def masked(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, with every secret and URL password masked."""

    def walk(value: Any) -> Any:
        if isinstance(value, BaseModel):
            return {name: walk(getattr(value, name)) for name in type(value).model_fields}
        if isinstance(value, SecretStr):
            return "********" if value.get_secret_value() else ""
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    data = walk(settings)
    data["database"]["url"] = make_url(settings.database.url).render_as_string(hide_password=True)
    if settings.redis.url:
        data["redis"]["url"] = make_url(settings.redis.url).render_as_string(hide_password=True)
    return data
