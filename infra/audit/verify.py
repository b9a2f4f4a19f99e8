"""``authbus audit verify``: the chain over the log recomputed (infra/audit/chain_verifier.py), as a
command.  The chain's machinery is imported when the command runs, so every other command
of the CLI starts without it."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from authbus.infra.audit.audit_app import audit_app
from authbus.infra.audit.log import DatabaseUrl, err, fail, head, open_log, progress
from authbus.infra.console import LazyConsole
from authbus.infra.settings import Settings

if TYPE_CHECKING:
    from authbus.infra.audit.chain_verifier import Verdict

out = LazyConsole(highlight=False)


def _public_key(public_key: str | None, kek_file: Path | None) -> tuple[bytes | None, str]:
    """The key to pin: --public-key, else the KEK's (AUTHBUS_KEK, --kek-file or the data
    dir's), else none: then the key the log itself names is used."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from authbus.infra.crypto.kek import KEKError, derive, load_kek
    from authbus.infra.crypto.keys import unb64url
    from authbus.infra.sealer import audit_key

    if public_key:
        try:
            raw = unb64url(public_key)
            Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise typer.BadParameter("not a base64url Ed25519 public key", param_hint="--public-key") from None
        return raw, "public-key"
    settings = Settings.load(kek_file=kek_file)
    if not settings.kek and kek_file is None and not settings.default_kek_file.exists():
        return None, "log"
    try:
        kek = load_kek(settings.kek, settings.default_kek_file)
    except KEKError as error:
        fail(str(error))
    return audit_key(derive(kek, b"audit-seal")).public_key().public_bytes_raw(), "kek"


@audit_app.command("verify")
def verify(
    ctx: typer.Context,
    database_url: DatabaseUrl = None,
    kek_file: Annotated[
        Path | None,
        typer.Option(envvar="AUTHBUS_KEK_FILE", help="File holding the hex KEK (or set AUTHBUS_KEK): pins the signing key."),
    ] = None,
    public_key: Annotated[
        str | None, typer.Option(help="Pin this base64url Ed25519 key (from auth.v1.audit.public_key) instead.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a sentence.")] = False,
) -> None:
    """Recompute the SHA-256 chain over the stored log, check every signed checkpoint, and
    name the first position where the log was edited, deleted from or reordered.  Exit code
    0 when it matches, 1 when it does not, 2 when it cannot be checked.

    Examples: AUTHBUS_KEK=… authbus audit verify --database-url postgresql://auditor@db/authbus

              authbus audit verify --public-key <public_key of auth.v1.audit.public_key> --json
    """
    from authbus.infra.audit.chain_verifier import verify_log

    pinned, source = _public_key(public_key, kek_file)
    store = open_log(database_url)
    try:
        with progress("verifying", head(store)) as advance:
            verdict = verify_log(store, pinned, advance)
    finally:
        store.close()
    verdict.key_source = source
    _report(verdict, as_json or getattr(ctx.obj, "as_json", False))  # `authbus --json audit verify` too
    if not verdict.ok:
        raise typer.Exit(1)


def _report(verdict: Verdict, as_json: bool) -> None:
    if as_json:
        out.print(json.dumps(asdict(verdict)), markup=False, soft_wrap=True)
        return
    if verdict.ok:
        tail = (
            f"; positions after {verdict.sealed_position} (head {verdict.head}) are not sealed yet"
            if verdict.head > verdict.sealed_position
            else ""
        )
        out.print(
            f"[green]OK[/]: {verdict.events} events sealed up to position {verdict.sealed_position} by "
            f"{verdict.checkpoints} checkpoint{'s' if verdict.checkpoints != 1 else ''} (signatures checked against the {verdict.key_source} key){tail}"
        )
    else:
        out.print(f"[red]TAMPERED[/] at position {verdict.position}: {verdict.reason}")
        out.print(f"the log verifies up to position {verdict.sealed_position} ({verdict.checkpoints} checkpoints)")
    if verdict.key_source == "log":
        err.print("[yellow]no key pinned: pass --public-key or the KEK to prove who sealed the log[/]")
