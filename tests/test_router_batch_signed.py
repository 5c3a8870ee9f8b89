"""``Router.fulfillBatchSigned``: one enclave signature over a whole batch, each trust check shown rejecting."""

from __future__ import annotations

import pytest
from web3.logs import DISCARD

from teebridge.registration import approve_jobs
from teebridge.testkit import requested_in
from tests.helpers import (
    ECHO_JOB,
    DevEnclave,
    Stack,
    advance_time,
    assert_reverts_with,
    consumer_gas,
    failed_callbacks,
    register,
    router_as,
    send_request,
)
from verifier.envelope import plain
from verifier.hashing import keccak256
from verifier.protocol import (
    PACKED_ITEM_FULL_HEADER,
    SAME_JOB,
    SAME_REQUESTER,
    Domain,
    Request,
    batch_digest,
    fulfillment_for,
    pack_items,
    unpack_items,
)

SKIP_NOT_PENDING, SKIP_MISMATCH, SKIP_EXPIRED, SKIP_UNAUTHORIZED = 1, 2, 3, 5
OTHER_JOB = keccak256(b"other@1")


def _send(stack: Stack, args: tuple[bytes, bytes, bytes, bytes]):
    receipt = stack.relayer.send(router_as(stack, stack.relayer).functions.fulfillBatchSigned(*args))
    delivered = [bytes(e["args"]["requestId"]) for e in stack.router.events.Fulfilled().process_receipt(receipt)]
    skipped = {
        bytes(e["args"]["requestId"]): e["args"]["reason"]
        for e in stack.router.events.FulfillmentSkipped().process_receipt(receipt, errors=DISCARD)
    }
    return receipt, delivered, skipped


def _requests(stack: Stack, n: int, **kw) -> list[Request]:
    return [send_request(stack, plain(b"batch %d" % i), **kw)[0] for i in range(n)]


def _pending(stack: Stack, request: Request) -> bool:
    return stack.router.functions.commitments(request.request_id).call() == request.commitment()


