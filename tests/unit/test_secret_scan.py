"""The suite-wide store scan (tests/secret_scan.py) finds what it is meant to find."""

import os
import uuid

import msgspec

from authbus.domain import tokens
from tests.secret_scan import Watcher


def test_the_watcher_finds_a_token_secret_a_jwt_signature_an_hs256_secret_and_a_password():
    watcher = Watcher()
    pat = tokens.mint("pat", uuid.uuid4(), os.urandom(32))
    jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0." + "s" * 86
    hs256 = "q" * 43
    watcher.look(
        msgspec.json.encode({"result": {"token": pat, "secret": hs256}, "access_token": jwt}), ("token", "secret", "access_token")
    )
    watcher.look(msgspec.json.encode({"password": "correct horse battery staple"}), ("password",), password=True)
    secret = tokens.parse(pat).secret
    stored = f'{{"secret_hash": "ab", "x": "{secret}", "sig": "{"s" * 86}", "k": "{hs256}", "p": "correct horse battery staple"}}'.encode()
    assert len(watcher.leaks(stored)) == 4
    assert watcher.leaks(b'{"secret_hash": "' + os.urandom(8).hex().encode() + b'"}') == []
    assert watcher.leaks(pat.replace(secret, "0" * 43).encode()) == []  # the token's id and checksum are not secret
