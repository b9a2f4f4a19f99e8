"""``authbus bench`` end to end, as a user runs it: the shape of what it reports, never its speed."""

import json
import os
import subprocess
import sys

RESULT_KEYS = {"name", "requests", "concurrency", "rps", "p50_ms", "p99_ms", "ratio_rps", "ratio_p99", "value", "unit"}


def bench(*args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "authbus.infra", "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )


def figures(*args: str, **env: str) -> dict:
    """The scenarios of a run that must succeed, by name, in the order reported."""
    run = bench(*args, "--json", **env)
    assert run.returncode == 0, run.stderr[-2000:]
    return {s["name"]: s for s in json.loads(run.stdout)["scenarios"]}


def test_quick_bench_reports_ratios_against_echo_as_json():
    # The shape, not the speed: 2,000 requests in one round say as much as --quick's 5,000 in three.
    run = bench("--quick", "--scenario", "echo,verify_pat", "--requests", "2000", "--rounds", "1", "--json")
    assert run.returncode == 0, run.stderr[-2000:]
    document = json.loads(run.stdout)
    assert {"cpu", "cores", "python"} <= set(document["machine"])
    scenarios = {s["name"]: s for s in document["scenarios"]}
    assert list(scenarios) == ["echo", "verify_pat"]
    for scenario in scenarios.values():
        assert set(scenario) >= RESULT_KEYS
        assert scenario["requests"] == 2000 and scenario["concurrency"] == 64
        assert scenario["rps"] > 0 and 0 < scenario["p50_ms"] <= scenario["p99_ms"]
        assert scenario["value"] is None and scenario["unit"] is None
    assert scenarios["echo"]["ratio_rps"] == 1.0 and scenarios["echo"]["ratio_p99"] == 1.0
    verify = scenarios["verify_pat"]
    assert verify["ratio_rps"] == verify["rps"] / scenarios["echo"]["rps"]


def test_an_unknown_scenario_is_one_clear_error():
    run = bench("--scenario", "echo,warp_speed", "--json", timeout=120)
    assert run.returncode == 1
    assert "unknown scenario 'warp_speed'" in run.stderr and "Traceback" not in run.stderr
    assert run.stdout == ""


def test_offline_figures_carry_a_value_and_a_unit():
    scenarios = figures("--scenario", "fold,memory_per_credential,cold_start", "--credentials", "2000")
    assert list(scenarios) == ["fold", "memory_per_credential", "cold_start"]
    units = {name: s["unit"] for name, s in scenarios.items()}
    assert units == {"fold": "events/s", "memory_per_credential": "bytes", "cold_start": "s"}
    assert all(s["value"] > 0 and s["rps"] is None and s["ratio_rps"] is None for s in scenarios.values())
    assert scenarios["cold_start"]["credentials"] == 2000 + 1000  # the snapshot's and the tail's


def test_scale_out_figures_come_from_instances_in_processes_of_their_own(postgres_url):
    """convergence_postgres: p50/p99 from a command's reply until both instances hold it;
    failover_postgres: calls failed through the client across a SIGKILL, and what the same
    kill cost a client with repeats off."""
    scenarios = figures(
        "--quick",
        "--scenario",
        "convergence_postgres,failover_postgres",
        "--concurrency",
        "16",
        AUTHBUS_BENCH_DATABASE_URL=postgres_url,
    )
    converged = scenarios["convergence_postgres"]
    assert converged["requests"] == 200 and 0 <= converged["p50_ms"] <= converged["p99_ms"]
    failover = scenarios["failover_postgres"]
    # Zero is tests/integration/test_scale_out.py's to show, with a margin a busy machine cannot eat.
    assert failover["unit"] == "failed calls" and failover["value"] >= 0, failover["note"]
    assert failover["requests"] > 0 and failover["plain_calls"] > 0 and failover["repeated"] >= 1


def test_a_restarted_instance_keeps_no_more_memory_than_one_that_followed_the_log():
    """Started from its snapshot, an instance held ~1.6× the memory of one that had followed
    the log live (the unpickler's leftovers).  Within 1.1× now, measured in fresh processes."""
    (figure,) = figures("--scenario", "memory_after_restart", "--credentials", "30000").values()
    assert figure["name"] == "memory_after_restart" and figure["unit"] == "× live"
    assert figure["value"] <= 1.1, figure["note"]


def test_create_pat_runs_on_the_embedded_store_too():
    """create_pat_sqlite: commands end to end on SQLite, beside create_pat_postgres."""
    scenarios = figures("--scenario", "create_pat_sqlite", "--requests", "300", "--rounds", "1")
    figure = scenarios["create_pat_sqlite"]
    assert figure["requests"] == 300
    assert figure["rps"] > 0 and 0 < figure["p50_ms"] <= figure["p99_ms"]


def test_http_forward_auth_is_reported_against_the_http_no_op():
    scenarios = figures("--quick", "--scenario", "http_echo,forward_auth_http", "--requests", "300", "--rounds", "1")
    assert list(scenarios) == ["echo", "http_echo", "forward_auth_http"]  # echo always: the NATS ratios need it
    http_echo, forward = scenarios["http_echo"], scenarios["forward_auth_http"]
    assert http_echo["ratio_rps"] == 1.0 and forward["rps"] > 0
    assert forward["ratio_rps"] == forward["rps"] / http_echo["rps"]  # its own stack's baseline, not NATS echo's
