"""A result signed by an enclave that is revoked while the result is in flight is executed again elsewhere.

Real processes throughout: anvil, two coprocessors with their own keys (A, the stack's, and B), the gatekeeper
registering both, and relayer processes. The in-flight state is made deterministic with the relayer's own fault
injection: the first relayer (given only A) executes the requests on A, signs and persists the transaction carrying
A's results and exits before broadcasting it. A is then revoked, and a relayer restarted on the same database
re-broadcasts that transaction (as after any crash), learns from the Router that A's results are refused, looks A up
in the registry, discards them and has the requests executed again. docs/relayer.md, "Revocation with work in
flight".
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from relayer.chain import ChainClient
from relayer.store import DELIVERED, EXPIRED, PENDING, SUBMITTED, Store
from relayer.submitter import FAULT_ENV, FAULT_EXIT_CODE, SKIP_UNAUTHORIZED_SIGNER
from teebridge.processes import RELAYER_READY, Child
from teebridge.stack import OWNER_KEY, USER_KEY, LocalStack
from tests.helpers import registered_enclave, send_echo_requests
from verifier.protocol import Status, job_id

ECHO = job_id("echo", 1)
REEXECUTING = re.compile(r"WARNING .*signer revoked; its result is discarded and another enclave executes it again")


def in_flight_on_a(local: LocalStack, count: int) -> list[bytes]:
    """``count`` requests whose results A signed, carried by one persisted transaction never broadcast."""
    ids = send_echo_requests(local, count)
    crashing = local.start_relayer(
        extra_env={FAULT_ENV: "crash-before-broadcast"}, coprocessors=(local.coprocessor_url,)
    )
    assert crashing.process is not None and crashing.process.wait(timeout=60) == FAULT_EXIT_CODE
    store = Store(local.workdir / "relayer.sqlite")  # type: ignore[operator]
    try:
        rows = [store.get(r) for r in ids]
        assert all(r is not None and r.state == SUBMITTED for r in rows), [r and r.state for r in rows]
        signers = {r.fulfillment["signer"] for r in rows if r is not None and r.fulfillment is not None}
        assert signers == {local.registration.signer}
        assert len({r.submit_tx for r in rows if r is not None}) == 1, "one transaction carries them all"
    finally:
        store.close()
    return ids


def revoke(local: LocalStack, signer: str) -> None:
    owner = ChainClient(local.anvil.rpc_url, OWNER_KEY)
    owner.send(owner.contract("EnclaveRegistry", local.deployment.registry).functions.revokeSigner(signer))


def router_events(local: LocalStack, start: int) -> tuple[dict[bytes, list[str]], list[Any]]:
    """Request id -> the signers of its ``Fulfilled`` events since ``start``; and the ``FulfillmentSkipped`` events."""
    router = ChainClient(local.anvil.rpc_url, USER_KEY).contract("Router", local.deployment.router)
    by_id: dict[bytes, list[str]] = {}
    for event in router.events.Fulfilled().get_logs(from_block=start):
        assert event["args"]["status"] == Status.OK
        by_id.setdefault(bytes(event["args"]["requestId"]), []).append(event["args"]["signer"])
    return by_id, list(router.events.FulfillmentSkipped().get_logs(from_block=start))


def wait_until(check: Callable[[], bool], why: Callable[[], object], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting: {why()}"
        time.sleep(0.2)


def metric(local: LocalStack, line: str) -> float | None:
    """The value of one ``/metrics`` sample (its name and labels as given), or None if absent."""
    for text in httpx.get(local.relayer_url + "/metrics", timeout=5).text.splitlines():
        if text.startswith(line + " "):
            return float(text.rsplit(" ", 1)[1])
    return None


def states(local: LocalStack, ids: list[bytes]) -> list[tuple[str, int]]:
    """(state, reexecutions) of each request in the relayer's store."""
    store = Store(local.workdir / "relayer.sqlite")  # type: ignore[operator]
    try:
        rows = [store.get(r) for r in ids]
        return [(r.state, r.reexecutions) if r is not None else ("missing", 0) for r in rows]
    finally:
        store.close()


def delivered_once_by(local: LocalStack, ids: list[bytes], start: int, signer: str) -> list[Any]:
    """Wait until every request is delivered; assert each exactly once, by ``signer``; the skips seen."""
    wait_until(lambda: set(ids) <= set(router_events(local, start)[0]), lambda: states(local, ids))
    fulfilled, skipped = router_events(local, start)
    assert all(len(fulfilled[r]) == 1 for r in ids), "each request delivered exactly once"
    assert {fulfilled[r][0] for r in ids} == {signer}, "by B; the revoked A delivered nothing"
    wait_until(lambda: states(local, ids) == [(DELIVERED, 1)] * len(ids), lambda: states(local, ids))
    return skipped


