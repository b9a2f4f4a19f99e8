"""Request decoding, reply encoding and the error shape of docs/wire.md.

Every body is decoded with msgspec into a typed struct; a bad field becomes
``invalid_request`` naming the field.  Messages never repeat a value the caller sent,
so no reply can echo a secret, and nothing unexpected ever leaves as a stack trace.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from time import perf_counter
from typing import Annotated, Any, Generic, TypeVar
from uuid import uuid4

import msgspec
from nats.micro.request import Request

from authbus.domain.errors import AuthbusError, InvalidRequest, Stale, Unauthenticated
from authbus.domain.policy import Actor
from authbus.handlers.backend import Backend
from authbus.handlers.metrics import OK
from authbus.projections.queries import actor_for

log = logging.getLogger("authbus.handlers")

MAX_BODY = 64 * 1024
MAX_TOKEN = 8 * 1024
Token = Annotated[str, msgspec.Meta(max_length=MAX_TOKEN)]
Position = Annotated[int, msgspec.Meta(ge=0)]

T = TypeVar("T")


_PATH = re.compile(r" - at (?P<key>`key` in )?`\$\.?(?P<path>[^`]*)`$")
_NAMED = re.compile(r"(?P<what>missing required|unknown) field `(?P<name>.*)`$", re.DOTALL)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_REGEX = re.compile(r"Expected `str` matching regex '(?P<pattern>[^']*)'")
# What each pattern of the contract asks for, in words: "Expected str matching regex" told
# a caller nothing (tests/unit/test_request_decoding.py checks every pattern has its words).
PATTERN_WORDS = {
    r"^[a-z][a-z0-9_.-]*\Z": "a lowercase word such as create, read, list, update, delete, share, publish or subscribe",
    r"^[^\s]+\Z": "text without whitespace",
    r"^\S+\Z": "text without whitespace",
    r"^\S(.*\S)?\Z": "text that neither starts nor ends with whitespace",
    r"^[A-Za-z0-9][A-Za-z0-9._@+-]*\Z": "letters, digits and . _ @ + -, starting with a letter or a digit",
    r"^[A-Za-z][A-Za-z0-9_.:-]*\Z": "letters, digits and _ . : -, starting with a letter",
    r"^[A-Za-z0-9_.:-]+\Z": "letters, digits and _ . : -",
    r"^[A-Za-z0-9:_-]+\Z": "an Ed25519 public key: base64url, multibase (b… or z…) or did:key",
    r"^(?=\d)(\d+h)?(\d+m)?(\d+s)?\Z": "seconds, or a duration such as 720h or 1h30m",
    r"^([^@\s]+@[^@\s]+\.[^@\s]+)?\Z": 'an email address (name@example.com), or "" for none',
    r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\Z": "a challenge exactly as auth.v1.challenge issued it",
    r"^[A-Za-z]+\Z": "an event type, letters only (PATRevoked)",
    r"^[A-Za-z0-9-]+\Z": "a principal id, or system",
}
# The shape of our field paths.  An unknown field's name is the caller's own text (a pasted
# token even, or backticks forging a path in msgspec's message), so it is echoed only when
# it looks like one of ours; otherwise the error names the object that holds it.
_FIELD = re.compile(r"[a-z][a-z0-9_]{0,63}(?:\[\d+\])*(?:\.[a-z][a-z0-9_]{0,63}(?:\[\d+\])*)*")


def describe(error: msgspec.ValidationError) -> InvalidRequest:
    """An invalid_request naming the field msgspec complained about, without echoing values."""
    text = str(error)
    path = ""
    match = _PATH.search(text)
    if match:  # a value inside a dict is at `[...]`, its key not shown: the dict is the field, as for a bad key
        path, text = match.group("path").replace("[...]", ""), text[: match.start()]
        if match.group("key"):
            text = f"a key: {text}"
    named = _NAMED.search(text)
    if named:
        name, text = named.group("name"), f"{text[: named.start()]}{named.group('what')} field"
        if _FIELD.fullmatch(name):
            path, text = (f"{path}.{name}" if path else name), f"{text} {name}"
    if not _FIELD.fullmatch(path):
        path = ""
    field = path or "body"
    expected = _REGEX.search(text)
    words = PATTERN_WORDS.get(expected.group("pattern").replace("\\\\", "\\")) if expected else None
    if words is not None:
        return InvalidRequest(f"invalid {field}: {field.rsplit('.', 1)[-1]} must be {words}", field=field)
    reason = _QUOTED.sub("", text).replace("`", "").strip().rstrip(",")
    return InvalidRequest(f"invalid {field}: {reason}", field=field)


def _not_json() -> InvalidRequest:
    return InvalidRequest("body is not valid JSON", field="body")


class Body(Generic[T]):
    """A request struct's decoder, built once when its endpoint is made."""

    def __init__(self, cls: type[T]) -> None:
        self._decoder = msgspec.json.Decoder(cls)

    def decode(self, data: bytes) -> T:
        if len(data) > MAX_BODY:
            raise InvalidRequest(f"body is larger than {MAX_BODY} bytes", field="body", limit=MAX_BODY)
        try:
            return self._decoder.decode(data)
        except msgspec.ValidationError as error:
            # msgspec validates as it parses, so a body that breaks off (or goes on) after a
            # bad field reports that field; a body that is not JSON at all says so.  Error path only.
            try:
                data.decode()  # JSON is UTF-8 throughout
                msgspec.json.decode(data, type=msgspec.Raw)  # and well-formed (values unchecked)
            except (UnicodeDecodeError, msgspec.DecodeError):
                raise _not_json() from None
            except RecursionError:  # absurdly deep, but not provably broken: the field error stands
                pass
            raise describe(error) from None
        except (msgspec.DecodeError, UnicodeDecodeError):  # invalid UTF-8 in a string is the latter
            raise _not_json() from None


