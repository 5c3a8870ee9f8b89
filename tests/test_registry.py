"""Registry policy: who may register, the simulated-attestation flag, and its local-chain-only rule."""

from __future__ import annotations

from relayer.chain import ChainClient
from teebridge.anvil import DEV_KEYS, Anvil
from teebridge.deploy import deploy_all
from tests.helpers import ECHO_JOB, MEASUREMENT, DevEnclave, Stack, assert_reverts_with, register


def test_only_the_gatekeeper_registers(stack: Stack) -> None:
    as_user = stack.user.contract("EnclaveRegistry", stack.registry.address)
    now = stack.w3.eth.get_block("latest")["timestamp"]
    assert_reverts_with(
        as_user.functions.registerSigner(stack.user.address, MEASUREMENT, now + 100, True, b""),
        stack.user.address,
        "NotGatekeeper()",
    )


def test_only_the_owner_sets_policy(stack: Stack) -> None:
    as_gatekeeper = stack.gatekeeper.contract("EnclaveRegistry", stack.registry.address)
    gk = stack.gatekeeper.address
    assert_reverts_with(as_gatekeeper.functions.setJobMeasurement(ECHO_JOB, MEASUREMENT, True), gk, "NotOwner()")
    assert_reverts_with(as_gatekeeper.functions.setSimulatedAttestationsAllowed(True), gk, "NotOwner()")


def test_simulated_signer_stops_counting_when_the_flag_is_turned_off(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    assert stack.registry.functions.isAuthorized(enclave.address, ECHO_JOB, MEASUREMENT).call()
    stack.owner.send(stack.registry.functions.setSimulatedAttestationsAllowed(False))
    assert not stack.registry.functions.isAuthorized(enclave.address, ECHO_JOB, MEASUREMENT).call()


def test_simulated_registration_needs_the_flag(anvil: Anvil) -> None:
    owner = ChainClient(anvil.rpc_url, DEV_KEYS[0])
    gatekeeper = ChainClient(anvil.rpc_url, DEV_KEYS[1])
    deployment = deploy_all(owner, gatekeeper.address, allow_simulated=False)
    registry = gatekeeper.contract("EnclaveRegistry", deployment.registry)
    now = owner.w3.eth.get_block("latest")["timestamp"]
    assert_reverts_with(
        registry.functions.registerSigner(gatekeeper.address, MEASUREMENT, now + 100, True, b""),
        gatekeeper.address,
        "SimulatedAttestationsNotAllowed()",
    )


def test_simulated_attestations_cannot_be_enabled_on_another_chain() -> None:
    with Anvil(chain_id=1) as mainnet_like:
        owner = ChainClient(mainnet_like.rpc_url, DEV_KEYS[0])
        deployment = deploy_all(owner, owner.address)
        registry = owner.contract("EnclaveRegistry", deployment.registry)
        assert_reverts_with(
            registry.functions.setSimulatedAttestationsAllowed(True),
            owner.address,
            "SimulatedAttestationsOnlyOnLocalChain(uint256)",
        )


def test_registration_in_the_past_is_refused(stack: Stack) -> None:
    registry = stack.gatekeeper.contract("EnclaveRegistry", stack.registry.address)
    assert_reverts_with(
        registry.functions.registerSigner(stack.user.address, MEASUREMENT, 1, True, b""),
        stack.gatekeeper.address,
        "ExpiryInPast(uint64)",
    )


def test_signer_info_exposes_the_hpke_key(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    measurement, expiry, revoked, simulated, hpke = stack.registry.functions.signerInfo(enclave.address).call()
    assert (measurement, revoked, simulated, hpke) == (MEASUREMENT, False, True, b"\x01" * 32)
    assert expiry > stack.w3.eth.get_block("latest")["timestamp"]
