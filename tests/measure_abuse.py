"""Figures for docs/reliability.md's abuse rows, measured against a real instance (SQLite, a
nats-server of its own): a normal verify during a flood of far-future ``min_position``
verifies, a wrong password against an unknown user, a legitimate login during 100
concurrent unknown-user logins from another client, and a
``create_pat`` in one tenant during another tenant's 30 concurrent ``register_user`` with
passwords.  Not a test (a busy machine must not fail CI): run it, read the ratios.

    .venv/bin/python tests/measure_abuse.py
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from authbus.infra.client import AuthbusClient
from authbus.infra.nats.nats_server import NatsServer, free_port
from tests.conftest import make_settings, start_instance
from tests.helpers import make_org

FAR = b'{"token": "x", "min_position": 4611686018427387904}'


def ms(seconds: list[float], q: float) -> float:
    ordered = sorted(seconds)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def timed(call) -> float:
    started = time.perf_counter()
    with contextlib.suppress(Exception):  # a refused login is what the flood is made of
        await call
    return time.perf_counter() - started


async def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="authbus-abuse-"))
    server = NatsServer(tmp / "nats", port=free_port()).start()
    settings = make_settings(server, f"sqlite:///{tmp}/events.db", "m", tmp, secrets.token_hex(32))
    settings.consistency_wait = 1.0
    instance = await start_instance(settings, "sqlite")
    client = await AuthbusClient.connect(server.url, "m", instance.root_token)
    flooder = await AuthbusClient.connect(server.url, "m", instance.root_token)
    try:
        org = await make_org(client)

        async def verifies(n: int) -> list[float]:
            return [await timed(client.verify(org.user_key, min_position=0)) for _ in range(n)]

        quiet = await verifies(300)
        flooding, sent = True, 0

        in_flight: set[asyncio.Future] = set()  # kept until done, so none is collected under way

        async def flood() -> None:
            nonlocal sent
            while flooding:
                for _ in range(7):
                    in_flight.add(request := asyncio.ensure_future(flooder.nc.request("m.v1.verify", FAR, timeout=5)))
                    request.add_done_callback(in_flight.discard)
                    sent += 1
                await asyncio.sleep(0.01)

        started = time.monotonic()
        task = asyncio.ensure_future(flood())
        loud = await verifies(300)
        flooding = False
        await task
        rate = sent / (time.monotonic() - started)
        print(
            f"verify p50 {ms(quiet, 0.5):.2f} ms p99 {ms(quiet, 0.99):.2f} ms; during {rate:.0f}/s far-future flood "
            f"p50 {ms(loud, 0.5):.2f} ms p99 {ms(loud, 0.99):.2f} ms; the head read {instance.node.head.readings} times"
        )

        password = "the right password"
        await client.command("change_password", user_id=org.user_id, password=password)

        def login(username: str, secret: str, via: AuthbusClient = client):
            return via.call("login", {"tenant_id": org.tenant_id, "username": username, "password": secret}, token="")

        normal = statistics.median([await timed(login("user-1", password)) for _ in range(5)])
        wrong, unknown = [], []
        for _ in range(4):  # under the lockout: four of each, interleaved
            wrong.append(await timed(login("user-1", "a wrong password")))
            unknown.append(await timed(login(f"nobody-{uuid.uuid4().hex[:6]}", "a wrong password")))
        print(
            f"a wrong password {statistics.median(wrong) * 1000:.0f} ms, an unknown user "
            f"{statistics.median(unknown) * 1000:.0f} ms (medians of 4)"
        )
        await login("user-1", password)  # clears the failures
        ghosts = [timed(login(f"ghost-{i}-{uuid.uuid4().hex[:4]}", "guess", flooder)) for i in range(100)]
        during = (await asyncio.gather(*ghosts, timed(login("user-1", password))))[-1]
        print(f"login {normal * 1000:.0f} ms; during 100 unknown-user logins {during * 1000:.0f} ms ({during / normal:.2f}x)")

        other = await make_org(client)

        def create_pat():
            return client.command("create_pat", user_id=other.user_id, name="b", token=other.admin_key)

        normal = statistics.median([await timed(create_pat()) for _ in range(20)])
        registrations = [
            timed(
                client.command(
                    "register_user",
                    tenant_id=org.tenant_id,
                    username=f"n{i}-{uuid.uuid4().hex[:4]}",
                    password="a long password",
                    token=org.admin_key,
                )
            )
            for i in range(30)
        ]

        async def later() -> float:
            await asyncio.sleep(0.05)
            return await timed(create_pat())

        during = (await asyncio.gather(*registrations, later()))[-1]
        print(
            f"create_pat {normal * 1000:.1f} ms; during another tenant's 30 register_user {during * 1000:.1f} ms "
            f"({during / normal:.2f}x)"
        )
    finally:
        await client.close()
        await flooder.close()
        await instance.node.stop()
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
