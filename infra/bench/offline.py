"""The bench scenarios that need no network: fold speed, memory per credential, cold start.

A store with N credentials is seeded by saving aggregates straight into it (commands would
take N round trips to produce the same events), then folded, snapshotted, and started
from cold in a fresh process, whose peak RSS the kernel reports.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import secrets
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any
from uuid import uuid4

from authbus.domain.credentials import PersonalAccessToken
from authbus.domain.tenant import Tenant
from authbus.domain.user import User
from authbus.infra.bench.report import BenchOptions, Result
from authbus.infra.crypto.key_material import KeyMaterial
from authbus.infra.follower import fold
from authbus.infra.snapshot import restore_read_model, snapshot_key, write_snapshot
from authbus.infra.store import EventStore, open_store
from authbus.projections.read_model import ReadModel

BATCH = 2000
CREDENTIALS_PER_USER = 1000
READ_PAGE = 20_000
LIVE_BATCH = 10
TAIL = 1000  # credentials added after the snapshot: a cold start folds them from the log
MEMORY_SAMPLE = 100_000  # tracemalloc slows folding several times over: sample this many


def seed_credentials(store: EventStore, count: int) -> None:
    """``count`` PATs with one scope each, a thousand per user, in one tenant."""
    tenant = Tenant(f"bench-{uuid4().hex[:12]}", "bench", "seed")
    store.save(tenant)
    user = None
    for start in range(0, count, BATCH):
        batch: list[Any] = []
        for i in range(start, min(count, start + BATCH)):
            if i % CREDENTIALS_PER_USER == 0:
                user = User(tenant.id, f"user-{uuid4().hex[:12]}", "user", ["user"], None, "bench", "seed")
                batch.append(user)
            assert user is not None
            batch.append(
                PersonalAccessToken(
                    id=uuid4(),
                    user_id=user.id,
                    tenant_id=tenant.id,
                    name=f"pat-{i}",
                    description="",
                    secret_hash=hashlib.sha256(uuid4().bytes).hexdigest(),
                    expires_at=None,
                    scopes=[{"domain": None, "entity_type": "document", "operation": "read", "entity_id": "*"}],
                    actor="bench",
                    correlation_id="seed",
                )
            )
        store.save(*batch)


def decoded(store: EventStore, limit: int | None = None) -> list[tuple[int, Any]]:
    """The first ``limit`` events (all by default), read a page at a time: no statement of
    the bench's runs into the store's statement timeout."""
    wanted = limit or store.recorder.max_notification_id() or 0
    events: list[tuple[int, Any]] = []
    while len(events) < wanted:
        page = store.read_events(events[-1][0] + 1 if events else 1, min(READ_PAGE, wanted - len(events)))
        if not page:
            break
        events += page
    return events


def fold_rate(store: EventStore) -> float:
    """Events per second folded into the read models, from events already decoded."""
    events = decoded(store)
    gc.collect()
    started = time.perf_counter()
    ReadModel().apply_all(events)
    return len(events) / (time.perf_counter() - started)


def fold_from_store_rate(store: EventStore) -> tuple[ReadModel, float]:
    """The same, reading and decoding the events from the store too: a start with no snapshot."""
    model = ReadModel()
    started = time.perf_counter()
    fold(store, model)
    return model, model.position / (time.perf_counter() - started)


def bytes_per_credential(store: EventStore) -> float:
    """Memory the read model keeps per credential, events and decoding garbage excluded."""
    gc.collect()
    tracemalloc.start()
    try:
        events = decoded(store, MEMORY_SAMPLE)
        model = ReadModel()
        model.apply_all(events)
        del events
        gc.collect()
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return kept / max(1, len(model.credentials))


def cold_start(database_url: str, snapshot: Path, kek: bytes, how: str = "restore") -> dict[str, float]:
    """Start a read model in a fresh process (``how``: "restore", as a restarted instance does,
    or "live"): seconds to be ready, the peak RSS it took and the RSS it keeps."""
    args = [sys.executable, "-m", "authbus.infra.bench.offline", database_url, str(snapshot), kek.hex(), how]
    out = subprocess.run(args, check=True, capture_output=True, timeout=600).stdout
    return json.loads(out)


def _status(field: str) -> int | None:
    """A figure of /proc/self/status in bytes (Linux), None elsewhere."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    return None


