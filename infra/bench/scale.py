"""Scale-out, measured: instances of authbus on one PostgreSQL and one NATS, each a process of
its own, as `authbus serve` runs them.

* ``convergence``: commands one after another; for each, the time from its reply reaching
  the client until every instance has folded it into its read model.
* ``failover``: a verify load through the Python client while one instance is frozen and then
  killed with SIGKILL, so requests are surely in flight on it when it dies.  Two clients share
  the load: the client as shipped, which repeats a safe request once after ``repeat_after``,
  and one with repeats off, whose failed calls show what the repeat saves.

Each instance is ``python -m authbus.infra.bench.scale``: a Node exactly as `serve` starts it,
which also prints ``<position> <unix time>`` to stdout whenever its read model advances.
Instances and the bench share the machine's clock, so the times compare directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from authbus.infra.client import AuthbusClient, AuthbusError
from authbus.infra.settings import Settings

STOPPED_FOR = 0.05  # seconds an instance is frozen before it is killed: requests pile up on it
READY_SECONDS = 60.0


@dataclass
class Instance:
    """One instance process and the positions it has folded, with when."""

    process: asyncio.subprocess.Process
    stderr: Path  # what it logged, for when it does not start
    position: int = 0
    folded: list[tuple[int, float]] = field(default_factory=list)
    advanced: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            word, _, when = line.decode().partition(" ")
            if word == "ready":
                self.position = int(when)
                self.ready.set()
                continue
            self.position = int(word)
            self.folded.append((self.position, float(when)))
            self.advanced.set()

    async def folded_at(self, position: int, timeout: float = 10.0) -> float:
        """The unix time at which this instance's model first held ``position``."""
        deadline = time.monotonic() + timeout
        while self.position < position:
            self.advanced.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.process.returncode is not None:
                raise TimeoutError(f"an instance did not fold position {position} within {timeout} s")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.advanced.wait(), remaining)
        return self._first_time_at(position)

    def _first_time_at(self, position: int) -> float:
        for folded, when in self.folded:
            if folded >= position:
                return when
        return 0.0  # held from the start: already folded before it said ready

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()


def environment(settings: Settings) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AUTHBUS_")}
    return env | {
        "AUTHBUS_DATA_DIR": str(settings.data_dir),
        "AUTHBUS_DATABASE_URL": settings.database_url,
        "AUTHBUS_NATS_URL": settings.nats_url,
        "AUTHBUS_KEK": settings.kek or "",
        "AUTHBUS_SUBJECT_PREFIX": settings.subject_prefix,
        "AUTHBUS_SEAL_INTERVAL": "0",  # only the commands' own events move the log
        "AUTHBUS_SNAPSHOT_EVERY": "0",
        "AUTHBUS_LOG_LEVEL": "warning",
    }


@contextlib.asynccontextmanager
async def instances(settings: Settings, count: int):
    """``count`` instance processes of ``settings``' store, each with a data directory of its own."""
    started: list[Instance] = []
    readers: list[asyncio.Task[None]] = []
    try:
        for n in range(count):
            own = dataclasses.replace(settings, data_dir=Path(settings.data_dir) / f"instance-{n}")
            own.data_dir.mkdir(parents=True, exist_ok=True)
            with open(own.data_dir / "stderr.log", "wb") as log:  # noqa: ASYNC230  (creating a file: no wait)
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "authbus.infra.bench.scale",
                    env=environment(own),
                    stdout=asyncio.subprocess.PIPE,
                    stderr=log,
                )
            instance = Instance(process, own.data_dir / "stderr.log")
            started.append(instance)
            readers.append(asyncio.create_task(instance._read()))
        for instance in started:
            try:
                await asyncio.wait_for(instance.ready.wait(), READY_SECONDS)
            except TimeoutError:
                said = instance.stderr.read_text(errors="replace").strip().splitlines()[-5:]
                raise RuntimeError(f"an instance did not start in {READY_SECONDS:.0f} s: {' | '.join(said)}") from None
        yield started
    finally:
        for instance in started:
            if instance.process.returncode is None:
                instance.process.send_signal(signal.SIGTERM)
        for instance in started:
            try:
                await asyncio.wait_for(instance.process.wait(), 30)
            except TimeoutError:
                instance.kill()
        for reader in readers:
            reader.cancel()


