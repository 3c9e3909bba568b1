"""``gcp-storage-emulator``'s command line, with four differences from real GCS corrected.

Run as ``python -m tests.gcs_emulator_server --tls-cert=PEM start …`` (then the emulator's own
arguments); tests/gcs_emulator.py does, with a certificate from a test CA made for the run.

The emulator's deviations from GCS, corrected so TensorFlow's own GCS filesystem works against it:

1. **HTTPS on GCS's host names.** TensorFlow's built-in ``gs://`` filesystem (the one ``mnist-tfx``
   uses on a real bucket) always calls ``https://www.googleapis.com`` and reads objects from
   ``https://storage.googleapis.com``. It reaches this emulator through ``HTTPS_PROXY``: the
   emulator answers ``CONNECT`` for those two hosts (and refuses any other), then serves the tunnel
   over TLS with ``PEM`` (trusted by the client through ``CURL_CA_BUNDLE``). URLs it hands out on
   such a connection (a resumable upload's ``Location``) are ``https://``, as GCS's are.
2. **Chunked request bodies.** TensorFlow uploads with ``Transfer-Encoding: chunked`` *and* a
   ``Content-Length``; the emulator read ``Content-Length`` bytes of the raw chunks and stored the
   chunk framing inside the object. HTTP (RFC 9112, section 6.3) and GCS decode the chunks.
3. **Empty objects.** An upload with ``uploadType=media`` and no body (TensorFlow's directory marker,
   an object named ``dir/``) made the emulator's handler fail on ``len(None)`` and close the
   connection without an answer; GCS stores an empty object.
4. **HTTP/1.1**, so ``Expect: 100-continue`` is answered at once (curl waits a second for it on
   every upload otherwise). Each connection still carries one request (``Connection: close``): the
   emulator serves one connection at a time.
"""

from __future__ import annotations

import socketserver
import ssl
import sys
from collections.abc import Callable

from gcp_storage_emulator import server
from gcp_storage_emulator.__main__ import main
from gcp_storage_emulator.handlers import objects

GCS_HOSTS = {"www.googleapis.com:443", "storage.googleapis.com:443"}  # what TensorFlow's filesystem calls
TLS_CERT_FLAG = "--tls-cert="


def _connect(handler: server.RequestHandler, tls: ssl.SSLContext) -> None:
    """``CONNECT``: the tunnel to GCS's host, answered here over TLS; any other host is refused."""
    if handler.path not in GCS_HOSTS:
        handler.send_error(403, f"this emulator only stands in for {sorted(GCS_HOSTS)}")
        return
    handler.send_response(200, "Connection established")
    handler.end_headers()
    handler.connection = tls.wrap_socket(handler.connection, server_side=True)
    handler.rfile = handler.connection.makefile("rb", handler.rbufsize)
    handler.wfile = socketserver._SocketWriter(handler.connection)
    handler.close_connection = False  # the next request comes through the tunnel
    handler.over_tls = True


def _read_raw_data(handler: server.RequestHandler) -> bytes | None:
    """The request body: chunked framing decoded first (it overrides ``Content-Length``), else that many bytes."""
    if (handler.headers.get("Transfer-Encoding") or "").lower() == "chunked":
        body = b""
        while size := int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16):
            body += handler.rfile.read(size)
            handler.rfile.readline()
        while handler.rfile.readline().strip():  # trailer fields, up to the blank line
            pass
        return body
    length = handler.headers.get("Content-Length")
    return handler.rfile.read(int(length)) if length else None


def _empty_body_is_empty(media_upload: Callable[..., None]) -> Callable[..., None]:
    """``objects._media_upload``, with a missing body read as zero bytes."""

    def upload(request: server.Request, response: server.Response, storage: object) -> None:
        if request.data is None:
            request._data = b""
        media_upload(request, response, storage)

    return upload


def _https_urls(init: Callable[..., None]) -> Callable[..., None]:
    """``Request.__init__``, with the URLs it builds on a TLS tunnel made ``https://``."""

    def request_init(self: server.Request, handler: server.RequestHandler, method: str) -> None:
        init(self, handler, method)
        if getattr(handler, "over_tls", False):
            self._base_url = self._base_url.replace("http://", "https://", 1)
            self._full_url = self._full_url.replace("http://", "https://", 1)

    return request_init


def _one_request_per_connection(end_headers: Callable[..., None]) -> Callable[..., None]:
    """``end_headers``, with ``Connection: close`` on every response but a ``CONNECT``'s."""

    def with_close(self: server.RequestHandler) -> None:
        if not getattr(self, "_connecting", False):
            self.send_header("Connection", "close")
        end_headers(self)

    return with_close


def install(cert: str) -> None:
    """Patches the emulator's request handling as described above; ``cert`` holds the TLS certificate and key."""
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert)

    def do_connect(handler: server.RequestHandler) -> None:
        handler._connecting = True
        try:
            _connect(handler, tls)
        finally:
            handler._connecting = False

    server.RequestHandler.do_CONNECT = do_connect
    server.RequestHandler.protocol_version = "HTTP/1.1"
    server.RequestHandler.end_headers = _one_request_per_connection(server.RequestHandler.end_headers)
    server.Request.__init__ = _https_urls(server.Request.__init__)
    server._read_raw_data = _read_raw_data
    objects._media_upload = _empty_body_is_empty(objects._media_upload)


if __name__ == "__main__":
    args = sys.argv[1:]
    assert args and args[0].startswith(TLS_CERT_FLAG), f"usage: {TLS_CERT_FLAG}PEM start …"
    install(args[0][len(TLS_CERT_FLAG) :])
    main(args[1:])
