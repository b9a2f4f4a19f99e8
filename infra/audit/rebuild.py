"""``authbus audit rebuild --check``: fold the whole log into a fresh read model, in this
process, and compare its digest with a running instance's at the same position."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from authbus.infra.audit.audit_app import audit_app
from authbus.infra.audit.log import DatabaseUrl, fail, head, open_log, out, progress, read


@audit_app.command("rebuild")
def rebuild(
    ctx: typer.Context,
    check: Annotated[bool, typer.Option("--check", help="Compare with the running instance reached over NATS.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Rebuild the read model from position 0 and compare its digest with a running instance's.

    Folds every stored event into a fresh read model, in this process, and prints its digest.
    With --check it first asks the running instance (auth.v1.admin.rebuild_check, as root,
    admin or auditor) for its digest and position, rebuilds up to exactly that position and
    compares: exits 1 on a mismatch.  With no instance reachable it prints the rebuild alone.

    Example: authbus --nats-url nats://nats:4222 --token "$AUDITOR_KEY" audit rebuild --check --database-url postgresql://…
    """
    from authbus.projections.audit import digest  # when run: the CLI starts light
    from authbus.projections.read_model import ReadModel

    live = _live(ctx) if check else None
    store = open_log(database_url)
    model = ReadModel()
    try:
        stop = live["position"] if live else head(store)
        with progress("rebuilding the read model", stop) as bar:
            for batch in read(store, 1, stop, bar=bar):
                model.apply_all(batch)
    finally:
        store.close()
    rebuilt = {"digest": digest(model), "position": model.position}
    match = None if live is None else live == rebuilt
    if json_output or getattr(ctx.obj, "as_json", False):
        out.print_json(json.dumps({"rebuilt": rebuilt, "live": live, "match": match}))
    else:
        out.print(f"[bold]rebuilt[/]  {rebuilt['digest']}  position {rebuilt['position']}", highlight=False)
        if live is not None:
            out.print(f"[bold]live[/]     {live['digest']}  position {live['position']}", highlight=False)
            out.print("[green]match[/]" if match else "[red]mismatch[/]: the live read model differs from a rebuild")
        elif check:
            out.print("[yellow]no running instance reached: nothing to compare with[/]")
    raise typer.Exit(1 if match is False else 0)


def _live(ctx: typer.Context) -> dict[str, Any] | None:
    """The running instance's digest and position, or None when none is reachable."""
    options = ctx.obj  # infra.cli.common.Ctx: the --nats-url, --token and --subject-prefix of `authbus`
    nats_url = getattr(options, "nats_url", "nats://127.0.0.1:4222")
    prefix, token = getattr(options, "prefix", "auth"), getattr(options, "token", None)

    import asyncio

    from nats.errors import Error as NatsError

    from authbus.infra.client import AuthbusClient, AuthbusError

    async def ask() -> dict[str, Any] | None:
        try:
            client = await AuthbusClient.connect(nats_url, prefix, token)
        except Exception:  # no NATS there
            return None
        try:
            reply = await client.admin("rebuild_check")
            return {"digest": reply["digest"], "position": reply["position"]}
        except NatsError:  # NATS, but no authbus answering (no responders, or a timeout)
            return None
        finally:
            await client.close()

    try:
        return asyncio.run(ask())
    except AuthbusError as error:
        fail(f"the running instance refused: {error.code}: {error.message}")
