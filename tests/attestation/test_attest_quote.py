"""verifier.quote: every sample parses to the values PROVENANCE.md lists; malformed quotes fail precisely."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import struct

import pytest
from attest_testdata import HEX_COPIES, SAMPLES, quote_of, read
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verifier.quote import (
    QuoteFormatError,
    SgxReport,
    TdReport,
    measurement_of,
    parse_quote,
)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_parses_to_provenance_values(name: str) -> None:
    sample = SAMPLES[name]
    raw = read(sample.path)
    assert len(raw) == sample.size
    assert hashlib.sha256(raw).hexdigest() == sample.sha256
    quote = parse_quote(raw)
    assert quote.version == sample.version
    assert quote.tee == sample.tee
    assert quote.body_type == sample.body_type
    assert quote.header.att_key_type == 2
    assert quote.header.tee_type == (0 if sample.tee == "sgx" else 0x81)
    assert quote.header.qe_svn == sample.qe_svn
    assert quote.header.pce_svn == sample.pce_svn
    assert quote.header.qe_vendor_id.hex() == "939a7233f79c4ca9940a0db3957f0607"
    assert quote.signature_data_len == sample.signature_data_len
    assert quote.trailing_bytes == sample.trailing_bytes
    assert quote.signature_data.qe_report.isv_svn == sample.qe_isv_svn
    assert quote.signature_data.qe_report.mr_signer.hex() == sample.qe_mr_signer
    assert quote.signature_data.certification_type == (5 if sample.version == 3 else 6)
    assert quote.signature_data.pck_chain_type == 5
    for field_name, expected in sample.fields.items():
        value = getattr(quote.report, field_name)
        assert (value.hex() if isinstance(value, bytes) else value) == expected, field_name
    assert not quote.debug


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_structure_lengths_add_up(name: str) -> None:
    quote = quote_of(name)
    layout = quote.layout
    body_size = {3: 384, 4: 584}.get(quote.version, 648)
    assert layout.header == (0, 48)
    assert layout.body[1] - layout.body[0] == body_size
    assert quote.signed_bytes == read(name)[: layout.body[1]]
    assert layout.signature_data[0] == layout.body[1] + 4
    assert layout.signature_data[1] + quote.trailing_bytes == len(read(name))
    assert len(quote.signature_data.signature) == 64
    assert len(quote.signature_data.attestation_key) == 64
    assert len(quote.signature_data.qe_report_raw) == 384
    assert len(quote.signature_data.qe_auth_data) == layout.qe_auth_data[1] - layout.qe_auth_data[0]
    assert layout.pck_chain[1] == layout.signature_data[1]  # the PEM chain is the last thing signed data holds


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_pck_chain_is_intel(name: str) -> None:
    certs = quote_of(name).pck_certificates()
    subjects = [c.subject.rfc4514_string() for c in certs]
    assert len(certs) == 3
    assert "Intel SGX PCK Certificate" in subjects[0]
    ca_name = "Processor" if SAMPLES[name].pck_ca == "processor" else "Platform"
    assert f"Intel SGX PCK {ca_name} CA" in subjects[1]
    assert "Intel SGX Root CA" in subjects[2]


def test_go_tdx_guest_trailing_text_is_counted_not_parsed() -> None:
    raw = read("go-tdx-guest/tdx_v4_quote_SPR_E4.dat")
    assert raw[-39:] == b"\nextra bytes(only for testing purpose)\n"
    assert quote_of("go-tdx-guest/tdx_v4_quote_SPR_E4.dat").trailing_bytes == 39


def test_offsets_of_a_v4_quote() -> None:
    """Pinned offsets (Intel's layout), so a parser that drifts fails here and not only in verification."""
    layout = quote_of("dcap-qvl/tdx_v4_quote.bin").layout
    assert layout.body == (48, 632)
    assert layout.signature == (636, 700)
    assert layout.attestation_key == (700, 764)
    assert layout.qe_report == (770, 1154)  # after the type-6 header (u16 type + u32 size)
    assert layout.qe_report_signature == (1154, 1218)
    v5 = quote_of("dcap-qvl/tdx_v5_quote_outdated.bin").layout
    assert v5.body == (54, 702)  # after the v5 body descriptor (u16 type + u32 size)


@pytest.mark.parametrize(("hex_name", "bin_name"), sorted(HEX_COPIES.items()))
def test_hex_copies_decode_to_the_binary(hex_name: str, bin_name: str) -> None:
    assert bytes.fromhex(read(hex_name).decode().strip()) == read(bin_name)


def test_td15_fields_only_on_v5() -> None:
    v4 = quote_of("dcap-qvl/tdx_v4_quote.bin").report
    v5 = quote_of("automata/tdx_v5_quote.dat").report
    assert isinstance(v4, TdReport) and isinstance(v5, TdReport)
    assert v4.tee_tcb_svn2 is None and v4.mr_service_td is None
    assert v5.mr_service_td is not None and any(v5.mr_service_td)


# ---------------------------------------------------------------------------------------- malformed input


def _mutate(raw: bytes, offset: int, fmt: str, value: int) -> bytes:
    data = bytearray(raw)
    struct.pack_into(fmt, data, offset, value)
    return bytes(data)


def _grow_type6(raw: bytes) -> bytes:
    """Declare 4 more bytes of signature data and of type-6 data than the contents use."""
    grown = _mutate(_mutate(raw, 632, "<I", 4299 + 4), 766, "<I", 4165 + 4)
    return grown[: 636 + 4299] + b"\0" * 4


V5 = "go-tdx-guest/tdx_v5_quote_sample.dat"
SPR = "go-tdx-guest/tdx_v4_quote_SPR_E4.dat"


@pytest.mark.parametrize(
    ("name", "mutate", "message"),
    [
        # go-tdx-guest's own negative parse cases (abi_test.go), with our wording
        (V5, lambda r: r[:100], "truncated quote: v5 quote body needs 648 bytes at offset 54"),
        (V5, lambda r: _mutate(r, 48, "<H", 1), "unsupported v5 body type 1"),
        (V5, lambda r: _mutate(r, 50, "<I", 999), "v5 body size is 999, a TD 1.5 body (type 3) is 648 bytes"),
        (V5, lambda r: _mutate(r, 48, "<H", 2), "v5 body size is 648, a TD 1.0 body (type 2) is 584 bytes"),
        (SPR, lambda r: _mutate(r, 0, "<B", 3), "unsupported TEE type 0x81 for a v3 quote"),
        (SPR, lambda r: _mutate(r, 0x278, "<B", 0x10), "truncated quote: QE report certification data (type 6)"),
        # ours
        (SPR, lambda r: _mutate(r, 0, "<H", 6), "unsupported quote version 6"),
        (SPR, lambda r: _mutate(r, 2, "<H", 3), "unsupported attestation key type 3"),
        (SPR, lambda r: _mutate(r, 4, "<I", 0), "unsupported TEE type 0x0 for a v4 quote"),
        (SPR, lambda r: r[:40], "truncated quote: quote header needs 48 bytes"),
        (SPR, lambda r: r[:634], "truncated quote: signature data size needs 4 bytes at offset 632"),
        (SPR, lambda r: r[:4000], "truncated quote: signature data declares 4299 bytes at offset 636"),
        (SPR, lambda r: _mutate(r, 764, "<H", 5), "unsupported certification data type 5 in a v4 quote"),
        (SPR, lambda r: _mutate(r, 1252, "<H", 3), "unsupported certification data type 3 inside type 6"),
        (SPR, lambda r: _mutate(r, 632, "<I", 4303), "signature data declares 4303 bytes but its contents use 4299"),
        (SPR, lambda r: _mutate(r, 766, "<I", 4160), "PCK certificate chain needs 3677 bytes at offset 1258"),
        (
            SPR,
            lambda r: _grow_type6(r),
            "QE report certification data (type 6) declares 4169 bytes but its contents use",
        ),
        ("dcap-qvl/sgx_v3_quote.bin", lambda r: _mutate(r, 4, "<I", 0x81), "unsupported TEE type 0x81 for a v3"),
        ("dcap-qvl/sgx_v3_quote.bin", lambda r: _mutate(r, 1046, "<H", 6), "type 6 in a v3 quote (expected 5"),
    ],
)
def test_malformed_quotes_fail_with_a_precise_message(name: str, mutate, message: str) -> None:
    with pytest.raises(QuoteFormatError) as excinfo:
        parse_quote(mutate(read(name)))
    assert message in str(excinfo.value)


def test_length_fields_are_trusted_not_the_buffer() -> None:
    raw = read("dcap-qvl/sgx_v3_quote.bin")
    assert parse_quote(raw + b"\xff" * 100).trailing_bytes == 100
    with pytest.raises(QuoteFormatError):
        parse_quote(raw[:-1])


def test_not_bytes_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse_quote("0300")  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=0, max_value=4935 - 1))
def test_every_truncation_inside_the_quote_is_a_format_error(cut: int) -> None:
    with pytest.raises(QuoteFormatError):
        parse_quote(read(SPR)[:cut])


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000), version=st.sampled_from([3, 4, 5]))
def test_garbage_never_raises_anything_but_format_errors(data: bytes, version: int) -> None:
    tee = 0 if version == 3 else 0x81
    raw = struct.pack("<HHI", version, 2, tee) + data
    with contextlib.suppress(QuoteFormatError):
        parse_quote(raw)


