"""The simulated quote provider: a quote signed by a publicly known key. It proves nothing.

Used where there is no TEE (development, CI, the local demo chain). The registry accepts signers
registered from simulated quotes only on the local chain; this provider says so loudly at start.
"""

from __future__ import annotations

import logging
from typing import Any

from verifier.attestation import SIMULATED_KIND, SIMULATED_WARNING, make_simulated_quote

log = logging.getLogger(__name__)

_BANNER_RULE = "!" * 100


class SimulatedQuoteProvider:
    """Makes :class:`verifier.attestation.SimulatedQuote` documents for a fixed measurement."""

    kind = SIMULATED_KIND
    insecure = True
    warning: str | None = SIMULATED_WARNING

    def __init__(self, measurement: bytes) -> None:
        if len(measurement) != 32:
            raise ValueError("a measurement is 32 bytes")
        self._measurement = measurement
        log.warning("\n%s\n!!! %s\n%s", _BANNER_RULE, SIMULATED_WARNING, _BANNER_RULE)

    def measurement(self) -> bytes:
        """The code measurement this provider was created with (what its quotes report)."""
        return self._measurement

    def quote(self, report_data: bytes) -> dict[str, Any]:
        """A simulated quote over this provider's measurement and ``report_data``."""
        return make_simulated_quote(self._measurement, report_data).to_json()
