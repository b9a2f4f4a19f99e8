"""What ``authbus bench`` is asked for and what it reports: the scenarios by name, the
options, a result, and the ratios against echo (docs/performance.md)."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    "http_echo",
    "forward_auth_http",
)
SCALE = ("convergence_postgres", "failover_postgres")  # instances in processes of their own: infra/bench/scale.py
OFFLINE = ("fold", "fold_from_store", "memory_per_credential", "cold_start", "cold_start_no_snapshot", "memory_after_restart")
SCENARIOS = LOAD + SCALE + OFFLINE
POSTGRES = ("peer_postgres", "create_pat_postgres", *SCALE)
VERIFY = tuple(name for name in LOAD if name.startswith(("verify_", "authorize_")))  # answered from the read model
SWEEP = (1, 4, 16, 64, 128, 256)  # concurrencies of the latency plot
SWEPT = ("echo", "verify_pat", "peer_postgres")
HTTP = ("http_echo", "forward_auth_http")  # over HTTP, against the HTTP no-op (http_echo)


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


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    from authbus.infra.nats.nats_server import nats_server_binary

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


def ratios(results: list[Result]) -> None:
    """Each load result against its stack's no-op: ``echo`` over NATS, ``http_echo`` over HTTP."""
    by_name = {r.name: r for r in results}
    for result in results:
        baseline = by_name.get("http_echo" if result.name in HTTP else "echo")
        if baseline is None or not baseline.rps or not baseline.p99_ms:
            continue
        if result.rps is not None and result.p99_ms is not None:
            result.ratio_rps = result.rps / baseline.rps
            result.ratio_p99 = result.p99_ms / baseline.p99_ms
