"""Commands sent together: decided in turn, appended in one transaction, each refused alone
(infra/application.py, ``execute_together``), on both backends."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest

from authbus.domain.commands import AddScope, CreatePAT, CreateTenant, RegisterUser, RevokePAT
from authbus.domain.credentials import PersonalAccessToken
from authbus.domain.errors import Conflict, NotFound, Unavailable
from authbus.domain.policy import Actor
from authbus.domain.scopes import Scope
from authbus.infra.application import AuthbusApplication, Submitted
from authbus.infra.bootstrap import open_application
from authbus.infra.settings import Settings
from authbus.infra.store import StoreBusy, open_store
from authbus.infra.store_unit import PasswordWorkNeeded
from tests.conftest import BACKENDS
from tests.helpers import root_actor


class World:
    def __init__(self, app: AuthbusApplication, root: Actor, url: str) -> None:
        self.app = app
        self.url = url
        self.root = root
        tenant, _ = app.execute(CreateTenant(name=f"group-{secrets.token_hex(4)}"), root)
        self.tenant_id = UUID(tenant["tenant_id"])
        # An admin: a PAT may carry any scope of its tenant's
        registered = RegisterUser(tenant_id=self.tenant_id, username=f"u-{secrets.token_hex(4)}", roles=["admin"])
        self.user_id = UUID(app.execute(registered, root)[0]["user_id"])

    def together(self, *commands: Any) -> list[Any]:
        return self.app.execute_together([Submitted(command, self.root) for command in commands])

    def head(self) -> int:
        return self.app.recorder.max_notification_id() or 0

    def appended_since(self, position: int) -> int:
        """Events after ``position`` (on PostgreSQL a failed append leaves a gap in positions)."""
        return len(self.app.recorder.select_notifications(start=position + 1, limit=1_000))

    def pat(self, pat_id: str) -> PersonalAccessToken:
        return self.app.aggregate(UUID(pat_id))


@pytest.fixture(params=BACKENDS)
def world(request, databases, tmp_path) -> Iterator[World]:
    url = databases.new(request.param)
    app = open_application(Settings(database_url=url, kek=secrets.token_hex(32), data_dir=tmp_path))
    try:
        yield World(app, root_actor(app.bootstrap()), url)
    finally:
        app.close()


def test_commands_sent_together_are_appended_in_one_transaction(world: World) -> None:
    before = world.head()
    replies = world.together(*(CreatePAT(user_id=world.user_id, name=f"p{n}") for n in range(5)))
    assert all(isinstance(reply, tuple) for reply in replies)
    # One append: every reply names the same position, the group's last.
    assert {position for _, position in replies} == {world.head()}
    assert world.head() == before + 5
    assert len({result["token"] for result, _ in replies}) == 5
    assert all(world.pat(result["pat_id"]).user_id == world.user_id for result, _ in replies)


def test_a_refused_command_fails_alone_and_appends_nothing(world: World) -> None:
    before = world.head()
    first, refused, last = world.together(
        CreatePAT(user_id=world.user_id, name="a"),
        CreatePAT(user_id=uuid.uuid4(), name="b"),
        CreatePAT(user_id=world.user_id, name="c"),
    )
    assert isinstance(refused, NotFound) and refused.details == {"field": "user_id"}
    assert isinstance(first, tuple) and isinstance(last, tuple)
    assert world.head() == before + 2


def test_each_command_is_decided_on_what_the_ones_before_it_left(world: World) -> None:
    created, _ = world.app.execute(CreatePAT(user_id=world.user_id, name="scoped"), world.root)
    pat_id = UUID(created["pat_id"])
    read = Scope(entity_type="doc", operation="read", entity_id="*")
    write = Scope(entity_type="doc", operation="write", entity_id="*")
    taken = f"same-{secrets.token_hex(4)}"
    added, again, other, twice, same_name = world.together(
        AddScope(pat_id=pat_id, scope=read),
        AddScope(pat_id=pat_id, scope=read),  # the first one's scope is already there
        AddScope(pat_id=pat_id, scope=write),
        RegisterUser(tenant_id=world.tenant_id, username=taken),
        RegisterUser(tenant_id=world.tenant_id, username=taken),  # the name the one before took
    )
    assert isinstance(added, tuple) and isinstance(other, tuple) and isinstance(twice, tuple)
    assert isinstance(again, Conflict)
    assert isinstance(same_name, Conflict) and same_name.details == {"field": "username"}
    assert world.pat(created["pat_id"]).scopes == [read.to_dict(), write.to_dict()]


def test_a_command_id_sent_twice_in_one_group_gets_the_first_reply(world: World) -> None:
    command_id = secrets.token_hex(8)
    before = world.head()
    first, repeat = world.together(
        CreatePAT(user_id=world.user_id, name="once", command_id=command_id),
        CreatePAT(user_id=world.user_id, name="once", command_id=command_id),
    )
    assert isinstance(first, tuple) and isinstance(repeat, tuple)
    assert repeat[0] == first[0]  # the same token, derived again
    assert world.head() == before + 2  # one PAT and its record
    (replayed,) = world.together(CreatePAT(user_id=world.user_id, name="once", command_id=command_id))
    assert isinstance(replayed, tuple) and replayed[0] == first[0] and world.head() == before + 2


def test_a_command_that_needs_a_password_hashed_is_sent_back_for_it(world: World) -> None:
    before = world.head()
    asked, created = world.together(
        RegisterUser(tenant_id=world.tenant_id, username=f"pw-{secrets.token_hex(4)}", password="correct horse battery"),
        CreatePAT(user_id=world.user_id, name="beside"),
    )
    assert isinstance(asked, PasswordWorkNeeded) and isinstance(created, tuple)
    assert world.head() == before + 1


class RacedApplication(AuthbusApplication):
    """Another writer appends to an aggregate the group read, between its reads and its append."""

    name = AuthbusApplication.name
    race: Any = None

    def aggregates(self, ids: Any) -> dict[UUID, Any]:
        found = super().aggregates(ids)
        race, self.race = self.race, None
        if race is not None:
            race()
        return found


def test_a_group_that_loses_a_race_runs_each_command_alone(world: World, databases, tmp_path) -> None:
    created, _ = world.app.execute(CreatePAT(user_id=world.user_id, name="raced"), world.root)
    pat_id = UUID(created["pat_id"])
    raced = RacedApplication(world.app.keys, world.app.env)
    try:
        scopes = [Scope(entity_type="doc", operation=op, entity_id="*") for op in ("a", "b", "c")]
        raced.race = lambda: world.app.execute(AddScope(pat_id=pat_id, scope=scopes[0]), world.root)
        before = world.head()
        replies = raced.execute_together(
            [
                Submitted(AddScope(pat_id=pat_id, scope=scopes[1]), world.root),
                Submitted(CreatePAT(user_id=world.user_id, name="x"), world.root),
            ]
        )
        assert all(isinstance(reply, tuple) for reply in replies)
        assert world.pat(created["pat_id"]).scopes == [s.to_dict() for s in scopes[:2]]
        assert world.appended_since(before) == 3  # the other writer's scope, then each command's own: nothing twice
    finally:
        raced.close()


def test_the_application_writes_the_log_every_reader_reads(world: World) -> None:
    """eventsourcing names a PostgreSQL table after the application's class: the write path
    must keep the log's name, so the audit tools and a store from before still meet it."""
    reader = open_store(world.url)
    try:
        assert reader.recorder.max_notification_id() == world.head() > 0
    finally:
        reader.close()


