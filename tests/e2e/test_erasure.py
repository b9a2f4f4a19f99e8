"""delete_user erases (issue 18): the user's personal data is sealed in the log under a key
of its own, and deleting the user destroys the key (crypto-shredding).  The stored log does
not change, so its chain still verifies; replay, as-of and a rebuilt read model show an
erased user; every credential of the user stops acting; its username is free.  Both stores."""

from __future__ import annotations

import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from authbus.domain.user import User, erased_username
from authbus.infra.client import AuthbusError
from authbus.projections.read_model import ReadModel
from tests.helpers import PASSWORD, b64url, make_org


async def refused(call, code: str, field: str | None = None) -> AuthbusError:
    with pytest.raises(AuthbusError) as error:
        await call
    assert (error.value.code, error.value.details.get("field")) == (code, field), error.value
    return error.value


def stored_rows(instance, originator_ids: set[uuid.UUID]) -> dict[tuple[str, int], bytes]:
    """The stored state of every event of these aggregates, as the log holds it."""
    rows = instance.node.store.recorder.select_notifications(start=1, limit=1_000_000)
    return {(str(r.originator_id), r.originator_version): r.state for r in rows if r.originator_id in originator_ids}


async def test_a_deleted_user_is_erased_from_the_log_and_acts_no_more(client, instance):
    org = await make_org(client, "erase")
    name = f"grace-{uuid.uuid4().hex[:8]}"
    user_id = uuid.UUID(
        (await client.command("register_user", tenant_id=org.tenant_id, username=name, password=PASSWORD))["result"]["user_id"]
    )
    profile = {"display_name": "Grace Hopper", "email": f"{name}@example.com", "metadata": {"ship": "USS Hopper"}}
    await client.command("update_user", user_id=str(user_id), **profile)
    device = Ed25519PrivateKey.generate()
    public_key = b64url(device.public_key().public_bytes_raw())
    await client.command("register_public_key", user_id=str(user_id), public_key=public_key)
    pat = (await client.command("create_pat", user_id=str(user_id), name="ci"))["result"]
    key = (await client.command("issue_key", user_id=str(user_id), kind="api_key", name="k"))["result"]
    pair = await client.login(org.tenant_id, name, PASSWORD)

    # Sealed from the start: no personal field is ever stored in plaintext.
    before = stored_rows(instance, {user_id})
    everything = b"".join(r.state for r in instance.node.store.recorder.select_notifications(start=1, limit=1_000_000))
    for personal in (name, "Grace Hopper", profile["email"], "USS Hopper"):
        assert personal.encode() not in everything, personal

    deleted = await client.command("delete_user", user_id=str(user_id), reason="asked to be forgotten", token=org.admin_key)
    assert instance.node.store.personal_keys.key(user_id) is None  # the key is gone

    # It acts no more.
    for token in (pat["token"], key["token"], pair.access_token):
        verdict = await client.verify(token, min_position=deleted["position"])
        assert (verdict.valid, verdict.reason) == (False, "revoked"), token[:4]
    await refused(client.login(org.tenant_id, name, PASSWORD), "unauthenticated", "password")
    await refused(client.refresh(pair.refresh_token), "unauthenticated", "refresh_token")
    challenge = await client.challenge(org.tenant_id, public_key)
    answer = {"challenge": challenge, "signature": b64url(device.sign(challenge.encode()))}
    await refused(client.call("challenge.answer", answer, token=""), "unauthenticated", "signature")
    await refused(client.command("update_user", user_id=str(user_id), display_name="x"), "not_found", "user_id")

    # Shown erased, its credentials revoked by the deletion.
    shown = (await client.admin("get_user", user_id=str(user_id)))["user"]
    assert (shown["username"], shown["deleted"], shown["disabled"], shown["display_name"], shown["email"]) == (
        erased_username(user_id),
        True,
        True,
        "",
        "",
    )
    gone = (await client.admin("get_pat", pat_id=pat["pat_id"]))["pat"]
    assert (gone["status"], gone["revoked_reason"]) == ("revoked", "user deleted")

    # The log is as it was (so its chain verifies); read again, it holds an erased user.
    assert {k: v for k, v in stored_rows(instance, {user_id}).items() if k in before} == before
    rebuilt = ReadModel()
    for position, event in instance.node.store.read_events(1, 1_000_000):
        rebuilt.apply(position, event)
        if isinstance(event, User.UserRegistered | User.UserUpdated) and event.originator_id == user_id:
            assert getattr(event, "username", erased_username(user_id)) == erased_username(user_id)
            assert getattr(event, "display_name", "") == "" and getattr(event, "metadata", {}) == {}
    assert rebuilt.principals[user_id].username == erased_username(user_id) and rebuilt.principals[user_id].deleted

    # As of before the deletion the PAT was valid, and its owner is shown erased.
    as_of = await client.admin("audit_as_of", at_position=deleted["position"] - 1, credential_id=pat["pat_id"])
    assert as_of["valid"] and as_of["principal"]["username"] == erased_username(user_id)

    # The username, and the key, are free for others.
    await client.command("register_user", tenant_id=org.tenant_id, username=name)
    other = (await client.command("register_user", tenant_id=org.tenant_id, username=f"{name}-2"))["result"]["user_id"]
    await client.command("register_public_key", user_id=other, public_key=public_key)


async def test_root_is_never_deleted_and_a_user_may_delete_itself(client, instance):
    org = await make_org(client, "erase-self")
    root_id = (await client.verify(instance.root_token)).principal.id
    await refused(client.command("delete_user", user_id=root_id), "forbidden", "user_id")
    await refused(client.command("delete_user", user_id=org.admin_id, token=org.user_key), "forbidden")
    await client.command("delete_user", user_id=org.user_id, token=org.user_key)
    assert not (await client.verify(org.user_key)).valid
