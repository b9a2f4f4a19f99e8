"""What a connection admitted by the auth callout may use (docs/wire.md §6.9)."""

from __future__ import annotations

import time
from uuid import uuid4

import jwt
from hypothesis import given, settings
from hypothesis import strategies as st

from authbus.domain.signing import SigningKey
from authbus.handlers.service import subjects
from authbus.infra.nats.callout_config import bus_layout
from authbus.projections.bus_access import bus_grant, reads_only_own_feed
from authbus.projections.inboxes import INBOX_BITS, others_inboxes, private_inbox
from tests.unit.test_permissions import matches
from tests.unit.test_verify_cache import HS256_SECRET, META, Keys, World


def test_the_client_accounts_deny_list_covers_every_endpoint_and_no_feed_subject():
    """A client never listens to authbus's requests crossing its account, and may read the feed."""
    layout = bus_layout("auth")
    for subject in subjects("auth").values():
        assert any(matches(pattern, subject) for pattern in layout.requests), subject
    for feed in ("auth.v1.events.t.pat.PATRevoked", "auth.v1.events.>", "auth.v1.events.*.*.*"):
        assert not any(matches(pattern, feed) for pattern in layout.requests), feed


@settings(max_examples=200)
@given(
    mine=st.text(min_size=1, max_size=30),
    theirs=st.text(min_size=1, max_size=30),
    tail=st.text(alphabet="abcXYZ019", min_size=1, max_size=8),
)
def test_every_private_inbox_but_its_own_is_denied_to_a_connection(mine, theirs, tail):
    own, other = private_inbox(mine), private_inbox(theirs)
    assert len(own.split(".")) == INBOX_BITS + 1
    denied = others_inboxes(own)
    assert not any(matches(p, f"{own}.{tail}") for p in denied)  # its own replies reach it
    if other != own:
        assert any(matches(p, f"{other}.{tail}") for p in denied)  # nobody else's do


def test_a_connection_reads_the_feed_only_where_it_stays_in_its_own_tenants_part():
    layout = bus_layout("auth")
    own = "auth.v1.events.t1.>"
    assert reads_only_own_feed([own, "orders.>"], layout, "t1")
    assert reads_only_own_feed(["auth.v1.events.t1.pat.*", "*.v1.events.t1.>"], layout, "t1")
    for reaching in (">", "auth.>", "auth.v1.events.>", "auth.v1.events.*.pat.>", "auth.v1.*.t2.>", "auth.v1.events.t2.>"):
        assert not reads_only_own_feed([own, reaching], layout, "t1"), reaching


def test_a_tenant_token_gets_no_subjects_whatever_its_claims():
    """austack's scopes can name subject:publish; a tenant token has no owner to bound it
    and nothing closes its connection when its key goes, so it is refused at the callout."""
    world = World()
    key = SigningKey(id=uuid4(), tenant_id=world.tenant.id, alg="HS256", public_jwk=None, sealed_private="sealed", **META)
    world.fold(key)
    claims = {"tnd": str(world.tenant.id), "scopes": {"subject": {"actions": ["publish", "subscribe"]}}}
    token = jwt.encode(claims, HS256_SECRET, algorithm="HS256", headers={"kid": key.kid})
    assert world.verify(token) is None  # a valid token, for verify and authorize
    assert bus_grant(world.model, token, time.time(), Keys()) == "no_matching_scope"