def test_one_signature_delivers_every_item_and_pays_the_fees_once(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    requests = _requests(stack, 4, fee=100)
    answers = [(r, b"answer %d" % i, 0) for i, r in enumerate(requests)]
    balance = stack.w3.eth.get_balance(stack.relayer.address)
    receipt, delivered, skipped = _send(stack, enclave.sign_batch(answers, stack.domain))
    assert delivered == [r.request_id for r in requests] and not skipped
    for i, r in enumerate(requests):
        assert stack.consumer.functions.answerOf(r.request_id).call() == [True, 0, b"answer %d" % i]
        assert not _pending(stack, r)
    events = stack.router.events.Fulfilled().process_receipt(receipt)
    assert {e["args"]["signer"] for e in events} == {enclave.address}
    spent = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert stack.w3.eth.get_balance(stack.relayer.address) == balance - spent + 400


def test_router_batch_digest_and_packing_match_python(stack: Stack) -> None:
    """The Router's digest of packed items equals verifier.protocol's (which tests/test_protocol_vectors.py holds
    to an independent EIP-712 encoder), and the packing round-trips."""
    requests = _requests(stack, 3)
    measurement = keccak256(b"m")
    fulfillments = [fulfillment_for(r, i, b"r%d" % i, measurement) for i, r in enumerate(requests)]
    items = pack_items((r, i, b"r%d" % i) for i, r in enumerate(requests))
    assert items[0] == 0 and items[PACKED_ITEM_FULL_HEADER + 2] == SAME_REQUESTER | SAME_JOB  # one consumer, one job
    assert stack.router.functions.fulfillmentBatchDigest(items, measurement).call() == batch_digest(
        fulfillments, stack.domain
    )
    assert [(p.request, p.status, p.result) for p in unpack_items(items, stack.domain)] == [
        (r, i, b"r%d" % i) for i, r in enumerate(requests)
    ]


@pytest.mark.parametrize("tamper", ["result", "status", "drop", "reorder", "other-chain", "unregistered"])
def test_a_batch_the_enclave_did_not_sign_delivers_nothing(stack: Stack, tamper: str) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    requests = _requests(stack, 3)
    answers = [(r, b"ok", 0) for r in requests]
    items, measurement, r, vs = enclave.sign_batch(answers, stack.domain)
    if tamper == "result":
        items = pack_items((q, 0, b"ok" if i else b"no") for i, q in enumerate(requests))
    elif tamper == "status":
        items = pack_items((q, 1 if i == 2 else 0, b"ok") for i, q in enumerate(requests))
    elif tamper == "drop":
        items = pack_items((q, 0, b"ok") for q in requests[:2])
    elif tamper == "reorder":
        items = pack_items((q, 0, b"ok") for q in reversed(requests))
    elif tamper == "other-chain":
        _, _, r, vs = enclave.sign_batch(answers, Domain(1, stack.router.address))
    elif tamper == "unregistered":
        _, _, r, vs = DevEnclave.random().sign_batch(answers, stack.domain)
    # the signature recovers to some other address, which the registry does not know
    _, delivered, skipped = _send(stack, (items, measurement, r, vs))
    assert not delivered
    assert set(skipped.values()) == {SKIP_UNAUTHORIZED}
    assert all(_pending(stack, q) for q in requests)


def test_replayed_batch_is_a_no_op(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    requests = _requests(stack, 2)
    args = enclave.sign_batch([(r, b"once", 0) for r in requests], stack.domain)
    _, delivered, _ = _send(stack, args)
    assert len(delivered) == 2
    _, delivered, skipped = _send(stack, args)
    assert not delivered and skipped == {r.request_id: SKIP_NOT_PENDING for r in requests}


def test_revoked_signer_delivers_nothing(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    requests = _requests(stack, 2)
    registry = stack.gatekeeper.contract("EnclaveRegistry", stack.registry.address)
    stack.gatekeeper.send(registry.functions.revokeSigner(enclave.address))
    _, delivered, skipped = _send(stack, enclave.sign_batch([(r, b"x", 0) for r in requests], stack.domain))
    assert not delivered and set(skipped.values()) == {SKIP_UNAUTHORIZED}


@pytest.mark.parametrize("why", ["expired", "simulated-no-longer-allowed"])
def test_a_signer_the_router_no_longer_accepts_delivers_nothing(stack: Stack, why: str) -> None:
    """The batch path reads the Router's authorization record inline (not through isAuthorized): its expiry and
    its simulated bit against the Router's copy of the flag are checked there too."""
    enclave = DevEnclave.random()
    register(stack, enclave, ttl=100, simulated=why != "expired")
    requests = _requests(stack, 2, ttl=3600)
    if why == "expired":
        advance_time(stack, 200)
    else:
        stack.owner.send(stack.registry.functions.setSimulatedAttestationsAllowed(False))
    _, delivered, skipped = _send(stack, enclave.sign_batch([(r, b"x", 0) for r in requests], stack.domain))
    assert not delivered and skipped == {r.request_id: SKIP_UNAUTHORIZED for r in requests}


def test_items_are_checked_one_by_one(stack: Stack) -> None:
    """Expired, mismatched and unapproved-job items are skipped; the others in the same batch are delivered."""
    enclave = DevEnclave.random()
    register(stack, enclave)
    approve_jobs(stack.owner, stack.registry.address, keccak256(b"another measurement"), (OTHER_JOB,))
    ok_first, ok_last = _requests(stack, 2)
    short, _ = send_request(stack, plain(b"short"), ttl=1)
    other_job, _ = send_request(stack, plain(b"other"), job=OTHER_JOB)
    lied_about, _ = send_request(stack, plain(b"lied"))
    settled, _ = send_request(stack, plain(b"settled"))
    _send(stack, enclave.sign_batch([(settled, b"first", 0)], stack.domain))
    stack.w3.provider.make_request("evm_increaseTime", [5])
    wrong_fields = Request(
        lied_about.request_id,
        lied_about.requester,
        lied_about.job_id,
        lied_about.input_hash,
        lied_about.callback_gas_limit + 1,  # the enclave was told another gas limit than the Router stored
        lied_about.fee,
        lied_about.expiry,
    )
    answers = [(q, b"ok", 0) for q in (ok_first, short, other_job, wrong_fields, settled, ok_last)]
    _, delivered, skipped = _send(stack, enclave.sign_batch(answers, stack.domain))
    assert delivered == [ok_first.request_id, ok_last.request_id]
    assert skipped == {
        short.request_id: SKIP_EXPIRED,
        other_job.request_id: SKIP_UNAUTHORIZED,
        lied_about.request_id: SKIP_MISMATCH,
        settled.request_id: SKIP_NOT_PENDING,
    }
    assert _pending(stack, other_job) and _pending(stack, lied_about)


def test_malformed_and_malleable_batches_revert(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    (request,) = _requests(stack, 1)
    items, measurement, r, vs = enclave.sign_batch([(request, b"ok", 0)], stack.domain)
    router = router_as(stack, stack.relayer)
    sender = stack.relayer.address
    unknown_flag = b"\x04" + items[1:]
    same_on_first = bytes([SAME_JOB]) + items[1:]  # the first item has no previous one to repeat
    for bad in (b"", items[: PACKED_ITEM_FULL_HEADER - 1], items[:-1], items + b"\x00", unknown_flag, same_on_first):
        call = router.functions.fulfillBatchSigned(bad, measurement, r, vs)
        assert_reverts_with(call, sender, "MalformedBatch(uint256)")
        with pytest.raises(ValueError):
            unpack_items(bad, stack.domain)
    # an s above n/2 is the malleable twin of a valid signature: refused before ecrecover
    half_n = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
    call = router.functions.fulfillBatchSigned(items, measurement, r, (half_n + 1).to_bytes(32, "big"))
    assert_reverts_with(call, sender, "InvalidBatchSignature()")
    assert _pending(stack, request)


def test_packed_items_round_trip_with_empty_and_long_results(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave, jobs=(ECHO_JOB,))
    requests = _requests(stack, 3, gas=300_000)
    results = [b"", b"\xff" * 33, bytes(range(200))]
    _, delivered, _ = _send(
        stack, enclave.sign_batch([(q, x, 0) for q, x in zip(requests, results, strict=True)], stack.domain)
    )
    assert len(delivered) == 3
    for q, x in zip(requests, results, strict=True):
        assert stack.consumer.functions.answerOf(q.request_id).call() == [True, 0, x]


def _flags(items: bytes) -> list[int]:
    """Each packed item's flags byte, found by walking the layout of docs/protocol.md 7.1."""
    flags, pos = [], 0
    while pos < len(items):
        f = items[pos]
        flags.append(f)
        pos += 1 + 8 + (0 if f & SAME_REQUESTER else 20) + (0 if f & SAME_JOB else 32) + 32 + 4 + 12 + 8 + 1
        pos += 2 + int.from_bytes(items[pos : pos + 2], "big")
    return flags


def test_items_from_several_requesters_and_jobs_reach_their_own_callbacks(stack: Stack) -> None:
    """The SAME_REQUESTER / SAME_JOB flags only ever repeat the previous item's field: a batch that switches
    requester and job between items delivers each result to its own requester, and asks the registry per job."""
    enclave = DevEnclave.random()
    register(stack, enclave, jobs=(ECHO_JOB, OTHER_JOB))
    via_consumer = _requests(stack, 2)
    receipt = stack.user.send(router_as(stack, stack.user).functions.request(OTHER_JOB, plain(b"eoa"), 50_000, 600))
    eoa_request, _ = requested_in(stack.router, receipt)
    (other_job,) = _requests(stack, 1, job=OTHER_JOB)
    order = [via_consumer[0], eoa_request, via_consumer[1], other_job]
    answers = [(q, b"answer %d" % i, 0) for i, q in enumerate(order)]
    items, measurement, r, vs = enclave.sign_batch(answers, stack.domain)
    # consumer/echo, EOA/other, consumer/echo, consumer/other: only the last repeats a field (the requester)
    assert _flags(items) == [0, 0, 0, SAME_REQUESTER]
    receipt, delivered, skipped = _send(stack, (items, measurement, r, vs))
    assert delivered == [q.request_id for q in order] and not skipped
    failed = failed_callbacks(stack, receipt)
    assert failed.get(eoa_request.request_id) == 0  # an account without code: a failed callback, nothing called
    for i, q in enumerate(order):
        if q is not eoa_request:
            assert q.request_id not in failed
            assert stack.consumer.functions.answerOf(q.request_id).call() == [True, 0, b"answer %d" % i]


def test_a_batch_of_one_consumer_and_one_job_carries_each_only_once(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    requests = _requests(stack, 3)
    items, measurement, r, vs = enclave.sign_batch([(q, b"ok", 0) for q in requests], stack.domain)
    assert _flags(items) == [0, SAME_REQUESTER | SAME_JOB, SAME_REQUESTER | SAME_JOB]
    assert len(items) == PACKED_ITEM_FULL_HEADER + 2 * (PACKED_ITEM_FULL_HEADER - 52) + 3 * 2
    _, delivered, _ = _send(stack, (items, measurement, r, vs))
    assert delivered == [q.request_id for q in requests]


def test_a_batch_that_cannot_give_a_callback_its_gas_reverts_whole(stack: Stack) -> None:
    """Exact-gas callbacks: a submitter who sends too little gas cannot make a callback fail cheaply (and so
    settle its request as a failed callback); the whole batch reverts and every request stays pending."""
    enclave = DevEnclave.random()
    register(stack, enclave)
    burner, _ = stack.owner.deploy("GasBurningConsumer", stack.router.address)
    (first,) = _requests(stack, 1)
    starving, _ = send_request(stack, plain(b"burn"), consumer=burner, gas=500_000)
    args = enclave.sign_batch([(first, b"ok", 0), (starving, b"ok", 0)], stack.domain)
    call = router_as(stack, stack.relayer).functions.fulfillBatchSigned(*args)
    sender = stack.relayer.address
    signature = "InsufficientGasForCallback(bytes32)"
    assert_reverts_with(call, sender, signature, gas=400_000, arguments=starving.request_id)
    assert _pending(stack, first) and _pending(stack, starving)
    # with the gas it asked for, the burner's callback gets all of it (and fails on its own)
    receipt = stack.relayer.send(call, gas=1_000_000)
    failed = failed_callbacks(stack, receipt)
    assert first.request_id not in failed
    assert failed[starving.request_id] >= 500_000
    assert consumer_gas(stack, receipt, burner.address) == 500_000
