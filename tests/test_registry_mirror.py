"""The registry mirrors its authorizations into the Router (``EnclaveRegistry.attachRouter``): after any sequence
of registry changes the Router's ``isAuthorized`` answers exactly as the registry's; only the registry writes the
Router's records; the pushes stay bounded. Against a real anvil."""

from __future__ import annotations

import random

from web3 import Web3

from tests.helpers import Stack, assert_reverts_with
from verifier.hashing import keccak256


def address(n: int) -> str:
    return Web3.to_checksum_address(f"0x{n:040x}")


SIGNERS = [address(n) for n in (0xA1, 0xA2, 0xA3, 0xA4)]
JOBS = [keccak256(b"job %d@1" % i) for i in range(3)]  # JOBS[0] starts approved for every measurement
MEASUREMENTS = [keccak256(b"measurement %d" % i) for i in range(3)]
#: Weighted so signers are often live and approved: the agreement must cover "yes" answers, not only "no".
OPERATIONS = ["register"] * 3 + ["approve"] * 3 + ["withdraw", "revoke", "revoke", "time", "simulated", "forget"]
KEYS = b"\x01" + b"\x01" * 32


def now(stack: Stack) -> int:
    return stack.w3.eth.get_block("latest")["timestamp"]


def advance(stack: Stack, seconds: int) -> None:
    stack.w3.provider.make_request("evm_increaseTime", [seconds])
    stack.w3.provider.make_request("evm_mine", [])


def mismatches(stack: Stack, authorized: set[tuple[str, bytes, bytes]]) -> list[tuple[str, str, str, bool]]:
    """Every (signer, job, measurement) on which the Router and the registry disagree; adds those the registry
    authorizes to ``authorized``."""
    wrong = []
    for signer in SIGNERS:
        for job in JOBS:
            for measurement in MEASUREMENTS:
                truth = stack.registry.functions.isAuthorized(signer, job, measurement).call()
                if truth:
                    authorized.add((signer, job, measurement))
                if stack.router.functions.isAuthorized(signer, job, measurement).call() != truth:
                    wrong.append((signer, job.hex()[:8], measurement.hex()[:8], truth))
    return wrong


def test_the_router_answers_as_the_registry_after_every_change(stack: Stack) -> None:
    rng = random.Random(20261122)
    registry = stack.registry
    gatekeeper = stack.gatekeeper.contract("EnclaveRegistry", registry.address)
    for measurement in MEASUREMENTS:  # every measurement known, so signers can register with any of them
        stack.owner.send(registry.functions.proposeJobMeasurement(JOBS[0], measurement, 1))
        stack.owner.send(registry.functions.activateJobMeasurement(JOBS[0], measurement))
    revoked: set[str] = set()
    done = []
    authorized: set[tuple[str, bytes, bytes]] = set()
    for _ in range(80):
        op = rng.choice(OPERATIONS)
        signer, job, measurement = rng.choice(SIGNERS), rng.choice(JOBS), rng.choice(MEASUREMENTS)
        if op == "register" and signer not in revoked:
            ttl = rng.choice([30, 600, 3600, 3600])
            simulated = rng.random() < 0.3 and registry.functions.simulatedAttestationsAllowed().call()
            stack.gatekeeper.send(
                gatekeeper.functions.registerSigner(signer, measurement, now(stack) + ttl, simulated, KEYS)
            )
        elif op == "approve":
            stack.owner.send(registry.functions.proposeJobMeasurement(job, measurement, 1))
            stack.owner.send(registry.functions.activateJobMeasurement(job, measurement))
        elif op == "withdraw":
            stack.owner.send(registry.functions.withdrawJobMeasurement(job, measurement))
        elif op == "revoke" and registry.functions.signerInfo(signer).call()[1] != 0 and len(revoked) < 2:
            # (for good: at most two, so live signers remain to say "yes" about)
            stack.gatekeeper.send(gatekeeper.functions.revokeSigner(signer))
            revoked.add(signer)
        elif op == "time":
            advance(stack, rng.choice([20, 400]))
        elif op == "forget" and (
            expired := [s for s in SIGNERS if 0 < registry.functions.signerInfo(s).call()[1] <= now(stack)]
        ):
            anyone = stack.relayer.contract("EnclaveRegistry", registry.address)
            stack.relayer.send(anyone.functions.forgetExpiredSigner(rng.choice(expired)))
        elif op == "simulated":
            stack.owner.send(registry.functions.setSimulatedAttestationsAllowed(rng.random() < 0.5))
        else:
            continue
        done.append(op)
        assert mismatches(stack, authorized) == [], f"after {done}"
    # then every registration runs out, and each expired signer is forgotten (freeing its place)
    advance(stack, 4000)
    for signer in SIGNERS:
        if registry.functions.signerInfo(signer).call()[1] != 0:
            stack.relayer.send(
                stack.relayer.contract("EnclaveRegistry", registry.address).functions.forgetExpiredSigner(signer)
            )
            done.append("forget")
            assert mismatches(stack, authorized) == [], f"after forgetting {signer}"
    assert {"register", "approve", "withdraw", "revoke", "time", "simulated", "forget"} <= set(done), done
    assert len(authorized) >= 5, authorized  # not a vacuous agreement on "no one"


