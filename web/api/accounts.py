"""Admin API handlers for a shop's provider accounts: list, connect (checked live with the
provider first), remove, choose the account of each channel, and the setup list."""

from __future__ import annotations

from aiohttp import web

from flows.channels.account_desk import AccountDesk
from flows.channels.accounts import AccountError
from web.api.auth import require_shop
from web.api.shops import read_json
from web.errors import ApiError, field_problem
from web.keys import accounts_key

# Account ids are 32-bit integers in the database (PostgreSQL's integer).
MAX_ID = 2**31 - 1


def _desk(request: web.Request) -> AccountDesk:
    return request.app[accounts_key]


def _refused(exc: AccountError) -> ApiError:
    fields = [field_problem(p.field, p.message) for p in exc.problems]
    if exc.status == 502:
        return ApiError(502, str(exc), "provider_unavailable", fields=fields)
    return ApiError(422, "the account was not connected", "invalid", fields=fields)


async def list_accounts(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    return web.json_response(await _desk(request).listing(shop.id))


async def connect(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    body = await read_json(request)
    try:
        account = await _desk(request).connect(shop.id, body)
    except AccountError as exc:
        raise _refused(exc) from None
    return web.json_response(account, status=201)


async def remove(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    raw = request.match_info["account_id"]
    account_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 10 else 0
    if not 0 < account_id <= MAX_ID or not await _desk(request).remove(shop.id, account_id):
        raise ApiError(404, f"no account {raw} in this shop", "not_found")
    return web.Response(status=204)


async def choose_channels(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    body = await read_json(request)
    try:
        channels = await _desk(request).choose(shop.id, body)
    except AccountError as exc:
        raise _refused(exc) from None
    return web.json_response({"channels": channels})


async def setup(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    return web.json_response(await _desk(request).setup(shop.id))
