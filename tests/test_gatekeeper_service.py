"""The gatekeeper loop on a real stack: register, fulfil, expire, renew, and revoke."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3

from relayer.chain import ChainClient
from teebridge.anvil import free_port
from teebridge.client import send_via_consumer, wait_for_answer
from teebridge.gatekeeper_service import GatekeeperService, Outcome
from teebridge.stack import GATEKEEPER_KEY, USER_KEY, LocalStack
from verifier.envelope import plain
from verifier.gatekeeper import Allowlist, simulated_evaluator
from verifier.hashing import keccak256
from verifier.protocol import Status, job_id

ECHO = job_id("echo", 1)
VALIDITY = 3600
MARGIN = 600


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalStack]:
    with LocalStack(workdir=tmp_path) as stack:
        yield stack


def service(stack: LocalStack, measurements: frozenset[bytes] | None = None) -> GatekeeperService:
    allowed = measurements if measurements is not None else frozenset({stack.registration.measurement})
    allowlist = Allowlist(allowed, allow_simulated=True, validity_seconds=VALIDITY)
    return GatekeeperService(
        ChainClient(stack.anvil.rpc_url, GATEKEEPER_KEY),
        stack.deployment.registry,
        [stack.coprocessor_url],
        simulated_evaluator(allowlist),
        renew_margin=MARGIN,
    )


def _user(stack: LocalStack):
    user = ChainClient(stack.anvil.rpc_url, USER_KEY)
    return user, user.contract("Router", stack.deployment.router)


def echo(stack: LocalStack, payload: bytes) -> int:
    user, router = _user(stack)
    d = stack.deployment
    sent = send_via_consumer(user, user.contract("ExampleConsumer", d.consumer), router, ECHO, plain(payload), ttl=60)
    return wait_for_answer(router, sent.request_id, from_block=sent.block_number, timeout=20).status


def advance(stack: LocalStack, seconds: int) -> None:
    w3 = ChainClient(stack.anvil.rpc_url, USER_KEY).w3
    w3.provider.make_request("evm_increaseTime", [seconds])
    w3.provider.make_request("evm_mine", [])


def expiry_of(stack: LocalStack, signer: str) -> int:
    registry = ChainClient(stack.anvil.rpc_url, USER_KEY).contract("EnclaveRegistry", stack.deployment.registry)
    return registry.functions.signerInfo(signer).call()[1]


def test_register_fulfil_expire_renew(local: LocalStack) -> None:
    gk = service(local)
    signer = local.registration.signer
    # The stack registered for 7 days; a fresh check leaves a long-lived registration alone.
    assert gk.check(local.coprocessor_url).outcome is Outcome.FRESH
    assert echo(local, b"before") == Status.OK

    # Let the registration lapse: the Router refuses the enclave's answers, so nothing is delivered...
    advance(local, 8 * 24 * 3600)
    user, router = _user(local)
    d = local.deployment
    stranded = send_via_consumer(
        user, user.contract("ExampleConsumer", d.consumer), router, ECHO, plain(b"gap"), ttl=600
    )
    time.sleep(2)
    assert router.functions.commitments(stranded.request_id).call() != b"\x00" * 32

    # ...until the gatekeeper re-attests and renews: then the stranded request is delivered too.
    result = gk.check(local.coprocessor_url)
    assert result.outcome is Outcome.RENEWED and result.signer == signer
    answer = wait_for_answer(router, stranded.request_id, from_block=stranded.block_number, timeout=30)
    assert answer.status == Status.OK
    assert echo(local, b"after renewal") == Status.OK

    # Close to expiry (inside the margin) it renews ahead of time.
    first_expiry = expiry_of(local, signer)
    advance(local, VALIDITY - MARGIN + 1)
    assert gk.check(local.coprocessor_url).outcome is Outcome.RENEWED
    assert expiry_of(local, signer) > first_expiry


def test_registering_forgets_the_measurements_expired_signers(local: LocalStack) -> None:
    """The registry holds at most 64 signers per measurement: the gatekeeper drops the expired ones (a rotated
    key, a replaced enclave) before it registers, so they never fill the list."""
    gk = service(local)
    gatekeeper = ChainClient(local.anvil.rpc_url, GATEKEEPER_KEY)
    registry = gatekeeper.contract("EnclaveRegistry", local.deployment.registry)
    measurement = local.registration.measurement
    retired = Web3.to_checksum_address("0x" + "5e" * 20)
    now = gatekeeper.w3.eth.get_block("latest")["timestamp"]
    gatekeeper.send(registry.functions.registerSigner(retired, measurement, now + 60, True, b"\x01" + b"\x01" * 32))
    assert set(registry.functions.signersOf(measurement).call()) == {retired, local.registration.signer}
    advance(local, 8 * 24 * 3600)  # both lapse; the gatekeeper renews the live enclave
    assert gk.check(local.coprocessor_url).outcome is Outcome.RENEWED
    assert registry.functions.signersOf(measurement).call() == [local.registration.signer]
    assert echo(local, b"after the clean-up") == Status.OK


def test_policy_no_longer_allowing_the_measurement_revokes_for_good(local: LocalStack) -> None:
    stricter = service(local, frozenset({keccak256(b"the next image")}))
    result = stricter.check(local.coprocessor_url)
    assert result.outcome is Outcome.REVOKED and "not on the allowlist" in result.reason
    registry = ChainClient(local.anvil.rpc_url, USER_KEY).contract("EnclaveRegistry", local.deployment.registry)
    assert registry.functions.signerInfo(local.registration.signer).call()[2] is True
    # Even a lenient gatekeeper cannot bring a revoked key back.
    assert service(local).check(local.coprocessor_url).outcome is Outcome.REFUSED


def test_an_unreachable_enclave_is_not_revoked(local: LocalStack) -> None:
    gk = service(local)
    gk.coprocessors = [f"http://127.0.0.1:{free_port()}"]
    (result,) = gk.check_all()
    assert result.outcome is Outcome.UNVERIFIABLE
    registry = ChainClient(local.anvil.rpc_url, USER_KEY).contract("EnclaveRegistry", local.deployment.registry)
    assert registry.functions.signerInfo(local.registration.signer).call()[2] is False
