"""Intel SGX DCAP quotes under Gramine, through its ``/dev/attestation`` pseudo-files.

Write the 64 bytes of report data to ``user_report_data``, then read ``quote``: Gramine builds an SGX report
over that data (EREPORT) and has the Quoting Enclave turn it into a DCAP quote. ``attestation_type`` must
read ``dcap`` (``sgx.remote_attestation = "dcap"`` in the manifest); ``none`` or ``epid`` is refused.

The pseudo-files are process-local, but one process shares them between its threads, so the write and the
read are done under a lock: a concurrent request cannot swap its report data in between.

Source: Gramine ``Documentation/attestation.rst``, section "Low-level /dev/attestation interface"
(gramineproject/gramine).
"""

from __future__ import annotations

import threading
from pathlib import Path

from coprocessor.attestation.base import (
    AttestationUnavailableError,
    DeviceQuoteProvider,
    FileIO,
    Measure,
    QuoteError,
    check_report_data,
    measure_at_start,
)

REQUIRED_ATTESTATION_TYPE = "dcap"


class SgxGramineQuoteProvider(DeviceQuoteProvider):
    """SGX DCAP quotes from Gramine's attestation pseudo-directory ``root`` (normally ``/dev/attestation``)."""

    kind = "sgx"

    def __init__(self, root: Path, measure: Measure, *, io: FileIO | None = None):
        """Check ``attestation_type`` is ``dcap``, then take one quote over zero report data and measure it.

        ``io`` performs the file operations (default: the real filesystem). Raises
        ``AttestationUnavailableError`` when not under Gramine, not DCAP, or ``measure`` fails.
        """
        self.root = Path(root)
        self._io = io if io is not None else FileIO()
        self._lock = threading.Lock()
        try:
            kind = self._io.read(self.root / "attestation_type").decode(errors="replace").strip("\x00 \t\r\n")
        except OSError as exc:
            raise AttestationUnavailableError(
                f"cannot read {self.root / 'attestation_type'}: {exc.strerror or exc}; not running under Gramine "
                "with remote attestation enabled"
            ) from exc
        if kind != REQUIRED_ATTESTATION_TYPE:
            raise AttestationUnavailableError(
                f"Gramine attestation type is {kind!r}, not {REQUIRED_ATTESTATION_TYPE!r}: set "
                'sgx.remote_attestation = "dcap" in the manifest'
            )
        self._measurement = measure_at_start("sgx (Gramine)", self.raw_quote, measure)

    def raw_quote(self, report_data: bytes) -> bytes:
        """The raw DCAP quote over ``report_data``; ``QuoteError`` if Gramine fails or returns nothing."""
        data = check_report_data(report_data)
        with self._lock:
            try:
                self._io.write(self.root / "user_report_data", data)
                raw = self._io.read(self.root / "quote")
            except OSError as exc:
                raise QuoteError(f"Gramine quote failed ({self.root}): {exc}") from exc
        if not raw:
            raise QuoteError(f"Gramine returned an empty quote from {self.root / 'quote'}")
        return raw
