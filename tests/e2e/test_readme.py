"""The README's command blocks, run as a newcomer would run them (issue 19: docs a
copy-paste can trust): every line of "Try it", "HTTP" (a gateway in front of a toy service
included) and "Audit", in order, against one `authbus dev`, each `<placeholder>` filled
with what an earlier line printed.

`.venv/bin/authbus` lines run with `--json` added, so that what they print can fill the
placeholders of later lines (what a line's comment names after `→`); every other line (curl, pip, the toy service, Caddy) runs in
bash exactly as written, in a directory laid out as a clone is (`.venv`, `examples/`,
`.authbus/` of the running dev). A line's comment that starts with an HTTP status is the
status it must answer, and every placeholder its comment names must show in its output.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from authbus.infra.nats.nats_server import free_port
from tests.e2e.test_cli_dev import CLI, start_dev, stop_dev

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
SECTIONS = ("Try it", "HTTP: OIDC discovery, introspection, forward auth", "Audit")
# The walk-through's fixed ports, each replaced by a free one (tests run side by side).
FIXED_PORTS = ("8080", "9000")


def command_lines(section: str) -> list[str]:
    """The lines of the plain fenced blocks of one README section, its subsections included."""
    text = README.read_text()
    body = text[text.index(f"## {section}\n") :]
    end = body.find("\n## ", 1)
    body = body if end < 0 else body[:end]
    blocks = re.findall(r"^```\n(.*?)^```", body, re.MULTILINE | re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def captures(line: str) -> list[str]:
    """What an authbus line's comment says to keep for later lines: `# → tenant_id`."""
    named = re.search(r"→ (\w+(?:, \w+)*)", line.partition("  #")[2])
    return named[1].split(", ") if named else []


def fill(text: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    leftover = re.findall(r"<\w+>", text)
    assert not leftover, f"{text}: nothing earlier gives {leftover}"
    return text


def run_authbus(line: str, cwd: Path, env: dict[str, str], values: dict[str, str]) -> subprocess.CompletedProcess:
    command, _, _comment = line.partition("  #")
    command, _, here = command.partition("<<<")
    args = [fill(arg, values) for arg in shlex.split(command)[1:]]
    stdin = shlex.split(here)[0] + "\n" if here else "a long password\n"  # a prompt reads the pipe
    return subprocess.run([*CLI, "--json", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, input=stdin)


def wait_listening(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"it stopped: {log.read_text()}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port} after 30 s: {log.read_text()}")


def check_shell_output(line: str, comment: str, done: subprocess.CompletedProcess, values: dict[str, str]) -> None:
    assert done.returncode == 0, (line, done.stderr)
    status = re.match(r"(\d{3})\b", comment)
    if status:
        assert done.stdout.startswith(f"HTTP/1.1 {status[1]} "), (line, done.stdout)
    elif line.startswith("curl "):
        answer = json.loads(done.stdout)  # a JSON answer, not a problem
        assert "title" not in answer, (line, answer)
    for placeholder in re.findall(r"<\w+>", comment):
        assert values[placeholder] in done.stdout, (line, placeholder, done.stdout)


def clone_layout(where: Path, ports: dict[str, str]) -> None:
    """`.venv` and `examples/` where the lines expect them, the fixed ports replaced."""
    (where / ".venv").symlink_to(Path(sys.prefix))
    shutil.copytree(ROOT / "examples", where / "examples")
    for path in (where / "examples").rglob("*"):
        if path.is_file():
            text = path.read_text()
            for fixed, port in ports.items():
                text = text.replace(fixed, port)
            path.write_text(text)


def test_the_readme_command_blocks_run_as_written(tmp_path):
    lines = [line for section in SECTIONS for line in command_lines(section)]
    assert len(lines) >= 25 and any(line.startswith("curl ") for line in lines), lines
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # the "bring your own key" line's key.pem
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "key.pem").write_bytes(pem)
    ports = {fixed: str(free_port()) for fixed in FIXED_PORTS}
    clone_layout(tmp_path, ports)
    port = free_port()
    dev = start_dev(tmp_path, port)
    (http,) = [line.split()[1] for line in dev.banner if line.strip().startswith("HTTP")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHBUS_")} | {"AUTHBUS_NATS_PORT": str(port)}
    env |= {"XDG_DATA_HOME": str(tmp_path / "xdg"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}  # Caddy's storage
    values = {"<port>": http.split("/")[2].rsplit(":", 1)[1]}
    background: list[subprocess.Popen] = []
    try:
        for line in lines:
            if "<api_key>" in line and "<api_key>" not in values:  # the README's stand-in for any unscoped key of the user
                issued = run_authbus(f".venv/bin/authbus key issue --user {values['<user_id>']} --name readme", tmp_path, env, {})
                values["<api_key>"] = json.loads(issued.stdout)["result"]["token"]
            if line.startswith(".venv/bin/authbus "):
                done = run_authbus(line, tmp_path, env, values)
                # Every line succeeds; as-of of a time before any of this answers its documented "no" (1).
                expected = (0, 1) if " as-of " in line else (0,)
                assert done.returncode in expected and "error:" not in done.stderr and "Traceback" not in done.stderr, (
                    line,
                    done.stderr,
                )
                if names := captures(line):
                    reply = json.loads(done.stdout)
                    reply = reply.get("result", reply)
                    values |= {f"<{name}>": reply[name] for name in names}
                continue
            command, _, comment = line.partition("#")
            command, comment = fill(command, ports | values).strip(), fill(comment, ports | values).strip()
            if command.endswith("&"):  # a server of the walk-through, up until the end
                log = tmp_path / f"background-{len(background)}.log"
                with log.open("w") as out:
                    started = subprocess.Popen(
                        ["bash", "-c", command.removesuffix("&")],
                        cwd=tmp_path,
                        env=env,
                        stdout=out,
                        stderr=out,
                        start_new_session=True,
                    )
                background.append(started)
                listens = int(re.findall(r"127\.0\.0\.1:(\d+)", comment)[-1])
                wait_listening(listens, background[-1], log)
                continue
            done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
            check_shell_output(line, comment, done, values)
        assert {"<tenant_id>", "<user_id>", "<token>", "<pat_id>", "<access_token>"} <= set(values)
        assert len(background) == 2  # the toy service and the gateway
    finally:
        for process in background:  # bash and what it started: a group of their own
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        assert stop_dev(dev) == 0
