"""The README's CLI blocks, run as a newcomer would run them (issue 19: docs a copy-paste can
trust): every `.venv/bin/authbus …` line of "Try it" and "Audit", in order, against an
`authbus dev`, each `<placeholder>` filled with what an earlier line printed."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from authbus.infra.nats.nats_server import free_port
from tests.e2e.test_cli_dev import CLI, start_dev, stop_dev

README = Path(__file__).parents[2] / "README.md"


def cli_lines(section: str) -> list[str]:
    """The `.venv/bin/authbus` lines of the plain fenced blocks of one README section."""
    text = README.read_text()
    body = text[text.index(f"## {section}\n") :]
    end = body.find("\n## ", 1)
    body = body if end < 0 else body[:end]
    blocks = re.findall(r"^```\n(.*?)^```", body, re.MULTILINE | re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.startswith(".venv/bin/authbus ")]


# What each line's JSON reply gives to the lines after it, by placeholder.
CAPTURES = {
    "tenant create": {"<tenant_id>": "tenant_id"},
    "user create": {"<user_id>": "user_id"},
    "pat create": {"<token>": "token", "<pat_id>": "pat_id"},
    "login": {"<access_token>": "access_token"},
}


def run_line(line: str, cwd: Path, env: dict[str, str], values: dict[str, str]) -> subprocess.CompletedProcess:
    command, _, _comment = line.partition("  #")
    command, _, here = command.partition("<<<")
    args = shlex.split(command)[1:]
    args = [values.get(arg, arg) for arg in args]
    leftover = [arg for arg in args if re.fullmatch(r"<\w+>", arg)]
    assert not leftover, f"{line}: nothing earlier gives {leftover}"
    stdin = shlex.split(here)[0] + "\n" if here else "a long password\n"  # a prompt reads the pipe
    return subprocess.run([*CLI, "--json", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, input=stdin)


def test_the_readme_cli_blocks_run_as_written(tmp_path):
    lines = cli_lines("Try it") + cli_lines("Audit")
    assert len(lines) >= 15, lines
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # the "bring your own key" line's key.pem
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "key.pem").write_bytes(pem)
    port = free_port()
    dev = start_dev(tmp_path, port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHBUS_")} | {"AUTHBUS_NATS_PORT": str(port)}
    values: dict[str, str] = {}
    try:
        for line in lines:
            if "<api_key>" in line and "<api_key>" not in values:  # the README's stand-in for any unscoped key of the user
                issued = subprocess.run(
                    [*CLI, "--json", "key", "issue", "--user", values["<user_id>"], "--name", "readme"],
                    cwd=tmp_path,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                values["<api_key>"] = json.loads(issued.stdout)["result"]["token"]
            done = run_line(line, tmp_path, env, values)
            # Every line succeeds; as-of of a time before any of this answers its documented "no" (1).
            expected = (0, 1) if " as-of " in line else (0,)
            assert done.returncode in expected and "error:" not in done.stderr and "Traceback" not in done.stderr, (
                line,
                done.stderr,
            )
            for verb, wanted in CAPTURES.items():
                if line.startswith(f".venv/bin/authbus {verb} "):
                    reply = json.loads(done.stdout)
                    reply = reply.get("result", reply)
                    values |= {placeholder: reply[name] for placeholder, name in wanted.items()}
        assert {"<tenant_id>", "<user_id>", "<token>", "<pat_id>", "<access_token>"} <= set(values)
    finally:
        assert stop_dev(dev) == 0
