"""Security properties that are structural rather than behavioural: pure, no I/O."""

import hashlib
import hmac
import os
import uuid

from authbus.domain import tokens
from authbus.domain.errors import AuthbusError, Conflict, from_reply


def test_a_presented_secret_is_compared_in_constant_time(monkeypatch):
    """`==` on a digest would stop at the first differing byte and time would tell how many
    matched; every secret comparison goes through hmac.compare_digest."""
    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(tokens.hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    token = tokens.mint("pat", uuid.uuid4(), os.urandom(32))
    stored = hashlib.sha256(tokens.parse(token).secret.encode()).digest()
    wrong = tokens.mint("pat", uuid.uuid4(), os.urandom(32))
    right_secret, wrong_secret = tokens.parse(token).secret, tokens.parse(wrong).secret  # (checksums compare too)
    compared.clear()
    assert tokens.secret_matches(right_secret, stored) is True
    assert tokens.secret_matches(wrong_secret, stored) is False
    assert [(len(a), b) for a, b in compared] == [(32, stored), (32, stored)]


def test_an_error_reply_is_the_servers_own_error_class_and_an_unknown_code_keeps_its_name():
    known = from_reply("conflict", "taken", {"field": "username"}, 7)
    assert isinstance(known, Conflict) and known.details == {"field": "username"} and known.position == 7
    later = from_reply("quota_exceeded", "too many", {}, None)
    assert type(later) is AuthbusError and later.code == "quota_exceeded" and later.message == "too many"
