"""``authbus bench``: the command, its table and its latency-vs-concurrency plot."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from authbus.infra.bench.report import SCENARIOS, BenchOptions, ScenarioFailed
from authbus.infra.console import LazyConsole

if TYPE_CHECKING:
    from rich.table import Table

err = LazyConsole(stderr=True)

# What DESIGN §8 asks of each figure, for the table's last column.
TARGETS = {
    "verify_pat": "≥ 0.8× rps, p99 ≤ 2×",
    "verify_cached": "(issue 8: the client's feed-evicted cache)",
    "verify_api_key": "≥ 0.8× rps, p99 ≤ 2×",
    "verify_jwt_eddsa": "≥ 0.6× rps",
    "verify_jwt_hs256": "≥ 0.6× rps",
    "authorize_1000_scopes": "within 10 % of authorize_1_scope",
    "peer_postgres": "verify_pat ≥ 3× its rps",
    "create_pat_postgres": "≥ 0.1× rps, p99 ≤ 60 ms",
    "create_pat_sqlite": "≥ 0.05× rps",
    "convergence_postgres": "(issue 16: every instance soon after the reply)",
    "failover_postgres": "0 failed calls through the client",
    "fold": "≥ 100,000 events/s",
    "cold_start": "≤ 30 s at 1,000,000",
    "memory_per_credential": "≤ 1,024 bytes",
    "memory_after_restart": "≤ 1.1× live",
}


def bench(
    quick: Annotated[
        bool, typer.Option("--quick", help="Fewer requests and 100,000 credentials: done in under 3 minutes.")
    ] = False,
    scenario: Annotated[str | None, typer.Option(help=f"Comma-separated subset of: {', '.join(SCENARIOS)}.")] = None,
    requests: Annotated[
        int | None, typer.Option(min=1, help="Requests per load scenario (default 20,000; 5,000 with --quick).")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight.")] = 64,
    clients: Annotated[int, typer.Option(min=1, help="Load-generating processes sharing the concurrency.")] = 1,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds per load scenario; the fastest counts.")] = 3,
    credentials: Annotated[
        int | None, typer.Option(min=1000, help="Credentials in the cold-start store (default 1,000,000; 100,000 with --quick).")
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            envvar="AUTHBUS_BENCH_DATABASE_URL",
            help="PostgreSQL server to make a scratch database in (default: a private one from pgserver).",
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Also sweep concurrency for echo, verify_pat and peer_postgres and draw latency vs concurrency into this PNG (needs matplotlib)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document instead of a table.")] = False,
) -> None:
    """Measure authbus against baselines run on the same machine, in the same run: a no-op
    nats.micro echo (the limit of the stack) and a SuperMQ-style responder that looks each
    key up in PostgreSQL.  Ratios are against echo.

    Examples:
      authbus bench --quick
      authbus bench --scenario echo,verify_pat --json
      authbus bench --plot docs/latency.png
    """
    chosen = tuple(s.strip() for s in scenario.split(",") if s.strip()) if scenario else SCENARIOS
    options = BenchOptions(
        quick=quick,
        scenarios=chosen,
        requests=requests,
        concurrency=concurrency,
        clients=clients,
        rounds=rounds,
        credentials=credentials,
        database_url=database_url,
        plot=plot,
        progress=lambda line: err.print(f"[dim]… {line}[/dim]") if sys.stderr.isatty() or not as_json else None,
    )
    from authbus.infra.bench.scenarios import run_bench  # the whole stack: loaded only to run it

    try:
        document = run_bench(options)
    except ScenarioFailed as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    if plot is not None:
        draw(document.get("sweep", {}), plot)
    if as_json:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        LazyConsole().print(table(document))


def _figure(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def table(document: dict[str, Any]) -> Table:
    from rich.table import Table

    m = document["machine"]
    out = Table(title=f"authbus bench — {m['cores']} cores, {m['cpu']}, Python {m['python']}", title_justify="left")
    for column in ("scenario", "requests/s", "p50 ms", "p99 ms", "× echo rps", "× echo p99", "value", "target"):
        out.add_column(column, justify="left" if column in ("scenario", "value", "target") else "right")
    for s in document["scenarios"]:
        value = f"{s['value']:,.{0 if s['value'] >= 100 else 2}f} {s['unit']}" if s["value"] is not None else ""
        out.add_row(
            s["name"],
            _figure(s["rps"], 0),
            _figure(s["p50_ms"]),
            _figure(s["p99_ms"]),
            _figure(s["ratio_rps"]),
            _figure(s["ratio_p99"]),
            value,
            TARGETS.get(s["name"], ""),
        )
    return out


def draw(sweep: dict[str, list[dict[str, float]]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        err.print("[red]error:[/red] --plot needs matplotlib: pip install 'authbus[bench]'")
        raise typer.Exit(1) from None
    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, points in sweep.items():
        x = [p["concurrency"] for p in points]
        line = latency.plot(x, [p["p99_ms"] for p in points], marker="o", label=f"{name} p99")[0]
        latency.plot(x, [p["p50_ms"] for p in points], marker=".", linestyle="--", color=line.get_color(), label=f"{name} p50")
        throughput.plot(x, [p["rps"] for p in points], marker="o", color=line.get_color(), label=name)
    for axis, label in ((latency, "latency (ms)"), (throughput, "requests/s")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("requests in flight")
        axis.set_ylabel(label)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    latency.set_yscale("log")
    figure.suptitle("authbus bench: latency and throughput vs concurrency")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