# --------------------------------------------------------------------------------------------- measurement


def test_tdx_measurement_definition() -> None:
    quote = quote_of("dcap-qvl/tdx_v4_quote.bin")
    report = quote.report
    assert isinstance(report, TdReport)
    preimage = b"teebridge/v1/tdx" + report.mr_td + report.mr_config_id
    preimage += report.rtmr0 + report.rtmr1 + report.rtmr2 + report.rtmr3
    assert len(preimage) == 16 + 6 * 48
    assert measurement_of(quote) == keccak(preimage)  # eth_utils: an independent Keccak-256
    assert measurement_of(quote).hex() == "371190c9dbd53b7b38503f7b6d3b25d74827337f5e36f8cd0d819eb503ba9172"


def test_sgx_measurement_definition() -> None:
    quote = quote_of("dcap-qvl/sgx_v3_quote.bin")
    report = quote.report
    assert isinstance(report, SgxReport)
    preimage = b"teebridge/v1/sgx" + report.mr_enclave + report.mr_signer + b"\x00\x00" + b"\x00\x00"
    assert measurement_of(quote) == keccak(preimage)
    assert measurement_of(quote).hex() == "403dd1c4ffde181958a3c95bf04f264dbbf66aaca8eca05a6a8f41e2f1679003"
    # ISVPRODID and ISVSVN are big-endian u16 in the preimage
    bumped = dataclasses.replace(quote, report=dataclasses.replace(report, isv_prod_id=0x0102, isv_svn=0x0304))
    assert measurement_of(bumped) == keccak(
        b"teebridge/v1/sgx" + report.mr_enclave + report.mr_signer + b"\x01\x02\x03\x04"
    )