class BusyApplication(AuthbusApplication):
    """The log's write lock waited out: the group's one append fails, nothing is stored."""

    name = AuthbusApplication.name

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        raise StoreBusy("a write waited out its bound")


def test_when_the_append_fails_no_answer_rests_on_what_was_not_stored(world: World) -> None:
    """Two revokes of one PAT in a group: the second is refused ("already revoked") on the
    first's change.  When the append then fails, that refusal is not an answer either: the
    PAT was never revoked, so both are told to send again."""
    created, _ = world.app.execute(CreatePAT(user_id=world.user_id, name="twice"), world.root)
    pat_id = UUID(created["pat_id"])
    busy = BusyApplication(world.app.keys, world.app.env)
    try:
        before = world.head()
        refused_first, revoke, again = busy.execute_together(
            [
                Submitted(CreatePAT(user_id=uuid.uuid4(), name="nobody"), world.root),  # decided on the store alone
                Submitted(RevokePAT(pat_id=pat_id), world.root),
                Submitted(RevokePAT(pat_id=pat_id), world.root),
            ]
        )
        assert isinstance(refused_first, NotFound)
        assert isinstance(revoke, Unavailable) and isinstance(again, Unavailable)
        assert world.head() == before and not world.pat(created["pat_id"]).revoked
    finally:
        busy.close()
