"""No token, of any shape or encoding, makes the read-model paths raise: verify (twice, so
the remembered-bearer path runs too), authorize, the acting principal of a command, the
redeemer of a key, and the NATS auth callout's grant.  A raise there is an ``internal``
reply, or a callout that answers nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authbus.projections import queries
from authbus.projections.bus_access import bus_grant
from tests.unit.world import make_world

WORLD = make_world(scopes=[{"domain": None, "entity_type": "doc", "operation": "read", "entity_id": "*"}])
REASONS = {None, "malformed", "unknown", "bad_signature", "expired", "revoked", "disabled"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
CLAIMS = ("exp", "iat", "nbf", "sub", "tnd", "sid", "jti", "per", "kid")


@st.composite
def hs256_tokens(draw: st.DrawFn) -> str:
    """Signed with the tenant's real HS256 key, so the claims themselves are examined."""
    claims = {name: draw(json_values) for name in draw(st.sets(st.sampled_from(CLAIMS)))}
    if draw(st.booleans()):
        claims["tnd"] = str(WORLD.ids["tenant"])
    header = {
        "alg": "HS256",
        "kid": str(WORLD.ids["hs256"]),
        **draw(st.dictionaries(st.text(max_size=5), json_values, max_size=2)),
    }
    body = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims, allow_nan=True).encode())}"
    key = WORLD.tokens["hs256_secret"].encode()
    return f"{body}.{b64(hmac.new(key, body.encode(), hashlib.sha256).digest())}"


@st.composite
def spoiled_tokens(draw: st.DrawFn) -> str:
    """A real token with a stretch replaced by arbitrary text (any code points)."""
    token = WORLD.tokens[draw(st.sampled_from(sorted(WORLD.tokens)))]
    start = draw(st.integers(0, len(token)))
    end = draw(st.integers(start, len(token)))
    return token[:start] + draw(st.text(max_size=12)) + token[end:]


tokens = st.one_of(
    st.text(max_size=120),
    spoiled_tokens(),
    hs256_tokens(),
    st.sampled_from(["pat_" + "A" * 22 + "_" + "0" * 43 + "_éééééé", "a.b.c", "..", "é.é.é"]),
    st.builds(
        lambda c: jwt.encode(c, WORLD.tokens["hs256_secret"], headers={"kid": str(WORLD.ids["hs256"])}),
        st.fixed_dictionaries(
            {
                "exp": st.just("1896212704"),
                "iat": st.just(1),
                "sub": st.just("x"),
                "tnd": st.just(str(WORLD.ids["tenant"])),
                "per": st.just({}),
            }
        ),
    ),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(token=tokens, operation=st.sampled_from(["read", "delete", "publish"]), domain=st.none() | st.text(max_size=5))
def test_no_token_makes_a_read_model_path_raise(token, operation, domain):
    model, now, keyring = WORLD.model, WORLD.now, WORLD.keyring
    for _ in range(2):  # the second time answers from the remembered bearers
        verdict = queries.verify(model, token, now, keyring)
        assert verdict.reason in REASONS
    decision = queries.authorize(model, token, now, keyring, domain, "doc", operation, "42")
    assert decision.allowed in (True, False)
    queries.actor_for(model, token, now, keyring)
    queries.redeemer_for(model, token)
    assert bus_grant(model, token, now, keyring) is not None


def test_a_non_ascii_tail_on_a_well_formed_token_is_malformed():
    token = "pat_" + "A" * 22 + "_" + "0" * 43 + "_éééééé"
    assert queries.verify(WORLD.model, token, WORLD.now, WORLD.keyring).reason == "malformed"


def test_a_string_exp_is_malformed_on_every_path():
    token = jwt.encode(
        {"exp": "1896212704", "iat": 1, "sub": "x", "tnd": str(WORLD.ids["tenant"]), "per": {}},
        WORLD.tokens["hs256_secret"],
        headers={"kid": str(WORLD.ids["hs256"])},
    )
    for _ in range(2):
        assert queries.verify(WORLD.model, token, WORLD.now, WORLD.keyring).reason == "malformed"


def test_every_credential_of_the_world_verifies():
    for kind in ("pat", "api_key", "recovery", "access_token"):
        assert queries.verify(WORLD.model, WORLD.tokens[kind], WORLD.now, WORLD.keyring).valid, kind