def test_measurement_covers_every_tdx_register() -> None:
    quote = quote_of("dcap-qvl/tdx_v4_quote.bin")
    base = measurement_of(quote)
    for name in ("mr_td", "mr_config_id", "rtmr0", "rtmr1", "rtmr2", "rtmr3"):
        changed = dataclasses.replace(quote.report, **{name: b"\x01" * 48})
        assert measurement_of(dataclasses.replace(quote, report=changed)) != base, name
    # and nothing else: MROWNER is not part of it
    other = dataclasses.replace(quote.report, mr_owner=b"\x01" * 48)
    assert measurement_of(dataclasses.replace(quote, report=other)) == base


def test_debug_bits() -> None:
    sgx = quote_of("dcap-qvl/sgx_v3_quote.bin").report
    tdx = quote_of("dcap-qvl/tdx_v4_quote.bin").report
    assert isinstance(sgx, SgxReport) and isinstance(tdx, TdReport)
    assert not sgx.debug and not tdx.debug
    assert dataclasses.replace(sgx, attributes=bytes([sgx.attributes[0] | 0x02]) + sgx.attributes[1:]).debug
    assert dataclasses.replace(tdx, td_attributes=b"\x01" + tdx.td_attributes[1:]).debug
    # other attribute bits are not the debug bit
    assert not dataclasses.replace(sgx, attributes=b"\x05" + sgx.attributes[1:]).debug
    assert not dataclasses.replace(tdx, td_attributes=b"\x00\x00\x00\x10" + b"\x00" * 4).debug
