"""The interface every quote provider implements."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


class AttestationUnavailableError(RuntimeError):
    """A quote provider that is unknown, not implemented yet, or not usable on this machine."""


@runtime_checkable
class QuoteProvider(Protocol):
    """Produces attestation evidence (a quote) carrying 64 bytes of report data chosen by the enclave."""

    kind: str
    """Provider name, as in the config and in ``GET /v1/attestation`` (``"simulated"``, later ``"tdx"``...)."""
    insecure: bool
    """True when the evidence proves nothing (simulated); verifiers must refuse it outside a local chain."""
    warning: str | None
    """A human warning to show next to the evidence, or None."""

    def quote(self, report_data: bytes) -> dict[str, Any]:
        """JSON-able evidence binding ``report_data`` (64 bytes) to this enclave's measurement."""
        ...
