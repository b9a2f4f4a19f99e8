"""``authbus audit``: the auditor's tools.  They read the event store directly (the log is
the source of truth), so they work with authbus stopped, against a backup, or beside a
running cluster.  Each tool lives in its own module and registers on ``audit_app``."""

from __future__ import annotations

import typer

audit_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Replay the log: who could do what, when; prove nobody edited it."
)
