"""Settings: flags first, then ``AUTHBUS_*`` environment variables, then these defaults."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = Path(".authbus")


def _env(name: str) -> str | None:
    value = os.environ.get(f"AUTHBUS_{name.upper()}")
    return value if value else None


def _switch(raw: object) -> bool:
    return str(raw).lower() not in ("0", "false", "no", "off")


# By each field's declared type (a string: annotations are postponed); str fields pass as given.
_PARSE: dict[str, Callable[[Any], object]] = {
    "float": float,
    "int": int,
    "int | None": int,
    "bool": _switch,
    "Path": Path,
    "Path | None": Path,
}


@dataclass
class Settings:
    data_dir: Path = DEFAULT_DATA_DIR
    nats_url: str = field(default="nats://127.0.0.1:4222", repr=False)  # may hold the callout service password
    database_url: str = ""  # default: SQLite under data_dir
    subject_prefix: str = "auth"
    consistency_wait: float = 1.0
    kek: str | None = field(default=None, repr=False)
    kek_file: Path | None = None
    event_feed: bool = True  # publish the log to JetStream (one instance at a time)
    feed_lease_seconds: float = 10.0
    seal_interval: float = 10.0  # seconds between tamper-evidence checkpoints; 0 turns sealing off
    use_interval: float = 10.0  # seconds between batches of recorded PAT/API-key uses (last_used_at); 0: not recorded
    snapshot_every: int = 10000  # write a read-model snapshot at start after a tail this long; 0 turns snapshots off
    metrics_port: int | None = None  # serve Prometheus metrics on this port (0: any free one); None: off
    metrics_host: str = "127.0.0.1"
    # The HTTP edge (docs/wire.md §11): OIDC discovery, JWKS, introspection, forward auth,
    # health, on this port (0: any free one); None: off.
    http_port: int | None = None
    http_host: str = "127.0.0.1"
    log_format: str = "text"  # or json
    # nats-server's auth callout (handlers/callout.py): answered when an issuer seed is set.
    callout_issuer_seed: str | None = field(default=None, repr=False)  # account seed, SA…
    callout_xkey_seed: str | None = field(default=None, repr=False)  # curve seed, SX…, when the server seals requests
    callout_account: str = "APP"  # where every client the callout admits goes, but root
    callout_service_account: str = "AUTHBUS"  # authbus's own account: root goes there
    callout_lifetime: float = 3600.0
    # The system account (nats://authbus-system:<password>@…): connection events, and closing
    # the connections of credentials revoked or narrowed.  Without it they last until their
    # JWT expires (callout_lifetime at most).
    nats_system_url: str | None = field(default=None, repr=False)
    log_level: str = "info"
    # The tokens a login hands out (wire.md §3.6).
    issuer: str = "authbus"  # an access token's ``iss``: an issuer URL, for RFC 9068 clients
    audience: str = "authbus"  # its ``aud``
    access_token_seconds: int = 15 * 60
    session_seconds: int = 30 * 86400  # a session's lifetime, and so its refresh tokens'

    @classmethod
    def load(cls, **flags: object) -> Settings:
        values: dict[str, object] = {}
        for f in fields(cls):
            flag = flags.get(f.name)
            raw = flag if flag is not None else _env(f.name)
            if raw is None:
                continue
            parse = _PARSE.get(str(f.type))
            values[f.name] = parse(raw) if parse else raw
        settings = cls(**values)  # type: ignore[arg-type]
        if not settings.database_url:
            settings.database_url = f"sqlite:///{settings.data_dir / 'events.db'}"
        return settings

    @property
    def root_token_file(self) -> Path:
        return self.data_dir / "root.token"

    @property
    def snapshot_file(self) -> Path:
        return self.data_dir / "readmodel.snapshot"

    @property
    def default_kek_file(self) -> Path:
        return self.kek_file or self.data_dir / "kek"