def test_only_the_registry_writes_the_routers_records(stack: Stack) -> None:
    for client in (stack.owner, stack.gatekeeper, stack.relayer):
        router = client.contract("Router", stack.router.address)
        call = router.functions.setAuthorizations(client.address, MEASUREMENTS[0], [JOBS[0]], now(stack) + 60, False)
        assert_reverts_with(call, client.address, "NotRegistry()")
        assert_reverts_with(router.functions.setSimulatedAttestationsAllowed(True), client.address, "NotRegistry()")


def test_a_router_is_attached_once_by_the_owner_before_any_approval(stack: Stack) -> None:
    owner = stack.owner
    registry, _ = owner.deploy("EnclaveRegistry", owner.address, stack.gatekeeper.address, 0)
    router, _ = owner.deploy("Router", registry.address, 1_000_000)
    stranger = stack.user.contract("EnclaveRegistry", registry.address)
    assert_reverts_with(stranger.functions.attachRouter(router.address), stack.user.address, "NotOwner()")
    other = stack.router.address  # serves the stack's registry, not this one
    assert_reverts_with(registry.functions.attachRouter(other), owner.address, "RouterServesAnotherRegistry(address)")
    owner.send(registry.functions.setSimulatedAttestationsAllowed(True))
    receipt = owner.send(registry.functions.attachRouter(router.address))
    assert registry.events.RouterAttached().process_receipt(receipt)[0]["args"]["router"] == router.address
    assert router.functions.simulatedAttestationsAllowed().call() is True  # a flag set before is carried over
    assert_reverts_with(
        registry.functions.attachRouter(router.address), owner.address, "RouterAlreadyAttached(address)"
    )

    late, _ = owner.deploy("EnclaveRegistry", owner.address, stack.gatekeeper.address, 0)
    late_router, _ = owner.deploy("Router", late.address, 1_000_000)
    owner.send(late.functions.proposeJobMeasurement(JOBS[0], MEASUREMENTS[0], 1))
    owner.send(late.functions.activateJobMeasurement(JOBS[0], MEASUREMENTS[0]))
    assert_reverts_with(late.functions.attachRouter(late_router.address), owner.address, "PolicyAlreadyStarted()")


def test_a_measurement_has_bounded_jobs_and_signers(stack: Stack) -> None:
    registry = stack.registry
    gatekeeper = stack.gatekeeper.contract("EnclaveRegistry", registry.address)
    measurement = MEASUREMENTS[1]
    limit = registry.functions.MAX_JOBS_PER_MEASUREMENT().call()
    for i in range(limit):
        job = keccak256(b"bounded %d@1" % i)
        stack.owner.send(registry.functions.proposeJobMeasurement(job, measurement, 1))
        stack.owner.send(registry.functions.activateJobMeasurement(job, measurement))
    assert len(registry.functions.jobsOf(measurement).call()) == limit
    job = keccak256(b"one too many@1")
    stack.owner.send(registry.functions.proposeJobMeasurement(job, measurement, 1))
    call = registry.functions.activateJobMeasurement(job, measurement)
    assert_reverts_with(call, stack.owner.address, "TooManyJobsForMeasurement(bytes32)")
    # a withdrawal frees a place, and the withdrawn job is no longer pushed for new signers
    stack.owner.send(registry.functions.withdrawJobMeasurement(keccak256(b"bounded 0@1"), measurement))
    stack.owner.send(registry.functions.activateJobMeasurement(job, measurement))

    signers = registry.functions.MAX_SIGNERS_PER_MEASUREMENT().call()
    expiry = now(stack) + 100
    for i in range(signers):
        stack.gatekeeper.send(gatekeeper.functions.registerSigner(address(0xB000 + i), measurement, expiry, True, KEYS))
    extra = address(0xBFFF)
    call = gatekeeper.functions.registerSigner(extra, measurement, expiry, True, KEYS)
    assert_reverts_with(call, stack.gatekeeper.address, "TooManySignersForMeasurement(bytes32)")
    first = address(0xB000)
    assert_reverts_with(registry.functions.forgetExpiredSigner(first), stack.owner.address, "SignerNotExpired(address)")
    advance(stack, 200)
    stack.relayer.send(stack.relayer.contract("EnclaveRegistry", registry.address).functions.forgetExpiredSigner(first))
    assert first.lower() not in [a.lower() for a in registry.functions.signersOf(measurement).call()]
    stack.gatekeeper.send(gatekeeper.functions.registerSigner(extra, measurement, now(stack) + 100, True, KEYS))
    assert stack.router.functions.isAuthorized(extra, job, measurement).call() is True
    assert stack.router.functions.isAuthorized(extra, keccak256(b"bounded 0@1"), measurement).call() is False
