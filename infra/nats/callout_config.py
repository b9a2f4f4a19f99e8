"""nats-server configuration text that hands client authentication to an auth callout service.

Non-operator mode, three accounts: authbus's own (its service user, root's connections,
the event feed's JetStream), the clients' (every other client, importing authbus's
endpoints and feed), and the system account (authbus closes revoked connections there).
Only authbus's two users authenticate by password (``auth_users`` bypass the callout);
every other client is sent to ``$SYS.REQ.USER.AUTH`` and let in only on a user JWT signed
by ``issuer``.  Syntax as in nats-server ``server/auth_callout_test.go``,
``parseAuthCallout`` in ``server/opts.go`` and its account import/export tests.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from authbus.handlers import callout
from authbus.handlers.natsauth.nkeys import (
    PREFIX_ACCOUNT,
    PREFIX_CURVE,
    NKey,
    XKey,
    is_public_key,
    new_account_seed,
    new_xkey_seed,
)
from authbus.handlers.service import subjects
from authbus.infra.crypto.kek import write_private
from authbus.infra.settings import Settings
from authbus.projections.bus_access import BusLayout


def bus_layout(prefix: str) -> BusLayout:
    """authbus's subjects as the endpoint table has them, for the config and the callout."""
    return BusLayout.of(prefix, subjects(prefix).values())


SERVICE_USER = "authbus"
SYSTEM_USER = "authbus-system"


