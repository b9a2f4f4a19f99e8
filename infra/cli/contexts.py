"""``authbus context``: named connections, as ``nats context`` keeps them — a NATS URL, a
subject prefix, and a token or a token file — saved in one file of mode 0600
(``$XDG_CONFIG_HOME/authbus/contexts.json``, else ``~/.config/authbus/contexts.json``).

The CLI takes its NATS URL, prefix and token from, first to last: the flags and their
``AUTHBUS_*`` variables, the context ``--context`` (``AUTHBUS_CONTEXT``) names or else the
one in use, then the defaults."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from authbus.infra.cli.common import app, fail, out, show

context_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Saved connections: NATS URL, prefix, credential.")
app.add_typer(context_app, name="context")


def contexts_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "authbus" / "contexts.json"


def load() -> dict[str, Any]:
    path = contexts_file()
    if not path.exists():
        return {"current": None, "contexts": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        fail(f"cannot read {path}: {error}", 2)
    return {"current": data.get("current"), "contexts": dict(data.get("contexts") or {})}


def save(data: dict[str, Any]) -> None:
    from authbus.infra.crypto.kek import write_private

    path = contexts_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def selected(name: str | None) -> dict[str, Any]:
    """The context ``name`` names, else the one in use, else none ({})."""
    data = load()
    chosen = name or data["current"]
    if chosen is None:
        return {}
    if chosen not in data["contexts"]:
        fail(f"no context named {chosen!r} (authbus context ls)", 2)
    context: dict[str, Any] = data["contexts"][chosen]
    if context.get("token_file") and not context.get("token"):
        token_file = Path(context["token_file"]).expanduser()
        if not token_file.exists():
            fail(f"the token file of context {chosen!r} is gone: {token_file}", 2)
        context = {**context, "token": token_file.read_text().strip()}
    return context


@context_app.command("add")
def context_add(
    name: str,
    nats_url: Annotated[str, typer.Option(help="The NATS server, nats://host:port.")],
    token: Annotated[Optional[str], typer.Option(help="A credential, kept in the contexts file (mode 0600).")] = None,
    token_file: Annotated[Optional[Path], typer.Option(help="A file holding the credential, read at each use.")] = None,
    subject_prefix: Annotated[str, typer.Option(help="Subject prefix.")] = "auth",
    use: Annotated[bool, typer.Option("--use", help="Make it the context in use.")] = False,
) -> None:
    """Save a connection under a name (replacing one of that name).
    Example: authbus context add prod --nats-url nats://nats.example.com:4222 --token-file ~/.authbus-prod.token --use"""
    if token and token_file:
        raise typer.BadParameter("give --token or --token-file, not both", param_hint="--token")
    data = load()
    context: dict[str, Any] = {"nats_url": nats_url, "subject_prefix": subject_prefix}
    if token:
        context["token"] = token
    if token_file:
        context["token_file"] = str(token_file.expanduser().resolve())
    data["contexts"][name] = context
    if use or data["current"] is None:
        data["current"] = name
    save(data)
    out.print(f"context {name} saved{' and in use' if data['current'] == name else ''}", markup=False, highlight=False)


@context_app.command("ls")
def context_ls(ctx: typer.Context) -> None:
    """The saved contexts; the one in use is marked, and no token is shown.  Example: authbus context ls"""
    data = load()
    rows = [
        {
            "name": name,
            "in_use": name == data["current"],
            "nats_url": context["nats_url"],
            "subject_prefix": context.get("subject_prefix", "auth"),
            "credential": "file " + context["token_file"]
            if context.get("token_file")
            else "saved"
            if context.get("token")
            else "-",
        }
        for name, context in sorted(data["contexts"].items())
    ]
    show(ctx, rows, ("name", "in_use", "nats_url", "subject_prefix", "credential"))


@context_app.command("use")
def context_use(name: str) -> None:
    """Use this context from now on.  Example: authbus context use prod"""
    data = load()
    if name not in data["contexts"]:
        fail(f"no context named {name!r} (authbus context ls)", 2)
    data["current"] = name
    save(data)
    out.print(f"context {name} in use", markup=False, highlight=False)


@context_app.command("rm")
def context_rm(name: str) -> None:
    """Forget a context.  Example: authbus context rm staging"""
    data = load()
    if data["contexts"].pop(name, None) is None:
        fail(f"no context named {name!r} (authbus context ls)", 2)
    if data["current"] == name:
        data["current"] = None
    save(data)
    out.print(f"context {name} removed", markup=False, highlight=False)
