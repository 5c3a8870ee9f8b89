"""``Router.fulfillPacked``, the single-result path the relayer sends: the same checks as ``fulfill``, each shown
rejecting, against a real anvil; and the registry's authorizations as the Router reads them."""

from __future__ import annotations

import pytest

from relayer.chain import TransactionFailedError
from tests.helpers import (
    DevEnclave,
    Stack,
    advance_time,
    assert_reverts_with,
    failed_callbacks,
    packed_call,
    register,
    send_request,
)
from verifier.envelope import plain
from verifier.protocol import Request, Status, pack_fulfillment

HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


def body_for(stack: Stack, enclave: DevEnclave, request: Request, result: bytes, status: int = Status.OK) -> bytes:
    signed = enclave.sign(request, result, stack.domain, status)
    r, vs = signed.compact_signature()
    return pack_fulfillment(request, signed.status, signed.result, signed.measurement, r, vs)


def refused(stack: Stack, body: bytes, signature: str, arguments: bytes = b"") -> None:
    assert_reverts_with(packed_call(stack, body), stack.relayer.address, signature, arguments=arguments)


@pytest.fixture
def enclave(stack: Stack) -> DevEnclave:
    enclave = DevEnclave.random()
    register(stack, enclave)
    return enclave


def test_delivers_pays_the_fee_and_records_the_callback(stack: Stack, enclave: DevEnclave) -> None:
    request, _ = send_request(stack, plain(b"hello"), fee=10**15)
    balance = stack.w3.eth.get_balance(stack.relayer.address)
    receipt = stack.relayer.send(packed_call(stack, body_for(stack, enclave, request, b"world")))
    (event,) = stack.router.events.Fulfilled().process_receipt(receipt)
    assert event["args"]["requestId"] == request.request_id and event["args"]["signer"] == enclave.address
    assert event["args"]["status"] == Status.OK and not failed_callbacks(stack, receipt)
    assert stack.consumer.functions.answerOf(request.request_id).call() == [True, 0, b"world"]
    assert stack.router.functions.commitments(request.request_id).call() == b"\x00" * 32
    spent = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert stack.w3.eth.get_balance(stack.relayer.address) == balance - spent + 10**15


def test_an_error_status_and_an_empty_result_reach_the_consumer(stack: Stack, enclave: DevEnclave) -> None:
    request, _ = send_request(stack, plain(b"x"))
    stack.relayer.send(packed_call(stack, body_for(stack, enclave, request, b"", Status.INVALID_INPUT)))
    assert stack.consumer.functions.answerOf(request.request_id).call() == [True, Status.INVALID_INPUT, b""]


def test_a_replay_is_a_cheap_no_op(stack: Stack, enclave: DevEnclave) -> None:
    request, _ = send_request(stack, plain(b"x"))
    call = packed_call(stack, body_for(stack, enclave, request, b"r"))
    first = stack.relayer.send(call)
    second = stack.relayer.send(call)
    (skip,) = stack.router.events.FulfillmentSkipped().process_receipt(second)
    assert skip["args"]["reason"] == 1 and not stack.router.events.Fulfilled().process_receipt(second)
    assert second["gasUsed"] < 32_000 < first["gasUsed"]  # the no-op pays about the EIP-7623 calldata floor


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda b: b[:96] + b"\x01" + b[97:], id="flags-not-zero"),
        pytest.param(lambda b: b[:-1], id="result-cut-short"),
        pytest.param(lambda b: b + b"\x00", id="a-byte-too-many"),
        pytest.param(lambda b: b[:150], id="no-whole-head"),
        pytest.param(lambda b: b"", id="empty"),
    ],
)
def test_a_malformed_call_is_refused(stack: Stack, enclave: DevEnclave, mangle) -> None:
    request, _ = send_request(stack, plain(b"x"))
    refused(stack, mangle(body_for(stack, enclave, request, b"some result")), "MalformedItem()")


def test_altered_request_fields_are_refused(stack: Stack, enclave: DevEnclave) -> None:
    request, _ = send_request(stack, plain(b"x"), fee=100)
    greedy = Request(*request.as_tuple()[:5], request.fee * 1000, request.expiry)
    refused(stack, body_for(stack, enclave, greedy, b"r"), "CommitmentMismatch(bytes32)", request.request_id)


def test_an_expired_request_is_refused(stack: Stack, enclave: DevEnclave) -> None:
    request, _ = send_request(stack, plain(b"x"), ttl=60)
    advance_time(stack, 120)
    refused(stack, body_for(stack, enclave, request, b"r"), "RequestExpired(bytes32,uint64)", request.request_id)


