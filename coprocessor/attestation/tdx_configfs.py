"""Intel TDX quotes through the Linux configfs-tsm report interface (kernel 6.7+, ``tdx_guest`` driver).

One quote is one report entry: create ``<root>/<unique name>`` (the kernel fills it with attribute files),
read ``generation``, write the 64 bytes of report data to ``inblob``, read the quote from ``outblob``, read
``generation`` again and ``provider``, then remove the entry. ``generation`` counts writes to the entry; if
it moved by anything but one, another writer raced us between our write and our read, so ``outblob`` may
carry their report data: the attempt is discarded and retried with a fresh entry, a bounded number of times.

Sources: the kernel ABI ``Documentation/ABI/testing/configfs-tsm`` ("generation ... increments each time
@inblob or any option is written. Userspace can detect conflicts by checking generation before writing to
any attribute and making sure the number of writes matches expectations after reading @outblob, or it can
prevent conflicts by creating a report instance per requesting context"; ``provider`` names the outblob
format), and google/go-configfs-tsm ``report/report.go`` (the same sequence: MkdirTemp, read generation,
write inblob, read outblob and check generation == expected, read provider, RemoveAll).
"""

from __future__ import annotations

import logging
import os
import secrets
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

log = logging.getLogger(__name__)

TDX_PROVIDER = "tdx_guest"
"""What ``provider`` reads for the TDX guest driver (its module name)."""
DEFAULT_ATTEMPTS = 3


class TdxConfigfsQuoteProvider(DeviceQuoteProvider):
    """TDX quotes from configfs-tsm under ``root`` (normally ``/sys/kernel/config/tsm/report``)."""

    kind = "tdx"

    def __init__(self, root: Path, measure: Measure, *, io: FileIO | None = None, attempts: int = DEFAULT_ATTEMPTS):
        """Check ``root`` exists, then take one quote over zero report data and measure it.

        ``io`` performs the file operations (default: the real filesystem). ``attempts`` bounds the retries
        after a racing writer. Raises ``AttestationUnavailableError`` if configfs-tsm is missing, the provider
        is not ``tdx_guest`` or ``measure`` fails.
        """
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.root = Path(root)
        self._io = io if io is not None else FileIO()
        self._attempts = attempts
        if not self.root.is_dir():
            raise AttestationUnavailableError(
                f"configfs-tsm report directory {self.root} not found: not a TDX guest, a kernel older than 6.7 "
                "or without CONFIG_TSM_REPORTS, or configfs is not mounted (mount -t configfs none /sys/kernel/config)"
            )
        self._measurement = measure_at_start("tdx (configfs-tsm)", self.raw_quote, measure)

    def raw_quote(self, report_data: bytes) -> bytes:
        """The raw quote (``outblob``) over ``report_data``; ``QuoteError`` if every attempt raced or failed."""
        data = check_report_data(report_data)
        moves: list[int] = []
        for attempt in range(1, self._attempts + 1):
            outblob, moved = self._attempt(data)
            if moved == 1:
                return outblob
            moves.append(moved)
            log.warning(
                "configfs-tsm generation moved by %d instead of 1 (another writer raced us); attempt %d of %d",
                moved,
                attempt,
                self._attempts,
            )
        raise QuoteError(
            f"configfs-tsm: another process kept writing to our report entry under {self.root} "
            f"(generation moved by {moves} instead of 1 in each of {self._attempts} attempts); "
            "the quote cannot be trusted to carry our report data"
        )

    def _attempt(self, report_data: bytes) -> tuple[bytes, int]:
        """One report entry: returns ``(outblob, how far generation moved)``."""
        entry = self.root / f"teebridge-{os.getpid()}-{secrets.token_hex(8)}"
        try:
            self._io.mkdir(entry)
        except OSError as exc:
            raise QuoteError(f"configfs-tsm: cannot create report entry {entry}: {exc}") from exc
        try:
            before = self._generation(entry)
            self._io.write(entry / "inblob", report_data)
            outblob = self._io.read(entry / "outblob")
            after = self._generation(entry)
            provider = self._io.read(entry / "provider").decode(errors="replace").strip()
        except OSError as exc:
            raise QuoteError(f"configfs-tsm: report entry {entry} failed: {exc}") from exc
        finally:
            try:
                self._io.rmdir(entry)
            except OSError as exc:
                log.warning("configfs-tsm: cannot remove report entry %s: %s", entry, exc)
        if provider != TDX_PROVIDER:
            raise AttestationUnavailableError(
                f"configfs-tsm provider is {provider!r}, not {TDX_PROVIDER!r}: this is not an Intel TDX guest "
                "(choose the attestation provider for this TEE)"
            )
        if not outblob:
            raise QuoteError(f"configfs-tsm: {entry}/outblob is empty")
        return outblob, after - before

    def _generation(self, entry: Path) -> int:
        raw = self._io.read(entry / "generation")
        try:
            return int(raw.decode().strip())
        except ValueError as exc:
            raise QuoteError(f"configfs-tsm: {entry}/generation is not a number: {raw[:20]!r}") from exc
