"""Sealing and challenges: the KEK-keyed parts, without a server."""

import base64
import os
import stat
import uuid

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from authbus.infra.challenges import Challenges
from authbus.infra.crypto.kek import KEKError, derive, load_kek, write_private
from authbus.infra.crypto.keys import KeyWrap, generate


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_wrapped_key_unwraps_only_under_its_own_kid_and_kek():
    wrap = KeyWrap(derive(os.urandom(32), b"seal"))
    generated = generate("EdDSA", "kid-1", wrap)
    assert b"PRIVATE KEY" in wrap.unwrap("kid-1", generated.sealed_private)
    assert "d" not in generated.public_jwk and generated.public_jwk["kid"] == "kid-1"
    with pytest.raises(InvalidTag):
        wrap.unwrap("kid-2", generated.sealed_private)  # moved onto another key's record
    with pytest.raises(InvalidTag):
        KeyWrap(derive(os.urandom(32), b"seal")).unwrap("kid-1", generated.sealed_private)  # wrong KEK


def test_a_missing_or_wrong_kek_is_a_clear_error(tmp_path):
    with pytest.raises(KEKError, match="no KEK"):
        load_kek(None, tmp_path / "absent")
    with pytest.raises(KEKError, match="64 hex"):
        load_kek("abcd", None)
    (tmp_path / "bad").write_text("not hex")
    with pytest.raises(KEKError, match="hex"):
        load_kek(None, tmp_path / "bad")
    created = load_kek(None, tmp_path / "new", create=True)
    assert len(created) == 32 and load_kek(None, tmp_path / "new") == created


def test_a_private_file_is_its_owners_alone_even_when_it_replaces_a_looser_one(tmp_path):
    loose = tmp_path / "deep" / "token"
    loose.parent.mkdir()
    loose.write_text("old")
    loose.chmod(0o644)
    write_private(loose, "secret\n")
    assert loose.read_text() == "secret\n" and stat.S_IMODE(loose.stat().st_mode) == 0o600
    write_private(tmp_path / "made" / "seed", "seed")  # its directory is made
    assert stat.S_IMODE((tmp_path / "made" / "seed").stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_private(loose, "other", new=True)
    assert loose.read_text() == "secret\n"


@pytest.fixture
def device():
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return key, b64(raw)


def test_a_challenge_answer_is_checked_for_mac_signature_and_expiry(device):
    key, public_key = device
    challenges = Challenges(os.urandom(32))
    tenant = uuid.uuid4()
    challenge, expires = challenges.issue(tenant, public_key, now=1000.0)
    signature = b64(key.sign(challenge.encode()))
    answered = challenges.answer(challenge, signature, now=1059.0)
    assert answered is not None and (answered.tenant_id, answered.public_key) == (tenant, public_key)
    assert challenges.answer(challenge, signature, now=float(expires)) is None  # 60 s, then never
    other = b64(Ed25519PrivateKey.generate().sign(challenge.encode()))
    assert challenges.answer(challenge, other, now=1001.0) is None
    forged = challenge.replace(challenge[5], "A" if challenge[5] != "A" else "B", 1)
    assert challenges.answer(forged, b64(key.sign(forged.encode())), now=1001.0) is None
    assert Challenges(os.urandom(32)).answer(challenge, signature, now=1001.0) is None  # another deployment's
    assert challenges.answer("garbage", "garbage", now=1001.0) is None
