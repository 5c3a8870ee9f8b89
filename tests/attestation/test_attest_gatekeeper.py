"""The gatekeeper's hardware path on real DCAP quotes: verify, apply policy, bind, cap the expiry."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from attest_testdata import dcap_qvl_collateral, read

from teebridge.testkit import DevEnclave
from verifier.attestation import AttestationError
from verifier.dcap import CollateralError
from verifier.gatekeeper import Allowlist, combined_evaluator, dcap_evaluator
from verifier.hexutil import to_hex
from verifier.policy import load_policy
from verifier.quote import measurement_of, parse_quote

QUOTE = "dcap-qvl/tdx_v4_quote.bin"
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
SIGNER = DevEnclave.random().address
HPKE = b"\x01" + os.urandom(32)  # a key bundle with one x25519 key
INSIDE = int(datetime(2025, 7, 19, 10, 0, 0, tzinfo=UTC).timestamp())  # collateral valid until 10:00:35Z
AFTER = int(datetime(2025, 7, 20, tzinfo=UTC).timestamp())


@pytest.fixture(scope="module")
def policy():
    from pathlib import Path

    return load_policy(Path(__file__).resolve().parents[2] / "examples" / "policy.toml")


def doc(raw: bytes, kind: str = "tdx") -> dict:
    return {
        "kind": "tdx",
        "signer": SIGNER,
        "hpkeKeys": to_hex(HPKE),
        "quote": {"kind": kind, "insecure": False, "quote": to_hex(raw)},
    }


def collateral(_quote):
    return dcap_qvl_collateral("tdx_v4_quote")


def sample_binding(*_: object) -> bytes:
    """Pretend our keys are what the sample quote commits to (a real one is a preimage we cannot make)."""
    return parse_quote(read(QUOTE)).report_data


def test_genuine_quote_is_still_refused_when_not_bound_to_these_keys(policy) -> None:
    evaluate = dcap_evaluator(policy, collateral)
    with pytest.raises(AttestationError, match="report") as info:
        evaluate(doc(read(QUOTE)), 31337, REGISTRY, INSIDE)
    assert info.value.revoke is True


def test_bound_genuine_quote_registers_until_the_collateral_next_update(policy) -> None:
    evaluate = dcap_evaluator(policy, collateral, binding=sample_binding)
    registration = evaluate(doc(read(QUOTE)), 31337, REGISTRY, INSIDE)
    assert registration.measurement == measurement_of(parse_quote(read(QUOTE)))
    assert registration.simulated is False and registration.signer == SIGNER and registration.hpke_keys == HPKE
    assert registration.expiry == int(datetime(2025, 7, 19, 10, 0, 35, tzinfo=UTC).timestamp())


def test_stale_collateral_is_unverifiable_not_a_reason_to_revoke(policy) -> None:
    evaluate = dcap_evaluator(policy, collateral, binding=sample_binding)
    with pytest.raises(AttestationError, match="collateral_expired") as info:
        evaluate(doc(read(QUOTE)), 31337, REGISTRY, AFTER)
    assert info.value.revoke is False


def test_missing_collateral_is_unverifiable(policy) -> None:
    def unavailable(_quote):
        raise CollateralError("PCCS down")

    with pytest.raises(AttestationError, match="collateral unavailable") as info:
        dcap_evaluator(policy, unavailable, binding=sample_binding)(doc(read(QUOTE)), 31337, REGISTRY, INSIDE)
    assert info.value.revoke is False


def test_tampered_quote_is_refused_for_good(policy) -> None:
    raw = bytearray(read(QUOTE))
    raw[700] ^= 0x01  # inside the quote signature
    with pytest.raises(AttestationError, match="quote refused") as info:
        dcap_evaluator(policy, collateral, binding=sample_binding)(doc(bytes(raw)), 31337, REGISTRY, INSIDE)
    assert info.value.revoke is True


def test_identity_outside_the_policy_is_refused(policy) -> None:
    from dataclasses import replace

    stranger = replace(policy, tdx=(), sgx=policy.sgx)
    with pytest.raises(AttestationError, match="policy refused") as info:
        dcap_evaluator(stranger, collateral, binding=sample_binding)(doc(read(QUOTE)), 31337, REGISTRY, INSIDE)
    assert info.value.revoke is True


def test_evidence_kind_must_match_the_quote(policy) -> None:
    with pytest.raises(AttestationError, match="evidence says sgx"):
        dcap_evaluator(policy, collateral, binding=sample_binding)(doc(read(QUOTE), "sgx"), 31337, REGISTRY, INSIDE)


def test_combined_evaluator_routes_and_refuses_what_it_has_no_rule_for(policy) -> None:
    hardware_only = combined_evaluator(hardware=dcap_evaluator(policy, collateral, binding=sample_binding))
    simulated_doc = {
        "kind": "simulated",
        "signer": SIGNER,
        "hpkeKeys": to_hex(HPKE),
        "quote": {"kind": "simulated"},
    }
    with pytest.raises(AttestationError, match="no simulated allowlist"):
        hardware_only(simulated_doc, 31337, REGISTRY, INSIDE)
    simulated_only = combined_evaluator(allowlist=Allowlist(frozenset(), allow_simulated=True))
    with pytest.raises(AttestationError, match="no hardware policy"):
        simulated_only(doc(read(QUOTE)), 31337, REGISTRY, INSIDE)
    assert hardware_only(doc(read(QUOTE)), 31337, REGISTRY, INSIDE).simulated is False


class _RevokedReport:
    """dcap-qvl's report for a genuine quote, but with Intel listing the platform's TCB as revoked."""

    def __init__(self, real) -> None:
        self._real = real
        self.status = "Revoked"
        self.advisory_ids = list(real.advisory_ids)

    def to_json(self) -> str:
        return self._real.to_json()


def test_revoked_tcb_is_refused_and_revokes(policy, monkeypatch: pytest.MonkeyPatch) -> None:
    import dcap_qvl

    from verifier.dcap import Reason, verify_quote

    real_verify = dcap_qvl.verify_with_root_ca
    monkeypatch.setattr(dcap_qvl, "verify_with_root_ca", lambda *a: _RevokedReport(real_verify(*a)))
    verdict = verify_quote(read(QUOTE), collateral(None), datetime.fromtimestamp(INSIDE, UTC))
    assert not verdict.accepted and verdict.reason is Reason.TCB_REVOKED
    with pytest.raises(AttestationError, match="tcb_revoked") as info:
        dcap_evaluator(policy, collateral, binding=sample_binding)(doc(read(QUOTE)), 31337, REGISTRY, INSIDE)
    assert info.value.revoke is True


def test_tcb_status_below_policy_is_refused_and_revokes() -> None:
    """Automata's TDX v4 sample is genuine but OutOfDate: an UpToDate-only policy refuses it for good."""
    from attest_testdata import automata_tdx_v4_collateral

    from verifier.policy import policy_from_dict

    raw = read("automata/tdx_v4_quote.bin")
    strict = policy_from_dict({"version": 1, "tdx": [{"mr_td": parse_quote(raw).report.mr_td.hex()}]})
    evaluate = dcap_evaluator(
        strict, lambda _q: automata_tdx_v4_collateral(), binding=lambda *_: parse_quote(raw).report_data
    )
    at = int(datetime(2025, 6, 5, 3, 45, tzinfo=UTC).timestamp())
    with pytest.raises(AttestationError, match=r"tcb_status.*OutOfDate") as info:
        evaluate(doc(raw), 31337, REGISTRY, at)
    assert info.value.revoke is True
