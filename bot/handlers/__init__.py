"""The bot's routers, one per topic, in the order an update tries them: linking (open to
every chat), the linked chats' topics, then the answer to everything else. Each call builds
new routers: a router belongs to one dispatcher, and tests and restarts build several."""

from __future__ import annotations

from aiogram import Router

from bot.handlers import (
    agents,
    alerts,
    channels,
    errors,
    fallback,
    link,
    notifications,
    orders,
    reports,
    settings,
    status,
    threads,
)


def root_router() -> Router:
    root = Router(name="merchant")
    root.include_routers(
        link.router(),
        agents.router(),
        status.router(),
        reports.router(),
        orders.router(),
        # The settings pages' own buttons, before the conversation's catch-all.
        channels.router(),
        notifications.router(),
        settings.router(),
        alerts.router(),
        threads.router(),
        fallback.router(),
        errors.router(),
    )
    return root
