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
