"""Quote providers, selected by name (``CoprocessorConfig.attestation``).

- ``simulated``: a quote signed by a publicly known key; proves nothing (development, CI, the local chain),
- ``tdx``: Intel TDX through Linux configfs-tsm (``/sys/kernel/config/tsm/report``),
- ``sgx``: Intel SGX DCAP under Gramine (``/dev/attestation``),
- ``dstack``: a dstack CVM (TDX) through its guest agent socket,
- ``auto``: the first of dstack, tdx, sgx that is present; with none present it refuses to start (it never
  falls back to ``simulated``, which must be chosen explicitly).

Every provider satisfies :class:`~coprocessor.attestation.base.QuoteProvider`. A hardware provider's
``measurement()`` is computed once at start: it takes a quote over 64 zero bytes and applies the ``measure``
function given to :func:`create_provider` (quote bytes -> 32-byte measurement, the function the gatekeeper
uses to read quotes). Until the DCAP quote parser is wired in, the default ``measure`` refuses, so hardware
providers cannot start yet.
"""

from __future__ import annotations

import logging

from coprocessor.attestation.base import (
    AttestationUnavailableError,
    Measure,
    MeasurementNotWiredError,
    QuoteError,
    QuoteProvider,
    TeeLocations,
    measure_not_wired,
)
from coprocessor.attestation.dstack import DstackQuoteProvider
from coprocessor.attestation.sgx_gramine import SgxGramineQuoteProvider
from coprocessor.attestation.simulated import SimulatedQuoteProvider
from coprocessor.attestation.tdx_configfs import TdxConfigfsQuoteProvider

log = logging.getLogger(__name__)

AUTO = "auto"
PROVIDERS: dict[str, str] = {
    "simulated": "simulated, NOT a TEE",
    "tdx": "Intel TDX via Linux configfs-tsm",
    "sgx": "Intel SGX DCAP via Gramine /dev/attestation",
    "dstack": "Intel TDX via the dstack guest agent",
}
"""Implemented providers: name -> description. ``auto`` picks one of the hardware ones."""


def detect_provider(locations: TeeLocations) -> str:
    """The hardware provider ``auto`` picks: dstack if its socket exists, else tdx if the configfs-tsm report
    directory exists, else sgx if Gramine's ``quote`` exists. Raises ``AttestationUnavailableError`` if none.
    """
    if locations.dstack_socket() is not None:
        return "dstack"
    if locations.has_tsm():
        return "tdx"
    if locations.has_gramine():
        return "sgx"
    sockets = ", ".join(str(p) for p in locations.dstack_sockets)
    raise AttestationUnavailableError(
        "attestation 'auto' found no TEE on this machine: no dstack guest agent socket "
        f"({sockets}), no configfs-tsm report directory ({locations.tsm_report_dir}), no Gramine "
        f"{locations.gramine_dir / 'quote'}. For local development choose attestation 'simulated' explicitly "
        "(--attestation simulated or TEEBRIDGE_COPROCESSOR_ATTESTATION=simulated); it proves nothing"
    )


def create_provider(
    name: str,
    code_measurement: bytes,
    measure: Measure = measure_not_wired,
    *,
    locations: TeeLocations | None = None,
) -> QuoteProvider:
    """The quote provider called ``name`` (or detected, for ``auto``), ready to quote.

    ``code_measurement`` is what the simulated provider reports. Hardware providers take one quote at start
    and set their measurement to ``measure(quote)``; with the default ``measure`` they refuse to start
    (:class:`MeasurementNotWiredError`) before touching the hardware. ``locations`` says where the TEE
    interfaces are (default: the standard paths). Raises ``AttestationUnavailableError`` (or a subclass)
    for an unknown name, a TEE that is not there, or a start-up quote that fails.
    """
    where = locations if locations is not None else TeeLocations()
    if name == AUTO:
        name = detect_provider(where)
        log.info("attestation 'auto' detected %s (%s)", name, PROVIDERS[name])
    if name == "simulated":
        return SimulatedQuoteProvider(code_measurement)
    if name not in PROVIDERS:
        known = ", ".join(sorted([*PROVIDERS, AUTO]))
        raise AttestationUnavailableError(f"unknown attestation provider {name!r}; known names: {known}")
    if measure is measure_not_wired:
        raise MeasurementNotWiredError(
            f"attestation provider {name!r} ({PROVIDERS[name]}) cannot start: computing the measurement from "
            "its quotes is not implemented yet (create_provider needs measure=, the DCAP quote parser's "
            "measurement function); use 'simulated' for local development"
        )
    if name == "tdx":
        return TdxConfigfsQuoteProvider(where.tsm_report_dir, measure)
    if name == "sgx":
        return SgxGramineQuoteProvider(where.gramine_dir, measure)
    socket = where.dstack_socket()
    if socket is None:
        raise AttestationUnavailableError(
            "no dstack guest agent socket found at "
            + ", ".join(str(p) for p in where.dstack_sockets)
            + ": not in a dstack CVM, or the socket is not mounted into this container"
        )
    return DstackQuoteProvider(socket, measure)


__all__ = [
    "AUTO",
    "PROVIDERS",
    "AttestationUnavailableError",
    "Measure",
    "MeasurementNotWiredError",
    "QuoteError",
    "QuoteProvider",
    "TeeLocations",
    "create_provider",
    "detect_provider",
    "measure_not_wired",
]
