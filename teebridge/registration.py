"""The registry owner's side of registration: approve a measurement for jobs."""

from __future__ import annotations

from collections.abc import Iterable

from relayer.chain import ChainClient


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
