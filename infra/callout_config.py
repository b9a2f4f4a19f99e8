"""nats-server configuration text that hands client authentication to an auth callout service.

Non-operator mode: the callout runs for the global account ``$G``.  Only the listed service
user authenticates by password (``auth_users`` bypass the callout); every other client is
sent to ``$SYS.REQ.USER.AUTH`` and let in only on a user JWT signed by ``issuer``.  Syntax as
in nats-server ``server/auth_callout_test.go`` and ``parseAuthCallout`` in ``server/opts.go``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit
from pathlib import Path

from authbus.handlers.nats_jwt import (
    PREFIX_ACCOUNT, PREFIX_CURVE, NKey, XKey, is_public_key, new_account_seed, new_xkey_seed,
)
from authbus.infra.secrets import write_private


def conf_string(value: str) -> str:
    """A double-quoted nats-server config string.

    Quoted, a value starting with ``$`` is not read as a variable and ``#``/``//``/``}``
    lose their meaning; the conf lexer only knows the escapes ``\\xXX \\t \\n \\r \\" \\\\``.
    """
    out = []
    for char in value:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char == "\t":
            out.append("\\t")
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def render_callout_config(
    *,
    issuer: str,
    service_user: str,
    service_password: str,
    xkey: str | None = None,
    auth_timeout: float | None = None,
) -> str:
    """nats-server config text enabling the auth callout for the global account.

    ``issuer``: public account nkey ('A…') whose signature the server requires on user JWTs.
    ``service_user``/``service_password``: the callout service's own login (``auth_users``
    skip the callout).  ``xkey``: public curve key ('X…') of the service; when set, the
    server seals requests to it.  ``auth_timeout``: seconds a client's authentication (the
    callout round trip included) may take; None keeps the server default.  Listening
    address and JetStream come from the command line (infra.nats_server.NatsServer).
    """
    if not is_public_key(issuer, PREFIX_ACCOUNT):
        raise ValueError("issuer must be a public account nkey ('A…')")
    if xkey is not None and not is_public_key(xkey, PREFIX_CURVE):
        raise ValueError("xkey must be a public curve key ('X…')")
    if not service_user or not service_password:
        raise ValueError("service user and password are required")
    lines = ["authorization {"]
    if auth_timeout is not None:
        lines.append(f"  timeout: {float(auth_timeout)}")
    lines += [
        f"  users: [ {{ user: {conf_string(service_user)}, password: {conf_string(service_password)} }} ]",
        "  auth_callout {",
        f"    issuer: {conf_string(issuer)}",
        f"    auth_users: [ {conf_string(service_user)} ]",
    ]
    if xkey is not None:
        lines.append(f"    xkey: {conf_string(xkey)}")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


SERVICE_USER = "authbus"


@dataclass(frozen=True)
class CalloutSetup:
    """The callout's keys and service password: made by ``authbus callout init`` for a
    deployment, and by ``authbus dev --callout``, which keeps them in the data directory so
    a restart finds nats-server configured as before."""

    issuer_seed: str = field(repr=False)
    xkey_seed: str = field(repr=False)
    service_password: str = field(repr=False)

    @classmethod
    def create(cls) -> CalloutSetup:
        return cls(new_account_seed(), new_xkey_seed(), secrets.token_urlsafe(24))

    @classmethod
    def load_or_create(cls, data_dir: Path) -> CalloutSetup:
        path = data_dir / "callout.json"
        if path.exists():
            return cls(**json.loads(path.read_text()))
        made = cls.create()
        write_private(path, json.dumps(asdict(made)), new=True)
        return made

    def config(self) -> str:
        return render_callout_config(
            issuer=NKey.from_seed(self.issuer_seed).public_key,
            service_user=SERVICE_USER,
            service_password=self.service_password,
            xkey=XKey.from_seed(self.xkey_seed).public_key,
        )

    def write_config(self, path: Path) -> Path:
        write_private(path, self.config())  # it holds the service password
        return path

    def service_url(self, host: str, port: int) -> str:
        """authbus's own connection: the one user the callout does not ask about."""
        return f"nats://{SERVICE_USER}:{self.service_password}@{host}:{port}"


def without_credentials(url: str) -> str:
    """A NATS URL fit for a log: ``nats://authbus:<password>@host`` loses its user part."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl() if "@" in parts.netloc else url
