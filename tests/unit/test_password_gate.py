"""The argon2 gate's order of service (infra/crypto/password_gate.py), with a hasher that records
when each piece of work starts instead of running argon2."""

from __future__ import annotations

import asyncio
import time

import pytest

from authbus.domain.errors import RateLimited
from authbus.infra.crypto.password_gate import WAITING_PER_USERNAME, PasswordGate


class Recorder:
    """Stands in for infra.crypto.kek.Passwords: each call notes its password and takes 20 ms."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def hash(self, password: str) -> str:
        self.started.append(password)
        time.sleep(0.02)
        return f"hashed:{password}"

    def matches(self, password: str, password_hash: str) -> bool:
        self.started.append(password)
        time.sleep(0.02)
        return password_hash == f"hashed:{password}"


async def test_callers_take_turns_whatever_one_of_them_floods():
    passwords = Recorder()
    gate = PasswordGate(passwords, workers=1)  # type: ignore[arg-type]
    flood = [gate.hash("flooder", f"f{i}") for i in range(5)]
    other = gate.hash("other", "o")
    await asyncio.gather(*flood, other)
    assert passwords.started.index("o") <= 1  # served next, not after the flood
    assert gate.most_running == 1
    gate.close()


async def test_a_decoy_holds_a_worker_as_long_as_a_check_takes():
    """So whatever follows a login waits the same whether its username exists or not."""
    passwords = Recorder()
    gate = PasswordGate(passwords, workers=1)  # type: ignore[arg-type]
    gate.seconds = 0.2
    started = time.monotonic()
    decoy = asyncio.ensure_future(gate.decoy("a"))
    await asyncio.sleep(0)
    assert gate.running == 1 and not passwords.started
    await gate.matches("b", "x", "hashed:x")  # another caller's check waits for the worker
    assert time.monotonic() - started >= 0.2 and await decoy is False
    assert gate.done == 1  # the decoy ran nothing
    gate.close()


async def test_too_many_logins_for_one_username_at_once_are_refused():
    gate = PasswordGate(Recorder(), workers=1)  # type: ignore[arg-type]
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.exclusive(("t", "alice")):
            await release.wait()

    holders = [asyncio.ensure_future(hold()) for _ in range(WAITING_PER_USERNAME + 1)]
    await asyncio.sleep(0)
    with pytest.raises(RateLimited):
        async with gate.exclusive(("t", "alice")):
            pass
    async with gate.exclusive(("t", "bob")):  # another username is not held up
        pass
    release.set()
    await asyncio.gather(*holders)
    assert not gate._locks
    gate.close()
