"""What "holds" means (docs/wire.md §4.3), and that no credential authorizes more than its
owner (§5.1), as properties over generated scopes, subjects and requests."""

from __future__ import annotations

import itertools
from uuid import uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from authbus.domain import tokens
from authbus.domain.credentials import Key, PersonalAccessToken
from authbus.domain.permissions import HeldRole, Permissions, covers, subject_covers, subject_meet
from authbus.domain.role import Role
from authbus.domain.scopes import Scope
from authbus.domain.tenant import Tenant
from authbus.domain.user import User
from authbus.projections import queries
from tests.unit.world import META, World

TOKENS = ("a", "b", "c")
# Every concrete subject of up to 5 tokens over a, b, c: enough to tell patterns of up to
# 4 tokens apart (a ">" needs one token more than the pattern's length to show).
SUBJECTS = [".".join(t) for n in range(1, 6) for t in itertools.product(TOKENS, repeat=n)]


def matches(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    for index, token in enumerate(p):
        if token == ">":
            return index < len(s)
        if index >= len(s) or (token != "*" and token != s[index]):
            return False
    return len(p) == len(s)


patterns = st.lists(st.sampled_from(["a", "b", "*"]), min_size=1, max_size=4).flatmap(
    lambda tokens: st.sampled_from([".".join(tokens), ".".join([*tokens[:-1], ">"])])
)
scopes = st.sampled_from(["doc", "image", "subject"]).flatmap(
    lambda entity_type: st.builds(
        Scope,
        entity_type=st.just(entity_type),
        operation=st.sampled_from(["read", "delete", "list"]),
        entity_id=patterns if entity_type == "subject" else st.sampled_from(["1", "2", "*"]),
        domain=st.sampled_from([None, "docs", "wiki"]),
    )
)


@settings(max_examples=300)
@given(held=patterns, wanted=patterns)
def test_a_subject_pattern_covers_exactly_the_patterns_whose_subjects_it_matches(held, wanted):
    expected = all(matches(held, s) for s in SUBJECTS if matches(wanted, s))
    assert subject_covers(held, wanted) == expected


@settings(max_examples=300)
@given(a=patterns, b=patterns)
def test_the_meet_of_two_patterns_matches_exactly_what_both_match(a, b):
    meet = subject_meet(a, b)
    both = {s for s in SUBJECTS if matches(a, s) and matches(b, s)}
    assert ({s for s in SUBJECTS if matches(meet, s)} if meet is not None else set()) == both


@given(scope=scopes)
def test_every_scope_covers_itself(scope):
    assert covers(scope, scope)


@given(a=scopes, b=scopes, c=scopes)
def test_covering_is_transitive(a, b, c):
    if covers(a, b) and covers(b, c):
        assert covers(a, c)


@given(scope=scopes, entity_id=st.text(min_size=1, max_size=5), domain=st.sampled_from([None, "docs", "x"]))
def test_a_wildcard_id_covers_every_id_and_no_domain_covers_every_domain(scope, entity_id, domain):
    wildcard = Scope(scope.entity_type, scope.operation, "*", None)
    assert covers(wildcard, Scope(scope.entity_type, scope.operation, entity_id, domain))
    narrow = Scope(scope.entity_type, scope.operation, "1", "docs")
    assert not covers(narrow, Scope(scope.entity_type, scope.operation, "*", "docs"))  # one id is not all of them
    assert not covers(narrow, Scope(scope.entity_type, scope.operation, "1", None))  # one domain is not every domain


@given(held=st.lists(scopes, max_size=6), wanted=scopes)
def test_a_tenant_roles_holder_holds_what_one_of_its_scopes_covers(held, wanted):
    role = HeldRole("readers", {s.key: s for s in held})
    assert Permissions(frozenset({"user"}), (role,)).holds(wanted) == any(covers(h, wanted) for h in held)


@given(wanted=scopes)
def test_built_in_roles_hold_what_they_always_meant(wanted):
    assert Permissions(frozenset({"admin"})).holds(wanted) and Permissions(frozenset({"root"})).holds(wanted)
    assert Permissions(frozenset({"auditor"})).holds(wanted) == (wanted.operation in ("read", "list"))
    assert not Permissions(frozenset({"user"})).holds(wanted)
    admin_domain = Scope(wanted.entity_type, wanted.operation, wanted.entity_id, "authbus")
    assert Permissions(frozenset()).holds(admin_domain)  # authbus's own rules decide there


@given(held=patterns, wanted=patterns)
def test_subject_scopes_cover_by_pattern(held, wanted):
    scope = Scope("subject", "publish", held, None)
    role = HeldRole("bus", {scope.key: scope})
    as_pattern = {"*": ">"}  # a subject scope's id "*" is every subject
    expected = subject_covers(as_pattern.get(held, held), as_pattern.get(wanted, wanted))
    assert Permissions(frozenset(), (role,)).holds(Scope("subject", "publish", wanted, "nats")) == expected


# ---------------------------------------------------------------- at use: never more than the owner

plain_scopes = scopes.filter(lambda s: s.entity_type != "subject")
requests = st.tuples(
    st.sampled_from([None, "docs", "wiki"]),
    st.sampled_from(["doc", "image"]),
    st.sampled_from(["read", "delete", "list"]),
    st.sampled_from(["1", "2", "*"]),
)


def owner_world(role_scopes: list[Scope], pat_scopes: list[Scope], builtin: list[str]) -> tuple[World, str, str]:
    """A user holding ``builtin`` roles and a tenant role with ``role_scopes``; its PAT with
    ``pat_scopes`` (as minted before the role was narrowed, say) and its unscoped API key."""
    w = World()
    tenant = Tenant(name="t", **META)
    role = Role(id=uuid4(), tenant_id=tenant.id, name="r", description="", scopes=[s.to_dict() for s in role_scopes], **META)
    user = User(
        tenant_id=tenant.id,
        username="u",
        kind="user",
        roles=builtin,
        password_hash=None,
        custom_roles={str(role.id): "r"},
        **META,
    )
    w.add(tenant, role, user)
    made = []
    for cls, kind, extra in (
        (PersonalAccessToken, "pat", {"description": "", "scopes": [s.to_dict() for s in pat_scopes]}),
        (Key, "api_key", {"kind": "api_key", "scopes": None}),
    ):
        cid = uuid4()
        token = tokens.mint(kind, cid, bytes(32))
        w.add(
            cls(
                id=cid,
                user_id=user.id,
                tenant_id=tenant.id,
                name="c",
                secret_hash=tokens.hash_for_storage(token),
                expires_at=None,
                **extra,
                **META,
            )
        )
        made.append(token)
    return w, made[0], made[1]


@settings(max_examples=300)
@given(
    role_scopes=st.lists(plain_scopes, max_size=5),
    pat_scopes=st.lists(plain_scopes, max_size=5),
    builtin=st.sampled_from([["user"], ["auditor"], []]),
    request=requests,
)
def test_a_credential_never_authorizes_what_its_owner_may_not(role_scopes, pat_scopes, builtin, request):
    w, pat, owner = owner_world(role_scopes, pat_scopes, builtin)
    by_pat = queries.authorize(w.model, pat, w.now, w.keyring, *request)
    by_owner = queries.authorize(w.model, owner, w.now, w.keyring, *request)
    if by_pat.allowed:
        assert by_owner.allowed
        assert by_pat.matched_scope in pat_scopes
    # and exactly: the PAT's scope matches and the owner's permissions grant
    pat_grants = any(covers(s, Scope(request[1], request[2], request[3], request[0])) for s in pat_scopes)
    assert by_pat.allowed == (pat_grants and by_owner.allowed)
