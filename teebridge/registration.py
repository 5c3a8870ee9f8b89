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


def approve_jobs(owner: ChainClient, registry_address: str, measurement: bytes, job_ids: Iterable[bytes]) -> None:
    """Approve ``measurement`` for each job (registry owner only)."""
    registry = owner.contract("EnclaveRegistry", registry_address)
    for job in job_ids:
        if not registry.functions.isApproved(job, measurement).call():
            owner.send(registry.functions.setJobMeasurement(job, measurement, True))
