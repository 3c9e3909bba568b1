"""REST connection guards on top of aiohttp: a header timeout, an idle (keep-alive) timeout,
a cap on open connections, JSON error bodies for malformed HTTP, and no Server banner.

aiohttp has an idle timeout but none for headers: a client trickling header bytes, or many
idle clients, would hold connections (and file descriptors) for good.
"""

from __future__ import annotations

import http
import logging
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from serving.limits import Limits
from serving.status import clip

log = logging.getLogger(__name__)

SERVER_HEADER = "Server"


def _error_body(message: str) -> str:
    from serving.json_tensor import make_json_from_error  # TensorFlow protos: import late

    return make_json_from_error(message)


def _refusal(max_connections: int) -> bytes:
    """The raw 503 a connection over the cap gets before it is closed."""
    body = _error_body(
        f"Too many open connections: limit {max_connections} " f"(--rest_api_max_connections); retry later"
    ).encode()
    head = (
        f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n"
    )
    return head.encode() + body


class GuardedRequestHandler(RequestHandler):
    """aiohttp's per-connection protocol with the guards of `GuardedServer`."""

    limits: Limits
    _header_timer: Any = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        server = self._manager
        if server is not None and len(server.connections) > self.limits.rest_api_max_connections:
            log.warning(
                "REST connection refused: %d open (--rest_api_max_connections)", self.limits.rest_api_max_connections
            )
            transport.write(_refusal(self.limits.rest_api_max_connections))
            self.force_close()
            return
        self._start_header_timer()

    def data_received(self, data: bytes) -> None:
        waiting_for_request = self._waiter is not None and not self._waiter.done()
        if self._header_timer is None and waiting_for_request:
            self._start_header_timer()  # the first bytes of a new request on a kept-alive connection
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:
            self._cancel_header_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        self._header_timer = self._loop.call_later(self.limits.header_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._current_request is None and not self._messages:
            log.warning(
                "REST connection closed: no complete request headers within %d ms " "(--rest_api_header_timeout_in_ms)",
                self.limits.rest_api_header_timeout_in_ms,
            )
            self.force_close()

    def handle_error(
        self, request: Any, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        """Malformed HTTP gets `{"error": ...}` like every other failure, never a traceback."""
        log.warning("Bad HTTP request answered %d: %s", status, clip(str(message or exc or "")))
        phrase = http.HTTPStatus(status).phrase if status in http.HTTPStatus._value2member_map_ else ""
        detail = clip(message) if message and status != 500 else ""
        response = BannerlessResponse(
            status=status,
            text=_error_body(f"{phrase}: {detail}" if detail else phrase),
            content_type="application/json",
        )
        response.force_close()
        return response


class BannerlessResponse(web.Response):
    """A response without the `Server: Python/... aiohttp/...` header (for the error path,
    where aiohttp's on_response_prepare signal does not run)."""

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        self.headers.pop(SERVER_HEADER, None)


class GuardedServer(web.Server):
    """aiohttp's connection factory, making GuardedRequestHandlers."""

    limits: Limits

    def __call__(self) -> RequestHandler:
        handler = GuardedRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.limits = self.limits
        return handler


class GuardedAppRunner(web.AppRunner):
    """An AppRunner whose connections are guarded by `limits`."""

    def __init__(self, app: web.Application, limits: Limits, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=limits.idle_timeout, **kwargs)
        self._limits = limits
        app.on_response_prepare.append(_drop_server_header)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = GuardedServer  # same object and state, our protocol factory
        server.limits = self._limits
        return server


async def _drop_server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.pop(SERVER_HEADER, None)
