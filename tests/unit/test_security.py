"""Security properties that are structural rather than behavioural: pure, no I/O."""

import hashlib
import hmac
import os
import uuid

from authbus.domain import tokens


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
