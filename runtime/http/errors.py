"""The one table from exceptions to HTTP statuses, and the JSON error body.

Every error response is ``{"error": message, "type": name}``; none carries a traceback.
An exception may name its own status with an ``http_status`` attribute (the built-in
actors' errors do, so this module need not know them).
"""

from __future__ import annotations

from ..errors import (
    ActorResetError,
    CallTimeoutError,
    DataCloneError,
    MethodNotFoundError,
    OverloadedError,
    StorageLimitError,
)
from ..model.request import Response


class HttpError(Exception):
    """An error of the HTTP layer itself, with its status and type name."""

    def __init__(self, status: int, type_name: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.type_name = type_name


def not_found(message: str) -> HttpError:
    return HttpError(404, "NotFound", message)


def bad_request(message: str) -> HttpError:
    return HttpError(400, "BadRequest", message)


# Checked in order; the first class the exception is an instance of decides.
_STATUS_BY_CLASS: tuple[tuple[type[BaseException], int], ...] = (
    (MethodNotFoundError, 404),
    (OverloadedError, 429),
    (ActorResetError, 503),
    (CallTimeoutError, 504),
    (DataCloneError, 400),
    (StorageLimitError, 400),
)


def status_for(exc: BaseException) -> int:
    """The HTTP status for ``exc``: its own, Roost's table, 500 if an actor raised it, else
    400 for bad input (ValueError, TypeError, KeyError raised while reading the request)."""
    if isinstance(exc, HttpError):
        return exc.status
    own = getattr(exc, "http_status", None)
    if isinstance(own, int):
        return own
    for cls, status in _STATUS_BY_CLASS:
        if isinstance(exc, cls):
            return status
    if getattr(exc, "remote", False):
        return 500
    if isinstance(exc, (ValueError, TypeError, KeyError)):
        return 400
    return 500


def error_response(exc: BaseException) -> Response:
    type_name = exc.type_name if isinstance(exc, HttpError) else type(exc).__name__
    remote_type = getattr(exc, "remote_type", None)
    if remote_type:
        type_name = remote_type.rpartition(".")[2]
    return Response({"error": str(exc) or type_name, "type": type_name}, status_for(exc))
