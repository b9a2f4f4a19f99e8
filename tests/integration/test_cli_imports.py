"""The CLI starts light: an admin command, or --help, loads neither the event store nor the
node nor the bench, which only the commands that run them import (in a fresh interpreter,
so no other test's imports can hide one)."""

import subprocess
import sys

HEAVY = ("eventsourcing", "psycopg", "authbus.infra.store", "authbus.infra.node", "authbus.infra.bench.scenarios")


def test_the_cli_loads_no_store_node_or_bench_until_a_command_needs_one():
    probe = (
        f"import sys, authbus.infra.cli as cli, authbus.infra.client\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip() == ""


def imported(code: str) -> set[str]:
    """The top-level packages a fresh interpreter holds after ``code``."""
    probe = f"import sys\n{code}\nprint(','.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    return set(run.stdout.strip().split(","))


# What --help and a command's start do without: each costs tens of milliseconds to import
# (issue 19: under 0.3 s for either, which is these left out; counted, not timed).
NOT_FOR_HELP = {"nats", "asyncio", "rich", "argon2", "cryptography", "jwt", "nacl", "h11", "ssl"}
NOT_BEFORE_SENDING = {"rich", "argon2", "cryptography", "jwt", "nacl", "h11", "eventsourcing", "psycopg"}


def test_help_and_a_commands_start_import_only_what_they_use():
    help_shown = imported("import authbus.infra.cli as cli\ntry:\n    cli.app(['--help'])\nexcept SystemExit:\n    pass")
    assert help_shown & NOT_FOR_HELP == set()
    starting = imported("import authbus.infra.cli, authbus.infra.client")  # what a command has before it connects
    assert starting & NOT_BEFORE_SENDING == set() and "nats" in starting
    assert len(starting) < 160, sorted(starting)  # top-level packages, the standard library's included (146 now)


def test_every_command_shows_an_example_in_its_help():
    from typer.main import get_command

    from authbus.infra.cli import app

    missing: list[str] = []

    def walk(command, path: list[str]) -> None:
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, [*path, name])
        if not getattr(command, "commands", None) and "Example" not in (command.help or ""):
            missing.append(" ".join(path))

    walk(get_command(app), [])
    assert missing == []
