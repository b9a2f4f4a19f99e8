"""What an operator watches: nats micro stats, the Prometheus endpoint, correlation ids and
JSON log lines."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import subprocess
import sys
from dataclasses import replace

import msgspec
import pytest

from authbus.infra.client import AuthbusClient, AuthbusError
from authbus.infra.observability.logs import JsonFormatter
from tests.conftest import BACKENDS, start_instance
from tests.e2e.test_event_feed import serve
from tests.e2e.test_faults import bootstrapped, wait_serving
from tests.helpers import eventually, make_org
from tests.secret_scan import LogRecorder

SAMPLE = re.compile(r"(?P<name>[a-z_]+)(?P<labels>\{[^}]*\})? (?P<value>[0-9.e+-]+|\+Inf)")


def body(**fields) -> bytes:
    return msgspec.json.encode(fields)


async def micro_stats(client: AuthbusClient, service_id: str) -> dict[str, dict]:
    msg = await client.nc.request(f"$SRV.STATS.authbus.{service_id}", b"", timeout=5)
    return {endpoint["name"]: endpoint for endpoint in json.loads(msg.data)["endpoints"]}


async def test_micro_stats_count_error_replies_and_time_concurrent_endpoints(instance, client, org):
    service_id = instance.node.service.id
    before = await micro_stats(client, service_id)
    await client.raw("verify", body(token=org.user_key))
    await client.raw("verify", body(token=5))
    with pytest.raises(AuthbusError):
        await client.command("create_pat", user_id=org.user_id, name="nope", token="pat_not_a_real_one")
    after = await micro_stats(client, service_id)

    verify, was = after["verify"], before["verify"]
    assert verify["num_requests"] == was["num_requests"] + 2
    assert verify["num_errors"] == was["num_errors"] + 1
    assert verify["last_error"] == "invalid_request: invalid token: Expected str, got int"
    assert verify["data"]["outcomes"]["invalid_request"] == was["data"]["outcomes"].get("invalid_request", 0) + 1
    assert verify["data"]["latency_seconds"]["p99"] > 0

    create = after["cmd_create_pat"]
    assert create["num_errors"] == before["cmd_create_pat"]["num_errors"] + 1
    assert create["last_error"].startswith("unauthenticated: ")
    # Timed to the reply, not to when its task was scheduled (what nats.micro alone sees).
    assert create["processing_time"] > before["cmd_create_pat"]["processing_time"]
    assert create["average_processing_time"] > 0


async def scrape(port: int, request: bytes) -> tuple[str, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, text = data.decode().partition("\r\n\r\n")
    return head.split("\r\n", 1)[0], text


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.fullmatch(r"# (HELP|TYPE) authbus_[a-z_]+ .+", line), line
            continue
        match = SAMPLE.fullmatch(line)
        assert match, line
        out[match["name"] + (match["labels"] or "")] = float(match["value"])
    return out


async def test_the_prometheus_endpoint_counts_outcomes_and_times_every_endpoint(fresh_store, nats_server):
    backend, settings_for = fresh_store
    settings = settings_for(f"metrics{secrets.token_hex(4)}")
    settings.metrics_port = 0
    inst = await start_instance(settings, backend)
    client = await AuthbusClient.connect(nats_server.url, inst.prefix, inst.root_token)
    try:
        org = await make_org(client)
        await client.raw("verify", body(token=org.user_key))
        await client.raw("verify", body(token="nope"))
        await client.raw("verify", b"{not json")
        port = inst.node.metrics.port
        follower = inst.node._follower
        assert await eventually(lambda: follower.head_seen == inst.node.model.position, 5)

        status, text = await scrape(port, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert status == "HTTP/1.1 200 OK"
        seen = samples(text)
        assert seen['authbus_requests_total{endpoint="verify",outcome="ok"}'] == 2  # "nope" is valid: false
        assert seen['authbus_requests_total{endpoint="verify",outcome="invalid_request"}'] == 1
        assert seen['authbus_requests_total{endpoint="cmd_register_user",outcome="ok"}'] == 2
        buckets = [v for k, v in seen.items() if k.startswith('authbus_request_duration_seconds_bucket{endpoint="verify"')]
        assert buckets == sorted(buckets) and buckets[-1] == 3
        assert seen['authbus_request_duration_seconds_count{endpoint="verify"}'] == 3
        assert seen['authbus_request_duration_seconds_sum{endpoint="verify"}'] > 0
        assert seen["authbus_read_model_position"] == inst.node.model.position
        assert seen["authbus_store_reachable"] == 1
        assert seen["authbus_requests_in_flight"] == 0
        assert seen["authbus_store_head"] == inst.node.model.position  # no lag: the head is the position
        assert seen["authbus_follower_missed_wakeups"] == 0

        assert (await scrape(port, b"GET /other HTTP/1.1\r\n\r\n"))[0] == "HTTP/1.1 404 Not Found"
        assert (await scrape(port, b"POST /metrics HTTP/1.1\r\n\r\n"))[0] == "HTTP/1.1 405 Method Not Allowed"
        assert await scrape(port, b"\x16\x03\x01 not http at all\r\n\r\n") == ("", "")  # dropped, and it serves on
        status, text = await scrape(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert status == "HTTP/1.1 200 OK" and text == ""
    finally:
        await client.close()
        await inst.node.stop()


async def logged(logs: LogRecorder, text: str, seconds: float = 5.0) -> list[dict]:
    """The JSON log lines holding ``text``, once there are any: they are written just after
    the reply is sent."""

    def holding() -> list[dict]:
        return [json.loads(line) for line in logs.lines if text in line]

    await eventually(lambda: bool(holding()), seconds, every=0.01)
    return holding()


async def test_commands_carry_a_correlation_id_into_the_reply_and_the_log(client, org, logs):
    headers = {"Authorization": f"Bearer {org.admin_key}", "Correlation-Id": f"req-{secrets.token_hex(6)}"}
    reply, replied = await client.raw("cmd.create_pat", body(user_id=org.user_id, name="traced"), headers)
    assert replied["Correlation-Id"] == headers["Correlation-Id"]
    lines = await logged(logs, headers["Correlation-Id"])
    assert lines == [
        {
            "ts": lines[0]["ts"],
            "level": "info",
            "logger": "authbus.handlers",
            "message": f"cmd_create_pat answered ok in {lines[0]['duration_ms']:.1f} ms",
            "correlation_id": headers["Correlation-Id"],
            "endpoint": "cmd_create_pat",
            "outcome": "ok",
            "duration_ms": lines[0]["duration_ms"],
            "position": lines[0]["position"],
        }
    ]
    assert lines[0]["position"] >= reply["position"]

    # Not a plain token (here, a secret pasted by mistake): replaced, never echoed or logged.
    headers["Correlation-Id"] = f"Bearer {org.admin_key}"
    msg = await client.nc.request(
        f"{client.prefix}.v1.cmd.create_pat", body(user_id=org.user_id, name="traced-2"), headers=headers, timeout=client.timeout
    )
    assert re.fullmatch(r"[0-9a-f]{32}", msg.headers["Correlation-Id"])
    assert not any(org.admin_key in line for line in logs.lines)


async def test_an_inline_query_is_not_logged_one_by_one(client, org, logs):
    inline = f"inline-{secrets.token_hex(6)}"
    await client.raw("verify", body(token=org.user_key), {"Correlation-Id": inline})
    # A command after it is logged after it: by then a line for the verify would be there.
    marker = f"command-{secrets.token_hex(6)}"
    headers = {"Authorization": f"Bearer {org.admin_key}", "Correlation-Id": marker}
    await client.raw("cmd.create_pat", body(user_id=org.user_id, name="after"), headers)
    assert await logged(logs, marker)
    assert not [line for line in logs.lines if inline in line]


def test_a_json_log_line_keeps_the_exception():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("authbus.x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "failed here" and line["level"] == "error" and "RuntimeError: boom" in line["exception"]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_serve_writes_json_lines_and_serves_metrics(backend, databases, nats_server, tmp_path):
    settings, app, client = await bootstrapped(databases.new(backend), nats_server, tmp_path, f"json{backend}", timeout=5.0)
    app.close()
    password = secrets.token_urlsafe(12)  # a server without authorization ignores it; the log must too
    with_password = replace(settings, nats_url=f"nats://authbus:{password}@127.0.0.1:{nats_server.port}")
    process = serve(with_password, settings.kek, "--log-format", "json", "--metrics-port", "0", stderr=subprocess.PIPE)
    try:
        await wait_serving(client)
        await client.command("create_tenant", name="logged")
    finally:
        await client.close()
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert password not in stderr and settings.kek not in stderr
    lines = [json.loads(line) for line in stderr.splitlines()]  # every line is one JSON object
    messages = [line["message"] for line in lines]
    assert any(m.startswith("Prometheus metrics on http://127.0.0.1:") for m in messages)
    assert f"serving on nats://127.0.0.1:{nats_server.port} (prefix 'json{backend}'), store at position 6" in messages
    assert messages[-1] == "stopped"
    assert any(line.get("endpoint") == "cmd_create_tenant" and line.get("correlation_id") for line in lines)
