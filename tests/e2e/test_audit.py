"""The audit tools on both backends: ``authbus audit log``, ``as-of`` and ``rebuild --check``
as a user runs them (a subprocess on the test store), and their NATS reads."""

import asyncio
import json
import os
import secrets
import subprocess
import sys
import uuid

import pytest

from authbus.domain import tokens
from authbus.infra.bootstrap import open_application
from authbus.infra.client import AuthbusClient, AuthbusError
from authbus.infra.nats.nats_server import free_port
from authbus.infra.settings import Settings
from tests.conftest import BACKENDS, make_settings, start_instance
from tests.helpers import grant_scopes, make_org, store_position

CLI = [sys.executable, "-m", "authbus.infra"]


@pytest.fixture(scope="module", params=BACKENDS)
async def instance(request, nats_server, databases, tmp_path_factory):
    """This module's own store: the audit tools read the whole log, which in the session's
    store holds every other test's events as well (and took seconds a scan)."""
    backend = request.param
    data_dir = tmp_path_factory.mktemp(f"audit-{backend}")
    settings = make_settings(nats_server, databases.new(backend), f"audit{backend}", data_dir, secrets.token_hex(32))
    inst = await start_instance(settings, backend)
    yield inst
    await inst.node.stop()


FORBIDDEN = ("secret_hash", "password_hash", "sealed_private", "refresh_hash", "$argon2")
SCOPE_A = {"domain": "docs", "entity_type": "doc", "operation": "read", "entity_id": "*"}
SCOPE_B = {"domain": "docs", "entity_type": "doc", "operation": "update", "entity_id": "42"}


