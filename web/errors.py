"""JSON error answers: one shape for every API and webhook error."""

from __future__ import annotations

from typing import Any

from aiohttp import web

JSON_PREFIXES = ("/api/", "/webhooks/", "/healthz", "/metrics")


def wants_json(request: web.Request) -> bool:
    return request.path.startswith(JSON_PREFIXES)


def json_error(status: int, message: str, **details: Any) -> web.Response:
    """`{"error": {"status": ..., "message": ..., **details}}` with that status."""
    return web.json_response(
        {"error": {"status": status, "message": message, **details}}, status=status
    )
