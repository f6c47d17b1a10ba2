"""Telegram surface (aiogram): the merchant's admin bot: routers, keyboards, FSM states."""
