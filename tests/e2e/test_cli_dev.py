"""``authbus dev`` and the admin CLI as a user runs them: real processes, real ports."""

import asyncio
import base64
import json
import os
import re
import secrets
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import jwt
import nats
import nats.errors
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from authbus.domain.commands import COMMANDS
from authbus.handlers.admin_reads import ADMIN_READS
from authbus.infra import cli
from authbus.infra.bootstrap import open_application
from authbus.infra.crypto.kek import KEKError
from authbus.infra.nats.nats_server import NatsServer, free_port, port_open
from authbus.infra.settings import Settings
from tests.conftest import BACKENDS
from tests.helpers import health_once_up

CLI = [sys.executable, "-m", "authbus.infra"]


def authbus(cwd: Path, port: int, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "AUTHBUS_NATS_URL": f"nats://127.0.0.1:{port}"}
    return subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, input=stdin)


def start_dev(cwd: Path, port: int, *flags: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [*CLI, "dev", "--nats-port", str(port), *flags], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    watchdog = threading.Timer(60, process.kill)  # a silent hang ends the read too: stdout closes
    watchdog.start()
    banner: list[str] = []
    try:
        for line in process.stdout:  # the banner's last line says it is ready
            banner.append(line)
            if "Ctrl-C stops everything" in line:
                process.banner = banner  # type: ignore[attr-defined]
                return process
    finally:
        watchdog.cancel()
    process.kill()
    raise AssertionError("authbus dev did not come up in 60 s")


def stop_dev(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(timeout=30)


def field(result: subprocess.CompletedProcess, name: str) -> str:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["result"][name]


def test_dev_bootstraps_serves_the_cli_stops_cleanly_and_resumes(tmp_path):
    port = free_port()
    dev = start_dev(tmp_path, port)
    try:
        token_file = tmp_path / ".authbus" / "root.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / ".authbus" / "kek").stat().st_mode) == 0o600
        assert (tmp_path / ".authbus" / "events.db").exists()

        tenant = field(authbus(tmp_path, port, "--json", "tenant", "create", "acme"), "tenant_id")
        user = field(authbus(tmp_path, port, "--json", "user", "create", "--tenant", tenant, "alice"), "user_id")
        refused = authbus(tmp_path, port, "pat", "create", "--user", user, "--name", "laptop", "--scope", "docs/document:read:*")
        assert refused.returncode == 1 and "(field: scopes[0])" in refused.stderr  # alice holds no such scope yet
        role = authbus(
            tmp_path,
            port,
            "role",
            "create",
            "--tenant",
            tenant,
            "readers",
            "--scope",
            "docs/document:read:*",
            "--scope",
            "docs/document:update:42",
        )
        assert role.returncode == 0, role.stderr
        assert authbus(tmp_path, port, "role", "grant", user, "readers").returncode == 0
        roles = json.loads(authbus(tmp_path, port, "--json", "role", "list", "--tenant", tenant).stdout)
        assert [(r["name"], len(r["scopes"])) for r in roles] == [("readers", 2)]
        created = authbus(tmp_path, port, "pat", "create", "--user", user, "--name", "laptop", "--scope", "docs/document:read:*")
        assert created.returncode == 0, created.stderr
        token = next(line.split()[1] for line in created.stdout.splitlines() if line.startswith("token"))
        assert authbus(tmp_path, port, "verify", token).returncode == 0
        target = ("--domain", "docs", "--entity-type", "document", "--entity-id", "42")
        allowed = authbus(tmp_path, port, "authorize", token, *target, "--operation", "read")
        assert allowed.returncode == 0 and "docs/document:read:*" in allowed.stdout
        assert authbus(tmp_path, port, "authorize", token, *target, "--operation", "delete").returncode == 1
        assert authbus(tmp_path, port, "role", "order", "--tenant", tenant, "user", "readers", "admin").returncode == 0
        shown = json.loads(authbus(tmp_path, port, "--json", "tenant", "get", tenant).stdout)
        assert shown["role_order"] == ["user", "readers", "admin", "root"]
        narrow = authbus(tmp_path, port, "authorize", token, "--min-role", "readers")  # a PAT carries no rank
        assert narrow.returncode == 1 and "scoped_credential" in narrow.stdout
        root = token_file.read_text().strip()
        assert authbus(tmp_path, port, "authorize", root, "--min-role", "admin").returncode == 0
        listed = authbus(tmp_path, port, "--json", "pat", "list", "--user", user)
        assert authbus(tmp_path, port, "user", "update", user, "--display-name", "Alice A.").returncode == 0
        found = json.loads(authbus(tmp_path, port, "--json", "user", "search", "--tenant", tenant, "--prefix", "ALI").stdout)
        assert [(u["username"], u["display_name"]) for u in found] == [("alice", "Alice A.")]
        assert [p["name"] for p in json.loads(listed.stdout)] == ["laptop"]

        assert authbus(tmp_path, port, "tenant", "policy", tenant, "--access-token-seconds", "300").returncode == 0
        assert authbus(tmp_path, port, "tenant", "policy", tenant, "--open-registration").returncode == 0
        policy = json.loads(authbus(tmp_path, port, "--json", "tenant", "get", tenant).stdout)["policy"]
        assert (policy["access_token_seconds"], policy["open_registration"]) == (300, True)  # the first option kept
        signed_up = authbus(
            tmp_path, port, "--json", "register", "--tenant", tenant, "--password-stdin", "erin", stdin="erin's password\n"
        )
        assert json.loads(signed_up.stdout)["user_id"], signed_up.stderr
        authbus(tmp_path, port, "user", "create", "--tenant", tenant, "--password-stdin", "bob", stdin="bob's password\n")
        pair = json.loads(
            authbus(
                tmp_path, port, "--json", "login", "--tenant", tenant, "--password-stdin", "bob", stdin="bob's password\n"
            ).stdout
        )
        assert authbus(tmp_path, port, "verify", pair["access_token"]).returncode == 0 and pair["expires_in"] == 300
        # The banner says how the CLI finds this dev's port, and the CLI honours it.
        assert f"  export AUTHBUS_NATS_PORT={port}\n" in dev.banner
        env = {k: v for k, v in os.environ.items() if k != "AUTHBUS_NATS_URL"} | {"AUTHBUS_NATS_PORT": str(port)}
        found = subprocess.run([*CLI, "health"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert found.returncode == 0, found.stderr
        # The HTTP edge is on, at the URL the banner prints, and is the tokens' issuer (OIDC discovery).
        (http,) = [line.split()[1] for line in dev.banner if line.strip().startswith("HTTP")]
        assert any(line.rstrip().endswith("forward auth: docs/wire.md §11)") for line in dev.banner)  # piped, not folded
        with urllib.request.urlopen(http, timeout=10) as reply:
            discovered = json.load(reply)
        issuer = discovered["issuer"]
        assert http.startswith(issuer) and jwt.decode(pair["access_token"], options={"verify_signature": False})["iss"] == issuer
        bob = json.loads(authbus(tmp_path, port, "--json", "verify", pair["access_token"]).stdout)["principal"]["id"]
        assert authbus(tmp_path, port, "pat", "list", "--user", bob).stdout.strip() == "nothing found"
        verified = authbus(tmp_path, port, "--json", "audit", "verify")  # the global --json, as every command takes it
        assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True, verified.stdout
        sessions = json.loads(authbus(tmp_path, port, "--json", "session", "list", "--user", bob).stdout)
        assert [s["method"] for s in sessions] == ["password"]
        piped = authbus(tmp_path, port, "--json", "login", "--tenant", tenant, "bob", stdin="bob's password\n")  # no flag: a pipe
        assert piped.returncode == 0 and "GetPassWarning" not in piped.stderr and json.loads(piped.stdout)["access_token"]
        # The verbs the README's flows need: refresh, redeem, whoami, a challenge login; tenants by name.
        renewed = json.loads(authbus(tmp_path, port, "--json", "refresh", json.loads(piped.stdout)["refresh_token"]).stdout)
        assert renewed["user_id"] == bob and renewed["refresh_token"] != json.loads(piped.stdout)["refresh_token"]
        assert json.loads(authbus(tmp_path, port, "--json", "whoami").stdout)["roles"] == ["root"]
        assert json.loads(authbus(tmp_path, port, "--json", "tenant", "get", "ACME").stdout)["id"] == tenant
        rec = field(
            authbus(tmp_path, port, "--json", "key", "issue", "--user", bob, "--kind", "recovery", "--name", "r"), "token"
        )
        assert authbus(tmp_path, port, "redeem", rec, "--password-stdin", stdin="bob's new password\n").returncode == 0

        def raw_public(key: Ed25519PrivateKey) -> str:
            return base64.urlsafe_b64encode(key.public_key().public_bytes_raw()).rstrip(b"=").decode()

        # One key in 64 begins with "-" in base64url: it is still the key, not an unknown option.
        device = next(key for key in iter(Ed25519PrivateKey.generate, None) if raw_public(key).startswith("-"))
        (tmp_path / "bob.pem").write_bytes(
            device.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        added = authbus(tmp_path, port, "user", "add-public-key", bob, raw_public(device))
        assert added.returncode == 0, added.stderr
        keyed = authbus(tmp_path, port, "--json", "challenge-login", "--tenant", "acme", "--key-file", str(tmp_path / "bob.pem"))
        assert keyed.returncode == 0 and json.loads(keyed.stdout)["user_id"] == bob, keyed.stderr
        assert authbus(tmp_path, port, "logout", pair["refresh_token"]).returncode == 0
        assert authbus(tmp_path, port, "verify", pair["access_token"]).returncode == 1
        secret = field(authbus(tmp_path, port, "--json", "signing-key", "create", "--alg", "HS256", "--tenant", tenant), "secret")
        assert len(secret) == 43

        assert authbus(tmp_path, port, "role", "grant", bob, "auditor").returncode == 0
        assert authbus(tmp_path, port, "user", "set-password", bob, stdin="a new passphrase\n").returncode == 0
        activity = json.loads(authbus(tmp_path, port, "--json", "user", "login-activity", bob).stdout)
        assert [a["outcome"] for a in activity] == ["succeeded"] * 3  # the prompt, the pipe and the challenge
        # The sealer appends checkpoints on its own every few seconds: one may be stored
        # and not yet folded at the instant health asks, so lag 0 is waited for (bounded).
        for _ in range(20):
            health = json.loads(authbus(tmp_path, port, "--json", "health").stdout)
            assert health["status"] == "ok"
            if health["store"]["lag"] == 0:
                break
            time.sleep(0.1)
        assert health["store"]["lag"] == 0, health
        pat_id = json.loads(listed.stdout)[0]["id"]
        assert authbus(tmp_path, port, "scope", "add", pat_id, "docs/document:update:42").returncode == 0
        assert authbus(tmp_path, port, "scope", "remove", pat_id, "docs/document:update:42").returncode == 0

        failed = authbus(tmp_path, port, "tenant", "create", "acme")
        assert failed.returncode == 1
        assert "conflict" in failed.stderr and "Traceback" not in failed.stderr
    finally:
        assert stop_dev(dev) == 0
    assert "Traceback" not in dev.stdout.read()

    dev = start_dev(tmp_path, port)
    try:
        assert authbus(tmp_path, port, "verify", token).returncode == 0
    finally:
        assert stop_dev(dev) == 0


async def bus_client(port: int, token: str | None) -> nats.aio.client.Client:
    async def quiet(error: Exception) -> None:
        pass

    return await asyncio.wait_for(
        nats.connect(f"nats://127.0.0.1:{port}", token=token, allow_reconnect=False, connect_timeout=5, error_cb=quiet), 10
    )


async def test_dev_callout_lets_in_only_authbus_tokens_with_their_subjects_across_restarts(tmp_path):
    port = free_port()
    dev = start_dev(tmp_path, port, "--callout")
    try:
        assert stat.S_IMODE((tmp_path / ".authbus" / "callout.json").stat().st_mode) == 0o600
        # The admin CLI presents its token to NATS when the server asks for one.
        tenant = field(authbus(tmp_path, port, "--json", "tenant", "create", "bus"), "tenant_id")
        user = field(authbus(tmp_path, port, "--json", "user", "create", "--tenant", tenant, "carol"), "user_id")
        assert (
            authbus(
                tmp_path,
                port,
                "role",
                "create",
                "--tenant",
                tenant,
                "demo",
                "--scope",
                "nats/subject:publish:demo.>",
                "--scope",
                "subject:subscribe:demo.>",
            ).returncode
            == 0
        )
        assert authbus(tmp_path, port, "role", "grant", user, "demo").returncode == 0
        token = field(
            authbus(
                tmp_path,
                port,
                "--json",
                "pat",
                "create",
                "--user",
                user,
                "--name",
                "bus",
                "--scope",
                "nats/subject:publish:demo.>",
                "--scope",
                "subject:subscribe:demo.>",
            ),
            "token",
        )
        client = await bus_client(port, token)
        inbox = await client.subscribe("demo.x")
        await client.publish("demo.x", b"hi")
        assert (await inbox.next_msg(timeout=5)).data == b"hi"
        await client.close()
        for wrong in (None, "pat_nope"):
            with pytest.raises(nats.errors.Error, match=r"(?i)authorization violation"):
                await bus_client(port, wrong)
        # A tenant admin's CLI: its replies come to its own private inbox, in the clients' account.
        admin = field(
            authbus(tmp_path, port, "--json", "user", "create", "--tenant", tenant, "--role", "admin", "ada"), "user_id"
        )
        key = field(authbus(tmp_path, port, "--json", "key", "issue", "--user", admin, "--name", "cli"), "token")
        own = authbus(tmp_path, port, "--token", key, "--json", "user", "list")
        assert own.returncode == 0 and {u["username"] for u in json.loads(own.stdout)} == {"carol", "ada"}, own.stderr
        # Refused credentials and no server are told apart.
        refused = authbus(tmp_path, port, "--token", "pat_nope", "whoami")
        assert refused.returncode == 2 and "refused" in refused.stderr and "is `authbus dev` running" not in refused.stderr
    finally:
        assert stop_dev(dev) == 0
    nothing = authbus(tmp_path, port, "--token", "pat_nope", "whoami")  # dev stopped: nothing listens
    assert nothing.returncode == 2 and "cannot reach NATS" in nothing.stderr

    dev = start_dev(tmp_path, port, "--callout")  # same keys, same server config: the PAT still works
    try:
        await (await bus_client(port, token)).close()
    finally:
        assert stop_dev(dev) == 0


def test_dev_keeps_its_data_private_runs_once_per_directory_and_leaves_nothing_when_killed(tmp_path):
    port = free_port()
    data = tmp_path / ".authbus"
    dev = start_dev(tmp_path, port)
    try:
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        for name in ("events.db", "events.db-wal", "events.db-shm"):
            if (data / name).exists():  # the journal files come and go with SQLite's mode
                assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
        second = subprocess.run(
            [*CLI, "dev", "--nats-port", str(free_port())], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [f"error: another authbus dev is running on {Path('.authbus')}"]
    finally:
        dev.kill()  # SIGKILL: no chance to stop its nats-server
        dev.wait(timeout=30)
    deadline = time.monotonic() + 10
    while port_open("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not port_open("127.0.0.1", port), "nats-server outlived authbus dev"
    dev = start_dev(tmp_path, port)  # the same port, the same data: a clean start
    try:
        assert authbus(tmp_path, port, "health").returncode == 0
    finally:
        assert stop_dev(dev) == 0


def test_a_nats_server_left_behind_by_a_killed_dev_is_stopped_at_the_next_start(tmp_path):
    """Where the child cannot be tied to its parent (not Linux, or a lost signal), the pid
    file lets the next start clean up."""
    port = free_port()
    leftover = NatsServer(tmp_path / ".authbus" / "nats", port=port, owned=True)
    leftover.owned = False  # started as another process would have, not tied to this one
    leftover.extra_args = ("-P", str(leftover.pid_file))
    leftover.start()
    try:
        dev = start_dev(tmp_path, port)
        try:
            assert leftover.process.wait(timeout=10) is not None
            assert authbus(tmp_path, port, "health").returncode == 0
        finally:
            assert stop_dev(dev) == 0
    finally:
        leftover.stop()


def test_the_cli_says_clearly_when_nothing_is_listening(tmp_path):
    result = authbus(tmp_path, free_port(), "verify", "pat_x")
    assert result.returncode == 2
    assert "cannot reach NATS" in result.stderr and "Traceback" not in result.stderr


def test_serve_without_a_kek_is_a_clear_startup_error(tmp_path):
    result = authbus(tmp_path, free_port(), "serve", "--database-url", f"sqlite:///{tmp_path}/x.db")
    assert result.returncode == 2
    assert "KEK" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_serve_with_another_stores_kek_is_a_clear_startup_error(tmp_path, databases, backend):
    """A wrong KEK opens no signing key: refused at start, not discovered at the first login."""
    database_url = databases.new(backend)
    settings = Settings(database_url=database_url, kek=secrets.token_hex(32), data_dir=tmp_path)
    app = open_application(settings)
    app.bootstrap()
    app.close()
    for kek, says in ((secrets.token_hex(32), "not the store's KEK"), ("abcd", "must be 32 bytes"), ("zz", "not hex")):
        result = subprocess.run(
            [*CLI, "serve", "--database-url", database_url],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "AUTHBUS_KEK": kek, "AUTHBUS_NATS_URL": f"nats://127.0.0.1:{free_port()}"},
        )
        assert result.returncode == 2, result.stderr
        assert says in result.stderr and "Traceback" not in result.stderr
    settings.kek = secrets.token_hex(32)
    with pytest.raises(KEKError):
        open_application(settings)


def test_every_command_and_admin_read_has_a_cli_verb():
    """`authbus <noun> <verb>` reaches every command and admin read of docs/wire.md."""
    infra = Path(cli.__file__).parent.parent
    source = "\n".join((infra / name).read_text() for name in ("cli/admin.py", "audit/rebuild.py"))
    reached = set(re.findall(r'(?:\bcommand\(\s*ctx,|all_pages\(\s*ctx,|\.admin\()\s*"(\w+)"', source))
    assert set(COMMANDS) <= reached, sorted(set(COMMANDS) - reached)
    # audit_log and audit_as_of are also read straight from the store by `authbus audit log|as-of`
    assert set(ADMIN_READS) | {"rebuild_check"} <= reached, sorted(set(ADMIN_READS) - reached)
    nouns = subprocess.run([*CLI, "--help"], capture_output=True, text=True, timeout=60).stdout
    for noun in ("tenant", "user", "role", "pat", "scope", "key", "signing-key", "session", "audit", "health", "bench"):
        assert re.search(rf"^  {re.escape(noun)}\s", nouns, re.MULTILINE), noun


async def test_serve_keeps_its_store_and_snapshot_under_data_dir(tmp_path, nats_server):
    """`authbus serve --data-dir D`: the KEK file, the SQLite store and the snapshot are D's."""
    data_dir = tmp_path / "instance"
    data_dir.mkdir()
    (data_dir / "kek").write_text(secrets.token_hex(32))
    prefix = f"dd{secrets.token_hex(3)}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHBUS_")}
    process = subprocess.Popen(  # noqa: ASYNC220  (starting it does not block; it is waited on apart)
        [*CLI, "serve", "--data-dir", str(data_dir), "--nats-url", nats_server.url, "--subject-prefix", prefix],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert (await health_once_up(nats_server.url, prefix, process))["status"] == "ok"
        assert (data_dir / "events.db").exists() and not (tmp_path / ".authbus").exists()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
