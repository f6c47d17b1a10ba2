"""HTTP surface tests: the real aiohttp app on loopback."""
