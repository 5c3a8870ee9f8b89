"""verifier.dcap: every sample verifies (or not) as its source says; tampering fails with a specific reason."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from attest_testdata import COLLATERALS, VERIFY_CASES, VerifyCase, dcap_qvl_collateral, quote_of, read, utc
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from verifier import intel_root
from verifier.dcap import (
    Collateral,
    CollateralError,
    Reason,
    classify_error,
    collateral_validity,
    signed_member,
    verify_quote,
)

SGX = "dcap-qvl/sgx_v3_quote.bin"
TDX4 = "dcap-qvl/tdx_v4_quote.bin"
TDX5 = "dcap-qvl/tdx_v5_quote_outdated.bin"
TIMES = {SGX: utc("1752919277"), TDX4: utc("1752919234"), TDX5: utc("1774003274")}


@pytest.mark.parametrize("case", VERIFY_CASES, ids=lambda c: c.id)
def test_sample_verdicts_match_their_sources(case: VerifyCase) -> None:
    verdict = verify_quote(read(case.quote), COLLATERALS[case.quote](), utc(case.at))
    assert verdict.accepted is case.accepted, f"{verdict.describe()} ({case.basis})"
    assert verdict.reason == case.reason, verdict.detail
    if case.accepted:
        assert verdict.tcb_status == case.tcb_status
        assert verdict.advisory_ids == case.advisory_ids
        assert verdict.quote is not None and verdict.quote.signed_bytes == quote_of(case.quote).signed_bytes


def test_dcap_qvl_collateral_windows() -> None:
    """The windows PROVENANCE.md gives; the earliest nextUpdate is what a registration may not outlive."""
    sgx = verify_quote(read(SGX), dcap_qvl_collateral("sgx_v3_quote"), TIMES[SGX])
    assert sgx.collateral_next_update == utc("2025-07-19T10:01:18Z")  # the QE identity's
    assert sgx.validity is not None and sgx.validity.not_before == utc("2025-06-19T10:56:11Z")
    assert sgx.validity.fmspc == "00a067110000" and sgx.validity.tcb_evaluation_data_number == 17
    tdx = verify_quote(read(TDX4), dcap_qvl_collateral("tdx_v4_quote"), TIMES[TDX4])
    assert tdx.collateral_next_update == utc("2025-07-19T10:00:35Z")  # the PCK CRL's
    assert tdx.qe_tcb_status == "UpToDate" and tdx.platform_tcb_status == "UpToDate"


@pytest.mark.parametrize("name", [SGX, TDX4, TDX5])
def test_stale_and_premature_collateral_is_refused(name: str) -> None:
    raw, collateral = read(name), COLLATERALS[name]()
    validity = collateral_validity(collateral)
    baseline = verify_quote(raw, collateral, TIMES[name])
    just_before_stale = verify_quote(raw, collateral, validity.next_update - timedelta(seconds=1))
    stale = verify_quote(raw, collateral, validity.next_update)
    much_later = verify_quote(raw, collateral, validity.next_update + timedelta(days=400))
    first_valid = verify_quote(raw, collateral, validity.not_before)
    premature = verify_quote(raw, collateral, validity.not_before - timedelta(seconds=1))
    assert (just_before_stale.accepted, just_before_stale.reason) == (baseline.accepted, baseline.reason)
    assert (first_valid.accepted, first_valid.reason) == (baseline.accepted, baseline.reason)
    assert stale.reason == much_later.reason == Reason.COLLATERAL_EXPIRED and not stale.accepted
    assert premature.reason == Reason.COLLATERAL_NOT_YET_VALID and not premature.accepted
    assert "stale" in stale.detail


def test_verification_time_must_be_explicit_and_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_quote(read(TDX4), dcap_qvl_collateral("tdx_v4_quote"), datetime(2025, 7, 19, 10, 0, 34))
    with pytest.raises(TypeError):
        verify_quote(read(TDX4), dcap_qvl_collateral("tdx_v4_quote"), 1752919234)  # type: ignore[arg-type]
    # any time zone is fine; it is converted
    tz = datetime(2025, 7, 19, 12, 0, 34, tzinfo=UTC).astimezone(tz=None)
    assert verify_quote(read(TDX4), dcap_qvl_collateral("tdx_v4_quote"), tz - timedelta(hours=2)).accepted


# ----------------------------------------------------------------------------------------- tampering


def _pem_cert_offset(name: str, index: int, where: float = 0.5) -> int:
    """Quote offset of a base64 character inside certificate ``index`` of the PCK chain (0 = leaf)."""
    quote = quote_of(name)
    pem = quote.signature_data.pck_chain_pem
    start = -1
    for _ in range(index + 1):
        start = pem.index(b"-----BEGIN CERTIFICATE-----\n", start + 1)
    body = start + len(b"-----BEGIN CERTIFICATE-----\n")
    end = pem.index(b"-----END CERTIFICATE-----", body)
    offset = body + int((end - body) * where)
    if pem[offset : offset + 1] == b"\n":
        offset += 1
    return quote.layout.pck_chain[0] + offset


def _region_offset(name: str, region: str) -> int:
    layout = quote_of(name).layout
    fixed = {
        "header.version": 0,
        "header.qe_vendor_id": 12,
        "header.user_data": 30,
        "v5.body_type": 48,
        "body.first": layout.body[0],
        "body.middle": (layout.body[0] + layout.body[1]) // 2,
        "body.report_data_last": layout.body[1] - 1,
        "signature.r": layout.signature[0],
        "signature.s": layout.signature[1] - 1,
        "attestation_key": layout.attestation_key[0] + 10,
        "qe_report.first": layout.qe_report[0],
        "qe_report.report_data": layout.qe_report[1] - 64,
        "qe_report_signature": layout.qe_report_signature[0] + 33,
        "qe_auth_data": layout.qe_auth_data[0],
    }
    if region in fixed:
        return fixed[region]
    certs = {"pck_chain.leaf": 0, "pck_chain.ca": 1, "pck_chain.root": 2}
    if region in certs:
        return _pem_cert_offset(name, certs[region])
    if region == "pck_chain.leaf_tbs":
        return _pem_cert_offset(name, 0, 0.2)
    if region == "pck_chain.begin_line":
        return layout.pck_chain[0]
    raise AssertionError(region)


REGIONS = {
    "header.version": Reason.MALFORMED_QUOTE,
    "header.qe_vendor_id": Reason.UNKNOWN_QE_VENDOR,
    "header.user_data": Reason.QUOTE_SIGNATURE_INVALID,
    "body.first": Reason.QUOTE_SIGNATURE_INVALID,
    "body.middle": Reason.QUOTE_SIGNATURE_INVALID,
    "body.report_data_last": Reason.QUOTE_SIGNATURE_INVALID,
    "signature.r": Reason.QUOTE_SIGNATURE_INVALID,
    "signature.s": Reason.QUOTE_SIGNATURE_INVALID,
    "attestation_key": Reason.QE_REPORT_DATA_MISMATCH,
    "qe_report.first": Reason.QE_REPORT_SIGNATURE_INVALID,
    "qe_report.report_data": Reason.QE_REPORT_SIGNATURE_INVALID,
    "qe_report_signature": Reason.QE_REPORT_SIGNATURE_INVALID,
    "qe_auth_data": Reason.QE_REPORT_DATA_MISMATCH,
    "pck_chain.leaf": Reason.CERT_CHAIN_INVALID,
    "pck_chain.leaf_tbs": Reason.CERT_CHAIN_INVALID,
    "pck_chain.ca": Reason.CERT_CHAIN_INVALID,
    "pck_chain.root": Reason.CERT_CHAIN_INVALID,
    "pck_chain.begin_line": Reason.CERT_CHAIN_INVALID,
}
MUTATIONS = [(name, region) for name in (SGX, TDX4, TDX5) for region in REGIONS] + [(TDX5, "v5.body_type")]


@pytest.mark.parametrize(("name", "region"), MUTATIONS)
def test_a_flipped_byte_fails_with_a_specific_reason(name: str, region: str) -> None:
    raw, collateral, at = read(name), COLLATERALS[name](), TIMES[name]
    offset = _region_offset(name, region)
    quote = quote_of(name)
    assert offset < len(raw) - quote.trailing_bytes, "never flip trailing bytes: they are not signed"
    mutated = bytearray(raw)
    if region.startswith("pck_chain.") and region != "pck_chain.begin_line":
        mutated[offset] = ord("B") if mutated[offset] == ord("A") else ord("A")  # stays valid base64
    else:
        mutated[offset] ^= 0x01
    verdict = verify_quote(bytes(mutated), collateral, at)
    expected = Reason.MALFORMED_QUOTE if region == "v5.body_type" else REGIONS[region]
    assert not verdict.accepted
    assert verdict.reason == expected, verdict.detail


@pytest.mark.parametrize("name", [SGX, TDX4, TDX5])
def test_unmutated_baseline(name: str) -> None:
    """The control for the mutation tests: the v5 one fails only at TCB matching, after every signature."""
    verdict = verify_quote(read(name), COLLATERALS[name](), TIMES[name])
    assert verdict.reason == (Reason.TCB_LEVEL_NOT_FOUND if name == TDX5 else None)


def test_trailing_bytes_are_not_signed_and_do_not_matter() -> None:
    raw = bytearray(read(TDX4))
    raw[-1] ^= 0xFF
    raw[-70] ^= 0xFF
    assert verify_quote(bytes(raw), dcap_qvl_collateral("tdx_v4_quote"), TIMES[TDX4]).accepted
    assert verify_quote(bytes(raw[:-70]), dcap_qvl_collateral("tdx_v4_quote"), TIMES[TDX4]).accepted


def _flip_hex_json(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


def _flip_last(data: bytes) -> bytes:
    return data[:-10] + bytes([data[-10] ^ 1]) + data[-9:]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda c: {"tcb_info": _flip_hex_json(c.tcb_info, '"UpToDate"', '"OutOfDate"')},
            "collateral_signature_invalid",
        ),
        (lambda c: {"tcb_info_signature": _flip_last(c.tcb_info_signature)}, "collateral_signature_invalid"),
        (lambda c: {"qe_identity": _flip_hex_json(c.qe_identity, '"isvprodid":2', '"isvprodid":3')}, "collateral_sig"),
        (lambda c: {"qe_identity_signature": _flip_last(c.qe_identity_signature)}, "collateral_signature_invalid"),
        (lambda c: {"pck_crl": _flip_last(c.pck_crl)}, "collateral_signature_invalid"),
        (lambda c: {"root_ca_crl": _flip_last(c.root_ca_crl)}, "collateral_signature_invalid"),
        (lambda c: {"tcb_info_issuer_chain": c.pck_crl_issuer_chain}, "cert_chain_invalid"),
        (lambda c: {"tcb_info": '{"issueDate": 5'}, "malformed_collateral"),
        (lambda c: {"pck_crl": b"not a crl"}, "malformed_collateral"),
    ],
    ids=[
        "tcb_info",
        "tcb_info_signature",
        "qe_identity",
        "qe_identity_signature",
        "pck_crl",
        "root_ca_crl",
        "tcb_issuer",
        "bad_json",
        "bad_crl",
    ],
)
def test_tampered_collateral_is_refused(change, reason: str) -> None:
    collateral = dcap_qvl_collateral("tdx_v4_quote")
    verdict = verify_quote(read(TDX4), dataclasses.replace(collateral, **change(collateral)), TIMES[TDX4])
    assert not verdict.accepted
    assert str(verdict.reason).startswith(reason), verdict.detail


def test_collateral_of_another_platform_is_refused() -> None:
    sgx_collateral = dcap_qvl_collateral("sgx_v3_quote")
    verdict = verify_quote(read(TDX4), sgx_collateral, TIMES[SGX] - timedelta(seconds=1))
    assert verdict.reason == Reason.COLLATERAL_MISMATCH
    other_fmspc = dcap_qvl_collateral("tdx_v5_quote_outdated")  # TDX too, but for FMSPC 90c06f000000
    verdict = verify_quote(read(TDX4), other_fmspc, TIMES[TDX5])
    assert verdict.reason == Reason.COLLATERAL_MISMATCH, verdict.detail
    assert "Fmspc mismatch" in verdict.detail


def _self_signed_root() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Intel SGX Root CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=10000))
        .not_valid_after(now + timedelta(days=10000))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.DER)


def test_trust_is_pinned_to_the_intel_root() -> None:
    """With any other root, the genuine quote is refused: the root is pinned, not taken from the quote."""
    verdict = verify_quote(
        read(TDX4), dcap_qvl_collateral("tdx_v4_quote"), TIMES[TDX4], root_ca_der=_self_signed_root()
    )
    assert verdict.reason == Reason.CERT_CHAIN_INVALID
    assert "pinned" in verdict.detail


def test_pinned_root_is_the_intel_sgx_root_ca() -> None:
    der = intel_root.INTEL_SGX_ROOT_CA_DER
    assert hashlib.sha256(der).hexdigest() == "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
    assert der == read("intel_sgx_root_ca.der")
    cert = x509.load_der_x509_certificate(der)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Intel SGX Root CA"


def test_pinned_root_refuses_a_changed_pem(monkeypatch: pytest.MonkeyPatch) -> None:
    other = x509.load_der_x509_certificate(_self_signed_root()).public_bytes(Encoding.PEM).decode()
    monkeypatch.setattr(intel_root, "INTEL_SGX_ROOT_CA_PEM", other)
    with pytest.raises(RuntimeError, match="expected 44a0196b"):
        intel_root._load()


# ------------------------------------------------------------------------------------ collateral format


def test_collateral_json_round_trip() -> None:
    collateral = dcap_qvl_collateral("sgx_v3_quote")
    assert Collateral.from_json(collateral.to_json()) == collateral
    assert collateral.to_dcap().tcb_info == collateral.tcb_info


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "must be an object"),
        ("{", "not JSON"),
        ('{"pck_crl_issuer_chain": "x"}', "'tcb_info_issuer_chain' is missing"),
    ],
)
def test_collateral_json_errors(text: str, message: str) -> None:
    with pytest.raises(CollateralError, match=message):
        Collateral.from_json(text)


def test_collateral_hex_fields_must_be_hex() -> None:
    doc = dcap_qvl_collateral("sgx_v3_quote").to_json().replace('"pck_crl": "', '"pck_crl": "zz', 1)
    with pytest.raises(CollateralError, match="'pck_crl' is not hex"):
        Collateral.from_json(doc)


def test_signed_member_is_the_exact_substring() -> None:
    body = '{ "signature" : "ab01",\n "tcbInfo":{"b":1,  "a":[1, 2],"signature":"inner"} }'
    assert signed_member(body, "tcbInfo") == '{"b":1,  "a":[1, 2],"signature":"inner"}'
    assert signed_member(body, "signature") == '"ab01"'
    with pytest.raises(CollateralError, match="no 'enclaveIdentity'"):
        signed_member(body, "enclaveIdentity")
    with pytest.raises(CollateralError, match="not a JSON object"):
        signed_member("[1]", "tcbInfo")


def test_pcs_bodies_give_the_same_bytes_intel_signed() -> None:
    """go-tdx-guest's raw PCS body, cut without re-serialising: the signature over it still verifies."""
    body = read("go-tdx-guest/tdx_tcbinfo_fmspc_50806f000000.json").decode()
    member = signed_member(body, "tcbInfo")
    assert body.startswith('{"tcbInfo":' + member)
    verdict = verify_quote(
        read("go-tdx-guest/tdx_v4_quote_SPR_E4.dat"),
        COLLATERALS["go-tdx-guest/tdx_v4_quote_SPR_E4.dat"](),
        utc("2023-07-01T01:00:00Z"),
    )
    assert verdict.reason == Reason.TCB_LEVEL_NOT_FOUND  # i.e. past every signature check


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("Verification failed: TCBInfo expired", Reason.COLLATERAL_EXPIRED),
        ("Verification failed: Failed to verify certificate chain Caused by: CertRevoked", Reason.CERT_REVOKED),
        ("Verification failed: Failed to verify certificate chain Caused by: CertExpired { }", Reason.CERT_EXPIRED),
        ("Verification failed: Fmspc mismatch", Reason.COLLATERAL_MISMATCH),
        ("Verification failed: QE MISCSELECT mismatch: expected 0", Reason.QE_IDENTITY_MISMATCH),
        ("something new", Reason.VERIFICATION_FAILED),
    ],
)
def test_error_classification(message: str, reason: Reason) -> None:
    assert classify_error(message) == reason
