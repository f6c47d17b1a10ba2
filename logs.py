"""Logging: one JSON object per line (or, when stderr is a terminal, a line a person reads),
with the request id and phone numbers masked.

`request_id` is a context variable the web middleware sets, so every line logged while a
request is handled carries it. Phone numbers in E.164 form are masked in every message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TextIO

request_id: ContextVar[str] = ContextVar("request_id", default="")

_E164 = re.compile(r"\+\d{7,15}\b")
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def mask_phone(text: str) -> str:
    """Replace every E.164 number in `text` by its country part and last two digits."""
    if "+" not in text:  # the common case, and much cheaper than the regex
        return text
    return _E164.sub(lambda m: m.group()[:3] + "*" * (len(m.group()) - 5) + m.group()[-2:], text)


# One encoder for every line: json.dumps(..., default=str) would build a new one each call.
_ENCODER = json.JSONEncoder(default=str)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": mask_phone(record.getMessage()),
        }
        rid = request_id.get()
        if rid:
            entry["request_id"] = rid
        attrs = vars(record)
        if attrs.keys() - _STANDARD_ATTRS:  # extra fields, in the order they were given
            for key, value in attrs.items():
                if key not in _STANDARD_ATTRS and not key.startswith("_"):
                    entry[key] = mask_phone(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = mask_phone(self.formatException(record.exc_info))
        return _ENCODER.encode(entry)


class TextFormatter(logging.Formatter):
    """`08:52:01 INFO  flows.verification.runtime  shop acme: order #1001 confirmed`."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        line = f"{moment} {record.levelname:<7} {record.name}  {mask_phone(record.getMessage())}"
        rid = request_id.get()
        if rid:
            line += f"  [{rid[:8]}]"
        if record.exc_info:
            line += "\n" + mask_phone(self.formatException(record.exc_info))
        return line


def setup_logging(level: str = "INFO", stream: TextIO = sys.stderr) -> None:
    """Log to `stream`: readable lines on a terminal, JSON lines otherwise."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter() if stream.isatty() else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log duplicates our request log line.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
