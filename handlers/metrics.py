"""Per-endpoint request counts, outcomes and latency: what ``nats micro stats`` and the
Prometheus endpoint show.

nats.micro counts an error only when a handler raises, and times a concurrent endpoint
only until its task is scheduled; every authbus outcome is a reply (``handlers.wire``), so
the endpoint wrapper records here instead and the micro stats are filled from these.
Recording is a few counter bumps: it sits on the verify hot path.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from nats.micro.service import EndpointStats as MicroStats

# Upper bounds in seconds (Prometheus ``le``): verify answers in tens of microseconds,
# commands in milliseconds, logins (argon2) in a few hundred.
BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OK = "ok"


class EndpointStats:
    __slots__ = ("count", "seconds", "buckets", "outcomes", "last_error")

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.outcomes: dict[str, int] = {}  # "ok" or an error code → replies
        self.last_error: str | None = None

    def record(self, outcome: str, seconds: float, message: str | None = None) -> None:
        self.count += 1
        self.seconds += seconds
        self.buckets[bisect_left(BUCKETS, seconds)] += 1
        outcomes = self.outcomes
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if message is not None:
            self.last_error = f"{outcome}: {message}"

    @property
    def errors(self) -> int:
        return self.count - self.outcomes.get(OK, 0)

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding the q-quantile; None when nothing was seen
        or it lies beyond the last bound (JSON has no infinity)."""
        if not self.count:
            return None
        rank, seen = q * self.count, 0
        for bound, n in zip(BUCKETS, self.buckets, strict=False):
            seen += n
            if seen >= rank:
                return bound
        return None


class RequestStats:
    def __init__(self, endpoints: Iterable[str]) -> None:
        self.endpoints = {name: EndpointStats() for name in endpoints}

    def micro(self, reported: MicroStats) -> dict[str, Any] | None:
        """nats.micro's ``stats_handler``: our error count, timings and last error replace
        the ones micro could see; outcomes and latency quantiles go in ``data``."""
        stats = self.endpoints.get(reported.name)
        if stats is None:
            return None
        reported.num_errors = stats.errors
        reported.last_error = stats.last_error
        reported.processing_time = int(stats.seconds * 1e9)
        reported.average_processing_time = int(reported.processing_time / stats.count) if stats.count else 0
        return {"outcomes": dict(stats.outcomes), "latency_seconds": {"p50": stats.quantile(0.5), "p99": stats.quantile(0.99)}}
