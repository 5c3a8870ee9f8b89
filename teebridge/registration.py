"""Send the gatekeeper's decision on-chain, and approve a measurement for jobs (the owner's side)."""

from __future__ import annotations

from collections.abc import Iterable

from relayer.chain import ChainClient
from verifier.gatekeeper import Allowlist, Registration, evaluate_attestation, fetch_attestation


def register_enclave(
    gatekeeper: ChainClient, registry_address: str, coprocessor_url: str, allowlist: Allowlist
) -> Registration:
    """Fetch a coprocessor's attestation, verify it against ``allowlist`` and register its signer."""
    chain_id = gatekeeper.chain_id
    doc = fetch_attestation(coprocessor_url, chain_id, registry_address)
    now = gatekeeper.w3.eth.get_block("latest")["timestamp"]
    registration = evaluate_attestation(doc, chain_id=chain_id, registry=registry_address, allowlist=allowlist, now=now)
    registry = gatekeeper.contract("EnclaveRegistry", registry_address)
    gatekeeper.send(
        registry.functions.registerSigner(
            registration.signer,
            registration.measurement,
            registration.expiry,
            registration.simulated,
            registration.hpke_public_key,
        )
    )
    return registration


def approve_jobs(
    owner: ChainClient, registry_address: str, measurement: bytes, job_ids: Iterable[bytes], *, version: int = 1
) -> list[bytes]:
    """Propose ``measurement`` (image ``version``) for each job and activate what the delay allows.

    Returns the jobs still waiting for the registry's governance delay; activate them later with
    :func:`activate_jobs` (anyone may).
    """
    registry = owner.contract("EnclaveRegistry", registry_address)
    waiting = []
    for job in job_ids:
        if registry.functions.isApproved(job, measurement).call():
            continue
        owner.send(registry.functions.proposeJobMeasurement(job, measurement, version))
        if registry.functions.governanceDelay().call() == 0:
            owner.send(registry.functions.activateJobMeasurement(job, measurement))
        else:
            waiting.append(job)
    return waiting


def activate_jobs(client: ChainClient, registry_address: str, measurement: bytes, job_ids: Iterable[bytes]) -> None:
    """Activate proposals whose governance delay has passed."""
    registry = client.contract("EnclaveRegistry", registry_address)
    for job in job_ids:
        client.send(registry.functions.activateJobMeasurement(job, measurement))
