"""``authbus context``: saved connections as ``nats context`` keeps them (issue 19), used by
every command, chosen with --context, never shown with their tokens; both stores."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys

CLI = (sys.executable, "-m", "authbus.infra")


async def authbus(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """The CLI in a process of its own, configured only by its contexts file (awaited: the
    instance in this event loop answers it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHBUS_")} | {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    return subprocess.CompletedProcess(args, process.returncode, stdout.decode(), stderr.decode())


async def test_a_saved_context_is_used_chosen_and_forgotten(tmp_path, instance, nats_server):
    token_file = tmp_path / "root.token"
    token_file.write_text(instance.root_token + "\n")
    added = await authbus(
        tmp_path,
        "context",
        "add",
        "here",
        "--nats-url",
        nats_server.url,
        "--subject-prefix",
        instance.prefix,
        "--token-file",
        str(token_file),
    )
    assert added.returncode == 0, added.stderr
    saved = tmp_path / "cfg" / "authbus" / "contexts.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600 and instance.root_token not in saved.read_text()

    who = await authbus(tmp_path, "--json", "whoami")  # no flag: the context in use
    assert who.returncode == 0 and json.loads(who.stdout)["roles"] == ["root"], who.stderr
    await authbus(tmp_path, "context", "add", "nowhere", "--nats-url", "nats://127.0.0.1:1", "--token", "pat_x", "--use")
    assert (await authbus(tmp_path, "whoami")).returncode == 2  # the one in use now: nothing listens there
    assert (await authbus(tmp_path, "--context", "here", "whoami")).returncode == 0
    listed = json.loads((await authbus(tmp_path, "--json", "context", "ls")).stdout)
    assert [(c["name"], c["in_use"]) for c in listed] == [("here", False), ("nowhere", True)]
    assert "pat_x" not in json.dumps(listed) and listed[1]["credential"] == "saved"
    assert (await authbus(tmp_path, "context", "use", "here")).returncode == 0
    assert (await authbus(tmp_path, "context", "rm", "nowhere")).returncode == 0
    assert (await authbus(tmp_path, "whoami")).returncode == 0
    missing = await authbus(tmp_path, "--context", "nowhere", "whoami")
    assert missing.returncode == 2 and "no context named 'nowhere'" in missing.stderr