def peak_rss_bytes() -> int:
    """This process's high-water mark of resident memory.  Not getrusage's ru_maxrss: Linux
    carries that over exec from the parent, whose own peak it would report."""
    peak = _status("VmHWM")
    if peak is not None:
        return peak
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux: the best there is


def follow_live(store: EventStore) -> ReadModel:
    """The read model as an instance that followed the log live builds it: a few events at
    a time, as LISTEN/NOTIFY hands them on."""
    model = ReadModel()
    while batch := store.read_events(model.position + 1, LIVE_BATCH):
        model.apply_all(batch)
    return model


def _cold_start_child() -> None:
    """A fresh process: restore (or, with ``live``, follow) the read model, then report its time
    and memory, the memory as it stays once start-up garbage is collected."""
    database_url, snapshot, kek, how = sys.argv[1], Path(sys.argv[2]), bytes.fromhex(sys.argv[3]), sys.argv[4]
    started = time.perf_counter()
    store = open_store(database_url, KeyMaterial.from_kek(kek).key_wrap)
    if how == "live":
        model, tail = follow_live(store), 0
    else:
        model, tail = restore_read_model(store, snapshot, snapshot_key(kek))
    seconds = time.perf_counter() - started
    gc.collect()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_bytes": peak_rss_bytes(),
                "rss_bytes": _status("VmRSS") or 0,
                "tail": tail,
                "credentials": len(model.credentials),
            }
        )
    )


def prepare_cold_start(store: EventStore, model: ReadModel, snapshot: Path, kek: bytes) -> None:
    """Snapshot the folded model, then add a tail of credentials the snapshot does not hold."""
    write_snapshot(model, store, snapshot, snapshot_key(kek))
    seed_credentials(store, TAIL)


if __name__ == "__main__":
    _cold_start_child()


def run(options: BenchOptions, tmp: Path) -> list[Result]:
    """The offline scenarios the options ask for, on a store seeded here."""
    wanted = options.scenarios
    count = options.cold_credentials
    database_url = f"sqlite:///{tmp / 'cold.db'}"
    kek = secrets.token_bytes(32)
    store = open_store(database_url, KeyMaterial.from_kek(kek).key_wrap)
    results: list[Result] = []
    try:
        options.progress(f"seeding a store with {count:,} credentials")
        started = time.perf_counter()
        seed_credentials(store, count)
        seeded = f"{count:,} PATs seeded in {time.perf_counter() - started:.0f} s"
        if "fold" in wanted:
            options.progress("fold: applying decoded events to the read models")
            results.append(Result("fold", value=fold_rate(store), unit="events/s", note=f"decoded events; {seeded}"))
        if "memory_per_credential" in wanted:
            options.progress("memory_per_credential")
            results.append(
                Result(
                    "memory_per_credential",
                    value=bytes_per_credential(store),
                    unit="bytes",
                    note=f"tracemalloc over {min(count, MEMORY_SAMPLE):,} PATs with one scope",
                )
            )
        if not {"fold_from_store", "cold_start", "cold_start_no_snapshot", "memory_after_restart"} & set(wanted):
            return results
        options.progress("fold_from_store: reading, decoding and folding the whole log")
        model, rate = fold_from_store_rate(store)
        if "fold_from_store" in wanted:
            results.append(Result("fold_from_store", value=rate, unit="events/s", note="SQLite read + decode + fold"))
        snapshot = tmp / "cold.snapshot"
        prepare_cold_start(store, model, snapshot, kek)
        del model
        runs = [("cold_start", snapshot), ("cold_start_no_snapshot", tmp / "absent.snapshot")]
        started: dict[str, dict[str, float]] = {}
        for name, path in runs:
            if name in wanted or (name == "cold_start" and "memory_after_restart" in wanted):
                options.progress(f"{name}: {count:,} credentials, in a fresh process")
                figures = started[name] = cold_start(database_url, path, kek)
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
            live = cold_start(database_url, snapshot, kek, how="live")
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
