"""The app's one Jinja2 environment for its server-rendered pages (web/templates/)."""

from __future__ import annotations

import jinja2
from aiohttp import web

templates_key = web.AppKey("templates", jinja2.Environment)


def setup(app: web.Application) -> None:
    """Give the app its template environment (autoescaped; a missing value is an error)."""
    app[templates_key] = jinja2.Environment(
        loader=jinja2.PackageLoader("web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
