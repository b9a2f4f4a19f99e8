"""Command fields as SuperMQ's clients send them (wire.md §7.9, §7.13): pure, no I/O."""

import hashlib
import uuid
from datetime import UTC, datetime

import msgspec
import pytest

from authbus.domain.commands import CreatePAT, RegisterUser, UpdateUser, request_digest
from authbus.domain.credentials import expiry
from authbus.domain.errors import InvalidRequest
from authbus.handlers.wire import decode

NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("lifetime", "seconds"), [("24h", 86400), ("720h", 720 * 3600), ("1h30m", 5400), ("90s", 90), (60, 60)])
def test_a_lifetime_is_seconds_or_a_duration(lifetime, seconds):
    assert (expiry("pat", lifetime, NOW) - NOW).total_seconds() == seconds


@pytest.mark.parametrize("lifetime", ["0h", "0h0m0s"])
def test_a_duration_of_nothing_is_refused(lifetime):
    with pytest.raises(InvalidRequest) as refused:
        expiry("pat", lifetime, NOW)
    assert refused.value.details["field"] == "expires_in"


@pytest.mark.parametrize("lifetime", ["24", "1d", "h", "1h 30m", "30m1h", "-1h", "1.5h", ""])
def test_what_is_not_a_duration_does_not_decode(lifetime):
    body = msgspec.json.encode({"name": "ci", "expires_in": lifetime})
    with pytest.raises(InvalidRequest) as refused:
        decode(body, CreatePAT)
    assert refused.value.details["field"] == "expires_in"


def test_create_pat_without_user_id_and_with_a_long_name_decodes():
    pat = decode(msgspec.json.encode({"name": "n" * 254}), CreatePAT)
    assert pat.user_id is None and len(pat.name) == 254
    with pytest.raises(InvalidRequest):
        decode(msgspec.json.encode({"name": "n" * 255}), CreatePAT)


def test_the_digest_of_a_create_pat_is_the_one_kept_in_the_log():
    """create_pat's fields are declared in another order since user_id became optional; a
    command_id repeated across that change must still find its first reply."""
    user_id = uuid.uuid4()
    command = CreatePAT(user_id=user_id, name="ci", command_id="c-1")
    before = f'{{"user_id":"{user_id}","name":"ci","description":"","expires_in":null,"scopes":[],"command_id":null}}'
    assert request_digest(command) == hashlib.sha256(before.encode()).hexdigest()


def test_personal_fields_stay_out_of_the_request_digest():
    """The digest outlives a deleted user's data key: no username or email may be found
    again in it by guessing."""
    user_id = uuid.uuid4()
    first = UpdateUser(user_id=user_id, username="ada", email="ada@example.com", metadata={"team": "a"}, command_id="c1")
    other = UpdateUser(user_id=user_id, username="bob", email="bob@example.com", metadata={"team": "b"}, command_id="c1")
    assert request_digest(first) == request_digest(other)
    assert request_digest(first) != request_digest(UpdateUser(user_id=uuid.uuid4(), username="ada", command_id="c1"))
    tenant = uuid.uuid4()
    assert request_digest(RegisterUser(tenant_id=tenant, username="ada")) == request_digest(
        RegisterUser(tenant_id=tenant, username="bob")
    )
