"""Registry policy: who may register, the simulated-attestation flag, and its local-chain-only rule."""

from __future__ import annotations

import pytest

from relayer.chain import ChainClient
from teebridge.anvil import DEV_KEYS, Anvil
from teebridge.deploy import deploy_all
from tests.helpers import ECHO_JOB, MEASUREMENT, DevEnclave, Stack, assert_reverts_with, register
from verifier.hashing import keccak256
from verifier.suites import HpkeKeyPair, Suite, encode_key_bundle, parse_key_bundle, suite_mask


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
    assert_reverts_with(as_gatekeeper.functions.proposeJobMeasurement(ECHO_JOB, MEASUREMENT, 1), gk, "NotOwner()")
    assert_reverts_with(as_gatekeeper.functions.withdrawJobMeasurement(ECHO_JOB, MEASUREMENT), gk, "NotOwner()")
    assert_reverts_with(as_gatekeeper.functions.raiseMinimumVersion(2), gk, "NotOwner()")
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
    assert (measurement, revoked, simulated, hpke) == (MEASUREMENT, False, True, b"\x01" * 33)
    assert expiry > stack.w3.eth.get_block("latest")["timestamp"]
    assert stack.registry.functions.hpkeSuites(enclave.address).call() == Suite.X25519.mask


def test_registry_publishes_the_suites_of_a_key_bundle(stack: Stack) -> None:
    enclave = DevEnclave.random()
    bundle = encode_key_bundle({suite: HpkeKeyPair.generate(suite).public_key for suite in Suite})
    register(stack, enclave, hpke_keys=bundle)
    assert stack.registry.functions.signerInfo(enclave.address).call()[4] == bundle
    assert stack.registry.functions.hpkeSuites(enclave.address).call() == suite_mask(Suite) == 0b110
    assert stack.registry.functions.hpkeSuites(DevEnclave.random().address).call() == 0


@pytest.mark.parametrize(
    "bundle",
    [
        b"",
        b"\x01" + b"\x01" * 31,  # truncated x25519 key
        b"\x01" + b"\x01" * 33,  # trailing byte
        b"\x03" + b"\x01" * 32,  # unknown suite
        b"\x01" + b"\x01" * 32 + b"\x01" + b"\x02" * 32,  # suite twice
        b"\x02" + b"\x01" * 1216 + b"\x01" + b"\x02" * 32,  # descending
    ],
    ids=["empty", "truncated", "trailing", "unknown-suite", "repeated", "descending"],
)
def test_malformed_key_bundles_are_refused(stack: Stack, bundle: bytes) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)  # approves the measurement; then try the bundle directly
    call = stack.registry.functions.registerSigner(enclave.address, MEASUREMENT, 2**40, True, bundle)
    assert_reverts_with(call, stack.gatekeeper.address, "InvalidKeyBundle()")
    with pytest.raises(ValueError):
        parse_key_bundle(bundle)


# ---------------------------------------------------------------- governance: delay, versions, emergencies

DELAY = 3600


def governed(anvil: Anvil) -> tuple[ChainClient, ChainClient, object]:
    owner = ChainClient(anvil.rpc_url, DEV_KEYS[0])
    gatekeeper = ChainClient(anvil.rpc_url, DEV_KEYS[1])
    deployment = deploy_all(owner, gatekeeper.address, allow_simulated=True, governance_delay=DELAY)
    return owner, gatekeeper, owner.contract("EnclaveRegistry", deployment.registry)


def advance(client: ChainClient, seconds: int) -> None:
    client.w3.provider.make_request("evm_increaseTime", [seconds])
    client.w3.provider.make_request("evm_mine", [])


def test_an_approval_waits_out_the_governance_delay(anvil: Anvil) -> None:
    owner, gatekeeper, registry = governed(anvil)
    receipt = owner.send(registry.functions.proposeJobMeasurement(ECHO_JOB, MEASUREMENT, 1))
    (event,) = registry.events.JobMeasurementProposed().process_receipt(receipt)
    assert event["args"]["eta"] == owner.w3.eth.get_block(receipt["blockNumber"])["timestamp"] + DELAY
    assert_reverts_with(
        registry.functions.activateJobMeasurement(ECHO_JOB, MEASUREMENT), gatekeeper.address, "ProposalNotReady(uint64)"
    )
    advance(owner, DELAY)
    anyone = gatekeeper.contract("EnclaveRegistry", registry.address)
    gatekeeper.send(anyone.functions.activateJobMeasurement(ECHO_JOB, MEASUREMENT))
    assert registry.functions.isApproved(ECHO_JOB, MEASUREMENT).call()
    assert registry.functions.measurementVersion(MEASUREMENT).call() == 1


