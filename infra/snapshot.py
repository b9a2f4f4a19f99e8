"""Persisted read-model snapshots: a cold start folds only the tail of the log.

File: MAGIC ‖ HMAC-SHA-256(key, body) ‖ body, where body is two pickles — the header
(format, authbus version, position, anchor), then the read model.  The MAC is checked
over the whole file before anything is unpickled (and again over what was unpickled),
and the header before the (large) model is: a snapshot written by other code or for
another store is never loaded, and the unpickler knows only the read model's classes.  Any doubt means a full fold;
a snapshot is only ever a shortcut.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import hmac
import logging
import os
import pickle
import tempfile
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any, BinaryIO

from authbus.infra.crypto.kek import derive
from authbus.infra.follower import fold
from authbus.infra.store import EventStore
from authbus.projections.read_model import ReadModel

log = logging.getLogger("authbus.snapshot")

MAGIC = b"authbus-read-model\n"
FORMAT_VERSION = 8  # bump when the read model's shape changes within one authbus version
AUTHBUS_VERSION = version("authbus")
MAC_BYTES = 32
CHUNK = 1 << 20
Anchor = tuple[Any, int, str, bytes]


def snapshot_key(kek: bytes) -> bytes:
    return derive(kek, b"read-model-snapshot")


def _anchor(store: EventStore, position: int) -> Anchor | None:
    """What the store holds at ``position``: a snapshot of another store (or of a store since
    restored from an older backup) does not match it.  The state's hash tells apart events
    whose ids are derived, like the bootstrap's, and so equal in every store."""
    found = store.recorder.select_notifications(start=position, limit=1)
    if not found or found[0].id != position:
        return None
    n = found[0]
    return n.originator_id, n.originator_version, n.topic, hashlib.sha256(bytes(n.state)).digest()


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Millions of new objects would set off full collections that free nothing: with the
    collector on, loading a million credentials takes twice as long."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Signing:
    """A file that MACs what is written to it, so the pickle is streamed, never held whole."""

    def __init__(self, file: BinaryIO, key: bytes) -> None:
        self.file = file
        self.mac = hmac.new(key, digestmod=hashlib.sha256)

    def write(self, data: bytes) -> int:
        self.mac.update(data)
        return self.file.write(data)


def write_snapshot(model: ReadModel, store: EventStore, path: Path, key: bytes) -> None:
    """Write ``model`` atomically; call it only while nothing applies events to the model."""
    position = model.position
    anchor = _anchor(store, position) if position else None
    if anchor is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(MAGIC + bytes(MAC_BYTES))
            signing = _Signing(file, key)
            pickler = pickle.Pickler(signing, protocol=5)
            pickler.dump((FORMAT_VERSION, AUTHBUS_VERSION, position, anchor))
            with _gc_paused():
                pickler.dump(model)
            file.seek(len(MAGIC))
            file.write(signing.mac.digest())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class _Verifying:
    """The snapshot file as the unpickler reads it, MACed again on the way: the file was
    checked whole before, and this shows it is still what was checked.  Read twice rather
    than held in memory, so a start needs no room for the file beside the model it builds."""

    def __init__(self, file: BinaryIO, key: bytes) -> None:
        self.file = file
        self.mac = hmac.new(key, digestmod=hashlib.sha256)

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size)
        self.mac.update(data)
        return data

    def readinto(self, buffer: Any) -> int:
        n = self.file.readinto(buffer)  # type: ignore[attr-defined]
        self.mac.update(memoryview(buffer)[:n])
        return n

    def readline(self) -> bytes:
        data = self.file.readline()
        self.mac.update(data)
        return data

    def rest(self) -> bytes:
        """The MAC over everything, once what is left unread is read too."""
        while self.read(CHUNK):
            pass
        return self.mac.digest()


# What a snapshot may name: the read model's own classes and the few standard types they
# hold.  The MAC already keeps out every file authbus did not write; this keeps a file
# swapped in between the two readings from naming anything else (code, in a pickle).
_STANDARD = {
    ("uuid", "UUID"),
    ("uuid", "SafeUUID"),
    ("datetime", "datetime"),
    ("datetime", "date"),
    ("datetime", "timedelta"),
    ("datetime", "timezone"),
    ("collections", "deque"),
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
    ("array", "array"),
    ("array", "_array_reconstructor"),
    ("copyreg", "_reconstructor"),
    ("builtins", "object"),
}
_OWN = ("authbus.projections.", "authbus.domain.")


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _STANDARD:
            return super().find_class(module, name)
        if module.startswith(_OWN) and "." not in name:
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a read model")


def _load(store: EventStore, path: Path, key: bytes) -> ReadModel | None:
    """The snapshot's model if it is sound and belongs to this store; otherwise say why not."""
    try:
        with open(path, "rb") as file:
            return _load_from(store, file, path, key)
    except FileNotFoundError:
        log.info("no read-model snapshot at %s", path)
    except OSError as error:
        log.warning("read-model snapshot ignored: %s", error)
    return None


def _load_from(store: EventStore, file: BinaryIO, path: Path, key: bytes) -> ReadModel | None:
    head = file.read(len(MAGIC) + MAC_BYTES)
    if len(head) < len(MAGIC) + MAC_BYTES or not head.startswith(MAGIC):
        log.warning("read-model snapshot ignored: %s is not a snapshot", path)
        return None
    written_mac = head[len(MAGIC) :]
    if not hmac.compare_digest(written_mac, _Verifying(file, key).rest()):
        log.warning("read-model snapshot ignored: its MAC does not verify (damaged, or written under another KEK)")
        return None
    file.seek(len(head))
    reading = _Verifying(file, key)
    unpickler = _Unpickler(reading)
    # Authenticated bytes fail to load only when written by other code: any error is ours to absorb.
    try:
        format_version, written_by, position, anchor = unpickler.load()
    except Exception as error:
        log.warning("read-model snapshot ignored: unreadable header (%r)", error)
        return None
    if (format_version, written_by) != (FORMAT_VERSION, AUTHBUS_VERSION):
        log.warning("read-model snapshot ignored: written by authbus %s (format %s)", written_by, format_version)
        return None
    if anchor != _anchor(store, position):
        log.warning("read-model snapshot ignored: its position %d does not match this event store", position)
        return None
    try:
        with _gc_paused():
            model: ReadModel = unpickler.load()
    except Exception as error:
        log.warning("read-model snapshot ignored: unreadable read model (%r)", error)
        return None
    if not hmac.compare_digest(written_mac, reading.rest()):
        log.warning("read-model snapshot ignored: %s changed while it was read", path)
        return None
    return model


def restore_read_model(store: EventStore, path: Path, key: bytes) -> tuple[ReadModel, int]:
    """The read model from the snapshot at ``path`` if usable, else empty, with the rest of
    the log folded in; and how many positions that tail covered."""
    model = _load(store, path, key) or ReadModel()
    start = model.position
    fold(store, model)
    return model, model.position - start
