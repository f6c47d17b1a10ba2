"""HTTP behaviour of the app factory: clear 4xx answers, request ids, structured logs."""

from __future__ import annotations

import io
import json
import logging
import os

import pytest

from logs import JsonFormatter, mask_phone, request_id, setup_logging


@pytest.fixture
async def client(aiohttp_client, app_factory, db, queue):
    return await aiohttp_client(app_factory(db, queue))


async def test_unknown_api_route_is_json_404(client):
    response = await client.get("/api/v1/nothing-here")
    assert response.status == 404
    assert await response.json() == {"error": {"code": "not_found", "message": "Not Found"}}


async def test_wrong_method_is_405_with_allow(client):
    response = await client.post("/healthz", data=b"{}")
    assert response.status == 405
    assert response.headers["Allow"] == "GET,HEAD"
    assert (await response.json())["error"]["code"] == "method_not_allowed"


async def test_oversize_body_is_413_before_any_handler(client, settings):
    body = b"x" * (settings.server.max_body_bytes + 1)
    response = await client.post("/webhooks/shopify", data=io.BytesIO(body))
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "request_entity_too_large"


async def test_unknown_page_is_plain_404(client):
    response = await client.get("/no-such-page")
    assert response.status == 404
    assert response.content_type == "text/plain"


async def test_request_id_is_echoed_or_made(client):
    given = await client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert given.headers["X-Request-Id"] == "abc-123"
    made = await client.get("/healthz", headers={"X-Request-Id": "bad id; with spaces"})
    assert len(made.headers["X-Request-Id"]) == 32


async def test_access_log_lines_carry_the_request_id(client, caplog):
    caplog.set_level(logging.INFO, logger="web.access")
    await client.get("/api/v1/shop/status", headers={"X-Request-Id": "trace-me"})
    [record] = [r for r in caplog.records if r.name == "web.access"]
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "GET /api/v1/shop/status 401"
    assert line["status"] == 401


async def test_polls_are_logged_at_debug_so_they_bury_nothing(client, caplog):
    caplog.set_level(logging.INFO, logger="web.access")
    await client.get("/healthz")
    await client.get("/metrics")
    assert [r for r in caplog.records if r.name == "web.access"] == []
    caplog.set_level(logging.DEBUG, logger="web.access")
    await client.get("/healthz")
    assert [r.levelno for r in caplog.records if r.name == "web.access"] == [logging.DEBUG]


def test_phone_numbers_are_masked_in_logs():
    assert mask_phone("call +919876543210 now") == "call +91********10 now"
    assert mask_phone("order #1001 total 1299") == "order #1001 total 1299"
    record = logging.LogRecord(
        "flows", logging.INFO, __file__, 1, "sms to %s failed", ("+14155550123",), None
    )
    record.phone = "+14155550123"
    token = request_id.set("rid-1")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert line["msg"] == "sms to +14*******23 failed"
    assert line["phone"] == "+14*******23"
    assert line["request_id"] == "rid-1"
    assert "4155550123" not in json.dumps(line)


def test_log_lines_without_extras_and_with_unserialisable_extras():
    record = logging.LogRecord("flows", logging.WARNING, __file__, 1, "plain %s", ("text",), None)
    line = json.loads(JsonFormatter().format(record))
    assert set(line) == {"ts", "level", "logger", "msg"}
    assert (line["level"], line["msg"]) == ("WARNING", "plain text")
    record.when = object()  # not JSON: written as its str()
    assert json.loads(JsonFormatter().format(record))["when"].startswith("<object object")


async def test_requests_are_counted_in_metrics(client):
    for _ in range(3):
        assert (await client.get("/healthz")).status == 200
    assert (await client.get("/no-such-page")).status == 404
    text = await (await client.get("/metrics")).text()
    assert 'ordertalk_http_requests_total{method="GET",route="/healthz",status="200"} 3.0' in text
    assert 'route="unmatched",status="404"} 1.0' in text
    assert 'ordertalk_http_request_duration_seconds_count{route="/healthz"} 3.0' in text


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def test_logs_are_readable_lines_on_a_terminal_and_json_elsewhere(restore_logging):
    master, replica = os.openpty()
    with os.fdopen(replica, "w") as terminal:
        setup_logging("INFO", terminal)
        logging.getLogger("flows.demo").info("order %s for %s confirmed", "#1001", "+919876543210")
        terminal.flush()
        line = os.read(master, 4096).decode()
    os.close(master)
    assert "INFO" in line and "flows.demo  order #1001 for +91********10 confirmed" in line
    assert not line.lstrip().startswith("{")

    piped = io.StringIO()
    setup_logging("INFO", piped)
    logging.getLogger("flows.demo").info("order %s confirmed", "#1002")
    assert json.loads(piped.getvalue())["msg"] == "order #1002 confirmed"
