"""Admin API handlers for notifications: a template's preview, the shipment webhook's URL, and
billing (messages and credits per account, channel and journey event)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flows.notifications import choices, preview
from flows.notifications.billing import billing
from flows.notifications.events import EVENTS
from flows.notifications.shipments import shipments_url
from flows.notifications.templates import unknown_tokens
from flows.shops import config as shop_config
from flows.shops.settings import SettingsError, TemplateVariable
from providers.base import ProviderError
from web.api.auth import require_shop
from web.api.shops import read_json, unprocessable
from web.api.whatsapp_notices import provider_unavailable, refusal, whatsapp_notices
from web.errors import ApiError, field_problem
from web.keys import clock_key, db_key, settings_key

DEFAULT_BILLING_DAYS = 30
Event = Literal[EVENTS]  # type: ignore[valid-type]


class PreviewRequest(BaseModel):
    """What to preview: an event's saved template, or `text` in its place, with an order's
    values or the sample values."""

    model_config = ConfigDict(extra="forbid", strict=True)

    event: Event
    channel: Literal["sms", "whatsapp"] = "sms"
    order: str | None = Field(
        None, max_length=64, description="the order's name (#1001) or Shopify id"
    )
    text: str | None = Field(
        None,
        min_length=1,
        max_length=640,
        pattern=r"\S",
        description="a text to preview instead of the saved one (its unknown tokens are listed)",
    )


class WhatsAppChoice(BaseModel):
    """Enable (with its template, checked live) or disable an event's WhatsApp notification."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "if": {"properties": {"active": {"const": True}}, "required": ["active"]},
            "then": {
                "properties": {"template_id": {"type": "string", "pattern": r"\S"}},
                "required": ["template_id"],
            },
        },
    )

    active: bool
    template_id: str = Field("", max_length=128, description="required to enable")
    params: list[TemplateVariable] = Field(
        default_factory=list,
        max_length=20,
        description="the token of each of the template's variables, {{1}} first",
    )
    fallback_to_sms: bool = True
    accept_charge: bool = Field(
        False,
        description="the merchant accepts the per-message charge of the platform's WhatsApp "
        "account (asked once, before the first notification it sends)",
    )


async def put_whatsapp(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    event = request.match_info["event"]
    if event not in EVENTS:
        raise ApiError(404, f"no journey event {event!r}; one of: {', '.join(EVENTS)}")
    body = _body(WhatsAppChoice, await read_json(request))
    choice = choices.WhatsAppChoice(
        body.active,
        body.template_id,
        tuple(body.params),
        body.fallback_to_sms,
        body.accept_charge,
    )
    try:
        chosen = await whatsapp_notices(request.app).choose(shop.id, event, choice)
    except choices.Refused as refused:
        raise refusal(refused, refused.field) from None
    except SettingsError as exc:
        raise unprocessable([field_problem(p.field, p.message) for p in exc.problems]) from None
    except ProviderError as exc:
        raise provider_unavailable(exc) from None
    saved = chosen.settings.notifications
    answer: dict[str, Any] = {
        "event": event,
        "whatsapp": saved.notice(event).whatsapp.model_dump(mode="json"),
        "charge_accepted": saved.whatsapp_charge_accepted,
    }
    if chosen.template is not None:
        state = chosen.template
        answer["template"] = {
            "status": state.status,
            "text": state.text,
            "preview": chosen.preview,
        }
    return web.json_response(answer)


async def preview_notice(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    asked = _body(PreviewRequest, await read_json(request))
    values = None
    if asked.order:
        values = await preview.order_values(request.app[db_key], shop, asked.order.strip())
        if values is None:
            raise ApiError(404, f"no order {asked.order} in this shop")
    values = preview.values_for_preview(values)
    settings = shop_config.load(shop).notifications
    notice = settings.notice(asked.event)
    if asked.channel == "sms":
        text = asked.text or notice.sms.text
        shown = preview.sms_preview(text, values) | {"unknown_tokens": unknown_tokens(text)}
        return web.json_response(shown)
    whatsapp = notice.whatsapp
    params = [
        {"variable": index, "token": token, "value": values.get(token, "")}
        for index, token in enumerate(whatsapp.params, start=1)
    ]
    return web.json_response({"template_id": whatsapp.template_id, "params": params})


async def shipments_webhook(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    config = request.app[settings_key]
    url = shipments_url(config.server.public_url, config.secret_key(), shop.id)
    return web.json_response({"url": url})


async def get_billing(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    zone = ZoneInfo(shop_config.shop_zone(shop))
    since, until = _range(request.query, zone, request.app[clock_key].now())
    lines = await billing(request.app[db_key], shop.id, since, until)
    return web.json_response({"from": since.isoformat(), "to": until.isoformat(), "lines": lines})


def _body(model: type[Any], document: Any) -> Any:
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        problems = [
            field_problem(".".join(map(str, e["loc"])) or "body", e["msg"])
            for e in exc.errors(include_url=False)
        ]
        raise unprocessable(problems) from None


def _range(query: Any, zone: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    """The range asked; `from` after `to` is an empty range, not an error."""
    problems: list[dict[str, str]] = []
    since = _moment(query.get("from", "").strip(), time.min, zone, "from", problems)
    until = _moment(query.get("to", "").strip(), time.max, zone, "to", problems)
    if problems:
        raise unprocessable(problems)
    until = until or now
    if since is None:
        try:
            since = until - timedelta(days=DEFAULT_BILLING_DAYS)
        except OverflowError:  # `to` in the calendar's first month
            since = datetime.min.replace(tzinfo=UTC)
    return since, until


def _moment(
    raw: str, day_time: time, zone: ZoneInfo, name: str, problems: list[dict[str, str]]
) -> datetime | None:
    """An ISO 8601 date (its first or last moment in the shop's zone) or date-time (the shop's
    zone without an offset), in UTC."""
    if not raw:
        return None
    try:
        moment = datetime.combine(date.fromisoformat(raw), day_time)
    except ValueError:
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            problems.append(field_problem(name, "must be an ISO 8601 date or date and time"))
            return None
    local = moment.replace(tzinfo=zone) if moment.tzinfo is None else moment
    try:
        return local.astimezone(UTC)
    except OverflowError:  # past the calendar's end in UTC: the range runs to it
        return (
            datetime.max.replace(tzinfo=UTC)
            if day_time == time.max
            else datetime.min.replace(tzinfo=UTC)
        )
