"""Gas regression bounds for the Router's hot paths (figures and method: BENCHMARKS.md, ``python -m bench.gas``).

Gas is deterministic up to a few tens of gas (zero bytes in hashes and signatures are cheaper calldata),
so each bound sits about 5% above the value measured when it was set. A failure means a contract change
made the path more expensive: re-run ``python -m bench.gas``, and update BENCHMARKS.md with the bound.

Measured in the steady state (Router.nonce and ExampleConsumer.lastRequestId already non-zero), with a
signer registered from a non-simulated attestation, no fee, and the ExampleConsumer's callback.
"""

from __future__ import annotations

import eth_abi
from web3.logs import DISCARD

from teebridge.testkit import requested_in
from tests.helpers import (
    ECHO_JOB,
    DevEnclave,
    Stack,
    consumer_gas,
    failed_callbacks,
    packed_call,
    register,
    router_as,
    send_request,
)
from verifier.envelope import plain
from verifier.hashing import keccak256
from verifier.protocol import Request, pack_fulfillment

#: ExampleConsumer.send -> Router.request with a 32-byte input (measured 65,585).
MAX_REQUEST_VIA_CONSUMER_32B = 69_000
#: fulfill gasUsed minus the consumer's own gas (callTracer), 32-byte result (measured 39,967 since the Router reads
#: its own copy of the authorizations and leaner events; 49,801 when it called the registry).
MAX_FULFILL_OVERHEAD = 42_500
#: a fulfilment of a request that is already settled: FulfillmentSkipped, no state change.
MAX_REPLAYED_FULFILL = 40_000
#: fulfillBatch of 10 items, gasUsed / 10, callback included (measured 86,953).
MAX_BATCH_10_PER_ITEM = 92_000

#: fulfillBatchSigned of 50 TrivialConsumer callbacks (one 32-byte store each), gasUsed / 50, callback
#: included: issue 6's target (measured 28,807 by ``python -m bench.gas``; 29,726 before the request number
#: replaced the id in packed items and the callback's outcome left the Fulfilled event). Not 5% above the
#: measurement like the others: the target itself is the bound.
MAX_BATCH_SIGNED_50_TRIVIAL_PER_ITEM = 30_000

#: fulfillPacked (the relayer's call for one result) of a TrivialConsumer callback, 32-byte result: issue 6's
#: target, under 60,000 and so below API3's fulfil (60,149 measured the same way). Measured 59,560-59,572 by
#: ``python -m bench.gas``; Router.fulfill, the ABI-encoded form: 63,312.
MAX_FULFILL_PACKED_TRIVIAL = 60_000

#: TrivialConsumer.send -> Router.request with a 64-byte input (measured 59,788): issue 6's target.
MAX_REQUEST_VIA_TRIVIAL_64B = 60_000

INPUT_32 = plain(bytes(range(1, 32)))  # 0x00 tag + 31 non-zero bytes
RESULT = eth_abi.encode(["uint16"], [712])  # a credit score, as the credit-score job answers


def _warm(stack: Stack) -> DevEnclave:
    """Register a signer and make one request, so that later figures are steady-state ones."""
    enclave = DevEnclave.random()
    register(stack, enclave, simulated=False)
    send_request(stack, INPUT_32)
    return enclave


def _request_receipt(stack: Stack, payload: bytes) -> tuple[Request, dict]:
    consumer = stack.user.contract("ExampleConsumer", stack.consumer.address)
    receipt = stack.user.send(consumer.functions.send(ECHO_JOB, payload, 100_000, 600))
    request, _ = requested_in(stack.router, receipt)
    return request, receipt


def _fulfil(stack: Stack, enclave: DevEnclave, request: Request):
    signed = enclave.sign(request, RESULT, stack.domain)
    return router_as(stack, stack.relayer).functions.fulfill(signed.call_args(request))


def test_request_via_consumer_gas(stack: Stack) -> None:
    _warm(stack)
    _, receipt = _request_receipt(stack, INPUT_32)
    assert receipt["gasUsed"] <= MAX_REQUEST_VIA_CONSUMER_32B, receipt["gasUsed"]