def decode(data: bytes, cls: type[T]) -> T:
    """Once, without an endpoint (the unit tier's decode tables)."""
    return Body(cls).decode(data)


_encoder = msgspec.json.Encoder()


Reply = dict[str, Any] | msgspec.Struct  # a handler's answer: a dict, or a struct of handlers/replies.py


def encode(reply: Reply) -> bytes:
    return _encoder.encode(reply)


def bearer(request: Request) -> str:
    headers = request.headers or {}
    value = headers.get("Authorization") or headers.get("authorization")
    if not value:
        raise Unauthenticated("send Authorization: Bearer <PAT, API key or access token>", field="Authorization")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'", field="Authorization")
    if len(token) > MAX_TOKEN:
        raise InvalidRequest(f"the bearer token is larger than {MAX_TOKEN} bytes", field="Authorization")
    return token.strip()


def authenticate(backend: Backend, request: Request) -> Actor:
    actor = actor_for(backend.model, bearer(request), backend.now(), backend.keys, backend.bearers)
    if actor is None:
        raise Unauthenticated("the bearer credential is not valid", field="Authorization")
    return actor


class _MustWait(Exception):
    """An inline query needs to wait for ``min_position``: it reruns as a task of its own."""


_inline: ContextVar[bool] = ContextVar("authbus_inline", default=False)


async def ensure_position(backend: Backend, min_position: int | None) -> None:
    if min_position is None or min_position <= backend.model.position:
        return
    if _inline.get():
        raise _MustWait
    if not await backend.reached(min_position, backend.consistency_wait):
        raise Stale("this instance has not yet reached min_position; retry", field="min_position", reached=backend.model.position)


async def respond_error(request: Request, error: AuthbusError, position: int, headers: dict[str, str] | None = None) -> None:
    body = {"error": {"code": error.code, "message": error.message, "details": error.details}, "position": position}
    await request.respond_error(str(error.status), error.message, data=encode(body), headers=headers)


CORRELATION_HEADER = "Correlation-Id"
_CORRELATION = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# The request being answered, for every log line written while answering it (infra.observability.logs).
correlation_id: ContextVar[str | None] = ContextVar("authbus_correlation_id", default=None)


def correlate(request: Request) -> str:
    """The caller's ``Correlation-Id`` when it is a plain token, else a fresh one."""
    return _given(request) or uuid4().hex


