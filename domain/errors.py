"""The errors a command or query can end in, named by their wire codes (docs/wire.md §Errors).

One hierarchy on both sides of the wire: the server raises these, and the Python client
(infra/client) raises the same class again for an error reply, so ``except Conflict`` reads
the same in a decision and in a caller."""

from __future__ import annotations

from typing import Any


class AuthbusError(Exception):
    code = "internal"
    status = 500
    position: int | None = None  # in a reply a client got: the answering instance's read-model position

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidRequest(AuthbusError):
    code, status = "invalid_request", 400


class Unauthenticated(AuthbusError):
    code, status = "unauthenticated", 401


class Forbidden(AuthbusError):
    code, status = "forbidden", 403


class NotFound(AuthbusError):
    code, status = "not_found", 404


class Conflict(AuthbusError):
    code, status = "conflict", 409


class RateLimited(AuthbusError):
    code, status = "rate_limited", 429


class Stale(AuthbusError):
    code, status = "stale", 503


class Unavailable(AuthbusError):
    code, status = "unavailable", 503


BY_CODE: dict[str, type[AuthbusError]] = {
    error.code: error
    for error in (InvalidRequest, Unauthenticated, Forbidden, NotFound, Conflict, RateLimited, Stale, Unavailable)
}


def from_reply(code: str, message: str, details: dict[str, Any], position: int | None) -> AuthbusError:
    """The error an error reply stands for; a code this version does not know keeps its name."""
    error = BY_CODE.get(code, AuthbusError)(message, **details)
    error.code, error.position = code, position
    return error


def not_found(field: str) -> NotFound:
    """The one answer for an id that does not exist and for one the caller may not see."""
    return NotFound(f"{field} not found", field=field)