def test_a_cancelled_proposal_cannot_be_activated(anvil: Anvil) -> None:
    owner, _gatekeeper, registry = governed(anvil)
    owner.send(registry.functions.proposeJobMeasurement(ECHO_JOB, MEASUREMENT, 1))
    owner.send(registry.functions.cancelJobMeasurementProposal(ECHO_JOB, MEASUREMENT))
    advance(owner, DELAY)
    assert_reverts_with(
        registry.functions.activateJobMeasurement(ECHO_JOB, MEASUREMENT), owner.address, "NoProposal(bytes32,bytes32)"
    )


def test_a_measurement_never_approved_cannot_register(stack: Stack) -> None:
    registry = stack.gatekeeper.contract("EnclaveRegistry", stack.registry.address)
    now = stack.w3.eth.get_block("latest")["timestamp"]
    assert_reverts_with(
        registry.functions.registerSigner(stack.user.address, MEASUREMENT, now + 100, True, b""),
        stack.gatekeeper.address,
        "UnknownMeasurement(bytes32)",
    )


def test_a_measurements_version_is_fixed(stack: Stack) -> None:
    register(stack, DevEnclave.random())  # approves MEASUREMENT as version 1
    assert_reverts_with(
        stack.registry.functions.proposeJobMeasurement(ECHO_JOB, MEASUREMENT, 2),
        stack.owner.address,
        "VersionMismatch(bytes32,uint64,uint64)",
    )


def test_a_rolled_back_image_cannot_register_again(stack: Stack) -> None:
    old = DevEnclave.random()
    register(stack, old)  # version 1
    new = DevEnclave.random(keccak256(b"image v2"))
    stack.owner.send(stack.registry.functions.proposeJobMeasurement(ECHO_JOB, new.measurement, 2))
    stack.owner.send(stack.registry.functions.activateJobMeasurement(ECHO_JOB, new.measurement))
    receipt = stack.owner.send(stack.registry.functions.raiseMinimumVersion(2))
    assert stack.registry.events.MinimumVersionRaised().process_receipt(receipt)[0]["args"]["minimum"] == 2
    registry = stack.gatekeeper.contract("EnclaveRegistry", stack.registry.address)
    now = stack.w3.eth.get_block("latest")["timestamp"]
    assert_reverts_with(
        registry.functions.registerSigner(DevEnclave.random().address, MEASUREMENT, now + 100, True, b""),
        stack.gatekeeper.address,
        "VersionBelowMinimum(uint64,uint64)",
    )
    assert_reverts_with(
        stack.registry.functions.proposeJobMeasurement(ECHO_JOB, keccak256(b"v1 again"), 1),
        stack.owner.address,
        "VersionBelowMinimum(uint64,uint64)",
    )
    assert_reverts_with(
        stack.registry.functions.raiseMinimumVersion(2), stack.owner.address, "MinimumVersionNotRaised(uint64,uint64)"
    )


def test_withdrawing_an_approval_is_immediate(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    assert stack.registry.functions.isAuthorized(enclave.address, ECHO_JOB, MEASUREMENT).call()
    stack.owner.send(stack.registry.functions.withdrawJobMeasurement(ECHO_JOB, MEASUREMENT))
    assert not stack.registry.functions.isAuthorized(enclave.address, ECHO_JOB, MEASUREMENT).call()


def test_a_revoked_signer_cannot_be_registered_again(stack: Stack) -> None:
    enclave = DevEnclave.random()
    register(stack, enclave)
    registry = stack.gatekeeper.contract("EnclaveRegistry", stack.registry.address)
    stack.owner.send(stack.registry.functions.revokeSigner(enclave.address))
    now = stack.w3.eth.get_block("latest")["timestamp"]
    assert_reverts_with(
        registry.functions.registerSigner(enclave.address, MEASUREMENT, now + 100, True, b""),
        stack.gatekeeper.address,
        "SignerWasRevoked(address)",
    )


def test_approve_jobs_waits_for_the_delay_and_activate_jobs_finishes_it(anvil: Anvil) -> None:
    from teebridge.registration import activate_jobs, approve_jobs

    owner, gatekeeper, registry = governed(anvil)
    waiting = approve_jobs(owner, registry.address, MEASUREMENT, [ECHO_JOB])
    assert waiting == [ECHO_JOB] and not registry.functions.isApproved(ECHO_JOB, MEASUREMENT).call()
    advance(owner, DELAY)
    activate_jobs(gatekeeper, registry.address, MEASUREMENT, waiting)  # anyone may activate
    assert registry.functions.isApproved(ECHO_JOB, MEASUREMENT).call()
