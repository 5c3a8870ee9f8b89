"""The interface every quote provider implements, and the pieces the hardware providers share."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from coprocessor.config import DEFAULT_GRAMINE_ATTESTATION_DIR, DEFAULT_TSM_REPORT_DIR, CoprocessorConfig

REPORT_DATA_LENGTH = 64
MEASUREMENT_LENGTH = 32

Measure = Callable[[bytes], bytes]
"""Turns the raw bytes of a hardware quote into the enclave's 32-byte measurement."""


class AttestationUnavailableError(RuntimeError):
    """A quote provider that is unknown, not implemented yet, or not usable on this machine."""


class QuoteError(AttestationUnavailableError):
    """The TEE did not produce a usable quote (I/O error, a racing writer, a refused request, a bad answer)."""


class MeasurementNotWiredError(AttestationUnavailableError, NotImplementedError):
    """No ``measure`` function was given, so a hardware quote cannot be turned into a measurement yet."""


@runtime_checkable
class QuoteProvider(Protocol):
    """Produces attestation evidence (a quote) carrying 64 bytes of report data chosen by the enclave."""

    kind: str
    """Provider name, as in the config and in ``GET /v1/attestation`` (``"simulated"``, ``"tdx"``, ``"sgx"``,
    ``"dstack"``). The evidence document has its own ``kind``: the quote format (``"tdx"`` for dstack)."""
    insecure: bool
    """True when the evidence proves nothing (simulated); verifiers must refuse it outside a local chain."""
    warning: str | None
    """A human warning to show next to the evidence, or None."""

    def quote(self, report_data: bytes) -> dict[str, Any]:
        """JSON-able evidence binding ``report_data`` (64 bytes) to this enclave's measurement."""
        ...

    def measurement(self) -> bytes:
        """The 32-byte measurement a verifier reads from this provider's quotes (what gets registered)."""
        ...


def measure_not_wired(quote: bytes) -> bytes:
    """The default ``measure``: always raises :class:`MeasurementNotWiredError`.

    Replace it with the DCAP quote parser's measurement function once it exists
    (``verifier.quote.measurement_of(verifier.quote.parse_quote(raw))``).
    """
    raise MeasurementNotWiredError(
        "computing the enclave measurement from a hardware quote is not implemented yet: "
        "create_provider(..., measure=...) needs the DCAP quote parser (verifier.quote)"
    )


def check_report_data(report_data: bytes) -> bytes:
    """``report_data`` as ``bytes`` if it is exactly 64 bytes; ``ValueError`` otherwise."""
    if len(report_data) != REPORT_DATA_LENGTH:
        raise ValueError(f"report data is {REPORT_DATA_LENGTH} bytes, got {len(report_data)}")
    return bytes(report_data)


