"""The Router's and the registry's trust checks, each shown rejecting, against a real anvil."""

from __future__ import annotations

import eth_abi
import pytest

from relayer.chain import TransactionFailedError
from teebridge.registration import approve_jobs
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
from verifier.protocol import Domain, Request, Status
from verifier.signing import sign_digest

SKIP_NOT_PENDING, SKIP_MISMATCH, SKIP_EXPIRED, SKIP_BAD_SIG, SKIP_UNAUTHORIZED = 1, 2, 3, 4, 5


def reverts_with(stack: Stack, call, signature: str) -> None:
    assert_reverts_with(call, stack.relayer.address, signature)


def fulfil(
    stack: Stack, enclave: DevEnclave, request: Request, result: bytes, *, status: int = 0, domain: Domain | None = None
):
    signed = enclave.sign(request, result, domain or stack.domain, status)
    router = router_as(stack, stack.relayer)
    return router.functions.fulfill(signed.call_args(request))


def test_happy_path_delivers_and_pays_the_submitter(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    request, _ = send_request(stack, plain(b"hello"), fee=10**15)
    assert stack.router.functions.commitments(request.request_id).call() == request.commitment()
    balance = stack.w3.eth.get_balance(stack.relayer.address)
    receipt = stack.relayer.send(fulfil(stack, enclave, request, b"world"))
    (event,) = stack.router.events.Fulfilled().process_receipt(receipt)
    assert event["args"]["signer"] == enclave.address
    assert event["args"]["status"] == 0 and not failed_callbacks(stack, receipt)
    assert stack.consumer.functions.answerOf(request.request_id).call() == [True, 0, b"world"]
    assert stack.router.functions.commitments(request.request_id).call() == b"\x00" * 32
    spent = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert stack.w3.eth.get_balance(stack.relayer.address) == balance - spent + 10**15


def test_python_commitment_and_digest_match_solidity(stack: Stack) -> None:
    enclave = DevEnclave.random()
    request, _ = send_request(stack, plain(b"x"), fee=7)
    assert stack.router.functions.commitmentOf(request.as_tuple()).call() == request.commitment()
    signed = enclave.sign(request, b"r", stack.domain)
    digest = stack.router.functions.fulfillmentDigest(
        request.request_id, request.commitment(), 0, keccak256(b"r"), enclave.measurement
    ).call()
    assert digest == signed.fulfillment().digest(stack.domain)
    assert stack.router.functions.domainSeparator().call() == stack.domain.separator()


def test_unregistered_signer_is_refused(stack: Stack) -> None:
    register(stack, DevEnclave.random())
    request, _ = send_request(stack, plain(b"x"))
    intruder = DevEnclave.random()
    reverts_with(stack, fulfil(stack, intruder, request, b"forged"), "UnauthorizedSigner(bytes32,address)")


def test_revoked_signer_is_refused(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    request, _ = send_request(stack, plain(b"x"))
    registry = stack.gatekeeper.contract("EnclaveRegistry", stack.registry.address)
    receipt = stack.gatekeeper.send(registry.functions.revokeSigner(enclave.address))
    assert stack.registry.events.SignerRevoked().process_receipt(receipt)[0]["args"]["signer"] == enclave.address
    reverts_with(stack, fulfil(stack, enclave, request, b"r"), "UnauthorizedSigner(bytes32,address)")


def test_expired_signer_is_refused(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave, ttl=100)
    request, _ = send_request(stack, plain(b"x"), ttl=3600)
    advance_time(stack, 200)
    reverts_with(stack, fulfil(stack, enclave, request, b"r"), "UnauthorizedSigner(bytes32,address)")


def test_measurement_not_approved_for_the_job_is_refused(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave, jobs=(keccak256(b"some other job@1"),))
    request, _ = send_request(stack, plain(b"x"))
    reverts_with(stack, fulfil(stack, enclave, request, b"r"), "UnauthorizedSigner(bytes32,address)")


def test_claiming_another_measurement_is_refused(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    other = keccak256(b"other measurement")
    approve_jobs(stack.owner, stack.registry.address, other, [ECHO_JOB])
    request, _ = send_request(stack, plain(b"x"))
    liar = DevEnclave(enclave.key, other)
    reverts_with(stack, fulfil(stack, liar, request, b"r"), "UnauthorizedSigner(bytes32,address)")


@pytest.mark.parametrize("field", ["chain", "router"])
def test_signature_for_another_domain_is_refused(stack: Stack, field: str) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    request, _ = send_request(stack, plain(b"x"))
    if field == "chain":
        domain = Domain(1, stack.router.address)
    else:
        domain = Domain(stack.domain.chain_id, stack.consumer.address)
    reverts_with(stack, fulfil(stack, enclave, request, b"r", domain=domain), "UnauthorizedSigner(bytes32,address)")


def test_tampered_result_is_refused(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    request, _ = send_request(stack, plain(b"x"))
    signed = enclave.sign(request, b"honest", stack.domain)
    args = list(signed.call_args(request))
    args[2] = b"tampered"
    call = router_as(stack, stack.relayer).functions.fulfill(tuple(args))
    reverts_with(stack, call, "UnauthorizedSigner(bytes32,address)")


def test_tampered_status_is_refused(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    request, _ = send_request(stack, plain(b"x"))
    args = list(enclave.sign(request, b"r", stack.domain, Status.JOB_FAILED).call_args(request))
    args[1] = Status.OK
    reverts_with(
        stack, router_as(stack, stack.relayer).functions.fulfill(tuple(args)), "UnauthorizedSigner(bytes32,address)"
    )


def test_altered_request_fields_are_refused(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    request, _ = send_request(stack, plain(b"x"), fee=100)
    greedy = Request(
        request.request_id,
        request.requester,
        request.job_id,
        request.input_hash,
        request.callback_gas_limit,
        request.fee * 1000,
        request.expiry,
    )
    reverts_with(stack, fulfil(stack, enclave, greedy, b"r"), "CommitmentMismatch(bytes32)")


def test_high_s_signature_is_refused(stack: Stack) -> None:
    """s above n/2 is the malleable twin of a valid signature; the Router refuses it before ecrecover."""
    enclave = DevEnclave.random()
    register(stack, enclave)
    request, _ = send_request(stack, plain(b"x"))
    signed = enclave.sign(request, b"r", stack.domain)
    r, vs = signed.compact_signature()
    half_n = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
    high_s = (half_n + 1) | (int.from_bytes(vs, "big") >> 255 << 255)
    args = (request.as_tuple(), signed.status, signed.result, signed.measurement, r, high_s.to_bytes(32, "big"))
    reverts_with(stack, router_as(stack, stack.relayer).functions.fulfill(args), "InvalidSignature(bytes32)")


def test_replayed_fulfilment_is_a_cheap_no_op(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    request, _ = send_request(stack, plain(b"x"), fee=5)
    call = fulfil(stack, enclave, request, b"r")
    first = stack.relayer.send(call)
    second = stack.relayer.send(call)
    assert second["status"] == 1
    (skip,) = stack.router.events.FulfillmentSkipped().process_receipt(second)
    assert skip["args"]["reason"] == SKIP_NOT_PENDING
    assert not stack.router.events.Fulfilled().process_receipt(second)
    assert second["gasUsed"] < 40_000 < first["gasUsed"]


def test_fulfilment_after_request_expiry_is_refused(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave, ttl=100_000)
    request, _ = send_request(stack, plain(b"x"), ttl=60)
    advance_time(stack, 120)
    reverts_with(stack, fulfil(stack, enclave, request, b"r"), "RequestExpired(bytes32,uint64)")


def test_cancel_refunds_after_expiry_and_refuses_before(stack: Stack) -> None:
    fee = 10**16
    request, _ = send_request(stack, plain(b"x"), ttl=60, fee=fee)
    router = router_as(stack, stack.relayer)
    reverts_with(stack, router.functions.cancel(request.as_tuple()), "RequestNotExpired(bytes32,uint64)")
    advance_time(stack, 61)
    before = stack.w3.eth.get_balance(stack.consumer.address)
    receipt = stack.relayer.send(router.functions.cancel(request.as_tuple()))
    (event,) = stack.router.events.Cancelled().process_receipt(receipt)
    assert event["args"]["fee"] == fee
    assert stack.w3.eth.get_balance(stack.consumer.address) == before + fee
    reverts_with(stack, router.functions.cancel(request.as_tuple()), "RequestNotPending(bytes32)")


def _deploy_consumer(stack: Stack, name: str):
    contract, _ = stack.owner.deploy(name, stack.router.address)
    return contract


@pytest.mark.parametrize("name", ["RevertingConsumer", "GasBurningConsumer"])
def test_failing_callback_never_reverts_the_fulfilment(stack: Stack, name: str) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    consumer = _deploy_consumer(stack, name)
    request, _ = send_request(stack, plain(b"x"), consumer=consumer, gas=150_000, fee=12345)
    balance = stack.w3.eth.get_balance(stack.relayer.address)
    receipt = stack.relayer.send(fulfil(stack, enclave, request, b"r"))
    assert len(stack.router.events.Fulfilled().process_receipt(receipt)) == 1
    failed = failed_callbacks(stack, receipt)
    assert failed.keys() == {request.request_id}
    if name == "GasBurningConsumer":
        assert failed[request.request_id] >= 150_000  # all of the gas it asked for, and no more
        assert consumer_gas(stack, receipt, consumer.address) == 150_000
    assert stack.router.functions.commitments(request.request_id).call() == b"\x00" * 32
    spent = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert stack.w3.eth.get_balance(stack.relayer.address) == balance - spent + 12345


def test_too_little_gas_for_the_callback_reverts_everything(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    consumer = _deploy_consumer(stack, "GasBurningConsumer")
    request, _ = send_request(stack, plain(b"x"), consumer=consumer, gas=500_000)
    call = fulfil(stack, enclave, request, b"r")
    signature = "InsufficientGasForCallback(bytes32)"
    assert_reverts_with(call, stack.relayer.address, signature, gas=300_000, arguments=request.request_id)
    with pytest.raises(TransactionFailedError):
        stack.relayer.send(call, gas=300_000)
    assert stack.router.functions.commitments(request.request_id).call() == request.commitment()


def test_only_the_router_may_call_back(stack: Stack) -> None:
    consumer = stack.user.contract("ExampleConsumer", stack.consumer.address)
    assert_reverts_with(
        consumer.functions.handleFulfillment(b"\x00" * 32, 0, b""), stack.user.address, "OnlyRouter(address)"
    )


def test_batch_delivers_each_item_independently(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    good = [send_request(stack, plain(bytes([i])), fee=100)[0] for i in range(3)]
    bad, _ = send_request(stack, plain(b"bad"), fee=100)
    items = [enclave.sign(r, b"ok", stack.domain).call_args(r) for r in good]
    items.insert(1, DevEnclave.random().sign(bad, b"forged", stack.domain).call_args(bad))
    items.append(items[0])  # a duplicate inside the batch is a no-op
    router = router_as(stack, stack.relayer)
    receipt = stack.relayer.send(router.functions.fulfillBatch(items))
    delivered = [bytes(e["args"]["requestId"]) for e in stack.router.events.Fulfilled().process_receipt(receipt)]
    skipped = {
        bytes(e["args"]["requestId"]): e["args"]["reason"]
        for e in stack.router.events.FulfillmentSkipped().process_receipt(receipt)
    }
    assert delivered == [r.request_id for r in good]
    assert skipped == {bad.request_id: SKIP_UNAUTHORIZED, good[0].request_id: SKIP_NOT_PENDING}
    assert stack.router.functions.commitments(bad.request_id).call() == bad.commitment()


def test_request_bounds(stack: Stack) -> None:
    consumer = stack.user.contract("ExampleConsumer", stack.consumer.address)
    too_much_gas = consumer.functions.send(ECHO_JOB, b"\x00", stack.deployment.max_callback_gas_limit + 1, 60)
    reverts_with(stack, too_much_gas, "CallbackGasLimitTooHigh(uint32,uint32)")
    reverts_with(stack, consumer.functions.send(ECHO_JOB, b"\x00", 1000, 0), "InvalidTtl(uint64)")


def test_error_status_reaches_the_consumer(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    request, _ = send_request(stack, b"\x07garbage", gas=300_000)
    reason = eth_abi.encode(["string"], ["unknown envelope kind"])
    stack.relayer.send(fulfil(stack, enclave, request, reason, status=Status.INVALID_INPUT))
    received, status, result = stack.consumer.functions.answerOf(request.request_id).call()
    assert (received, status) == (True, Status.INVALID_INPUT)
    assert eth_abi.decode(["string"], result) == ("unknown envelope kind",)


def test_request_ids_are_the_routers_prefix_and_the_request_number(stack: Stack) -> None:
    from verifier.protocol import REQUEST_NUMBER_MASK, request_id, request_id_prefix, request_number

    first, _ = send_request(stack, plain(b"a"))
    second, _ = send_request(stack, plain(b"a"))
    nonce = stack.router.functions.nonce().call()
    prefix = stack.router.functions.requestIdPrefix().call()
    assert (
        prefix == request_id_prefix(stack.domain.chain_id, stack.router.address) and prefix & REQUEST_NUMBER_MASK == 0
    )
    assert second.request_id == request_id(stack.domain.chain_id, stack.router.address, nonce)
    assert first.request_id == request_id(stack.domain.chain_id, stack.router.address, nonce - 1)
    assert request_number(second.request_id) == nonce and stack.domain.owns_request_id(first.request_id)


def test_the_request_id_prefix_and_the_domain_follow_a_chain_id_change(stack: Stack) -> None:
    """After a fork that changes the chain id, new ids and signatures are the new chain's, not the old one's."""
    from verifier.protocol import request_id

    old = stack.domain.chain_id
    stack.w3.provider.make_request("anvil_setChainId", [old + 1000])
    try:
        new = Domain(old + 1000, stack.router.address)
        assert stack.router.functions.domainSeparator().call() == new.separator() != stack.domain.separator()
        assert stack.router.functions.requestIdPrefix().call() == new.request_id_prefix()
        assert new.request_id_prefix() != stack.domain.request_id_prefix()
        number = stack.router.functions.nonce().call() + 1
        sent = stack.consumer.functions.send(ECHO_JOB, plain(b"a"), 100_000, 3600).call({"from": stack.user.address})
        assert sent == request_id(new.chain_id, stack.router.address, number)
    finally:
        stack.w3.provider.make_request("anvil_setChainId", [old])
    assert stack.router.functions.requestIdPrefix().call() == stack.domain.request_id_prefix()


def test_sign_digest_is_what_the_router_recovers(stack: Stack) -> None:
    """A fulfilment signed with raw sign_digest (no helper) is accepted: no hidden encoding in the helpers."""
    enclave = DevEnclave.random()
    register(stack, enclave)
    request, _ = send_request(stack, plain(b"x"))
    digest = stack.router.functions.fulfillmentDigest(
        request.request_id, request.commitment(), 0, keccak256(b"r"), enclave.measurement
    ).call()
    from verifier.signing import to_compact

    r, vs = to_compact(sign_digest(enclave.key, digest))
    args = (request.as_tuple(), 0, b"r", enclave.measurement, r, vs)
    receipt = stack.relayer.send(router_as(stack, stack.relayer).functions.fulfill(args))
    assert stack.router.events.Fulfilled().process_receipt(receipt)


def test_commitments_of_reads_many_at_once(stack: Stack) -> None:
    first, _ = send_request(stack, plain(b"one"))
    second, _ = send_request(stack, plain(b"two"))
    unknown = b"\x07" * 32
    stored = stack.router.functions.commitmentsOf([first.request_id, unknown, second.request_id]).call()
    assert stored == [first.commitment(), b"\x00" * 32, second.commitment()]
    assert stack.router.functions.commitmentsOf([]).call() == []
