"""Column types shared by the models: UTC timestamps and JSON documents on both databases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

Json = JSON().with_variant(JSONB(), "postgresql")


def json_text(value: Any) -> str:
    """How JSON columns are written (the engines' serializer): orjson, several times faster
    than the standard encoder on the large documents the job queue carries."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


json_value = orjson.loads  # ... and read back


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime; SQLite stores it naive, PostgreSQL as timestamptz."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use the clock (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
