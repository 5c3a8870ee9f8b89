"""The Solidity TeeBridgeRequests library builds exactly the inputs and ids the Python encoder builds."""

from __future__ import annotations

import pytest

from tests.helpers import Stack, assert_reverts_with
from verifier.envelope import Binding, ResultKey, encrypt, parse_input, plain
from verifier.protocol import job_id
from verifier.secrets import secret_set_id
from verifier.suites import HpkeKeyPair, Suite


@pytest.fixture
def harness(stack: Stack):  # type: ignore[no-untyped-def]
    contract, _ = stack.user.deploy("RequestsHarness")
    return contract


def test_ids_match(harness, stack: Stack) -> None:  # type: ignore[no-untyped-def]
    assert harness.functions.jobId("http.json@2").call() == job_id("http.json", 2)
    owner, job = stack.user.address, job_id("http.json", 2)
    assert harness.functions.secretSetId(31337, owner, job, "billing").call() == secret_set_id(
        31337, owner, job, "billing"
    )


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.label)
def test_inputs_match_and_parse(harness, suite: Suite) -> None:  # type: ignore[no-untyped-def]
    set_id = b"\x42" * 32
    key = ResultKey(suite, HpkeKeyPair.generate(suite).public_key)
    assert harness.functions.plain(b"payload").call() == plain(b"payload")
    assert harness.functions.withSecretSet(set_id, plain(b"p")).call() == plain(b"p", secret_set_id=set_id)
    built = harness.functions.withOptions(set_id, int(suite), key.public_key, plain(b"p")).call()
    assert built == plain(b"p", secret_set_id=set_id, result_key=key)
    without_set = harness.functions.withOptions(b"\x00" * 32, int(suite), key.public_key, plain(b"p")).call()
    assert parse_input(without_set).secret_set_id is None and parse_input(without_set).result_key == key
    # a body sealed off-chain with the same options composes byte for byte
    enclave = HpkeKeyPair.generate(Suite.X25519)
    sealed = encrypt(
        b"p", enclave.public_key, Binding(1, "0x" + "11" * 20, "0x" + "22" * 20, b"\x33" * 32), secret_set_id=set_id
    )
    body = sealed[33:]
    assert harness.functions.withSecretSet(set_id, body).call() == sealed


def test_a_result_key_of_the_wrong_length_is_refused(harness, stack: Stack) -> None:  # type: ignore[no-untyped-def]
    call = harness.functions.withOptions(b"\x00" * 32, 1, b"\x01" * 31, plain(b""))
    assert_reverts_with(call, stack.user.address, "InvalidResultKey(uint8,uint256)")
    call = harness.functions.withOptions(b"\x00" * 32, 9, b"\x01" * 32, plain(b""))
    assert_reverts_with(call, stack.user.address, "InvalidResultKey(uint8,uint256)")
