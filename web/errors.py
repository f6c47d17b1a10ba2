"""JSON error answers: one shape, `{"error": {"code", "message", "fields"?}}`, for every API
and webhook error."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aiohttp import web
from sqlalchemy.exc import DatabaseError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

JSON_PREFIXES = ("/api/", "/webhooks/", "/healthz", "/metrics", "/shopify/")
UNAVAILABLE = "the database or a service this request needs is not answering: try again"
RETRY_AFTER_SECONDS = "30"
# Connections refused, lost or timed out (the database's, or another service's), and the
# database refusing work for now (SQLite locked or unopenable, PostgreSQL shutting down).
_UNAVAILABLE = (OSError, TimeoutError, OperationalError, InterfaceError, PoolTimeout)


def wants_json(request: web.Request) -> bool:
    return request.path.startswith(JSON_PREFIXES)


def json_error(status: int, message: str, code: str = "", **details: Any) -> web.Response:
    """An error answer; `code` defaults to the status phrase in snake case (`not_found`)."""
    code = code or HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    return web.json_response(
        {"error": {"code": code, "message": message, **details}}, status=status
    )


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` means a backing service cannot be used now, rather than a bug."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    # The plain kind, not its subclasses (integrity, data, programming errors: bugs or bad
    # input): the database file itself is unusable (SQLite: not a database, corrupt).
    return type(exc) is DatabaseError or isinstance(exc, _UNAVAILABLE)


def field_problem(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def bad_callback(exc: ValueError) -> web.Response:
    """400 for a callback a parser refused; its message starts with the field ("From: ...")."""
    field, _, problem = str(exc).partition(": ")
    return json_error(
        400, str(exc), "bad_callback", fields=[field_problem(field, problem or str(exc))]
    )


class ApiError(Exception):
    """Raised by a handler to answer with a JSON error (the error middleware renders it)."""

    def __init__(self, status: int, message: str, code: str = "", **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.details = details

    def response(self) -> web.Response:
        return json_error(self.status, self.message, self.code, **self.details)
