"""Registry endpoints: a registered signer's advisory public URL, who may set it, its bound and its event."""

from __future__ import annotations

from web3.logs import DISCARD

from tests.helpers import MEASUREMENT, DevEnclave, Stack, assert_reverts_with, register

KEYS = b"\x01" + b"\x01" * 32
URL = "https://enclave-1.example.org:8443"


def endpoint_events(stack: Stack, receipt: object) -> list[tuple[str, str]]:
    events = stack.registry.events.SignerEndpointSet().process_receipt(receipt, errors=DISCARD)
    return [(e["args"]["signer"], e["args"]["endpoint"]) for e in events]


def test_the_gatekeeper_and_the_owner_set_an_endpoint_with_an_event(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    assert stack.registry.functions.signerEndpoint(enclave.address).call() == ""
    as_gatekeeper = stack.gatekeeper.contract("EnclaveRegistry", stack.registry.address)
    receipt = stack.gatekeeper.send(as_gatekeeper.functions.setSignerEndpoint(enclave.address, URL))
    assert endpoint_events(stack, receipt) == [(enclave.address, URL)]
    assert stack.registry.functions.signerEndpoint(enclave.address).call() == URL
    receipt = stack.owner.send(stack.registry.functions.setSignerEndpoint(enclave.address, ""))  # clears it
    assert endpoint_events(stack, receipt) == [(enclave.address, "")]
    assert stack.registry.functions.signerEndpoint(enclave.address).call() == ""


def test_nobody_else_sets_an_endpoint(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    as_user = stack.user.contract("EnclaveRegistry", stack.registry.address)
    call = as_user.functions.setSignerEndpoint(enclave.address, URL)
    assert_reverts_with(call, stack.user.address, "NotOwnerOrGatekeeper()")
    assert_reverts_with(call, enclave.address, "NotOwnerOrGatekeeper()")


def test_unknown_and_revoked_signers_get_no_endpoint(stack: Stack) -> None:
    as_gatekeeper = stack.gatekeeper.contract("EnclaveRegistry", stack.registry.address)
    stranger = DevEnclave.random()
    gk = stack.gatekeeper.address
    assert_reverts_with(as_gatekeeper.functions.setSignerEndpoint(stranger.address, URL), gk, "UnknownSigner(address)")
    enclave = DevEnclave.random()
    register(stack, enclave)
    stack.owner.send(stack.registry.functions.revokeSigner(enclave.address))
    call = as_gatekeeper.functions.setSignerEndpoint(enclave.address, URL)
    assert_reverts_with(call, gk, "SignerWasRevoked(address)")


def test_an_endpoint_is_at_most_256_bytes(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    as_gatekeeper = stack.gatekeeper.contract("EnclaveRegistry", stack.registry.address)
    assert stack.registry.functions.MAX_ENDPOINT_LENGTH().call() == 256
    longest = "https://" + "a" * 248
    stack.gatekeeper.send(as_gatekeeper.functions.setSignerEndpoint(enclave.address, longest))
    assert stack.registry.functions.signerEndpoint(enclave.address).call() == longest
    too_long = longest + "a"
    gk = stack.gatekeeper.address
    call = as_gatekeeper.functions.setSignerEndpoint(enclave.address, too_long)
    assert_reverts_with(call, gk, "EndpointTooLong(uint256,uint256)")
    now = stack.w3.eth.get_block("latest")["timestamp"]
    other = DevEnclave.random()
    with_endpoint = as_gatekeeper.functions.registerSignerWithEndpoint(
        other.address, MEASUREMENT, now + 100, True, KEYS, too_long
    )
    assert_reverts_with(with_endpoint, gk, "EndpointTooLong(uint256,uint256)")


def test_registering_with_an_endpoint_records_both_in_one_call(stack: Stack) -> None:
    register(stack, DevEnclave.random())  # approves MEASUREMENT for the echo job
    enclave = DevEnclave.random()
    as_gatekeeper = stack.gatekeeper.contract("EnclaveRegistry", stack.registry.address)
    now = stack.w3.eth.get_block("latest")["timestamp"]
    call = as_gatekeeper.functions.registerSignerWithEndpoint(enclave.address, MEASUREMENT, now + 100, True, KEYS, URL)
    receipt = stack.gatekeeper.send(call)
    registered = stack.registry.events.SignerRegistered().process_receipt(receipt, errors=DISCARD)
    assert [e["args"]["signer"] for e in registered] == [enclave.address]
    assert endpoint_events(stack, receipt) == [(enclave.address, URL)]
    assert stack.registry.functions.signerEndpoint(enclave.address).call() == URL
    assert stack.registry.functions.signerInfo(enclave.address).call()[1] == now + 100
    as_user = stack.user.contract("EnclaveRegistry", stack.registry.address)
    refused = as_user.functions.registerSignerWithEndpoint(enclave.address, MEASUREMENT, now + 100, True, KEYS, URL)
    assert_reverts_with(refused, stack.user.address, "NotGatekeeper()")
