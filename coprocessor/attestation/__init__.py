"""Quote providers, selected by name (``CoprocessorConfig.attestation``).

Only ``simulated`` is implemented. The other names are reserved for providers to come, each a module in
this package with a class satisfying :class:`~coprocessor.attestation.base.QuoteProvider`:

- ``tdx``: Intel TDX through Linux configfs-tsm (``/sys/kernel/config/tsm/report``),
- ``sgx-gramine``: Intel SGX under Gramine (``/dev/attestation``),
- ``dstack``: a dstack CVM through its guest agent socket.

To add one, write the module and add its factory to :data:`PROVIDERS`.
"""

from __future__ import annotations

from collections.abc import Callable

from coprocessor.attestation.base import AttestationUnavailableError, QuoteProvider
from coprocessor.attestation.simulated import SimulatedQuoteProvider

ProviderFactory = Callable[[bytes], QuoteProvider]

PROVIDERS: dict[str, ProviderFactory] = {
    "simulated": SimulatedQuoteProvider,
}
"""Implemented providers: name -> factory taking the 32-byte code measurement."""

PLANNED_PROVIDERS: dict[str, str] = {
    "tdx": "Intel TDX via Linux configfs-tsm",
    "sgx-gramine": "Intel SGX via Gramine /dev/attestation",
    "dstack": "dstack guest agent",
}
"""Names reserved for providers that are designed but not implemented yet."""


def create_provider(name: str, measurement: bytes) -> QuoteProvider:
    """The quote provider called ``name``; raises ``AttestationUnavailableError`` for any other name."""
    factory = PROVIDERS.get(name)
    if factory is not None:
        return factory(measurement)
    available = ", ".join(sorted(PROVIDERS))
    if name in PLANNED_PROVIDERS:
        raise AttestationUnavailableError(
            f"attestation provider {name!r} ({PLANNED_PROVIDERS[name]}) is not implemented yet; available: {available}"
        )
    known = ", ".join(sorted([*PROVIDERS, *PLANNED_PROVIDERS]))
    raise AttestationUnavailableError(f"unknown attestation provider {name!r}; known names: {known}")


__all__ = ["PLANNED_PROVIDERS", "PROVIDERS", "AttestationUnavailableError", "QuoteProvider", "create_provider"]
