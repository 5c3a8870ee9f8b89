"""The gatekeeper registers only what it verified: each check shown rejecting."""

from __future__ import annotations

import os

import pytest

from verifier.attestation import AttestationError, SimulatedQuote, make_simulated_quote, report_data
from verifier.gatekeeper import Allowlist, evaluate_attestation
from verifier.hashing import keccak256
from verifier.hexutil import to_hex
from verifier.signing import address_of_private_key, sign_digest

REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
MEASUREMENT = keccak256(b"approved code")
SIGNER = address_of_private_key(os.urandom(32))
HPKE = b"\x01" + os.urandom(32)  # a key bundle with one x25519 key
ALLOW = Allowlist(frozenset({MEASUREMENT}), allow_simulated=True)


def attestation(
    *,
    measurement: bytes = MEASUREMENT,
    chain_id: int = 31337,
    registry: str = REGISTRY,
    signer: str = SIGNER,
    hpke: bytes = HPKE,
    quote: dict | None = None,
) -> dict:
    doc_quote = quote or make_simulated_quote(measurement, report_data(chain_id, registry, signer, hpke)).to_json()
    return {
        "kind": "simulated",
        "signer": SIGNER,
        "hpkeKeys": to_hex(HPKE),
        "quote": doc_quote,
        "measurement": to_hex(measurement),
    }


def evaluate(doc: dict, *, chain_id: int = 31337, allowlist: Allowlist = ALLOW):
    return evaluate_attestation(doc, chain_id=chain_id, registry=REGISTRY, allowlist=allowlist, now=1_000)


def test_valid_simulated_attestation_is_registered() -> None:
    registration = evaluate(attestation())
    assert (registration.signer, registration.measurement, registration.simulated) == (SIGNER, MEASUREMENT, True)
    assert registration.hpke_keys == HPKE
    assert registration.expiry == 1_000 + ALLOW.validity_seconds


def test_measurement_not_on_the_allowlist_is_refused() -> None:
    with pytest.raises(AttestationError, match="not on the allowlist"):
        evaluate(attestation(measurement=keccak256(b"modified code")))


@pytest.mark.parametrize(
    "binding",
    [
        {"chain_id": 1},
        {"registry": "0x" + "99" * 20},
        {"signer": address_of_private_key(os.urandom(32))},
        {"hpke": os.urandom(32)},
    ],
    ids=["other-chain", "other-registry", "other-signer", "other-hpke-key"],
)
def test_report_data_must_bind_these_keys_to_this_chain_and_registry(binding: dict) -> None:
    with pytest.raises(AttestationError, match="report data does not bind"):
        evaluate(attestation(**binding))


def test_tampered_quote_is_refused() -> None:
    quote = make_simulated_quote(MEASUREMENT, report_data(31337, REGISTRY, SIGNER, HPKE))
    forged = SimulatedQuote(keccak256(b"approved code"), quote.report_data, quote.signature).to_json()
    forged["reportData"] = to_hex(report_data(31337, REGISTRY, SIGNER, os.urandom(32)))
    with pytest.raises(AttestationError, match=r"not the simulated quoting key|signature invalid"):
        evaluate(attestation(quote=forged))


def test_quote_signed_by_another_key_is_refused() -> None:
    data = report_data(31337, REGISTRY, SIGNER, HPKE)
    from verifier.attestation import simulated_quote_digest

    signature = sign_digest(os.urandom(32), simulated_quote_digest(MEASUREMENT, data))
    forged = SimulatedQuote(MEASUREMENT, data, signature).to_json()
    with pytest.raises(AttestationError, match="not the simulated quoting key"):
        evaluate(attestation(quote=forged))


def test_simulated_attestation_refused_when_policy_forbids_it() -> None:
    with pytest.raises(AttestationError, match="does not allow simulated"):
        evaluate(attestation(), allowlist=Allowlist(frozenset({MEASUREMENT}), allow_simulated=False))


def test_simulated_attestation_refused_off_the_local_chain() -> None:
    with pytest.raises(AttestationError, match="only the local chain"):
        evaluate(attestation(chain_id=1), chain_id=1)


def test_unknown_evidence_kind_is_refused() -> None:
    doc = attestation()
    doc["kind"] = "tdx"
    with pytest.raises(AttestationError, match="not supported"):
        evaluate(doc)


def test_malformed_document_is_refused() -> None:
    with pytest.raises(AttestationError, match="malformed"):
        evaluate({"kind": "simulated"})
