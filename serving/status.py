"""Canonical error codes and the one error type of the serving core.

Every failure is a `ServingError(code, message)`; the REST layer maps the code to an HTTP
status once (as TF Serving's http_server.cc does) and the gRPC layer to a gRPC status.
"""

from __future__ import annotations

import enum

MAX_ECHO_CHARS = 256  # of a client-supplied string quoted in an error
MAX_ERROR_CHARS = 4096  # of any error message sent to a client


def clip(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """A client-supplied string shortened for an error message: its first `limit` chars + "..."."""
    return text if len(text) <= limit else text[:limit] + "..."


class Code(enum.IntEnum):
    """tensorflow::error::Code (numerically equal to gRPC status codes)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


# ToHTTPStatusCode in tensorflow_serving/model_servers/http_server.cc.
HTTP_STATUS = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}


class ServingError(Exception):
    """A failed serving call: a canonical code and TF Serving's message."""

    def __init__(self, code: Code, message: str) -> None:
        message = clip(message, MAX_ERROR_CHARS)
        super().__init__(message)
        self.code = Code(code)
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    def status_string(self) -> str:
        """absl::Status::ToString(): "INVALID_ARGUMENT: message"."""
        return f"{self.code.name}: {self.message}"
