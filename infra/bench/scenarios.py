"""``authbus bench``: what verification costs, as ratios against baselines measured in the same run.

Absolute figures on a shared machine say little; the ratio to a no-op responder written
with the same client library (``echo``) says how much of the stack's limit authbus keeps.
Load comes from separate processes (``bench.load``) so clients never share the server's
interpreter.  See docs/performance.md for the method and the figures.
"""

from __future__ import annotations

import asyncio
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import msgspec
import nats

from authbus.infra.bench import offline as bench_offline
from authbus.infra.bench import scale as bench_scale
from authbus.infra.bench.load import LoadResult, LoadSpec
from authbus.infra.bench.world import Peer, World, seed_world, start_echo
from authbus.infra.bootstrap import open_application
from authbus.infra.client import AuthbusClient
from authbus.infra.nats.server import NatsServer, free_port, nats_server_binary
from authbus.infra.node import Node
from authbus.infra.settings import Settings
from authbus.infra.store import open_store, with_database

LOAD = (
    "echo",
    "verify_pat",
    "verify_cached",
    "verify_api_key",
    "verify_jwt_eddsa",
    "verify_jwt_hs256",
    "authorize_1_scope",
    "authorize_1000_scopes",
    "peer_postgres",
    "create_pat_postgres",
    "create_pat_sqlite",
)
SCALE = ("convergence_postgres", "failover_postgres")  # instances in processes of their own: infra/bench/scale.py
OFFLINE = ("fold", "fold_from_store", "memory_per_credential", "cold_start", "cold_start_no_snapshot", "memory_after_restart")
SCENARIOS = LOAD + SCALE + OFFLINE
POSTGRES = ("peer_postgres", "create_pat_postgres", *SCALE)
VERIFY = tuple(name for name in LOAD if name.startswith(("verify_", "authorize_")))  # answered from the read model
SWEEP = (1, 4, 16, 64, 128, 256)  # concurrencies of the latency plot
SWEPT = ("echo", "verify_pat", "peer_postgres")


@dataclass
class BenchOptions:
    quick: bool = False
    scenarios: tuple[str, ...] = SCENARIOS
    requests: int | None = None  # per load scenario
    concurrency: int = 64
    clients: int = 1  # load processes, sharing the concurrency
    rounds: int = 3  # each load scenario runs this often; the best round counts
    credentials: int | None = None  # in the cold-start store
    database_url: str | None = None  # a PostgreSQL to create a scratch database in
    plot: Path | None = None
    progress: Callable[[str], None] = lambda _: None

    @property
    def load_requests(self) -> int:
        return self.requests or (5_000 if self.quick else 20_000)

    @property
    def command_requests(self) -> int:
        return max(1, min(self.load_requests, 1_000 if self.quick else 3_000))

    @property
    def convergence_commands(self) -> int:
        return 200 if self.quick else 1_000

    @property
    def cold_credentials(self) -> int:
        return self.credentials or (100_000 if self.quick else 1_000_000)


@dataclass
class Result:
    name: str
    requests: int | None = None
    concurrency: int | None = None
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    ratio_rps: float | None = None
    ratio_p99: float | None = None
    value: float | None = None
    unit: str | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        keys = ("name", "requests", "concurrency", "rps", "p50_ms", "p99_ms", "ratio_rps", "ratio_p99", "value", "unit", "note")
        out = {k: getattr(self, k) for k in keys}
        return out | self.extra


def percentile(sorted_values: list[int], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index] / 1000.0


class ScenarioFailed(RuntimeError):
    pass