async def convergence(client: AuthbusClient, running: list[Instance], user_id: str, commands: int) -> list[float]:
    """Milliseconds from each command's reply until every instance holds it (0: held already)."""
    lags: list[float] = []
    for i in range(commands):
        reply = await client.command("create_pat", user_id=user_id, name=f"converge-{i}")
        replied = time.time()
        position = reply["position"]
        folded = [await instance.folded_at(position) for instance in running]
        lags.append(max(0.0, (max(folded) - replied) * 1000))
    return lags


@dataclass
class Failover:
    calls: int = 0
    failed: int = 0
    repeated: int = 0
    plain_calls: int = 0  # through the client with repeats off
    plain_failed: int = 0
    first_error: str = ""  # of the shipped client's failed calls
    rps_before: float = 0.0  # completed calls a second, in the second before the kill
    rps_after: float = 0.0  # and in the second after it


async def failover(
    nats_url: str,
    prefix: str,
    tokens: list[str],
    running: list[Instance],
    *,
    seconds: float,
    workers: int,
    kill_after: float,
    repeat_after: float = 0.25,
) -> Failover:
    """Verify ``tokens`` with ``workers`` callers for ``seconds``; ``kill_after`` seconds in,
    freeze the last instance, then SIGKILL it."""
    shipped = await AuthbusClient.connect(nats_url, prefix, timeout=5.0, repeat_after=repeat_after, read_your_writes=False)
    plain = await AuthbusClient.connect(nats_url, prefix, timeout=2.0, repeat_after=None, read_your_writes=False)
    figures = Failover()
    done: list[float] = []
    started = time.monotonic()
    deadline = started + seconds

    async def call(client: AuthbusClient, index: int) -> None:
        n = index
        while time.monotonic() < deadline:
            n += 1
            try:
                verdict = await client.verify(tokens[n % len(tokens)])
                if not verdict.valid:
                    raise AuthbusError(f"not valid: {verdict.reason}")
                done.append(time.monotonic())
                ok = True
            except Exception as error:  # a failed call is what is counted here
                ok = False
                if client is shipped and not figures.first_error:
                    figures.first_error = f"{type(error).__name__}: {error}"
            if client is shipped:
                figures.calls += 1
                figures.failed += not ok
            else:
                figures.plain_calls += 1
                figures.plain_failed += not ok

    async def kill() -> float:
        await asyncio.sleep(kill_after)
        victim = running[-1]
        victim.process.send_signal(signal.SIGSTOP)
        await asyncio.sleep(STOPPED_FOR)
        victim.kill()
        return time.monotonic()

    try:
        killing = asyncio.create_task(kill())
        await asyncio.gather(*(call(shipped if i % 2 == 0 else plain, i) for i in range(workers)))
        killed = await killing
    finally:
        figures.repeated = shipped.repeated
        await shipped.close()
        await plain.close()
    figures.rps_before = sum(1 for t in done if killed - 1 <= t < killed)
    figures.rps_after = sum(1 for t in done if killed <= t < killed + 1)
    return figures


def _child() -> None:
    from authbus.infra.bootstrap import open_application
    from authbus.infra.node import Node
    from authbus.infra.observability import logs

    settings = Settings.load()
    logs.configure("text", settings.log_level)

    def folded(batch: list[tuple[int, Any]]) -> None:
        sys.stdout.write(f"{batch[-1][0]} {time.time()}\n")
        sys.stdout.flush()

    async def main() -> None:
        node = await Node(settings, open_application(settings)).start()
        node.on_fold(folded)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        sys.stdout.write(f"ready {node.model.position}\n")
        sys.stdout.flush()
        await stop.wait()
        await node.stop()

    asyncio.run(main())


if __name__ == "__main__":
    _child()