def measure_at_start(source: str, take_quote: Callable[[bytes], bytes], measure: Measure) -> bytes:
    """Take one quote over 64 zero bytes and return ``measure(quote)``, checked to be 32 bytes.

    ``source`` names the provider in errors. ``MeasurementNotWiredError`` and ``QuoteError`` pass through;
    anything else ``measure`` raises becomes ``AttestationUnavailableError``.
    """
    raw = take_quote(bytes(REPORT_DATA_LENGTH))
    try:
        value = measure(raw)
    except AttestationUnavailableError:
        raise
    except Exception as exc:
        raise AttestationUnavailableError(
            f"{source}: cannot compute the measurement from the start-up quote: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(value, bytes) or len(value) != MEASUREMENT_LENGTH:
        raise AttestationUnavailableError(
            f"{source}: the measure function returned {type(value).__name__} of length "
            f"{len(value) if isinstance(value, bytes | bytearray) else '?'}, expected {MEASUREMENT_LENGTH} bytes"
        )
    return value


class DeviceQuoteProvider:
    """Shared shape of the providers that read a quote from a device file tree (TDX configfs-tsm, Gramine).

    Subclasses set ``kind`` and ``_measurement`` (from :func:`measure_at_start`) and implement
    :meth:`raw_quote`; the evidence is ``{"kind": kind, "insecure": false, "quote": "0x<raw quote>"}``.
    """

    kind: str
    insecure = False
    warning: str | None = None
    _measurement: bytes

    def measurement(self) -> bytes:
        """The measurement computed at start from a quote over zero report data."""
        return self._measurement

    def quote(self, report_data: bytes) -> dict[str, Any]:
        """The evidence for ``report_data`` (64 bytes)."""
        return {"kind": self.kind, "insecure": self.insecure, "quote": quote_hex(self.raw_quote(report_data))}

    def raw_quote(self, report_data: bytes) -> bytes:
        """The raw DCAP quote over ``report_data``."""
        raise NotImplementedError


def quote_hex(raw: bytes) -> str:
    """``0x``-prefixed lower-case hex of a raw quote, as evidence documents carry it."""
    return "0x" + raw.hex()


class FileIO:
    """The four file operations the configfs-tsm and Gramine providers perform, done on the real filesystem.

    Providers do all their pseudo-file I/O through one of these, so tests can subclass it to play the kernel's
    (or Gramine's) part synchronously: each method here is one plain system-call level operation.
    """

    def mkdir(self, path: Path) -> None:
        """Create the directory ``path`` (its parent must exist); ``FileExistsError`` if it exists."""
        os.mkdir(path, 0o700)

    def rmdir(self, path: Path) -> None:
        """Remove the directory ``path`` (on configfs this also removes its attribute files)."""
        os.rmdir(path)

    def read(self, path: Path) -> bytes:
        """The whole contents of ``path``."""
        with open(path, "rb") as f:
            return f.read()

    def write(self, path: Path, data: bytes) -> None:
        """Write ``data`` to the existing file ``path`` in one ``write`` call (pseudo-files take one write)."""
        fd = os.open(path, os.O_WRONLY)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
        if written != len(data):
            raise OSError(f"short write to {path}: {written} of {len(data)} bytes")


DSTACK_SOCKETS: tuple[Path, ...] = (
    Path("/var/run/dstack.sock"),
    Path("/run/dstack.sock"),
    Path("/var/run/dstack/dstack.sock"),
    Path("/run/dstack/dstack.sock"),
    Path("/var/run/tappd.sock"),
    Path("/run/tappd.sock"),
    Path("/var/run/dstack/tappd.sock"),
    Path("/run/dstack/tappd.sock"),
)
"""Where a dstack guest agent listens, in the order the dstack Python SDK looks (current API first, then the
legacy ``tappd`` API, which a socket named ``tappd.sock`` speaks)."""


@dataclass(frozen=True, slots=True)
class TeeLocations:
    """Where each TEE interface lives on this machine (configurable so tests can point at fakes)."""

    tsm_report_dir: Path = DEFAULT_TSM_REPORT_DIR
    """The configfs-tsm report directory; TDX is available when it exists."""
    gramine_dir: Path = DEFAULT_GRAMINE_ATTESTATION_DIR
    """Gramine's ``/dev/attestation``; SGX is available when ``quote`` exists in it."""
    dstack_sockets: tuple[Path, ...] = DSTACK_SOCKETS
    """Candidate dstack guest agent sockets; the first that exists is used."""

    @classmethod
    def from_config(cls, config: CoprocessorConfig) -> TeeLocations:
        """The locations a config names (``dstack_socket`` unset: the standard candidate paths)."""
        sockets = DSTACK_SOCKETS if config.dstack_socket is None else (config.dstack_socket,)
        return cls(config.tsm_report_dir, config.gramine_attestation_dir, sockets)

    def dstack_socket(self) -> Path | None:
        """The first candidate dstack socket that exists, or None."""
        return next((p for p in self.dstack_sockets if p.exists()), None)

    def has_tsm(self) -> bool:
        """Whether the configfs-tsm report directory exists."""
        return self.tsm_report_dir.is_dir()

    def has_gramine(self) -> bool:
        """Whether Gramine's ``/dev/attestation/quote`` exists."""
        return (self.gramine_dir / "quote").exists()
