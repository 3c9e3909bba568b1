"""``gcp-storage-emulator``'s command line, with response bodies handed to the client as GCS hands them.

Run as ``python -m tests.gcs_emulator_server start …`` (the emulator's own arguments); tests/gcs_emulator.py does.

The emulator's deviation from GCS, corrected so TensorFlow's client works. GCS is reached over TLS,
so a client's socket read returns at most one TLS record: 16 KiB of a download at a time. The
emulator is plain HTTP on loopback and writes a body in one piece, so the client's libcurl hands up
to its whole receive buffer (128 KiB here) to one write callback. The GCS client inside
``tensorflow-io-gcs-filesystem`` 0.37.1 (google-cloud-cpp 1.21, ``CurlDownloadRequest::WriteCallback``)
copies what does not fit the caller's buffer into a spill buffer of ``CURL_MAX_WRITE_SIZE`` (16 KiB)
without a bounds check. Every download starts with a 128 KiB read (the stream's first ``peek``), so
a callback that crosses that 128 KiB mark with more than 16 KiB to spare overflows the heap, and
the process dies in ``free()`` or with SIGSEGV: a 170,000-byte object arrived as 128,000 + 42,000
bytes. Real GCS never triggers this; the emulator did for objects over about 150 KB.

The correction: a body over 16 KiB goes out 16 KiB at a time, each piece only once the client has
read the one before (the kernel's socket diagnostics report its receive queue empty), so each socket
read, and each write callback, gets at most 16 KiB, as from a TLS connection. Headers, status codes
and bytes are the emulator's own (``Content-Length`` included: the TensorFlow plugin reads exactly
that many bytes, so chunked encoding would not do). Linux only, as the tests are.
"""

from __future__ import annotations

import socket
import struct
import sys
import time

from gcp_storage_emulator import server
from gcp_storage_emulator.__main__ import main

PIECE_BYTES = 16 * 1024  # the largest TLS record payload
PIECE_TIMEOUT_S = 60.0  # a client that stops reading for this long gets the rest without pacing
POLL_S = 0.0002

# Linux sock_diag (linux/sock_diag.h, linux/inet_diag.h): ask the kernel for one TCP socket's queues.
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
NLMSG_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
DIAG_REQUEST = struct.Struct("=BBBxI")  # inet_diag_req_v2 before its socket id: family, protocol, ext, states
DIAG_QUEUES_AT = NLMSG_HEADER.size + 4 + 48 + 4  # inet_diag_msg: 4 bytes, socket id, expires; then rqueue, wqueue
NO_COOKIE = 0xFFFFFFFF


def _socket_id(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """An ``inet_diag_sockid`` for an IPv4 connection, without a cookie."""
    ports = struct.pack(">HH", source[1], destination[1])
    addresses = socket.inet_aton(source[0]).ljust(16, b"\0") + socket.inet_aton(destination[0]).ljust(16, b"\0")
    return ports + addresses + struct.pack("=III", 0, NO_COOKIE, NO_COOKIE)


def _queues(diag: socket.socket, source: tuple[str, int], destination: tuple[str, int]) -> tuple[int, int] | None:
    """The (unread, unacknowledged) bytes of the TCP socket ``source`` → ``destination``; None when it is gone."""
    body = DIAG_REQUEST.pack(socket.AF_INET, socket.IPPROTO_TCP, 0, 0xFFFFFFFF) + _socket_id(source, destination)
    diag.send(NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 0, 0) + body)
    reply = diag.recv(65536)
    if NLMSG_HEADER.unpack_from(reply)[1] == NLMSG_ERROR:
        return None
    return struct.unpack_from("=II", reply, DIAG_QUEUES_AT)


def _taken(diag: socket.socket, ours: tuple[str, int], theirs: tuple[str, int]) -> bool:
    """Whether everything written so far reached the client's socket and the client read it."""
    sent, client = _queues(diag, ours, theirs), _queues(diag, theirs, ours)
    return sent is None or client is None or (sent[1] == 0 and client[0] == 0)


def _send_body(handler: server.server.BaseHTTPRequestHandler, content: bytes) -> None:
    """Writes ``content`` ``PIECE_BYTES`` at a time, each after the client has read the previous one."""
    ours, theirs = handler.connection.getsockname(), handler.client_address
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as diag:
        paced = True
        for start in range(0, len(content), PIECE_BYTES):
            deadline = time.monotonic() + PIECE_TIMEOUT_S
            while paced and start and not _taken(diag, ours, theirs):
                paced = time.monotonic() < deadline
                time.sleep(POLL_S)
            handler.wfile.write(content[start : start + PIECE_BYTES])


def _close(self: server.Response) -> None:
    """``Response.close`` as the emulator has it, the body written by ``_send_body``."""
    self._handler.send_response(self.status.value, self.status.phrase)
    for key, value in self._headers.items():
        self._handler.send_header(key, value)
    content = self._content.encode("utf-8") if isinstance(self._content, str) else self._content
    self._handler.send_header("Content-Length", str(len(content)))
    self._handler.end_headers()
    _send_body(self._handler, content)


server.Response.close = _close

if __name__ == "__main__":
    main(sys.argv[1:])
