"""The service-side verify cache (infra/client/verify_cache.py): answers kept, and dropped the
moment the event feed says something they vouched for changed."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

from authbus.infra.client import AuthbusClient
from authbus.infra.client.verify_cache import CachedVerifier
from tests.conftest import start_instance
from tests.helpers import eventually, make_tenant


async def until_invalid(verifier: CachedVerifier, token: str, seconds: float = 10.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        verdict = await verifier.verify(token)
        if not verdict.valid:
            return verdict
        await asyncio.sleep(0.02)
    raise AssertionError("the cache kept vouching for a credential the feed said was changed")


async def test_answers_are_kept_and_a_revocation_on_the_feed_evicts_them(client, instance):
    world = await make_tenant(client, "cache")
    verifier = await CachedVerifier.start(client, ttl=3600)  # only the feed may evict here
    try:
        first = await verifier.verify(world.pat_token)
        assert first.valid and first.credential.id == world.pat_id and first.principal.tenant_id == world.tenant_id
        for _ in range(20):
            assert (await verifier.verify(world.pat_token)) == first
        assert (verifier.misses, verifier.hits) == (1, 20)
        await client.command("revoke_pat", pat_id=world.pat_id, token=world.admin_token)
        verdict = await until_invalid(verifier, world.pat_token)
        assert verdict.reason == "revoked" and verifier.evictions >= 1
        assert not (await verifier.verify("pat_not_a_token")).valid  # refusals are never kept
    finally:
        await verifier.close()


async def test_a_disabled_owner_or_tenant_evicts_every_answer_it_covers(client, instance):
    world = await make_tenant(client, "cache", login=True)
    verifier = await CachedVerifier.start(client, ttl=3600)
    try:
        for token in (world.key_token, world.access_token):
            assert (await verifier.verify(token)).valid
        await client.command("disable_user", user_id=world.user_id, token=world.admin_token)
        assert (await until_invalid(verifier, world.key_token)).reason == "disabled"
        assert (await until_invalid(verifier, world.access_token)).reason == "disabled"
        await client.command("enable_user", user_id=world.user_id, token=world.admin_token)
        assert (await verifier.verify(world.access_token)).valid  # refusals were not kept
        await client.command("revoke_session", session_id=world.session_id, token=world.admin_token)
        assert (await until_invalid(verifier, world.access_token)).reason == "revoked"
    finally:
        await verifier.close()


async def test_nothing_is_trusted_after_a_reconnect(client, instance):
    world = await make_tenant(client, "cache")
    verifier = await CachedVerifier.start(client, ttl=3600)
    try:
        await verifier.verify(world.pat_token)
        await verifier.verify(world.pat_token)
        assert verifier.hits == 1
        client.nc.stats["reconnects"] += 1  # as nats.py counts one: events may have gone by unheard
        await verifier.verify(world.pat_token)
        assert (verifier.hits, verifier.misses) == (1, 2)
    finally:
        await verifier.close()


async def test_a_recorded_use_evicts_nothing(fresh_store, nats_server):
    """PATUsed and KeyUsed change no answer: a cached PAT stays cached while its uses are
    recorded. The feed is in order, so once a revocation after them has evicted its answer,
    the verifier has heard the uses too."""
    backend, settings = fresh_store
    instance = await start_instance(dataclasses.replace(settings(f"cacheuse{backend}"), use_interval=0.05), backend)
    client = await AuthbusClient.connect(nats_server.url, instance.prefix, instance.root_token)
    verifier = await CachedVerifier.start(client, ttl=3600)
    try:
        world = await make_tenant(client, "cache")
        for token in (world.pat_token, world.key_token):
            assert (await verifier.verify(token)).valid
        assert await eventually(lambda: instance.node.model.credentials[uuid.UUID(world.pat_id)].used_ts is not None, 10.0)
        await client.command("revoke_key", key_id=world.key_id)
        assert (await until_invalid(verifier, world.key_token)).reason == "revoked"
        hits = verifier.hits
        assert (await verifier.verify(world.pat_token)).valid and verifier.hits == hits + 1
        assert verifier.evictions == 1  # the key's answer, not the PAT's
    finally:
        await verifier.close()
        await client.close()
        await instance.node.stop()
