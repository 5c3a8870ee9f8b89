"""Relayer operations: Prometheus metrics, the health endpoint, the low-balance alert and auto-cancel.

Real anvil and coprocessor (``LocalStack(with_relayer=False)``); the relayer runs in-process, one ``tick()`` at a time.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from relayer.chain import ChainClient
from relayer.service import AUTO_CANCEL_KEY, Relayer, RelayerConfig, failure_reason
from relayer.store import DELIVERED, EXPIRED, FAILED, PENDING
from teebridge.anvil import free_port
from teebridge.client import send_via_consumer
from teebridge.stack import RELAYER_KEY, USER_KEY, LocalStack
from tests.helpers import serve_http
from verifier.envelope import plain
from verifier.protocol import job_id

ECHO = job_id("echo", 1)
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def local() -> Iterator[LocalStack]:
    with LocalStack(with_relayer=False) as stack:
        yield stack


def make_relayer(
    stack: LocalStack, db: Path, *, key: str = RELAYER_KEY, coprocessor: str | None = None, **kw
) -> Relayer:
    """A relayer that only sees requests sent from now on (the stack is shared by the tests of this module)."""
    head = ChainClient(stack.anvil.rpc_url, USER_KEY).w3.eth.block_number
    return Relayer(
        RelayerConfig(
            rpc_url=stack.anvil.rpc_url,
            private_key=key,
            router=stack.deployment.router,
            coprocessor_url=coprocessor or stack.coprocessor_url,
            db_path=db,
            start_block=head + 1,
            retry_delay=0.0,
            **kw,
        )
    )


def down_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def request_echo(stack: LocalStack, payload: bytes, *, ttl: int = 600, fee: int = 0) -> bytes:
    user = ChainClient(stack.anvil.rpc_url, USER_KEY)
    d = stack.deployment
    consumer = user.contract("ExampleConsumer", d.consumer)
    router = user.contract("Router", d.router)
    return send_via_consumer(user, consumer, router, ECHO, plain(payload), ttl=ttl, fee=fee).request_id


def advance(stack: LocalStack, seconds: int) -> None:
    w3 = ChainClient(stack.anvil.rpc_url, USER_KEY).w3
    w3.provider.make_request("evm_increaseTime", [seconds])
    w3.provider.make_request("evm_mine", [])


def parse_exposition(text: str) -> Samples:
    """Parse Prometheus text format strictly enough to catch malformed output; return the samples."""
    types: dict[str, str] = {}
    samples: Samples = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            assert len(line.split(" ", 3)) == 4, line
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped") and name not in types, line
            types[name] = kind
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, _, raw_labels, value = match.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, f"{name} has no # TYPE line before it"
        labels: list[tuple[str, str]] = []
        if raw_labels:
            consumed = "".join(m.group(0) for m in LABEL.finditer(raw_labels))
            assert consumed == raw_labels, f"bad labels in {line!r}"
            labels = [(m.group(1), m.group(2)) for m in LABEL.finditer(raw_labels)]
        key = (name, frozenset(labels))
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = math.inf if value == "+Inf" else int(value) if value.lstrip("-").isdigit() else float(value)
    for name, kind in types.items():
        if kind == "histogram":
            buckets = sorted(
                (float(dict(k[1])["le"].replace("+Inf", "inf")), v)
                for k, v in samples.items()
                if k[0] == f"{name}_bucket"
            )
            assert buckets and buckets[-1][0] == math.inf
            counts = [v for _, v in buckets]
            assert counts == sorted(counts), "histogram buckets must be cumulative"
            assert buckets[-1][1] == samples[(f"{name}_count", frozenset())]
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_after_deliveries(local: LocalStack, tmp_path: Path) -> None:
    relayer = make_relayer(local, tmp_path / "r.sqlite")
    server = relayer.serve_health(0)
    try:
        ids = [request_echo(local, f"m{i}".encode()) for i in range(3)]
        for _ in range(3):
            relayer.tick()
        assert all(relayer.store.get(i).state == DELIVERED for i in ids)
        assert relayer._stored_seen_at(ids[0]) is not None, "latency comes from the store's seen_at"
        response = httpx.get(server.url + "/metrics", timeout=5)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=0.0.4")
        s = parse_exposition(response.text)
        p = "teebridge_relayer_"
        assert value(s, p + "requests_seen_total") == 3
        assert value(s, p + "requests", state="delivered") == 3
        assert value(s, p + "requests_finished_total", state="delivered") == 3
        assert value(s, p + "fulfilments_delivered_total") == 3
        assert value(s, p + "submissions_total", outcome="mined") >= 1
        assert value(s, p + "gas_used_total", kind="fulfil") > 21_000
        assert value(s, p + "gas_cost_wei_total", kind="fulfil") > 0
        assert value(s, p + "delivery_latency_seconds_count") == 3
        assert value(s, p + "delivery_latency_seconds_sum") > 0
        address = relayer.chain.address
        assert value(s, p + "balance_wei", account=address) == relayer.chain.w3.eth.get_balance(address)
        assert value(s, p + "account_next_nonce", account=address) == relayer.chain.w3.eth.get_transaction_count(
            address
        )
        assert value(s, p + "account_pending_transactions", account=address) == 0
        assert value(s, p + "ticks_total") == 3
        assert value(s, p + "last_successful_tick_timestamp_seconds") > 0
        assert value(s, p + "coprocessor_up") == 1
        assert not any(k[0] == p + "tick_errors_total" for k in s)
        assert httpx.get(server.url + "/nope", timeout=5).status_code == 404
    finally:
        relayer.close()


def test_health_ok_and_degraded(local: LocalStack, tmp_path: Path) -> None:
    relayer = make_relayer(local, tmp_path / "ok.sqlite")
    server = relayer.serve_health(0)
    try:
        relayer.tick()
        response = httpx.get(server.url + "/health", timeout=5)
        assert response.status_code == 200
        report = response.json()
        assert report["status"] == "ok" and report["problems"] == []
        assert 0 <= report["last_successful_tick_age_seconds"] < 5
        assert report["chain_id"] == 31337 and report["router"].lower() == local.deployment.router.lower()
        assert report["coprocessor_reachable"] is True and report["balance_wei"] > 0
        assert report["counts"] == {} and report["last_tick_errors"] == []
        (account,) = report["accounts"]
        assert account["address"] == relayer.chain.address and account["balance_wei"] == report["balance_wei"]
        assert account["pending_transactions"] == 0 and account["low_balance"] is False
        relayer._last_tick_ok = time.time() - 3600  # no successful pass for an hour
        report = httpx.get(server.url + "/health", timeout=5).json()
        assert report["status"] == "degraded" and report["problems"] == ["no successful pass for 3600s"]
    finally:
        relayer.close()
    down = make_relayer(local, tmp_path / "down.sqlite", coprocessor=down_url())
    server = down.serve_health(0)
    try:
        request_echo(local, b"waits")
        down.tick()
        response = httpx.get(server.url + "/health", timeout=5)
        assert response.status_code == 503
        report = response.json()
        assert report["status"] == "degraded" and "coprocessor unreachable" in report["problems"]
        assert report["coprocessor_reachable"] is False and report["counts"] == {PENDING: 1}
    finally:
        down.close()


def test_low_balance_warns_at_most_once_per_interval(
    local: LocalStack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fresh = Account.create()
    w3 = ChainClient(local.anvil.rpc_url, USER_KEY).w3
    funder = Account.from_key(USER_KEY).address
    w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction({"from": funder, "to": fresh.address, "value": 10**15}))
    relayer = make_relayer(
        local, tmp_path / "r.sqlite", key=fresh.key.to_0x_hex(), min_balance_wei=10**18, balance_alert_interval=3600
    )
    caplog.set_level(logging.INFO, logger="teebridge.relayer")
    try:
        for _ in range(3):
            relayer.tick()
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "low balance" in r.getMessage()]
        assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
        assert fresh.address in warnings[0].getMessage() and str(10**15) in warnings[0].getMessage()
        report = relayer.health_report()
        assert report["status"] == "degraded" and "balance under --min-balance-wei" in report["problems"]
        relayer.accounts.primary.last_alert = -1e9  # the interval has passed: it warns again
        relayer.tick()
        assert sum("low balance" in r.getMessage() for r in caplog.records) == 2
    finally:
        relayer.close()


def test_auto_cancel_refunds_expired_and_spares_live(local: LocalStack, tmp_path: Path) -> None:
    fee = 10**15
    relayer = make_relayer(local, tmp_path / "r.sqlite", coprocessor=down_url(), auto_cancel=True)
    w3 = relayer.chain.w3
    router = relayer.router
    consumer = local.deployment.consumer
    try:
        short = request_echo(local, b"expires", ttl=30, fee=fee)
        live = request_echo(local, b"lives", ttl=3600, fee=fee)
        relayer.tick()
        advance(local, 60)
        before = w3.eth.get_balance(consumer)
        relayer.tick()  # expire stage closes `short`; the cancel stage sends Router.cancel
        relayer.tick()  # reads the receipt
        stored = relayer.store.get(short)
        assert stored is not None and stored.state == EXPIRED
        record = json.loads(stored.outcome or "{}")
        assert record[AUTO_CANCEL_KEY] == "cancelled" and record["refund"] == fee, record
        assert record["to"].lower() == consumer.lower() and "cancel" in record["expired"]
        assert w3.eth.get_balance(consumer) == before + fee
        assert router.functions.commitments(short).call() == b"\0" * 32
        assert relayer.metrics.cancels.value(outcome="cancelled") == 1
        assert relayer.metrics.gas_used.value(kind="cancel") > 0
        # the cancel's nonce is in the transactions table: the next fulfilment can never take it
        assert relayer.store.next_nonce(relayer.chain.address) == w3.eth.get_transaction_count(relayer.chain.address)
        # The live request is untouched; even if the store wrongly called it expired, no cancel is sent.
        assert relayer.store.get(live).state == PENDING
        relayer.store.mark_final(live, EXPIRED, "forced by the test")
        nonce = w3.eth.get_transaction_count(relayer.chain.address)
        relayer.tick()
        relayer.tick()
        assert w3.eth.get_transaction_count(relayer.chain.address) == nonce, "no transaction for a live request"
        assert router.functions.commitments(live).call() != b"\0" * 32
        assert relayer.metrics.cancels.value(outcome="cancelled") == 1
    finally:
        relayer.close()


def test_auto_cancel_skips_requests_settled_on_chain(local: LocalStack, tmp_path: Path) -> None:
    """An expired request someone else already cancelled costs no gas: it is recorded as not pending."""
    relayer = make_relayer(local, tmp_path / "r.sqlite", coprocessor=down_url(), auto_cancel=True)
    w3 = relayer.chain.w3
    try:
        request_id = request_echo(local, b"other", ttl=30)
        relayer.tick()
        advance(local, 60)
        stored = relayer.store.get(request_id)
        user = ChainClient(local.anvil.rpc_url, USER_KEY)
        user.send(user.contract("Router", local.deployment.router).functions.cancel(stored.request().as_tuple()))
        nonce = w3.eth.get_transaction_count(relayer.chain.address)
        relayer.tick()
        record = json.loads(relayer.store.get(request_id).outcome or "{}")
        assert record[AUTO_CANCEL_KEY] == "not_pending"
        assert w3.eth.get_transaction_count(relayer.chain.address) == nonce
    finally:
        relayer.close()


def test_failure_reason_labels() -> None:
    assert failure_reason("coprocessor refused the request: unknown job") == "coprocessor_refused"
    assert failure_reason("router refused in 0xab: bad signature") == "router_bad_signature"
    assert failure_reason("something else") == "other"


def test_cli_serves_metrics_and_health(local: LocalStack, tmp_path: Path) -> None:
    port = free_port()
    head = ChainClient(local.anvil.rpc_url, USER_KEY).w3.eth.block_number
    args = ["--rpc-url", local.anvil.rpc_url, "--router", local.deployment.router]
    args += ["--coprocessor", local.coprocessor_url, "--db", str(tmp_path / "r.sqlite"), "--start-block", str(head + 1)]
    args += ["--metrics-port", str(port), "--min-balance-wei", "1", "--auto-cancel"]
    env = {**os.environ, "TEEBRIDGE_RELAYER_KEY": RELAYER_KEY}
    log_file = (tmp_path / "relayer.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "relayer", *args], env=env, stderr=log_file)
    try:
        deadline = time.monotonic() + 15
        report = None
        while time.monotonic() < deadline:
            try:
                report = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
                if report["status"] == "ok":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        assert report is not None and report["status"] == "ok", report
        assert report["auto_cancel"] is True and report["min_balance_wei"] == 1
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert value(parse_exposition(metrics), "teebridge_relayer_ticks_total") >= 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log_file.close()


def test_a_refused_batch_is_halved_until_the_bad_request_stands_alone(local: LocalStack, tmp_path: Path) -> None:
    """A coprocessor that refuses (400) any batch holding one poisoned request: the relayer halves the batch
    instead of falling back to one call per request, the others are delivered, the poisoned one fails."""
    calls: list[int] = []
    poison = b"poison!"

    class Refusing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            doc = json.loads(body)
            calls.append(len(doc["requests"]))
            if any(bytes.fromhex(r["input"][2:]).endswith(poison) for r in doc["requests"]):
                status, answer = 400, b'{"error": "refused"}'
            else:
                forwarded = httpx.post(local.coprocessor_url + self.path, content=body, timeout=30)
                status, answer = forwarded.status_code, forwarded.content
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serve_http(Refusing) as url:
        relayer = make_relayer(local, tmp_path / "r.sqlite", coprocessor=url, max_batch=16)
        try:
            ids = [request_echo(local, b"fine %d" % i) for i in range(7)] + [request_echo(local, poison)]
            relayer.tick()  # watch + execute: one refused batch of 8, then halves
            states = {i: relayer.store.get(i).state for i in ids}  # type: ignore[union-attr]
            assert states[ids[-1]] == FAILED
            assert all(state != FAILED for i, state in states.items() if i != ids[-1])
            assert calls[0] == 8 and len(calls) < 8  # 8 -> 4+4 -> 2+2 -> 1+1: 7 calls, not 1 + 8
        finally:
            relayer.close()