def echoed(request: Request) -> dict[str, str] | None:
    """The caller's ``Correlation-Id``, echoed on an inline reply too: a client that sends a
    fresh one with each request tells authbus's reply from one planted in its inbox."""
    given = _given(request)
    return {CORRELATION_HEADER: given} if given else None


def _given(request: Request) -> str | None:
    headers = request.headers
    given = headers.get(CORRELATION_HEADER) if headers else None
    return given if given and _CORRELATION.fullmatch(given) else None


REQUEST_INFO = "Nats-Request-Info"


class _RequestInfo(msgspec.Struct):
    acc: str = ""
    user: str = ""


_request_info = msgspec.json.Decoder(_RequestInfo)


def caller_of(request: Request) -> str:
    """Who sent a request, to share slow work fairly: the connection's identity as the
    server vouches for it through a shared import (the auth callout's user name: one
    credential), else the connection's inbox (the reply subject but its last token)."""
    info = (request.headers or {}).get(REQUEST_INFO)
    if info:
        try:
            who = _request_info.decode(info)
            return f"{who.acc}/{who.user}"
        except msgspec.DecodeError:
            pass
    reply = request._msg.reply or ""
    return reply.rpartition(".")[0] or reply


def endpoint(
    backend: Backend,
    name: str,
    handle: Callable[[Request], Awaitable[Reply]],
    concurrent: bool = False,
    access_log: int = logging.INFO,
    lane: str = "default",
) -> Callable[[Request], Awaitable[None]]:
    """Wraps a handler so every outcome, including a bug, becomes a well-formed reply,
    counted in ``backend.stats``.

    nats.py hands a subscription's messages to its handler one at a time.  A handler that
    waits (on the store, argon2, another instance) is ``concurrent``: each request runs
    apart, so one slow command holds up no other; it gets a correlation id (echoed in the
    reply's ``Correlation-Id`` header) and one log line at ``access_log`` level.  The
    read-model queries never wait and answer inline, which is several microseconds cheaper
    than a task each; they are counted, not logged one by one.
    """
    seen = backend.stats.endpoints[name]

    async def respond(request: Request, headers: dict[str, str] | None, started: float) -> tuple[str, float]:
        message = None
        try:
            reply = await handle(request)
        except AuthbusError as error:
            outcome, message = error.code, error.message
            await respond_error(request, error, backend.model.position, headers)
        except _MustWait:
            raise
        except Exception:
            # An inline request runs in its subscription's long-lived task: the id it gets
            # for this line must not stay behind for the next request's.
            mark = correlation_id.set(correlation_id.get() or correlate(request))
            log.exception("unexpected error on %s", name)
            correlation_id.reset(mark)
            internal = AuthbusError("internal error")
            outcome, message = internal.code, internal.message
            await respond_error(request, internal, backend.model.position, headers)
        else:
            outcome = OK
            await request.respond(encode(reply), headers)
        elapsed = perf_counter() - started
        seen.record(outcome, elapsed, message)
        return outcome, elapsed

    async def respond_apart(request: Request, started: float) -> None:
        cid = correlate(request)
        correlation_id.set(cid)  # in this request's own task: its context is a copy
        outcome, elapsed = await respond(request, {CORRELATION_HEADER: cid}, started)
        if log.isEnabledFor(access_log):
            ms = round(elapsed * 1000, 3)
            log.log(
                access_log,
                "%s answered %s in %.1f ms",
                name,
                outcome,
                ms,
                extra={"endpoint": name, "outcome": outcome, "duration_ms": ms, "position": backend.model.position},
            )

    if concurrent:  # timed from arrival: the wait for a slot counts
        return lambda request: backend.admit(respond_apart(request, perf_counter()), lane)

    async def respond_inline(request: Request) -> None:
        started = perf_counter()
        mark = _inline.set(True)
        try:
            await respond(request, echoed(request), started)
            return
        except _MustWait:
            pass
        finally:
            _inline.reset(mark)
        await backend.admit(respond_apart(request, started), lane)  # a task copies the reset context: it may wait

    return respond_inline
