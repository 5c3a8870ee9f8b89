"""Which enclave results the registry no longer accepts, learnt when the Router refuses one of them.

The Router refuses a fulfilment whose signer is not authorized for the job (``UnauthorizedSigner`` in a simulation,
``FulfillmentSkipped`` reason 5 in a batch). :meth:`SignerLiveness.stale_reason` reads the registry to say why:

- the signer is **not live**: revoked, its registration expired, never registered, or registered from a simulated
  attestation the registry no longer accepts (the same test discovery applies, ``relayer.discovery``);
- or the job does **not approve the measurement** the signer runs (withdrawn, as when an image is retired, or not
  approved yet).

Either way every such result is stale: the relayer discards it and has another enclave execute the request again,
and the pool gives no work to a member holding that key, nor, for that job, to a member running that measurement
(``relayer.coprocessor_pool``). A revoked signer is excluded for the process's life (it can never be registered
again). The other verdicts can change (a registration renewed, an approval activated), so :meth:`refresh` reads the
registry again for each of them every :data:`RECHECK_SECONDS` and lifts those that no longer hold.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from verifier.hexutil import to_checksum_address

#: Seconds between two registry reads of a verdict that can change (everything but a revocation): a renewed
#: registration or an activated approval is noticed within this (two cheap view calls per excluded signer).
RECHECK_SECONDS = 5.0

REVOKED = "revoked"
EXPIRED = "expired"
UNREGISTERED = "not registered"
SIMULATED = "simulated attestation no longer accepted"
UNAPPROVED = "measurement not approved for the job"


class SignerLiveness:
    """The stale verdicts, shared by the submitter (which finds them) and the pool (which avoids them).

    Thread-safe. ``registry`` is the ``EnclaveRegistry`` contract; without one (tests) only :meth:`exclude` and
    :meth:`exclude_measurement` fill it, and nothing is looked up again.
    """

    def __init__(
        self,
        registry: Any | None,
        *,
        recheck_seconds: float = RECHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.recheck_seconds = recheck_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._not_live: dict[str, tuple[str, float]] = {}
        """Lowercase signer -> (why it is not live, when that was read)."""
        self._unapproved: dict[tuple[bytes, bytes], float] = {}
        """(job id, measurement) the registry does not approve -> when that was read."""

    # ---------------------------------------------------------------- what is known (no chain access)

    def known_not_live(self, signer: str) -> str | None:
        """Why ``signer`` is excluded, from what was learnt so far; None if it is not."""
        with self._lock:
            entry = self._not_live.get(signer.lower())
        return entry[0] if entry else None

    def known_unapproved(self, job_id: bytes, measurement: bytes) -> bool:
        """Whether ``job_id`` was found not to approve ``measurement`` (and not found approved since)."""
        with self._lock:
            return (bytes(job_id), bytes(measurement)) in self._unapproved

    def known_stale(self, signer: str, job_id: bytes, measurement: bytes) -> str | None:
        """Why a result of ``signer`` running ``measurement`` for ``job_id`` would be refused; None if not known."""
        why = self.known_not_live(signer)
        if why is None and self.known_unapproved(job_id, measurement):
            why = UNAPPROVED
        return why

    def jobs_with_unapproved(self) -> set[bytes]:
        """The jobs found not to approve some measurement (their requests are executed apart from the others)."""
        with self._lock:
            return {job for job, _ in self._unapproved}

    def exclude(self, signer: str, why: str) -> None:
        """Record ``signer`` as not live for ``why``."""
        with self._lock:
            self._not_live[signer.lower()] = (why, self._clock())

    def exclude_measurement(self, job_id: bytes, measurement: bytes) -> None:
        """Record that ``job_id`` does not approve ``measurement``."""
        with self._lock:
            self._unapproved[(bytes(job_id), bytes(measurement))] = self._clock()

    def excluded(self) -> dict[str, str]:
        """Every excluded signer -> why, and every unapproved ``job 0x..`` -> the measurements (for ``/health``)."""
        with self._lock:
            found = {signer: why for signer, (why, _) in self._not_live.items()}
            for job, measurement in self._unapproved:
                key = "job 0x" + job.hex()
                found[key] = (found[key] + ", " if key in found else UNAPPROVED + ": ") + "0x" + measurement.hex()
        return found

    # ---------------------------------------------------------------- registry reads

    def stale_reason(self, signer: str, job_id: bytes, measurement: bytes) -> str | None:
        """Why the registry refuses ``signer``'s results for ``job_id`` (see the module docstring), remembered;
        None if it holds the signer live and the job approves the measurement (the refusal had another cause).

        Called when the Router refused such a result; a known verdict is answered without a call.
        """
        known = self.known_stale(signer, job_id, measurement)
        if known is not None or self.registry is None:
            return known
        why = self._not_live_reason(signer)
        if why is not None:
            self.exclude(signer, why)
            return why
        block = int(self.registry.w3.eth.block_number)
        if not self.registry.functions.isApproved(bytes(job_id), bytes(measurement)).call(block_identifier=block):
            self.exclude_measurement(job_id, measurement)
            return UNAPPROVED
        return None

    def refresh(self) -> list[str]:
        """Read the registry again for each verdict older than ``recheck_seconds`` that can change; lift those that
        no longer hold. Returns what was lifted, for the log. Called from the relayer's loop."""
        if self.registry is None:
            return []
        due = self._clock() - self.recheck_seconds
        with self._lock:
            signers = [s for s, (why, at) in self._not_live.items() if why != REVOKED and at <= due]
            pairs = [pair for pair, at in self._unapproved.items() if at <= due]
        lifted = []
        for signer in signers:
            why = self._not_live_reason(signer)
            with self._lock:
                if why is None:
                    self._not_live.pop(signer, None)
                    lifted.append(f"signer {signer} is live again")
                else:
                    self._not_live[signer] = (why, self._clock())
        for job, measurement in pairs:
            block = int(self.registry.w3.eth.block_number)
            approved = self.registry.functions.isApproved(job, measurement).call(block_identifier=block)
            with self._lock:
                if approved:
                    self._unapproved.pop((job, measurement), None)
                    lifted.append(f"job 0x{job.hex()} approves measurement 0x{measurement.hex()} again")
                else:
                    self._unapproved[(job, measurement)] = self._clock()
        return lifted

    def _not_live_reason(self, signer: str) -> str | None:
        """Why the registry does not hold ``signer`` live at the latest block; None if it does."""
        assert self.registry is not None
        head = self.registry.w3.eth.get_block("latest")
        block = int(head["number"])
        info = self.registry.functions.signerInfo(to_checksum_address(signer)).call(block_identifier=block)
        _measurement, expiry, revoked, simulated, _keys = info
        if revoked:
            return REVOKED
        if expiry == 0:
            return UNREGISTERED
        if expiry <= int(head["timestamp"]):
            return EXPIRED
        if simulated and not self.registry.functions.simulatedAttestationsAllowed().call(block_identifier=block):
            return SIMULATED
        return None
