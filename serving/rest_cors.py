"""CORS as TF Serving's http_server.cc does it.

An OPTIONS request on the API (/v1/...) is a preflight: 200 with an empty body when its
Origin header names an http(s) origin, else 400 (TF Serving's "Origin header is missing in
CORS preflight", with an empty body). With --rest_api_enable_cors_support every response
gets Access-Control-Allow-Origin: *, -Methods: POST, GET and -Headers: Content-Type.
"""

from __future__ import annotations

import re

from aiohttp import web

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET",
    "Access-Control-Allow-Headers": "Content-Type",
}
_ORIGIN = re.compile(r"https?://")


def enable_cors(app: web.Application, headers: bool) -> None:
    """Adds the preflight answer, and the CORS headers when `headers` (the flag) is set. Call it
    before any other route is added: the preflight route must come first. A route rather than a
    middleware, so that other requests pay nothing for it."""

    async def preflight(request: web.Request) -> web.Response:
        ok = _ORIGIN.search(request.headers.get("Origin", "")) is not None
        return web.Response(status=200 if ok else 400)

    for path in ("/v1/{tail:.*}", "/v1"):  # the API's own patterns (aiohttp prefers longer prefixes)
        app.router.add_route("OPTIONS", path, preflight)
    if headers:

        async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
            response.headers.update(CORS_HEADERS)

        app.on_response_prepare.append(add_headers)
