"""Attacks that once worked, through real NATS on both stores: each must fail now."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid

import jwt
import pytest

from authbus.infra.client import AuthbusError
from tests.helpers import make_org, store_position


async def test_a_replayed_command_id_answers_only_the_credential_that_sent_it(client, org, instance):
    """A zero-scope PAT of the same owner re-sent the owner's create_pat with its command_id
    (visible as correlation_id on the feed) and got the powerful token back."""
    command_id = str(uuid.uuid4())
    body = {"user_id": org.user_id, "name": "powerful", "command_id": command_id}
    first = await client.command("create_pat", **body, token=org.admin_key)
    weak = (await client.command("create_pat", user_id=org.admin_id, name="weak", scopes=[]))["result"]["token"]
    other_key = (await client.command("issue_key", user_id=org.admin_id, kind="api_key"))["result"]["token"]
    before = store_position(instance)
    for token in (weak, other_key):
        with pytest.raises(AuthbusError) as refused:
            await client.command("create_pat", **body, token=token)
        assert (refused.value.code, refused.value.details.get("field")) == ("conflict", "command_id")
        assert first["result"]["token"] not in str(refused.value)
    assert store_position(instance) == before
    again = await client.command("create_pat", **body, token=org.admin_key)
    assert again["result"] == first["result"]


async def test_a_tenant_token_naming_another_tenants_user_is_not_that_user(client, org):
    """A tenant-minted token with ``sub`` = a real user's id of another tenant came back with
    ``principal.id`` equal to that id: services keyed on principal ids were confused."""
    other = await make_org(client)
    created = await client.command("create_signing_key", tenant_id=org.tenant_id, alg="HS256", token=org.admin_key)
    now = int(time.time())
    token = jwt.encode({"tnd": org.tenant_id, "sub": other.admin_id, "iat": now, "exp": now + 60, "per": {}},
                       created["result"]["secret"], algorithm="HS256", headers={"kid": created["result"]["kid"]})
    verified = await client.verify(token, min_position=created["position"])
    assert verified.valid and verified.principal.kind == "external"
    assert verified.principal.id != other.admin_id and verified.principal.subject == other.admin_id
    assert verified.principal.tenant_id == org.tenant_id


async def test_the_cli_prints_users_strings_as_they_are(client, org, instance, nats_server):
    """A PAT named ``[/]`` crashed ``authbus pat list``; ``[link=…]`` was rendered as a link."""
    names = ["[/]", "[link=https://evil.example]click[/link]", "[bold red]x"]
    for name in names:
        await client.command("create_pat", user_id=org.user_id, name=name, token=org.admin_key)
    listed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "authbus.infra", "--nats-url", nats_server.url, "--subject-prefix", instance.prefix,
         "--token", org.admin_key, "pat", "list", "--user", org.user_id],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "250"},
    )
    assert listed.returncode == 0, listed.stderr
    for name in names:
        assert name in listed.stdout, listed.stdout