async def drive(name: str, spec: LoadSpec, clients: int) -> Result:
    """Run one load spec split over ``clients`` processes and merge what they measured."""
    share = max(1, spec.concurrency // clients)
    specs = [
        msgspec.structs.replace(spec, requests=spec.requests // clients, concurrency=share, warmup=spec.warmup // clients)
        for _ in range(clients)
    ]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "authbus.infra.bench.load",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in specs
    ]
    outputs = await asyncio.gather(*(p.communicate(msgspec.json.encode(s)) for p, s in zip(procs, specs, strict=False)))
    results: list[LoadResult] = []
    for proc, (out, err) in zip(procs, outputs, strict=False):
        if proc.returncode != 0:
            raise ScenarioFailed(f"{name}: load process failed: {err.decode(errors='replace').strip()[-500:]}")
        results.append(msgspec.json.decode(out, type=LoadResult))
    errors = sum(r.errors for r in results)
    if errors:
        first = next(r.first_error for r in results if r.first_error)
        raise ScenarioFailed(f"{name}: {errors} of {spec.requests} requests failed; first: {first}")
    latencies = sorted(lat for r in results for lat in r.latencies_us)
    elapsed = max(r.finished for r in results) - min(r.started for r in results)
    return Result(
        name,
        requests=len(latencies),
        concurrency=share * clients,
        rps=len(latencies) / elapsed,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
    )


class _Postgres:
    """Scratch databases for the PostgreSQL scenarios, dropped afterwards: in the server at
    ``--database-url`` (AUTHBUS_BENCH_DATABASE_URL) or in a private one from pgserver."""

    def __init__(self, base_url: str | None, tmp: Path) -> None:
        self.base_url = base_url
        self.tmp = tmp
        self.names: list[str] = []
        self._server: Any = None

    def start(self) -> str:
        if self.base_url is None:
            try:
                import pgserver
            except ImportError:
                raise ScenarioFailed(
                    "the PostgreSQL scenarios need a server: pass --database-url or pip install 'authbus[bench]'"
                ) from None
            self._server = pgserver.get_server(self.tmp / "pg", cleanup_mode="stop")
            self.base_url = self._server.get_uri()
        return self.database()

    def database(self) -> str:
        """The URL of a new, empty database."""
        import psycopg

        assert self.base_url is not None
        name = f"authbus_bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.base_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return with_database(self.base_url, name)

    def stop(self) -> None:
        import psycopg

        if self.base_url is not None:
            with psycopg.connect(self.base_url, autocommit=True) as conn:
                for name in self.names:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if self._server is not None:
            self._server.cleanup()


def _settings(tmp: Path, name: str, nats_url: str, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp / name, nats_url=nats_url, database_url=database_url, subject_prefix=name, kek=secrets.token_hex(32)
    )


async def _node(stack: AsyncExitStack, settings: Settings) -> tuple[Node, AuthbusClient]:
    app = open_application(settings)
    root = app.bootstrap()["token"]
    node = await Node(settings, app).start()
    stack.push_async_callback(node.stop)
    client = await AuthbusClient.connect(settings.nats_url, prefix=settings.subject_prefix, token=root)
    stack.push_async_callback(client.close)
    return node, client


class LoadBench:
    def __init__(self, options: BenchOptions, tmp: Path) -> None:
        self.options = options
        self.tmp = tmp
        self.results: list[Result] = []
        self.sweep: dict[str, list[dict[str, float]]] = {}

    def spec(
        self,
        subject: str,
        payloads: list[bytes],
        expect: bytes,
        requests: int | None = None,
        concurrency: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> LoadSpec:
        requests = requests or self.options.load_requests
        return LoadSpec(
            nats_url=self.nats_url,
            subject=subject,
            payloads=payloads,
            requests=requests,
            concurrency=concurrency or self.options.concurrency,
            warmup=max(200, requests // 10),
            headers=headers,
            expect=expect,
        )

    async def measure(self, name: str, spec: LoadSpec) -> Result:
        """The best of several rounds: anything else running on the machine only ever slows
        a round down, so the fastest is the closest to what the code can do."""
        rounds = self.options.rounds
        self.options.progress(f"{name}: {rounds} × {spec.requests} requests, {spec.concurrency} in flight")
        tried = [await drive(name, spec, self.options.clients) for _ in range(rounds)]
        best = max(tried, key=lambda r: r.rps or 0)
        best.note = f"best of {rounds}: rps {', '.join(f'{r.rps:,.0f}' for r in tried)}" if rounds > 1 else ""
        self.results.append(best)
        return best

    async def run(self, server: NatsServer) -> None:
        self.nats_url = server.url
        wanted = self.options.scenarios
        async with AsyncExitStack() as stack:
            nc = await nats.connect(server.url, name="authbus-bench")
            stack.push_async_callback(nc.close)
            specs: dict[str, LoadSpec] = {}
            await start_echo(nc, "bench.echo")
            # echo gets requests the size of verify_pat's: a PAT is as long as this one
            dummy = "pat_" + "A" * 22 + "_" + "0" * 43 + "_" + "0" * 6
            specs["echo"] = self.spec("bench.echo", World.verify_payloads([dummy]), b'"ok"')
            if set(wanted) & set(VERIFY) or self.options.plot:
                _, client = await _node(stack, _settings(self.tmp, "bench", server.url, f"sqlite:///{self.tmp / 'bench.db'}"))
                self.options.progress("seeding a tenant with PATs, API keys, 1,000 scopes and tokens")
                specs.update(self._verify_specs(await seed_world(client)))
            if any(name in wanted for name in POSTGRES):
                postgres = _Postgres(self.options.database_url, self.tmp)
                database_url = await asyncio.to_thread(postgres.start)
                stack.callback(postgres.stop)
                if "peer_postgres" in wanted or self.options.plot:
                    peer = Peer(database_url)
                    stack.push_async_callback(peer.close)
                    await peer.start(nc, "bench.peer.verify")
                    specs["peer_postgres"] = self.spec("bench.peer.verify", World.verify_payloads(peer.tokens), b'"valid":true')
                if "create_pat_postgres" in wanted:
                    specs["create_pat_postgres"] = await self._create_pat_spec(stack, server, "benchpg", database_url)
            if "create_pat_sqlite" in wanted:
                sqlite_url = f"sqlite:///{self.tmp / 'benchsq.db'}"
                specs["create_pat_sqlite"] = await self._create_pat_spec(stack, server, "benchsq", sqlite_url)
            for name in LOAD:
                if name in wanted:
                    await self.measure(name, specs[name])
            if set(wanted) & set(SCALE):
                await self._scale_out(server, await asyncio.to_thread(postgres.database))
            if self.options.plot:
                await self._sweep(specs)

    def _verify_specs(self, world: World) -> dict[str, LoadSpec]:
        valid = b'"valid":true'
        allowed = b'"allowed":true'
        return {
            "verify_pat": self.spec("bench.v1.verify", world.verify_payloads(world.pats), valid),
            "verify_cached": msgspec.structs.replace(
                self.spec("bench", [t.encode() for t in world.pats], valid), cached_verify=True
            ),
            "verify_api_key": self.spec("bench.v1.verify", world.verify_payloads(world.api_keys), valid),
            "verify_jwt_eddsa": self.spec("bench.v1.verify", world.verify_payloads([world.access_token]), valid),
            "verify_jwt_hs256": self.spec("bench.v1.verify", world.verify_payloads([world.tenant_token]), valid),
            "authorize_1_scope": self.spec(
                "bench.v1.authorize", world.authorize_payloads(world.one_scope_pat, mixed=False), allowed
            ),
            "authorize_1000_scopes": self.spec(
                "bench.v1.authorize", world.authorize_payloads(world.many_scopes_pat, mixed=True), allowed
            ),
        }

    async def _create_pat_spec(self, stack: AsyncExitStack, server: NatsServer, prefix: str, database_url: str) -> LoadSpec:
        """create_pat end to end on one store: decode, authorize, append, fold, reply."""
        _, client = await _node(stack, _settings(self.tmp, prefix, server.url, database_url))
        tenant = (await client.command("create_tenant", name=f"{prefix}-tenant"))["result"]["tenant_id"]
        admin = (await client.command("register_user", tenant_id=tenant, username="admin", roles=["admin"]))["result"]["user_id"]
        key = (await client.command("issue_key", user_id=admin, kind="api_key", name="bench"))["result"]["token"]
        scope = {"domain": None, "entity_type": "document", "operation": "read", "entity_id": "*"}
        await client.command("create_role", tenant_id=tenant, name="reader", scopes=[scope], token=key)
        alice = await client.command("register_user", tenant_id=tenant, username="alice", roles=["reader"], token=key)
        user = alice["result"]["user_id"]
        payloads = [msgspec.json.encode({"user_id": user, "name": f"pat-{i}", "scopes": [scope]}) for i in range(1000)]
        return self.spec(
            f"{prefix}.v1.cmd.create_pat",
            payloads,
            b'"token"',
            requests=self.options.command_requests,
            headers={"Authorization": f"Bearer {key}"},
        )

    async def _scale_out(self, server: NatsServer, database_url: str) -> None:
        """Instances as `serve` runs them, each in its own process, on one PostgreSQL."""
        prefix = "benchscale"
        settings = _settings(self.tmp, prefix, server.url, database_url)
        app = open_application(settings)
        root = app.bootstrap()["token"]
        app.close()
        client = await AuthbusClient.connect(server.url, prefix, root)
        try:
            if "convergence_postgres" in self.options.scenarios:
                await self._convergence(client, settings)
            if "failover_postgres" in self.options.scenarios:
                await self._failover(client, settings)
        finally:
            await client.close()

    async def _convergence(self, client: AuthbusClient, settings: Settings) -> None:
        commands = self.options.convergence_commands
        self.options.progress(f"convergence_postgres: {commands} commands, 2 instances")
        async with bench_scale.instances(settings, 2) as running:
            user = await _user_of_a_new_tenant(client, "converge")
            lags = sorted(round(lag * 1000) for lag in await bench_scale.convergence(client, running, user, commands))
        self.results.append(
            Result(
                "convergence_postgres",
                requests=len(lags),
                p50_ms=percentile(lags, 0.50),
                p99_ms=percentile(lags, 0.99),
                note="2 instances: from a command's reply until both have folded it (LISTEN/NOTIFY)",
            )
        )

    async def _failover(self, client: AuthbusClient, settings: Settings) -> None:
        seconds = 4.0 if self.options.quick else 10.0
        workers = self.options.concurrency
        self.options.progress(f"failover_postgres: {workers} callers for {seconds:.0f} s, 3 instances, one killed")
        async with bench_scale.instances(settings, 3) as running:
            user = await _user_of_a_new_tenant(client, "failover")
            tokens = [(await client.command("create_pat", user_id=user, name=f"p{i}"))["result"]["token"] for i in range(8)]
            for instance in running:
                await instance.folded_at(client.position)
            f = await bench_scale.failover(
                settings.nats_url,
                settings.subject_prefix,
                tokens,
                running,
                seconds=seconds,
                workers=workers,
                kill_after=seconds / 3,
            )
        self.results.append(
            Result(
                "failover_postgres",
                requests=f.calls,
                concurrency=workers,
                value=f.failed,
                unit="failed calls",
                note=(
                    f"3 instances, one frozen then SIGKILLed: {f.failed} of {f.calls:,} calls failed through the client "
                    f"({f.repeated} repeated); with repeats off {f.plain_failed} of {f.plain_calls:,}; "
                    f"{f.rps_before:,.0f} calls/s in the second before the kill, {f.rps_after:,.0f} in the second after"
                ),
                extra={
                    "repeated": f.repeated,
                    "plain_calls": f.plain_calls,
                    "plain_failed": f.plain_failed,
                    "rps_before_kill": f.rps_before,
                    "rps_after_kill": f.rps_after,
                },
            )
        )

    async def _sweep(self, specs: dict[str, LoadSpec]) -> None:
        for name in SWEPT:
            if name not in specs:
                continue
            for concurrency in SWEEP:
                requests = max(concurrency * 20, self.options.load_requests // 2)
                spec = msgspec.structs.replace(
                    specs[name], concurrency=concurrency, requests=requests, warmup=min(1000, requests // 10)
                )
                self.options.progress(f"sweep {name} at {concurrency} in flight")
                point = await drive(name, spec, 1)
                self.sweep.setdefault(name, []).append(
                    {"concurrency": concurrency, "rps": point.rps or 0, "p50_ms": point.p50_ms or 0, "p99_ms": point.p99_ms or 0}
                )


async def _user_of_a_new_tenant(client: AuthbusClient, label: str) -> str:
    tenant = (await client.command("create_tenant", name=f"{label}-{uuid.uuid4().hex[:8]}"))["result"]["tenant_id"]
    return (await client.command("register_user", tenant_id=tenant, username="alice"))["result"]["user_id"]


def _offline(options: BenchOptions, tmp: Path) -> list[Result]:
    wanted = options.scenarios
    count = options.cold_credentials
    database_url = f"sqlite:///{tmp / 'cold.db'}"
    store = open_store(database_url)
    results: list[Result] = []
    try:
        options.progress(f"seeding a store with {count:,} credentials")
        started = time.perf_counter()
        bench_offline.seed_credentials(store, count)
        seeded = f"{count:,} PATs seeded in {time.perf_counter() - started:.0f} s"
        if "fold" in wanted:
            options.progress("fold: applying decoded events to the read models")
            results.append(
                Result("fold", value=bench_offline.fold_rate(store), unit="events/s", note=f"decoded events; {seeded}")
            )
        if "memory_per_credential" in wanted:
            options.progress("memory_per_credential")
            results.append(
                Result(
                    "memory_per_credential",
                    value=bench_offline.bytes_per_credential(store),
                    unit="bytes",
                    note=f"tracemalloc over {min(count, bench_offline.MEMORY_SAMPLE):,} PATs with one scope",
                )
            )
        if not {"fold_from_store", "cold_start", "cold_start_no_snapshot", "memory_after_restart"} & set(wanted):
            return results
        options.progress("fold_from_store: reading, decoding and folding the whole log")
        model, rate = bench_offline.fold_from_store_rate(store)
        if "fold_from_store" in wanted:
            results.append(Result("fold_from_store", value=rate, unit="events/s", note="SQLite read + decode + fold"))
        kek = secrets.token_bytes(32)
        snapshot = tmp / "cold.snapshot"
        bench_offline.prepare_cold_start(store, model, snapshot, kek)
        del model
        runs = [("cold_start", snapshot), ("cold_start_no_snapshot", tmp / "absent.snapshot")]
        started: dict[str, dict[str, float]] = {}
        for name, path in runs:
            if name in wanted or (name == "cold_start" and "memory_after_restart" in wanted):
                options.progress(f"{name}: {count:,} credentials, in a fresh process")
                figures = started[name] = bench_offline.cold_start(database_url, path, kek)
                if name not in wanted:
                    continue
                results.append(
                    Result(
                        name,
                        value=figures["seconds"],
                        unit="s",
                        note=(
                            f"{figures['credentials']:,} credentials, {figures['tail']:,} log positions folded, "
                            f"peak RSS {figures['peak_rss_bytes'] / 2**20:.0f} MiB, {figures['rss_bytes'] / 2**20:.0f} MiB kept"
                        ),
                        extra={k: figures[k] for k in ("peak_rss_bytes", "rss_bytes", "credentials")},
                    )
                )
        if "memory_after_restart" in wanted:
            options.progress(f"memory_after_restart: following {count:,} credentials live, in a fresh process")
            live = bench_offline.cold_start(database_url, snapshot, kek, how="live")
            restored = started["cold_start"]
            results.append(
                Result(
                    "memory_after_restart",
                    value=restored["rss_bytes"] / max(1, live["rss_bytes"]),
                    unit="× live",
                    note=(
                        f"RSS once started from the snapshot {restored['rss_bytes'] / 2**20:.0f} MiB, after following the "
                        f"log live {live['rss_bytes'] / 2**20:.0f} MiB ({live['credentials']:,} credentials)"
                    ),
                    extra={"restored_rss_bytes": restored["rss_bytes"], "live_rss_bytes": live["rss_bytes"]},
                )
            )
        return results
    finally:
        store.close()


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "nats_py": version("nats-py"),
        "nats_server": Path(nats_server_binary()).name,
        "authbus": version("authbus"),
    }


def run_bench(options: BenchOptions) -> dict[str, Any]:
    unknown = set(options.scenarios) - set(SCENARIOS)
    if unknown:
        raise ScenarioFailed(f"unknown scenario {sorted(unknown)[0]!r}; choose from {', '.join(SCENARIOS)}")
    tmp = Path(tempfile.mkdtemp(prefix="authbus-bench-"))
    results: list[Result] = []
    sweep: dict[str, list[dict[str, float]]] = {}
    try:
        if set(options.scenarios) & {*LOAD, *SCALE} or options.plot:
            if "echo" not in options.scenarios:  # every ratio is against it
                options.scenarios = ("echo", *options.scenarios)
            server = NatsServer(tmp / "nats", port=free_port()).start()
            try:
                bench = LoadBench(options, tmp)
                asyncio.run(bench.run(server))
                results, sweep = bench.results, bench.sweep
            finally:
                server.stop()
        if set(options.scenarios) & set(OFFLINE):
            results += _offline(options, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _ratios(results)
    document: dict[str, Any] = {"machine": machine(), "quick": options.quick, "scenarios": [r.as_dict() for r in results]}
    if sweep:
        document["sweep"] = sweep
    return document


def _ratios(results: list[Result]) -> None:
    echo = next((r for r in results if r.name == "echo"), None)
    if echo is None or not echo.rps or not echo.p99_ms:
        return
    for result in results:
        if result.rps is not None and result.p99_ms is not None:
            result.ratio_rps = result.rps / echo.rps
            result.ratio_p99 = result.p99_ms / echo.p99_ms
