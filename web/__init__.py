"""HTTP surface (aiohttp): webhooks, customer pages, admin API, health and metrics."""
