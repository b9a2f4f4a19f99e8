"""The docs' command blocks, run as a newcomer would run them (issue 19: docs a copy-paste
can trust): every line of the README's "Try it", "HTTP" (a gateway in front of a toy
service included), "NATS itself asks authbus" and "Audit", then every `authbus` line of
docs/operations.md, in order, against one `authbus dev --callout`, each `<placeholder>`
filled with what an earlier line printed.

`authbus` lines run with `--json` added, so that what they print can fill the placeholders
of later lines (what a line's comment names after `→`); `nats pub` lines through nats-py
(the nats CLI is not on PyPI); every other line (curl, pip, the toy service, Caddy) runs in
bash exactly as written, in a directory laid out as a clone is (`.venv`, `examples/`,
`.authbus/` of the running dev); the HTTP section's Python runs as a script. A line's
comment that starts with an HTTP status is the status it must answer, and every
placeholder its comment names must show in its output. operations.md's container lines can't run here (no container engine):
tests/integration/test_deploy.py holds them against compose.yaml, and
tests/e2e/test_backup_restore.py runs its pg_dump and pg_restore.

"Running in production" runs in a test of its own, against PostgreSQL. The "Performance"
lines are tests/e2e/test_bench.py's, with fewer requests: `bench --quick` takes minutes.
Of the Quickstart, `.ci/run` runs the second line, and tests/e2e/test_cli_dev.py the
first's `authbus dev`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nats
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from authbus.infra.client import AuthbusClient
from authbus.infra.nats.nats_server import free_port
from tests.doc_commands import OPERATIONS, README, ROOT, blocks, captures, command_lines, fill, split_comment
from tests.e2e.test_cli_dev import CLI, start_dev, stop_dev
from tests.helpers import health_once_up

SECTIONS = ("Try it", "HTTP: OIDC discovery, introspection, forward auth", "NATS itself asks authbus: the auth callout", "Audit")
# The walk-through's fixed ports, each replaced by a free one (tests run side by side).
FIXED_PORTS = ("8080", "9000")


def run_authbus(line: str, cwd: Path, env: dict[str, str], values: dict[str, str]) -> subprocess.CompletedProcess:
    command, _ = split_comment(line)
    command, _, here = command.partition("<<<")
    args = [fill(arg, values) for arg in shlex.split(command)[1:]]
    stdin = shlex.split(here)[0] + "\n" if here else "a long password\n"  # a prompt reads the pipe
    return subprocess.run([*CLI, "--json", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, input=stdin)


def answer_of(done: subprocess.CompletedProcess) -> dict:
    reply = json.loads(done.stdout)
    return reply.get("result", reply)


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
    shows_what_it_says(line, comment, done, values)


def shows_what_it_says(line: str, comment: str, done: subprocess.CompletedProcess, values: dict[str, str]) -> None:
    for placeholder in re.findall(r"<\w+>", comment):
        assert values[placeholder] in done.stdout, (line, placeholder, done.stdout)


async def nats_pub(server: str, subject: str, payload: str, watcher_url: str) -> str:
    """`nats pub` through nats-py (the nats CLI is not on PyPI), with a watcher (a client of
    the same account) subscribed to the subject: "delivered" once the watcher has the
    message, "refused" once the server says permissions violation, whichever comes first
    (the -ERR may come after a flush's PONG, so a flush proves nothing)."""
    delivered, refused = asyncio.Event(), asyncio.Event()

    async def arrived(_msg: object) -> None:
        delivered.set()

    async def noted(error: Exception) -> None:
        if "permissions violation" in str(error).lower():
            refused.set()

    watcher = await nats.connect(watcher_url)
    try:
        await watcher.subscribe(subject, cb=arrived)
        await watcher.flush()
        nc = await nats.connect(server, error_cb=noted, max_reconnect_attempts=0)
        try:
            await nc.publish(subject, payload.encode())
            outcomes = {asyncio.ensure_future(delivered.wait()): "delivered", asyncio.ensure_future(refused.wait()): "refused"}
            done, pending = await asyncio.wait(outcomes, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            for waiting in pending:
                waiting.cancel()
            return " and ".join(sorted(outcomes[task] for task in done)) or "neither in 10 s"
        finally:
            await nc.close()
    finally:
        await watcher.close()


def run_nats(line: str, command: str, comment: str, watcher_url: str) -> None:
    verb, *rest = shlex.split(command)[1:]
    assert verb == "pub" and rest[0] == "--server", f"{line}: only `nats pub --server URL SUBJECT PAYLOAD` is run here"
    outcome = asyncio.run(nats_pub(*rest[1:], watcher_url))
    assert outcome == ("refused" if "permissions violation" in comment else "delivered"), (line, outcome)


def clone_layout(where: Path, ports: dict[str, str]) -> None:
    """`.venv` and `examples/` where the lines expect them, the fixed ports replaced."""
    (where / ".venv").symlink_to(Path(sys.prefix))
    shutil.copytree(ROOT / "examples", where / "examples")
    for path in (where / "examples").rglob("*"):
        if path.is_file():
            path.write_text(fill(path.read_text(), ports))


class PythonBlock(str):
    """A README block of Python, run as a script; a block with `await` in it is a fragment."""


def run_python(block: PythonBlock, values: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-c", fill(block, values)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (block, done.stderr)
    assert values["<tenant_id>"] in done.stdout, (block, done.stdout)  # what it read from a token of the tenant


def test_the_docs_command_blocks_run_as_written(tmp_path):
    readme: list[str] = []
    for section in SECTIONS:
        readme += command_lines(README, section)
        readme += [PythonBlock(code) for code in blocks(README, section, "python") if "await " not in code]
    assert sum(isinstance(step, PythonBlock) for step in readme) == 1
    operations = [line for line in command_lines(OPERATIONS) if line.startswith("authbus ")]
    assert len(readme) >= 25 and any(line.startswith("curl ") for line in readme), readme
    assert len(operations) >= 5, operations
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # the "bring your own key" line's key.pem
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "key.pem").write_bytes(pem)
    ports = {fixed: str(free_port()) for fixed in FIXED_PORTS}
    clone_layout(tmp_path, ports)
    port = free_port()
    ports["127.0.0.1:4222"] = f"127.0.0.1:{port}"
    dev = start_dev(tmp_path, port, "--callout")  # the callout block's server; every other line works on either
    (http,) = [line.split()[1] for line in dev.banner if line.strip().startswith("HTTP")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHBUS_")} | {"AUTHBUS_NATS_PORT": str(port)}
    env |= {"XDG_DATA_HOME": str(tmp_path / "xdg"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}  # Caddy's storage
    values = {"<port>": http.split("/")[2].rsplit(":", 1)[1]}
    background: list[subprocess.Popen] = []
    try:
        for line in readme + operations:
            if isinstance(line, PythonBlock):
                run_python(line, values)
                continue
            command, comment = split_comment(line)
            # The docs' stand-ins for what a reader already has: any unscoped key of the user,
            # and the tenant's signing key before a rotation.
            if "<api_key>" in line and "<api_key>" not in values:
                issued = run_authbus(f"authbus key issue --user {values['<user_id>']} --name readme", tmp_path, env, {})
                values["<api_key>"] = answer_of(issued)["token"]
            if "<old_kid>" in line and "<old_kid>" not in values:
                created = run_authbus(f"authbus signing-key create --tenant {values['<tenant_id>']}", tmp_path, env, {})
                values["<old_kid>"] = answer_of(created)["kid"]
            if command.split()[0].endswith("authbus"):
                done = run_authbus(line, tmp_path, env, values)
                # Every line succeeds; as-of of a time before any of this answers its documented "no" (1).
                expected = (0, 1) if " as-of " in line else (0,)
                assert done.returncode in expected and "error:" not in done.stderr and "Traceback" not in done.stderr, (
                    line,
                    done.stderr,
                )
                shows_what_it_says(line, comment, done, values)
                values |= {f"<{name}>": answer_of(done)[name] for name in captures(comment)}
                continue
            command, comment = fill(command, ports | values), fill(comment, ports | values)
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
                wait_listening(int(re.findall(r"127\.0\.0\.1:(\d+)", comment)[-1]), started, log)
                continue
            if command.startswith("nats "):
                if "<watcher>" not in values:  # a client of the tenant that may hear every subject: an admin's key
                    admin = run_authbus(
                        f"authbus user create --tenant {values['<tenant_id>']} --role admin watcher", tmp_path, env, {}
                    )
                    key = run_authbus(f"authbus key issue --user {answer_of(admin)['user_id']} --name watcher", tmp_path, env, {})
                    values["<watcher>"] = f"nats://{answer_of(key)['token']}@127.0.0.1:{port}"
                run_nats(line, command, comment, values["<watcher>"])
                continue
            done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
            check_shell_output(line, comment, done, values)
        assert {"<tenant_id>", "<user_id>", "<token>", "<pat_id>", "<access_token>", "<old_kid>"} <= set(values)
        assert len(background) == 2  # the toy service and the gateway
        # Through the gateway, a client's own X-Authbus-* headers are replaced by authbus's answer.
        forged = {"Authorization": f"Bearer {values['<token>']}", "X-Authbus-Principal": "forged", "X-Authbus-Roles": "root"}
        request = urllib.request.Request(f"http://127.0.0.1:{ports['8080']}/docs/42", headers=forged)
        with urllib.request.urlopen(request, timeout=30) as reply:
            hello = json.load(reply)
        assert (hello["hello"], hello["roles"]) == (values["<user_id>"], "admin")  # carol, the last user made
    finally:
        for process in background:  # bash and what it started: a group of their own
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        assert stop_dev(dev) == 0


async def test_the_production_lines_run_against_postgresql_and_nats(databases, nats_server, tmp_path):
    """The README's "Running in production": a KEK exported, bootstrap printing root's token
    once, serve answering, with the README's database and NATS URLs pointed at the test's. The subject
    prefix is a variable of the test's own, so that this serve answers only it."""
    stand_ins = {
        "<64 hex chars>": secrets.token_hex(32),
        "postgresql://authbus:…@db/authbus": databases.new("postgres"),
        "nats://nats:4222": nats_server.url,
    }
    prefix = f"prod{secrets.token_hex(3)}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHBUS_")} | {"AUTHBUS_SUBJECT_PREFIX": prefix}
    lines = command_lines(README, "Running in production")
    assert [line.split()[:2] for line in lines] == [["export", "AUTHBUS_KEK=<64"], ["authbus", "bootstrap"], ["authbus", "serve"]]
    export, bootstrap, serve = (shlex.split(fill(split_comment(line)[0], stand_ins)) for line in lines)
    env |= dict([export[1].split("=", 1)])
    run = functools.partial(
        subprocess.run, [*CLI, *bootstrap[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    done = await asyncio.to_thread(run)
    assert done.returncode == 0, done.stderr
    root_token = done.stdout.strip()
    again = await asyncio.to_thread(run)
    assert again.returncode != 0 and root_token not in again.stdout + again.stderr  # "prints root's token once"
    process = subprocess.Popen([*CLI, *serve[1:]], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    try:
        assert (await health_once_up(nats_server.url, prefix, process))["status"] == "ok"
        client = await AuthbusClient.connect(nats_server.url, prefix=prefix, token=root_token)
        try:
            assert (await client.verify(root_token)).valid
        finally:
            await client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