async def authbus(tmp_path, *args: str, kek: str | None = None) -> subprocess.CompletedProcess:
    """The CLI in a process of its own; awaited, so the instance in this event loop can answer
    it.  Given no ``kek``, it has none (the users' personal data reads as sealed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHBUS_")} | ({"AUTHBUS_KEK": kek} if kek else {})
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    return subprocess.CompletedProcess(args, process.returncode, stdout.decode(), stderr.decode())


async def audit_log(tmp_path, instance, *args: str) -> list[dict]:
    result = await authbus(tmp_path, "audit", "log", "--format", "jsonl", "--database-url", instance.settings.database_url, *args)
    assert result.returncode == 0, result.stderr
    for word in FORBIDDEN:
        assert word not in result.stdout
    return [json.loads(line) for line in result.stdout.splitlines()]


async def pat_history(client: AuthbusClient, org) -> dict:
    """A PAT created with SCOPE_A, given SCOPE_B, then revoked: the positions of each step."""
    await grant_scopes(client, org.tenant_id, org.user_id, [SCOPE_A, SCOPE_B])
    created = await client.command("create_pat", user_id=org.user_id, name="audited", scopes=[SCOPE_A])
    pat_id, token = created["result"]["pat_id"], created["result"]["token"]
    added = await client.command("add_scope", pat_id=pat_id, scope=SCOPE_B)
    revoked = await client.command("revoke_pat", pat_id=pat_id, reason="left the team")
    return {
        "id": pat_id,
        "token": token,
        "created": created["position"],
        "added": added["position"],
        "revoked": revoked["position"],
    }


async def add_auditor(client: AuthbusClient, org) -> str:
    user = await client.command("register_user", tenant_id=org.tenant_id, username="auditor-1", roles=["auditor"])
    key = await client.command("issue_key", user_id=user["result"]["user_id"], kind="api_key", name="auditor key")
    return key["result"]["token"]


# ---------------------------------------------------------------- audit log


async def test_audit_log_cli_filters_and_never_shows_hashes(client, instance, tmp_path):
    org = await make_org(client, "log")
    other = await make_org(client, "log-other")
    await client.command(
        "register_user", tenant_id=org.tenant_id, username="with-password", password="correct horse battery staple"
    )
    pat = await pat_history(client, org)

    everything = await audit_log(tmp_path, instance)
    positions = [line["position"] for line in everything]
    assert positions == sorted(set(positions)) and positions[-1] >= pat["revoked"]
    assert {"SigningKeyCreated", "UserRegistered", "PATCreated", "ScopeAdded", "PATRevoked"} <= {
        line["type"] for line in everything
    }
    line = next(line for line in everything if line["position"] == pat["added"])
    assert set(line) == {
        "position",
        "type",
        "aggregate",
        "aggregate_id",
        "version",
        "timestamp",
        "tenant_id",
        "actor",
        "correlation_id",
        "data",
    }
    assert line["type"] == "ScopeAdded" and line["aggregate"] == "pat" and line["aggregate_id"] == pat["id"]
    assert line["tenant_id"] == org.tenant_id and line["data"] == {"scope": SCOPE_B}

    mine = await audit_log(tmp_path, instance, "--tenant", org.tenant_id)
    assert {line["tenant_id"] for line in mine} == {org.tenant_id}
    assert mine[0]["type"] == "TenantCreated" and pat["revoked"] in [line["position"] for line in mine]
    assert not any(line["aggregate_id"] in (other.user_id, other.tenant_id) for line in mine)

    typed = await audit_log(
        tmp_path, instance, "--tenant", org.tenant_id, "--type", "PATCreated,PATRevoked", "--type", "ScopeAdded"
    )
    assert [line["type"] for line in typed if line["aggregate_id"] == pat["id"]] == ["PATCreated", "ScopeAdded", "PATRevoked"]
    assert {line["type"] for line in typed} <= {"PATCreated", "PATRevoked", "ScopeAdded"}

    theirs = await audit_log(tmp_path, instance, "--principal", org.user_id)
    assert theirs and all(org.user_id in (line["actor"], line["aggregate_id"]) for line in theirs)
    assert {line["type"] for line in theirs} >= {"UserRegistered"}

    ranged = await audit_log(tmp_path, instance, "--since", str(pat["created"]), "--until", str(pat["added"]))
    assert [line["position"] for line in ranged] == [p for p in positions if pat["created"] <= p <= pat["added"]]

    start = next(line["timestamp"] for line in everything if line["position"] == pat["added"])
    end = next(line["timestamp"] for line in everything if line["position"] == pat["revoked"])
    timed = await audit_log(tmp_path, instance, "--tenant", org.tenant_id, "--since", start, "--until", end)
    assert timed[0]["position"] == pat["added"] and timed[-1]["position"] == pat["revoked"]


async def test_audit_log_table_is_for_people(client, instance, tmp_path):
    org = await make_org(client, "table")
    result = await authbus(
        tmp_path, "audit", "log", "--format", "table", "--tenant", org.tenant_id, "--database-url", instance.settings.database_url
    )
    assert result.returncode == 0, result.stderr
    assert "TenantCreated" in result.stdout and "correlation" in result.stdout
    assert not any(word in result.stdout for word in FORBIDDEN)


async def test_audit_log_over_nats_is_limited_to_the_auditors_tenant(client, instance):
    # A read of one page scans a stretch of the log: those below start where this test's
    # tenants do, so what other tests stored first (another order, another worker) is not in it.
    start = store_position(instance) + 1
    org = await make_org(client, "nats-log")
    other = await make_org(client, "nats-log-other")
    auditor = await add_auditor(client, org)
    pat = await pat_history(client, org)

    pages, after = [], None
    while True:
        reply = await client.admin("audit_log", token=auditor, limit=3, **({"after": after} if after else {}))
        assert len(reply["items"]) <= 3
        pages.extend(reply["items"])
        after = reply["next"]
        if after is None:
            break
    assert {item["tenant_id"] for item in pages} == {org.tenant_id}
    assert [item["position"] for item in pages] == sorted({item["position"] for item in pages})
    assert {pat["created"], pat["added"], pat["revoked"]} <= {item["position"] for item in pages}
    assert not any(word in json.dumps(pages, default=str) for word in FORBIDDEN)
    one_go = await client.admin("audit_log", token=auditor, limit=500, since_position=start)
    assert one_go["items"][: len(pages)] == pages[: len(one_go["items"])]

    typed = await client.admin(
        "audit_log", token=auditor, type=["ScopeAdded", "PATRevoked"], since_position=pat["created"], limit=500
    )
    assert [(i["type"], i["position"]) for i in typed["items"]] == [("ScopeAdded", pat["added"]), ("PATRevoked", pat["revoked"])]
    bounded = await client.admin("audit_log", token=auditor, since_position=pat["added"], until_position=pat["added"], limit=500)
    assert [i["position"] for i in bounded["items"]] == [pat["added"]] and bounded["next"] is None
    theirs = await client.admin("audit_log", token=auditor, principal_id=org.user_id, limit=500, since_position=start)
    assert theirs["items"] and all(org.user_id in (i["actor"], i["aggregate_id"]) for i in theirs["items"])

    with pytest.raises(AuthbusError) as refused:
        await client.admin("audit_log", token=org.user_key)
    assert refused.value.code == "forbidden"
    with pytest.raises(AuthbusError) as hidden:
        await client.admin("audit_log", token=auditor, tenant_id=other.tenant_id)
    assert hidden.value.code == "not_found"
    theirs_by_root = await client.admin("audit_log", tenant_id=other.tenant_id, limit=500, since_position=start)
    assert theirs_by_root["items"][0]["type"] == "TenantCreated"
    assert {i["tenant_id"] for i in theirs_by_root["items"]} == {other.tenant_id}


# ---------------------------------------------------------------- as of


async def test_as_of_replays_a_pat_through_scope_and_revocation(client, instance, tmp_path):
    org = await make_org(client, "as-of")
    auditor = await add_auditor(client, org)
    pat = await pat_history(client, org)

    def ask(**fields):  # ``token`` is the credential asked about; the auditor's key is the bearer
        return client.call("admin.audit_as_of", fields, token=auditor)

    first = await ask(at_position=pat["created"], credential_id=pat["id"])
    assert first["valid"] and first["scopes"] == [SCOPE_A] and first["principal"]["id"] == org.user_id

    then = await ask(at_position=pat["added"], credential_id=pat["id"])
    assert then["valid"] and then["reason"] is None and then["at"]["position"] == pat["added"]
    assert then["scopes"] == [SCOPE_A, SCOPE_B] and then["credential"]["status"] == "active"
    assert then["principal"]["id"] == org.user_id and then["principal"]["tenant_id"] == org.tenant_id
    made_it = [(e["type"], e["aggregate_id"]) for e in then["events"]]
    assert made_it[0] == ("TenantCreated", org.tenant_id)
    assert ("UserRegistered", org.user_id) in made_it
    assert made_it[-2:] == [("PATCreated", pat["id"]), ("ScopeAdded", pat["id"])]
    assert then["events"][-1]["position"] == pat["added"] and then["events"][-1]["actor"] == str(instance_root_id(instance))
    assert all(e["position"] <= pat["added"] for e in then["events"])

    by_token = await ask(at_position=pat["added"], token=pat["token"])
    assert by_token["valid"] and by_token["scopes"] == [SCOPE_A, SCOPE_B]
    by_time = await ask(at_time=then["events"][-1]["timestamp"], token=pat["token"])
    assert by_time["valid"] and pat["added"] <= by_time["at"]["position"] < pat["revoked"]

    after = await ask(at_position=pat["revoked"], credential_id=pat["id"])
    assert not after["valid"] and after["reason"] == "revoked" and after["events"][-1]["type"] == "PATRevoked"
    assert after["credential"]["revoked_reason"] == "left the team"

    wrong = tokens.mint("pat", uuid.UUID(pat["id"]), secrets.token_bytes(32))
    guessed = await ask(at_position=pat["added"], token=wrong)
    assert not guessed["valid"] and guessed["reason"] == "unknown"
    assert guessed["principal"] is None and guessed["scopes"] is None and guessed["events"] == []

    both = await ask(
        at_position=pat["revoked"], at_time=then["events"][-1]["timestamp"], credential_id=pat["id"], token=pat["token"]
    )
    assert both["valid"] and both["at"]["position"] < pat["revoked"]  # the earlier of the two points
    with pytest.raises(AuthbusError) as mismatched:
        await ask(at_position=pat["added"], credential_id=org.user_key_id, token=pat["token"])
    assert (mismatched.value.code, mismatched.value.details.get("field")) == ("invalid_request", "token")

    before = await ask(at_position=pat["created"] - 1, credential_id=pat["id"])
    assert not before["valid"] and before["reason"] == "unknown" and before["events"] == []

    with pytest.raises(AuthbusError) as jwt:
        await ask(at_position=pat["added"], token="eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln")
    assert jwt.value.code == "invalid_request" and "JWT" in jwt.value.message
    with pytest.raises(AuthbusError) as plain:
        await client.admin("audit_as_of", token=org.user_key, at_position=pat["added"], credential_id=pat["id"])
    assert plain.value.code == "forbidden"
    stranger = await add_auditor(client, await make_org(client, "as-of-other"))
    with pytest.raises(AuthbusError) as hidden:
        await client.admin("audit_as_of", token=stranger, at_position=pat["added"], credential_id=pat["id"])
    assert hidden.value.code == "not_found"

    # The CLI replays the same log to the same answer.
    db = ("--database-url", instance.settings.database_url)
    as_of = ("audit", "as-of", str(pat["added"]), "--credential", pat["id"], "--json", *db)
    cli = await authbus(tmp_path, *as_of, kek=instance.settings.kek)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == {k: v for k, v in then.items() if k != "position"}
    sealed = json.loads((await authbus(tmp_path, *as_of)).stdout)  # an auditor without the KEK
    assert sealed["principal"] == {**then["principal"], "username": f"sealed-{org.user_id}"}
    revoked = await authbus(tmp_path, "audit", "as-of", str(pat["revoked"]), "--token", pat["token"], *db)
    assert revoked.returncode == 1 and "revoked" in revoked.stdout and "PATRevoked" in revoked.stdout
    assert pat["token"] not in revoked.stdout
    wrong_cli = await authbus(tmp_path, "audit", "as-of", str(pat["added"]), "--token", wrong, "--json", *db)
    assert wrong_cli.returncode == 1 and json.loads(wrong_cli.stdout)["reason"] == "unknown"


def instance_root_id(instance) -> str:
    return next(p.id for p in instance.node.model.principals.values() if "root" in p.roles)


# ---------------------------------------------------------------- rebuild


async def test_rebuild_check_matches_the_live_digest(client, instance, databases, nats_server, tmp_path):
    org = await make_org(client, "rebuild")
    await pat_history(client, org)
    auditor = await add_auditor(client, org)
    live = await client.admin("rebuild_check")  # root: the digest covers every tenant
    assert live["digest"].startswith("sha256:") and len(live["digest"]) == 50 and live["position"] >= 1
    for token in (auditor, org.admin_key):
        with pytest.raises(AuthbusError) as refused:
            await client.admin("rebuild_check", token=token)
        assert refused.value.code == "forbidden"

    nats = ("--nats-url", nats_server.url, "--subject-prefix", instance.prefix, "--token", instance.root_token)
    db = ("--database-url", instance.settings.database_url)
    checked = await authbus(tmp_path, *nats, "audit", "rebuild", "--check", "--json", *db)
    assert checked.returncode == 0, checked.stderr
    answer = json.loads(checked.stdout)
    assert answer["match"] is True and answer["rebuilt"] == answer["live"] and answer["live"]["position"] >= live["position"]

    # A store that is not the live one does not match, and says so with exit status 1.
    elsewhere = Settings(database_url=databases.new(instance.backend), kek=secrets.token_hex(32), data_dir=tmp_path)
    app = open_application(elsewhere)
    app.bootstrap()
    app.close()
    mismatch = await authbus(tmp_path, *nats, "audit", "rebuild", "--check", "--database-url", elsewhere.database_url)
    assert mismatch.returncode == 1 and "mismatch" in mismatch.stdout

    alone = await authbus(tmp_path, "--nats-url", f"nats://127.0.0.1:{free_port()}", "audit", "rebuild", "--check", "--json", *db)
    assert alone.returncode == 0, alone.stderr
    rebuilt = json.loads(alone.stdout)
    assert rebuilt["live"] is None and rebuilt["match"] is None and rebuilt["rebuilt"]["position"] >= live["position"]
