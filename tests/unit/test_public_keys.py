"""Ed25519 public keys in the spellings clients send (wire.md §6.7): pure, no I/O."""

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authbus.domain.errors import InvalidRequest
from authbus.domain.public_keys import BASE58, LIBP2P, MULTICODEC, canonical


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def base32(raw: bytes) -> str:
    return "b" + base64.b32encode(raw).decode().rstrip("=").lower()


def base58(raw: bytes) -> str:
    number, digits = int.from_bytes(raw, "big"), ""
    while number:
        number, rest = divmod(number, 58)
        digits = BASE58[rest] + digits
    return "z" + "1" * (len(raw) - len(raw.lstrip(b"\0"))) + digits


keys = st.binary(min_size=32, max_size=32)


@given(keys)
def test_every_spelling_is_the_same_key(raw):
    expected = b64url(raw)
    spellings = [
        expected,
        base32(LIBP2P + raw),  # Textile's PublicKey.toString()
        base32(MULTICODEC + raw),
        base58(MULTICODEC + raw),
        base58(LIBP2P + raw),
        "did:key:" + base58(MULTICODEC + raw),
    ]
    assert {canonical(s) for s in spellings} == {expected}


def test_a_bare_key_in_base58_is_read_as_base64url_when_it_looks_like_it():
    """z + base58 of 32 bytes can be 43 characters of the canonical alphabet: read as the
    canonical form, never as a second key (so the bare-key base58 form is not accepted)."""
    assert canonical("z1x4sGxddk2HxPStEwGiw5xdXjJDQh1J1NPuFhirk9U") == "z1x4sGxddk2HxPStEwGiw5xdXjJDQh1J1NPuFhirk9U"


def test_a_known_did_key():
    # The did:key spec's first Ed25519 example.
    did = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
    raw = bytes.fromhex("2e6fcce36701dc791488e0d0b1745cc1e33a4c1c9fcc41c63bd343dbbe0970e6")
    assert canonical(did) == b64url(raw)


@pytest.mark.parametrize(
    "text",
    [
        "A" * 42,
        "A" * 44,
        "A" * 42 + "B",  # the unused bits set: a second spelling of a key
        "b" + "a" * 58 + "=",
        "bAAAQ",  # base32 is lower case in multibase
        "z0OIl",  # not in the base58 alphabet
        "z" + "2" * 10,  # too short for any form
        "did:key:" + base58(LIBP2P + b"\1" * 32),  # a DID names the multicodec key
        "did:key:b" + "a" * 56,
        base32(b"\1" * 32),  # multibase of the bare key: not one of the read forms
        "m" + "A" * 43,  # a multibase this does not read
        "z" + "2" * 200,
    ],
)
def test_what_is_not_a_key_is_refused_naming_the_field(text):
    with pytest.raises(InvalidRequest) as refused:
        canonical(text)
    assert refused.value.details["field"] == "public_key"
