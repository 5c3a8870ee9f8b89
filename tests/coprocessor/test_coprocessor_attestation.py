"""Quote providers: the simulated one, and clear errors for the others."""

from __future__ import annotations

import pytest

from coprocessor.attestation import AttestationUnavailableError, QuoteProvider, create_provider
from verifier.attestation import SIMULATED_WARNING, SimulatedQuote, verify_simulated_quote

MEASUREMENT = bytes(range(32))
REPORT_DATA = bytes(range(64))


def test_simulated_provider_quotes_measurement_and_report_data(caplog: pytest.LogCaptureFixture) -> None:
    provider = create_provider("simulated", MEASUREMENT)
    assert isinstance(provider, QuoteProvider)
    assert provider.kind == "simulated" and provider.insecure is True and provider.warning == SIMULATED_WARNING
    assert SIMULATED_WARNING in caplog.text
    assert any(r.levelname == "WARNING" for r in caplog.records)
    quote = SimulatedQuote.from_json(provider.quote(REPORT_DATA))
    verify_simulated_quote(quote)
    assert quote.measurement == MEASUREMENT and quote.report_data == REPORT_DATA


def test_unknown_provider_lists_known_names() -> None:
    with pytest.raises(AttestationUnavailableError, match=r"unknown attestation provider 'sev'.*simulated"):
        create_provider("sev", MEASUREMENT)
