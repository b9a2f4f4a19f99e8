"""Inside a group of commands a refused decision leaves nothing behind, and each accepted
one is what the next decides on (infra/store_unit.py)."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.application import AggregateNotFoundError

from authbus.domain.errors import Conflict
from authbus.domain.registry import NameClaim
from authbus.domain.unit_of_work import Meta
from authbus.infra.crypto.keys import KeyWrap
from authbus.infra.store_unit import Group, StoreUnitOfWork

META = Meta(actor="test", correlation_id="c")


class Shelf:
    """Aggregates as a store hands them out: a fresh object on every read."""

    def __init__(self, *aggregates: Any) -> None:
        self.stored = {a.id: a for a in aggregates}
        self.reads = 0

    def aggregate(self, aggregate_id: UUID) -> Any:
        self.reads += 1
        if aggregate_id not in self.stored:
            raise AggregateNotFoundError(aggregate_id)
        return copy.deepcopy(self.stored[aggregate_id])

    def aggregates(self, ids: Iterable[UUID]) -> dict[UUID, Any]:
        return {i: self.aggregate(i) for i in ids if i in self.stored}


def claim() -> NameClaim:
    made = NameClaim(id=uuid4(), namespace="username", name="ann", owner_id=uuid4(), **META)
    made.collect_events()
    return made


def unit(shelf: Shelf, group: Group) -> StoreUnitOfWork:
    return StoreUnitOfWork(shelf, KeyWrap(bytes(32)), META, lambda n: bytes(32), group=group)


def test_a_refused_decision_leaves_the_group_as_it_read_the_store() -> None:
    stored = claim()
    shelf, group = Shelf(stored), Group()
    refused = unit(shelf, group)
    refused.prefetch([stored.id])
    refused.get(NameClaim, stored.id, "username").release(**META)  # changed, then the decision fails
    refused.refused()
    after = unit(shelf, group).get(NameClaim, stored.id, "username")
    assert after.owner_id == stored.owner_id and not after.pending_events and shelf.reads == 2


def released_by_an_accepted_decision(shelf: Shelf, group: Group, stored: NameClaim) -> NameClaim:
    accepted = unit(shelf, group)
    released = accepted.get(NameClaim, stored.id, "username")
    released.release(**META)
    accepted.add(released)
    accepted.accepted()
    return released


def test_the_next_decision_builds_on_an_accepted_one_and_cannot_spoil_it() -> None:
    stored = claim()
    shelf, group = Shelf(stored), Group()
    released = released_by_an_accepted_decision(shelf, group, stored)

    spoiler = unit(shelf, group)
    seen = spoiler.get(NameClaim, stored.id, "username")
    assert seen.owner_id is None and seen is not released  # what the one before left, as a copy
    seen.reclaim(uuid4(), **META)
    with pytest.raises(Conflict):  # claimed twice: the decision fails half-way
        seen.reclaim(uuid4(), **META)
    spoiler.refused()
    last = unit(shelf, group).get(NameClaim, stored.id, "username")
    assert last.owner_id is None and len(last.pending_events) == 1  # the accepted release alone
    assert unit(shelf, group).exists(stored.id) and not unit(shelf, group).exists(uuid4())


def test_a_decision_that_only_reads_what_the_group_changed_changes_nothing() -> None:
    stored = claim()
    shelf, group = Shelf(stored), Group()
    released = released_by_an_accepted_decision(shelf, group, stored)
    reader = unit(shelf, group)
    assert reader.get(NameClaim, stored.id, "username").owner_id is None
    assert not reader.pending  # nothing handed back: nothing of its own to append
    reader.accepted()
    assert group.changed[stored.id] is released
