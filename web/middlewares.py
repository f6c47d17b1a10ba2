"""Request middlewares: request id, access log and metrics; errors as clear 4xx answers.

Bad input never becomes a 500: unknown routes are 404, wrong methods 405, oversize bodies
413 (checked from Content-Length before the handler runs, and by aiohttp while reading), a
body nested too deeply to read 400. A database that does not answer is a 503 with
`Retry-After`, so providers and clients try again.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from logs import request_id
from web.errors import (
    RETRY_AFTER_SECONDS,
    UNAVAILABLE,
    ApiError,
    field_problem,
    json_error,
    unavailable,
    wants_json,
)
from web.keys import metrics_key, settings_key

_LOGGER = logging.getLogger("web.access")
_ERRORS = logging.getLogger("web.errors")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_POLLED = frozenset({"/sandbox/api/state", "/sandbox/api/events", "/healthz", "/metrics"})


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id")
    rid = incoming if incoming and _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    token = request_id.set(rid)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-Id"] = rid
        return response
    except web.HTTPException as exc:  # a redirect the handler raised
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        request.app[metrics_key].http_answered(
            request.method, _route_name(request), status, elapsed
        )
        route = _route_name(request)
        # Polls (the sandbox page, health checks, scrapes) would bury what happens: DEBUG.
        level = logging.DEBUG if request.method == "GET" and route in _POLLED else logging.INFO
        if _LOGGER.isEnabledFor(level):
            # The route's pattern, never the path: paths carry link and callback tokens.
            _LOGGER.log(
                level,
                "%s %s %s",
                request.method,
                route,
                status,
                extra={"status": status, "duration_ms": round(elapsed * 1000, 2)},
            )
        request_id.reset(token)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    limit = request.app[settings_key].server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return _answer(request, web.HTTPRequestEntityTooLarge(limit, request.content_length))
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _answer(request, exc)
    except RecursionError:
        problem = field_problem("body", "nested too deeply")
        return json_error(400, "the body is nested too deeply", fields=[problem])
    except Exception as exc:
        if unavailable(exc):
            route = _route_name(request)
            _ERRORS.warning("%s %s: %s", request.method, route, type(exc).__name__)
            return _unavailable(request)
        _ERRORS.exception("unhandled error in %s %s", request.method, _route_name(request))
        if wants_json(request):
            return json_error(500, "internal error")
        return web.Response(status=500, text="Internal error")


def _unavailable(request: web.Request) -> web.Response:
    retry = {hdrs.RETRY_AFTER: RETRY_AFTER_SECONDS}
    if wants_json(request):
        response = json_error(503, UNAVAILABLE)
        response.headers.update(retry)
        return response
    return web.Response(status=503, text=f"503: {UNAVAILABLE}", headers=retry)


def _answer(request: web.Request, exc: web.HTTPException) -> web.Response:
    if wants_json(request):
        response = json_error(exc.status, exc.reason)
        if exc.status == 405:
            response.headers["Allow"] = exc.headers.get("Allow", "")
        return response
    return web.Response(
        status=exc.status,
        text=f"{exc.status}: {exc.reason}",
        headers={k: v for k, v in exc.headers.items() if k == "Allow"},
    )