def test_another_request_number_answers_nothing(stack: Stack, enclave: DevEnclave) -> None:
    """The item carries the request's number, not its id: pointing it at another request (pending or not) cannot
    deliver this answer there, and this request stays pending."""
    request, _ = send_request(stack, plain(b"x"))
    other, _ = send_request(stack, plain(b"y"))
    body = body_for(stack, enclave, request, b"r")
    number_at = 96 + 1
    assert body[number_at : number_at + 8] == request.request_id[-8:]
    as_other = body[:number_at] + other.request_id[-8:] + body[number_at + 8 :]
    refused(stack, as_other, "CommitmentMismatch(bytes32)", other.request_id)
    unused = (int.from_bytes(other.request_id[-8:], "big") + 1000).to_bytes(8, "big")
    receipt = stack.relayer.send(packed_call(stack, body[:number_at] + unused + body[number_at + 8 :]))
    (skip,) = stack.router.events.FulfillmentSkipped().process_receipt(receipt)
    assert skip["args"]["reason"] == 1 and not stack.router.events.Fulfilled().process_receipt(receipt)
    assert stack.router.functions.commitments(request.request_id).call() == request.commitment()
    assert stack.router.functions.commitments(other.request_id).call() == other.commitment()


def test_tampered_result_status_and_measurement_are_refused(stack: Stack, enclave: DevEnclave) -> None:
    request, _ = send_request(stack, plain(b"x"))
    body = body_for(stack, enclave, request, b"honest")
    tampered_result = body[:-6] + b"forged"
    status_at = 96 + 1 + 8 + 20 + 32 + 32 + 4 + 12 + 8
    tampered_status = body[:status_at] + bytes([Status.JOB_FAILED]) + body[status_at + 1 :]
    other_measurement = b"\x42" * 32 + body[32:]
    for bad in (tampered_result, tampered_status, other_measurement):
        # another digest recovers another address, which no one authorized
        refused(stack, bad, "UnauthorizedSigner(bytes32,address)", request.request_id)


def test_a_high_s_signature_is_refused(stack: Stack, enclave: DevEnclave) -> None:
    request, _ = send_request(stack, plain(b"x"))
    body = body_for(stack, enclave, request, b"r")
    vs = int.from_bytes(body[64:96], "big")
    high_s = (HALF_N + 1) | (vs >> 255 << 255)
    refused(stack, body[:64] + high_s.to_bytes(32, "big") + body[96:], "InvalidSignature(bytes32)")


def test_a_signature_that_recovers_nothing_is_refused(stack: Stack, enclave: DevEnclave) -> None:
    request, _ = send_request(stack, plain(b"x"))
    body = body_for(stack, enclave, request, b"r")
    refused(stack, body[:32] + b"\x00" * 64 + body[96:], "InvalidSignature(bytes32)", request.request_id)


def test_unregistered_revoked_and_expired_signers_are_refused(stack: Stack, enclave: DevEnclave) -> None:
    request, _ = send_request(stack, plain(b"x"), ttl=3600)
    refused(stack, body_for(stack, DevEnclave.random(), request, b"r"), "UnauthorizedSigner(bytes32,address)")
    short_lived = DevEnclave.random()
    register(stack, short_lived, ttl=100)
    registry = stack.gatekeeper.contract("EnclaveRegistry", stack.registry.address)
    stack.gatekeeper.send(registry.functions.revokeSigner(enclave.address))
    refused(stack, body_for(stack, enclave, request, b"r"), "UnauthorizedSigner(bytes32,address)")
    stack.relayer.send(packed_call(stack, body_for(stack, short_lived, request, b"r")))  # live until it expires
    later, _ = send_request(stack, plain(b"y"), ttl=3600)
    advance_time(stack, 200)
    refused(stack, body_for(stack, short_lived, later, b"r"), "UnauthorizedSigner(bytes32,address)")


def test_a_simulated_signer_needs_the_flag(stack: Stack) -> None:
    simulated = DevEnclave.random()
    register(stack, simulated, simulated=True)
    request, _ = send_request(stack, plain(b"x"))
    stack.owner.send(stack.registry.functions.setSimulatedAttestationsAllowed(False))
    assert stack.router.functions.simulatedAttestationsAllowed().call() is False
    refused(stack, body_for(stack, simulated, request, b"r"), "UnauthorizedSigner(bytes32,address)")


def test_too_little_gas_for_the_callback_reverts_everything(stack: Stack, enclave: DevEnclave) -> None:
    consumer, _ = stack.owner.deploy("GasBurningConsumer", stack.router.address)
    request, _ = send_request(stack, plain(b"x"), consumer=consumer, gas=500_000)
    call = packed_call(stack, body_for(stack, enclave, request, b"r"))
    signature = "InsufficientGasForCallback(bytes32)"
    assert_reverts_with(call, stack.relayer.address, signature, gas=300_000, arguments=request.request_id)
    with pytest.raises(TransactionFailedError):
        stack.relayer.send(call, gas=300_000)
    assert stack.router.functions.commitments(request.request_id).call() == request.commitment()


def test_a_failing_callback_is_recorded_not_reverted(stack: Stack, enclave: DevEnclave) -> None:
    consumer, _ = stack.owner.deploy("RevertingConsumer", stack.router.address)
    request, _ = send_request(stack, plain(b"x"), consumer=consumer)
    receipt = stack.relayer.send(packed_call(stack, body_for(stack, enclave, request, b"r")))
    assert len(stack.router.events.Fulfilled().process_receipt(receipt)) == 1
    assert request.request_id in failed_callbacks(stack, receipt)
