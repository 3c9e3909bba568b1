"""The digit-drawing page at ``/ui``: one static HTML file, served from the REST port (same origin
as the ``:predict`` endpoint it calls). Nothing else is read from disk and no directory is listed."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

INDEX_HTML = Path(__file__).with_name("ui") / "index.html"
UI_PATHS = ("/ui", "/ui/")
# The page is self-contained: inline script and style, and fetch() only to its own origin.
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'"
    ),
}


def add_ui_routes(app: web.Application) -> None:
    """Adds GET (and HEAD) ``/ui`` and ``/ui/``; register them before any catch-all route."""
    page = INDEX_HTML.read_bytes()  # read once: a missing file fails at start-up, not per request

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8", headers=_HEADERS)

    for path in UI_PATHS:
        app.router.add_get(path, index)
