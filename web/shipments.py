"""`POST /webhooks/shipments/{token}`: shipment events from carriers and fulfilment platforms
(most Indian carriers never report through Shopify). The path's per-shop secret token is the
only proof (wrong token -> 404, nothing stored); a body that is not an event -> 400 naming the
field; an accepted event is queued durably for its notification job -> 202."""

from __future__ import annotations

from aiohttp import web

from flows.notifications import shipments
from flows.notifications.events import from_shipment
from web.errors import bad_callback, json_error
from web.keys import db_key, queue_key, settings_key


async def shipment_event(request: web.Request) -> web.Response:
    keys = request.app[settings_key].secret_keys()
    shop_id = shipments.shop_of_token(keys, request.match_info["token"])
    if shop_id is None:
        return json_error(404, "unknown shipment webhook")
    try:
        body = await request.json()
    except (ValueError, LookupError, RecursionError):
        return bad_callback(ValueError("body: must be JSON"))
    try:
        event = from_shipment(body)
    except ValueError as exc:
        return bad_callback(exc)
    async with request.app[db_key].transaction() as session:
        accepted = await shipments.accept(session, request.app[queue_key], shop_id, event)
    if not accepted:
        return json_error(404, "unknown shipment webhook")
    return web.json_response({"accepted": True, "event": event.kind}, status=202)


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/shipments/{token}", shipment_event)
