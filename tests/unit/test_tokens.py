"""Credential formats (DESIGN §4): pure, no I/O."""

import uuid

from hypothesis import given
from hypothesis import strategies as st

from authbus.domain import tokens

KINDS = sorted(tokens.PREFIXES)


@given(st.sampled_from(KINDS), st.uuids(), st.binary(min_size=32, max_size=32))
def test_mint_parse_round_trip(kind, credential_id, secret):
    token = tokens.mint(kind, credential_id, secret)
    parsed = tokens.parse(token)
    assert parsed is not None
    assert (parsed.kind, parsed.credential_id) == (kind, credential_id)
    assert token.startswith(tokens.PREFIXES[kind] + "_")
    assert tokens.secret_matches(parsed.secret, bytes.fromhex(tokens.hash_for_storage(token)))


@given(st.uuids(), st.binary(min_size=32, max_size=32), st.data())
def test_a_single_typo_is_rejected_without_a_lookup(credential_id, secret, data):
    token = tokens.mint("pat", credential_id, secret)
    index = data.draw(st.integers(min_value=4, max_value=len(token) - 1))
    replacement = data.draw(st.sampled_from("0aZ_-9"))
    typo = token[:index] + replacement + token[index + 1 :]
    if typo != token:
        assert tokens.parse(typo) is None


def test_layout_has_fixed_lengths_even_when_the_id_contains_underscores():
    # This id's base64url form contains "_", so splitting on "_" would be wrong.
    credential_id = uuid.UUID(bytes=b"\xff" * 16)
    token = tokens.mint("api_key", credential_id, b"\x00" * 32)
    assert "_" in token[4:26]
    assert len(token) == len("key_") + 22 + 1 + 43 + 1 + 6
    assert tokens.parse(token).credential_id == credential_id


@given(st.text(max_size=120))
def test_arbitrary_text_never_crashes_the_parser(text):
    assert tokens.parse(text) is None or isinstance(tokens.parse(text), tokens.ParsedToken)


def test_the_stored_hash_is_not_the_secret():
    token = tokens.mint("pat", uuid.uuid4(), bytes(range(32)))
    parsed = tokens.parse(token)
    stored = tokens.hash_for_storage(token)
    assert parsed.secret not in stored and len(stored) == 64