@dataclass(frozen=True)
class BusAccounts:
    """The NATS accounts of a callout deployment (non-operator mode, all in one config)."""

    service: str = "AUTHBUS"  # authbus, root, and the event feed's JetStream
    client: str = "APP"  # every other client the callout admits
    system: str = "SYS"  # nats-server's system account: connection events, closing connections


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
    service_password: str,
    system_password: str,
    xkey: str | None = None,
    prefix: str = "auth",
    accounts: BusAccounts = BusAccounts(),
    auth_timeout: float | None = None,
) -> str:
    """nats-server config text: authbus's account, the clients' account, the system account,
    and the auth callout that places every client.

    ``issuer``: public account nkey ('A…') whose signature the server requires on user JWTs.
    ``service_password``: authbus's own login to its account; ``system_password``: its login
    to the system account, which closes connections whose credential was revoked.  Both
    skip the callout (``auth_users``).  ``xkey``: public curve key ('X…') of the service;
    when set, the server seals requests to it.  ``auth_timeout``: seconds a client's
    authentication (the callout round trip included) may take; None keeps the server
    default.  Listening address and JetStream's store come from the command line.

    The clients' account imports authbus's endpoints as services and its event feed as a
    stream, and has no JetStream: nothing there can capture what another client sends
    authbus or gets back (docs/operations.md §4).
    """
    if not is_public_key(issuer, PREFIX_ACCOUNT):
        raise ValueError("issuer must be a public account nkey ('A…')")
    if xkey is not None and not is_public_key(xkey, PREFIX_CURVE):
        raise ValueError("xkey must be a public curve key ('X…')")
    if not service_password or not system_password:
        raise ValueError("the service and system passwords are required")
    layout = bus_layout(prefix)
    service, client, system = (conf_string(a) for a in (accounts.service, accounts.client, accounts.system))
    lines = [
        "accounts {",
        f"  {service} {{",
        "    jetstream: enabled",
        f"    users: [ {{ user: {conf_string(SERVICE_USER)}, password: {conf_string(service_password)} }} ]",
        "    exports: [",
        *(f"      {{ service: {conf_string(subject)} }}" for subject in layout.requests),
        f"      {{ stream: {conf_string(layout.feed)} }}",
        "    ]",
        "  }",
        f"  {client} {{",
        "    imports: [",
        # share: authbus learns which connection asked (Nats-Request-Info), for fair shares.
        *(
            f"      {{ service: {{ account: {service}, subject: {conf_string(subject)} }}, share: true }}"
            for subject in layout.requests
        ),
        f"      {{ stream: {{ account: {service}, subject: {conf_string(layout.feed)} }} }}",
        "    ]",
        "  }",
        f"  {system} {{ users: [ {{ user: {conf_string(SYSTEM_USER)}, password: {conf_string(system_password)} }} ] }}",
        "}",
        f"system_account: {system}",
        "authorization {",
    ]
    if auth_timeout is not None:
        lines.append(f"  timeout: {float(auth_timeout)}")
    lines += [
        "  auth_callout {",
        f"    issuer: {conf_string(issuer)}",
        f"    account: {service}",
        f"    auth_users: [ {conf_string(SERVICE_USER)}, {conf_string(SYSTEM_USER)} ]",
    ]
    if xkey is not None:
        lines.append(f"    xkey: {conf_string(xkey)}")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class CalloutSetup:
    """The callout's keys and passwords: made by ``authbus callout init`` for a deployment,
    and by ``authbus dev --callout``, which keeps them in the data directory so a restart
    finds nats-server configured as before."""

    issuer_seed: str = field(repr=False)
    xkey_seed: str = field(repr=False)
    service_password: str = field(repr=False)
    system_password: str = field(default="", repr=False)  # absent from a callout.json of an older authbus

    @classmethod
    def create(cls) -> CalloutSetup:
        return cls(new_account_seed(), new_xkey_seed(), secrets.token_urlsafe(24), secrets.token_urlsafe(24))

    @classmethod
    def load_or_create(cls, data_dir: Path) -> CalloutSetup:
        path = data_dir / "callout.json"
        if path.exists():
            loaded = cls(**json.loads(path.read_text()))
            if loaded.system_password:
                return loaded
            made = replace(loaded, system_password=secrets.token_urlsafe(24))
        else:
            made = cls.create()
        write_private(path, json.dumps(asdict(made)))
        return made

    def config(self, prefix: str = "auth") -> str:
        return render_callout_config(
            issuer=NKey.from_seed(self.issuer_seed).public_key,
            service_password=self.service_password,
            system_password=self.system_password,
            xkey=XKey.from_seed(self.xkey_seed).public_key,
            prefix=prefix,
        )

    def write_config(self, path: Path, prefix: str = "auth") -> Path:
        write_private(path, self.config(prefix))  # it holds the passwords
        return path

    def service_url(self, host: str, port: int) -> str:
        """authbus's own connection: a user the callout does not ask about."""
        return f"nats://{SERVICE_USER}:{self.service_password}@{host}:{port}"

    def system_url(self, host: str, port: int) -> str:
        """authbus's connection to the system account, which closes revoked connections."""
        return f"nats://{SYSTEM_USER}:{self.system_password}@{host}:{port}"


def without_credentials(url: str) -> str:
    """A NATS URL fit for a log: ``nats://authbus:<password>@host`` loses its user part."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl() if "@" in parts.netloc else url


def callout_keys(settings: Settings) -> callout.CalloutKeys | None:
    """The auth callout's keys, when this instance answers nats-server's auth callout.

    Raises NKeyError (a ValueError, naming no key material) for a malformed seed.
    """
    if not settings.callout_issuer_seed:
        if settings.callout_xkey_seed:
            raise ValueError("an auth callout xkey seed needs the issuer seed as well")
        return None
    issuer = NKey.from_seed(settings.callout_issuer_seed)
    if issuer.prefix != PREFIX_ACCOUNT:
        raise ValueError("the auth callout issuer must be an account seed (SA…)")
    if settings.callout_lifetime <= 0:
        raise ValueError("the auth callout lifetime must be more than 0 seconds")
    xkey = XKey.from_seed(settings.callout_xkey_seed) if settings.callout_xkey_seed else None
    return callout.CalloutKeys(
        issuer,
        xkey,
        bus_layout(settings.subject_prefix),
        settings.callout_account,
        settings.callout_service_account,
        settings.callout_lifetime,
    )