def test_fulfill_overhead_and_replay_gas(stack: Stack) -> None:
    enclave = _warm(stack)
    request, _ = send_request(stack, INPUT_32)
    call = _fulfil(stack, enclave, request)
    receipt = stack.relayer.send(call)
    (event,) = stack.router.events.Fulfilled().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["status"] == 0 and not failed_callbacks(stack, receipt)
    overhead = receipt["gasUsed"] - consumer_gas(stack, receipt, stack.consumer.address)
    assert overhead <= MAX_FULFILL_OVERHEAD, overhead

    replay = stack.relayer.send(call)
    assert not stack.router.events.Fulfilled().process_receipt(replay, errors=DISCARD)
    assert replay["gasUsed"] < MAX_REPLAYED_FULFILL, replay["gasUsed"]


def test_fulfill_batch_of_10_gas_per_item(stack: Stack) -> None:
    enclave = _warm(stack)
    requests = [send_request(stack, INPUT_32)[0] for _ in range(10)]
    items = [enclave.sign(r, RESULT, stack.domain).call_args(r) for r in requests]
    receipt = stack.relayer.send(router_as(stack, stack.relayer).functions.fulfillBatch(items))
    events = stack.router.events.Fulfilled().process_receipt(receipt, errors=DISCARD)
    assert len(events) == 10 and not failed_callbacks(stack, receipt)
    per_item = receipt["gasUsed"] / 10
    assert per_item <= MAX_BATCH_10_PER_ITEM, per_item


def test_fulfill_batch_signed_of_50_trivial_callbacks_gas_per_item(stack: Stack) -> None:
    enclave = _warm(stack)
    trivial, _ = stack.owner.deploy("TrivialConsumer", stack.router.address)
    user_trivial = stack.user.contract("TrivialConsumer", trivial.address)
    answers = []
    for i in range(50):
        receipt = stack.user.send(user_trivial.functions.send(ECHO_JOB, plain(bytes([i + 1]) * 63), 100_000, 600))
        request, _ = requested_in(stack.router, receipt)
        answers.append((request, keccak256(bytes([i])), 0))
    args = enclave.sign_batch(answers, stack.domain)
    receipt = stack.relayer.send(router_as(stack, stack.relayer).functions.fulfillBatchSigned(*args))
    events = stack.router.events.Fulfilled().process_receipt(receipt, errors=DISCARD)
    assert len(events) == 50 and not failed_callbacks(stack, receipt)
    assert trivial.functions.results(answers[49][0].request_id).call() == keccak256(bytes([49]))
    per_item = receipt["gasUsed"] / 50
    assert per_item < MAX_BATCH_SIGNED_50_TRIVIAL_PER_ITEM, per_item


def test_request_with_a_64_byte_input_via_a_consumer_is_under_60k(stack: Stack) -> None:
    _warm(stack)
    trivial, _ = stack.owner.deploy("TrivialConsumer", stack.router.address)
    user_trivial = stack.user.contract("TrivialConsumer", trivial.address)
    stack.user.send(user_trivial.functions.send(ECHO_JOB, plain(b"\x01" * 63), 100_000, 600))
    for i in range(3):
        payload = plain(keccak256(bytes([i])) + keccak256(bytes([i, 1]))[:31])  # 64 bytes, like ciphertext
        receipt = stack.user.send(user_trivial.functions.send(ECHO_JOB, payload, 100_000, 600))
        assert receipt["gasUsed"] < MAX_REQUEST_VIA_TRIVIAL_64B, receipt["gasUsed"]


def test_fulfill_packed_of_a_trivial_callback_gas(stack: Stack) -> None:
    enclave = _warm(stack)
    trivial, _ = stack.owner.deploy("TrivialConsumer", stack.router.address)
    user_trivial = stack.user.contract("TrivialConsumer", trivial.address)
    for i in range(3):
        payload = plain(keccak256(bytes([i])) + keccak256(bytes([i, 1]))[:31])
        receipt = stack.user.send(user_trivial.functions.send(ECHO_JOB, payload, 100_000, 600))
        request, _ = requested_in(stack.router, receipt)
        signed = enclave.sign(request, keccak256(bytes([i, 2])), stack.domain)
        r, vs = signed.compact_signature()
        body = pack_fulfillment(request, signed.status, signed.result, signed.measurement, r, vs)
        receipt = stack.relayer.send(packed_call(stack, body))
        assert len(stack.router.events.Fulfilled().process_receipt(receipt, errors=DISCARD)) == 1
        assert not failed_callbacks(stack, receipt)
        assert trivial.functions.results(request.request_id).call() == keccak256(bytes([i, 2]))
        assert receipt["gasUsed"] < MAX_FULFILL_PACKED_TRIVIAL, receipt["gasUsed"]