@contextmanager
def revoked_with_work_in_flight(count: int) -> Iterator[tuple[LocalStack, Child, list[bytes], list[Any]]]:
    """``count`` requests signed by A and persisted unsent, A revoked, then a relayer with A and B: yields the stack,
    that relayer, the request ids and the skips seen, once every request was delivered exactly once, by B."""
    with LocalStack(with_relayer=False) as local, registered_enclave(local, "coprocessor-b") as (b_url, b_signer):
        start = ChainClient(local.anvil.rpc_url, USER_KEY).w3.eth.block_number
        ids = in_flight_on_a(local, count)
        revoke(local, local.registration.signer)

        relayer = local.start_relayer(coprocessors=(local.coprocessor_url, b_url))
        relayer.wait_for_line(RELAYER_READY, after=relayer.log_offset)
        yield local, relayer, ids, delivered_once_by(local, ids, start, b_signer)


def test_a_single_fulfil_signed_by_a_revoked_enclave_is_executed_again_by_another() -> None:
    with revoked_with_work_in_flight(1) as (local, relayer, _ids, skipped):
        assert skipped == [], "fulfill reverts (UnauthorizedSigner) rather than skipping"
        relayer.wait_for_line(REEXECUTING, after=relayer.log_offset)
        assert metric(local, 'teebridge_relayer_reexecutions_total{reason="revoked"}') == 1
        health = httpx.get(local.relayer_url + "/health", timeout=5).json()
        assert health["excluded_signers"] == {local.registration.signer.lower(): "revoked"}
        assert health["status"] == "ok", health["problems"]  # B still holds a live key


def test_a_batch_signed_by_a_revoked_enclave_is_executed_again_by_another() -> None:
    with revoked_with_work_in_flight(6) as (local, relayer, ids, skipped):
        # the stale batch was mined once (re-broadcast after the crash): the Router skipped each of A's items
        assert sorted(bytes(e["args"]["requestId"]) for e in skipped) == sorted(ids)
        assert {e["args"]["reason"] for e in skipped} == {SKIP_UNAUTHORIZED_SIGNER}
        assert metric(local, 'teebridge_relayer_reexecutions_total{reason="revoked"}') == len(ids)
        assert len(REEXECUTING.findall(relayer.log_path.read_text())) == len(ids)


def test_with_no_authorized_enclave_left_the_request_waits_without_looping_and_is_cancelled_at_expiry() -> None:
    with LocalStack(with_relayer=False) as local:
        ids = in_flight_on_a(local, 1)
        revoke(local, local.registration.signer)

        relayer = local.start_relayer(coprocessors=(local.coprocessor_url,), extra_args=("--auto-cancel",))
        relayer.wait_for_line(RELAYER_READY, after=relayer.log_offset)
        relayer.wait_for_line(REEXECUTING, after=relayer.log_offset)
        waiting = re.compile(
            r"WARNING 1 request\(s\) wait: no coprocessor whose results the registry accepts: .*revoked"
            r".*Start a coprocessor"
        )
        relayer.wait_for_line(waiting, after=relayer.log_offset)
        ticks = metric(local, "teebridge_relayer_ticks_total") or 0
        wait_until(lambda: (metric(local, "teebridge_relayer_ticks_total") or 0) >= ticks + 20, lambda: "ticks")

        log = relayer.log_path.read_bytes()[relayer.log_offset :].decode()
        assert len(REEXECUTING.findall(log)) == 1, "re-executed once; never again on the revoked key"
        assert len(waiting.findall(log)) == 1, "the operator is told once, not every pass"
        assert states(local, ids) == [(PENDING, 1)]
        health = httpx.get(local.relayer_url + "/health", timeout=5).json()
        assert health["status"] == "degraded"
        assert any("no coprocessor holds a key the registry accepts" in p for p in health["problems"])

        # Its expiry passes: closed as expired, and auto-cancel refunds the requester.
        w3 = ChainClient(local.anvil.rpc_url, USER_KEY).w3
        w3.provider.make_request("evm_increaseTime", [700])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        relayer.wait_for_line(re.compile(r"auto-cancel cancelled"), after=relayer.log_offset, timeout=60)
        assert states(local, ids) == [(EXPIRED, 1)]
        router = ChainClient(local.anvil.rpc_url, USER_KEY).contract("Router", local.deployment.router)
        assert [bytes(e["args"]["requestId"]) for e in router.events.Cancelled().get_logs(from_block=0)] == ids
        assert router.events.Fulfilled().get_logs(from_block=0) == []
