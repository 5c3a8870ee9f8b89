"""ModerationGate (contracts/src/examples): acts on ai.classify@1 results of the model it trusts, only."""

from __future__ import annotations

import eth_abi
import pytest
from web3.exceptions import ContractCustomError

from teebridge.testkit import requested_in
from tests.helpers import DevEnclave, Stack, assert_reverts_with, failed_callbacks, register, router_as
from verifier.hashing import keccak256
from verifier.protocol import Request, Status, job_id

CLASSIFY = job_id("ai.classify", 1)
MODEL_A = keccak256(b"model A")
MODEL_B = keccak256(b"model B")
LABELS = ["a kind and respectful comment", "a hateful, abusive insult"]
PUBLISHED, BLOCKED, FAILED = 2, 3, 4


def deploy_gate(stack: Stack, model: bytes = MODEL_A, min_margin: int = 20_000):
    gate, _ = stack.owner.deploy("ModerationGate", stack.router.address, model, LABELS, 0, min_margin)
    return gate


def submit(stack: Stack, gate, text: str) -> tuple[Request, bytes]:
    user_gate = stack.user.w3.eth.contract(address=gate.address, abi=gate.abi)
    return requested_in(stack.router, stack.user.send(user_gate.functions.submit(text)))


def deliver(stack: Stack, enclave: DevEnclave, request: Request, result: bytes, status: int = 0) -> None:
    signed = enclave.sign(request, result, stack.domain, status)
    receipt = stack.relayer.send(router_as(stack, stack.relayer).functions.fulfill(signed.call_args(request)))
    assert len(stack.router.events.Fulfilled().process_receipt(receipt)) == 1
    assert not failed_callbacks(stack, receipt)


def classification(model: bytes, label: int, margin: int) -> bytes:
    scores = [300_000, 300_000 - margin] if label == 0 else [300_000 - margin, 300_000]
    return eth_abi.encode(["bytes32", "uint16", "int32", "int32[]"], [model, label, margin, scores])


@pytest.fixture
def enclave(stack: Stack) -> DevEnclave:
    enclave = DevEnclave.random()
    register(stack, enclave, jobs=(CLASSIFY,))
    return enclave


def test_request_input_is_the_plain_classify_encoding(stack: Stack) -> None:
    gate = deploy_gate(stack)
    request, raw = submit(stack, gate, "Great talk yesterday!")
    assert request.job_id == CLASSIFY and request.requester == gate.address
    assert raw[0] == 0 and eth_abi.decode(["bytes32", "string", "string[]"], raw[1:]) == (
        MODEL_A,
        "Great talk yesterday!",
        tuple(LABELS),
    )
    assert gate.functions.posts(request.request_id).call()[1] == 1  # Pending


def test_publishes_accepted_class_and_blocks_the_rest(stack: Stack, enclave: DevEnclave) -> None:
    gate = deploy_gate(stack)
    kind, _ = submit(stack, gate, "Thanks for the help!")
    insult, _ = submit(stack, gate, "You worthless idiot.")
    close, _ = submit(stack, gate, "Hmm.")
    deliver(stack, enclave, kind, classification(MODEL_A, 0, 100_000))
    deliver(stack, enclave, insult, classification(MODEL_A, 1, 150_000))
    deliver(stack, enclave, close, classification(MODEL_A, 0, 19_999))  # below minMargin: a close call
    assert gate.functions.isPublished(kind.request_id).call() is True
    assert [gate.functions.posts(r.request_id).call()[1] for r in (kind, insult, close)] == [
        PUBLISHED,
        BLOCKED,
        BLOCKED,
    ]


def test_result_from_another_model_never_publishes(stack: Stack, enclave: DevEnclave) -> None:
    gate = deploy_gate(stack, MODEL_A)
    request, _ = submit(stack, gate, "Thanks for the help!")
    deliver(stack, enclave, request, classification(MODEL_B, 0, 500_000))  # validly signed, but by model B
    assert gate.functions.posts(request.request_id).call()[1] == FAILED
    logs = gate.events.ModerationFailed().get_logs(from_block=0)
    assert logs[-1]["args"]["modelHash"] == MODEL_B


def test_error_status_fails_the_post(stack: Stack, enclave: DevEnclave) -> None:
    gate = deploy_gate(stack)
    request, _ = submit(stack, gate, "anything")
    deliver(stack, enclave, request, eth_abi.encode(["string"], ["model is not installed"]), Status.INVALID_INPUT)
    assert gate.functions.posts(request.request_id).call()[1] == FAILED


def test_submit_and_constructor_refuse_bad_arguments(stack: Stack) -> None:
    gate = deploy_gate(stack)
    user_gate = stack.user.w3.eth.contract(address=gate.address, abi=gate.abi)
    assert_reverts_with(user_gate.functions.submit(""), stack.user.address, "EmptyPost()")
    assert_reverts_with(user_gate.functions.submit("x" * 2049), stack.user.address, "PostTooLong(uint256,uint256)")
    for labels, accepted, margin, error in (
        (LABELS[:1], 0, 0, "BadLabels(uint256,uint16)"),
        (LABELS, 2, 0, "BadLabels(uint256,uint16)"),
        (LABELS, 0, -1, "NegativeMargin(int32)"),
    ):
        with pytest.raises(ContractCustomError) as info:
            stack.owner.deploy("ModerationGate", stack.router.address, MODEL_A, labels, accepted, margin)
        assert str(info.value.data).startswith("0x" + keccak256(error.encode())[:4].hex())
