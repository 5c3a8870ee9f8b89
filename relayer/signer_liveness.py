"""Which enclave signers the registry no longer accepts, learnt when the Router refuses one of their results.

The Router refuses a fulfilment whose signer is not authorized (``UnauthorizedSigner`` in a simulation,
``FulfillmentSkipped`` reason 5 in a batch). That has two different causes, which :meth:`SignerLiveness.check`
tells apart by reading the registry:

- the signer is **not live**: revoked, its registration expired, never registered, or registered from a simulated
  attestation the registry no longer accepts (the same test discovery applies, ``relayer.discovery``). Every result
  it signed is stale: the relayer discards them and has another enclave execute the requests again, and the pool
  stops giving that signer work (``relayer.coprocessor_pool``);
- the signer is live, but the job does not approve its measurement (not yet, or no longer). Any enclave of the same
  build would be refused alike, so executing again is not what helps; approving the measurement is.

A revoked signer stays excluded for the process's life (a revoked signer can never be registered again). The other
reasons can pass (a registration renewed, the registry accepting simulated signers again), so they are forgotten
after :data:`RECHECK_SECONDS` and looked up again the next time the Router refuses that signer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from web3.contract import Contract

from verifier.hexutil import to_checksum_address

#: Seconds a signer found not live for a reason that can pass (expired, unregistered, simulated) stays excluded.
RECHECK_SECONDS = 60.0

REVOKED = "revoked"
EXPIRED = "expired"
UNREGISTERED = "not registered"
SIMULATED = "simulated attestation no longer accepted"


class SignerLiveness:
    """The signers found not live, shared by the submitter (which finds them) and the pool (which avoids them).

    Thread-safe. ``registry`` is the ``EnclaveRegistry`` contract; without one (tests) only :meth:`exclude` fills it.
    """

    def __init__(
        self,
        registry: Contract | None,
        *,
        recheck_seconds: float = RECHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.recheck_seconds = recheck_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._not_live: dict[str, tuple[str, float | None]] = {}
        """Lowercase signer -> (why it is not live, until when that verdict holds; None: for good)."""

    def known_not_live(self, signer: str) -> str | None:
        """Why ``signer`` is excluded, from what was learnt so far (no chain access); None if it is not."""
        key = signer.lower()
        with self._lock:
            entry = self._not_live.get(key)
            if entry is None:
                return None
            why, until = entry
            if until is not None and self._clock() >= until:
                del self._not_live[key]
                return None
            return why

    def exclude(self, signer: str, why: str) -> None:
        """Record ``signer`` as not live for ``why`` (for good when revoked, else for ``recheck_seconds``)."""
        until = None if why == REVOKED else self._clock() + self.recheck_seconds
        with self._lock:
            self._not_live[signer.lower()] = (why, until)

    def check(self, signer: str) -> str | None:
        """Why the registry does not hold ``signer`` live at the latest block (and remember it); None if it does.

        Called when the Router refused one of ``signer``'s results; a known verdict is answered without a call.
        """
        known = self.known_not_live(signer)
        if known is not None or self.registry is None:
            return known
        w3 = self.registry.w3
        head = w3.eth.get_block("latest")
        block = int(head["number"])
        info = self.registry.functions.signerInfo(to_checksum_address(signer)).call(block_identifier=block)
        _measurement, expiry, revoked, simulated, _keys = info
        why = None
        if revoked:
            why = REVOKED
        elif expiry == 0:
            why = UNREGISTERED
        elif expiry <= int(head["timestamp"]):
            why = EXPIRED
        elif simulated and not self.registry.functions.simulatedAttestationsAllowed().call(block_identifier=block):
            why = SIMULATED
        if why is not None:
            self.exclude(signer, why)
        return why

    def excluded(self) -> dict[str, str]:
        """Every signer excluded now -> why (for ``/health``)."""
        with self._lock:
            keys = list(self._not_live)
        found = {key: self.known_not_live(key) for key in keys}
        return {key: why for key, why in found.items() if why is not None}
