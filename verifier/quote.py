"""Pure-Python parser for Intel DCAP ECDSA quotes: SGX v3, TDX v4 and TDX v5 (TD 1.0 and TD 1.5 bodies).

The coprocessor imports this module to compute its own measurement, so it depends only on the standard
library, ``cryptography`` (to read the PCK certificates) and :mod:`verifier.hashing`. Parsing checks the
*structure* of a quote and nothing else: no signature, certificate or TCB check happens here (that is
:mod:`verifier.dcap`).

Layout (all integers little-endian; offsets per Intel's DCAP quote format specification)::

    header (48)                 version u16, att_key_type u16, tee_type u32, qe_svn u16, pce_svn u16,
                                qe_vendor_id[16], user_data[20]
    v5 only: body descriptor    body_type u16 (2 = TD 1.0, 3 = TD 1.5), body_size u32
    body                        SGX enclave report (384) | TD report 1.0 (584) | TD report 1.5 (648)
    signature_data_len u32
    signature data              quote signature[64] (r||s), attestation key[64] (x||y), then
                                v3:    QE report certification data inline, outer cert type 5
                                v4/v5: cert type 6 (u16) + size (u32) wrapping QE report[384],
                                       QE report signature[64], QE auth data (u16 len + data),
                                       cert type 5 (u16) + size (u32) + PEM chain
    trailing bytes              ignored (some producers pad quotes); never part of any signature

The length fields are trusted, never the buffer size: a quote may be followed by arbitrary bytes, but
every structure must fit inside the length that announces it, and the signature data must be consumed
exactly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from verifier.hashing import keccak256

if TYPE_CHECKING:
    from cryptography import x509

HEADER_SIZE = 48
SGX_REPORT_SIZE = 384
TD10_REPORT_SIZE = 584
TD15_REPORT_SIZE = 648
V5_BODY_DESCRIPTOR_SIZE = 6

TEE_TYPE_SGX = 0x00000000
TEE_TYPE_TDX = 0x00000081
ATT_KEY_TYPE_ECDSA_P256 = 2
BODY_TYPE_TD10 = 2
BODY_TYPE_TD15 = 3
CERT_TYPE_PCK_CHAIN = 5
CERT_TYPE_QE_REPORT = 6

#: Domain tags of the teebridge measurement (see :func:`measurement_of` and docs/attestation.md).
MEASUREMENT_TAG_SGX = b"teebridge/v1/sgx"
MEASUREMENT_TAG_TDX = b"teebridge/v1/tdx"

_SGX_DEBUG_FLAG = 0x02  # ATTRIBUTES.FLAGS bit 1
_TD_DEBUG_FLAG = 0x01  # TDATTRIBUTES bit 0 (TUD.DEBUG)


class QuoteFormatError(ValueError):
    """The bytes are not a well-formed quote of a supported kind; the message says where and why."""


@dataclass(frozen=True, slots=True)
class QuoteHeader:
    """The 48-byte quote header. For TDX quotes ``qe_svn``/``pce_svn`` are reserved fields (zero)."""

    version: int
    att_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes


@dataclass(frozen=True, slots=True)
class SgxReport:
    """An SGX enclave report body (384 bytes): the quoted enclave's, or the quoting enclave's own."""

    cpu_svn: bytes
    misc_select: int
    isv_ext_prod_id: bytes
    attributes: bytes
    mr_enclave: bytes
    mr_signer: bytes
    config_id: bytes
    isv_prod_id: int
    isv_svn: int
    config_svn: int
    isv_family_id: bytes
    report_data: bytes

    @property
    def debug(self) -> bool:
        """True when the enclave was launched in debug mode (ATTRIBUTES.FLAGS bit 1): memory is readable."""
        return bool(self.attributes[0] & _SGX_DEBUG_FLAG)


@dataclass(frozen=True, slots=True)
class TdReport:
    """A TDX TD report body: TD 1.0 (584 bytes), or TD 1.5 (648 bytes, with the last two fields set)."""

    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes
    report_data: bytes
    tee_tcb_svn2: bytes | None = None
    mr_service_td: bytes | None = None

    @property
    def debug(self) -> bool:
        """True when the TD is debuggable (TDATTRIBUTES bit 0, TUD.DEBUG): the host can read its memory."""
        return bool(self.td_attributes[0] & _TD_DEBUG_FLAG)

    @property
    def rtmrs(self) -> tuple[bytes, bytes, bytes, bytes]:
        """RTMR0..RTMR3 in order."""
        return (self.rtmr0, self.rtmr1, self.rtmr2, self.rtmr3)


@dataclass(frozen=True, slots=True)
class QuoteSignatureData:
    """The ECDSA-P256 signature data that follows the body.

    ``certification_type`` is the outer certification data type: 5 (PCK chain, inline) for v3 quotes,
    6 (QE report certification data, which wraps type 5) for v4 and v5 quotes.
    """

    signature: bytes
    attestation_key: bytes
    qe_report: SgxReport
    qe_report_raw: bytes
    qe_report_signature: bytes
    qe_auth_data: bytes
    certification_type: int
    pck_chain_type: int
    pck_chain_pem: bytes


@dataclass(frozen=True, slots=True)
class QuoteLayout:
    """Byte ranges ``(start, end)`` of each part of the quote, as offsets into the raw bytes."""

    header: tuple[int, int]
    body: tuple[int, int]
    signature_data: tuple[int, int]
    signature: tuple[int, int]
    attestation_key: tuple[int, int]
    qe_report: tuple[int, int]
    qe_report_signature: tuple[int, int]
    qe_auth_data: tuple[int, int]
    pck_chain: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Quote:
    """A parsed DCAP quote. ``report`` is an :class:`SgxReport` for SGX and a :class:`TdReport` for TDX."""

    header: QuoteHeader
    body_type: int | None
    report: SgxReport | TdReport
    signature_data: QuoteSignatureData
    signed_bytes: bytes
    signature_data_len: int
    trailing_bytes: int
    layout: QuoteLayout

    @property
    def version(self) -> int:
        """Quote format version: 3, 4 or 5."""
        return self.header.version

    @property
    def tee(self) -> Literal["sgx", "tdx"]:
        """``"sgx"`` or ``"tdx"``."""
        return "sgx" if isinstance(self.report, SgxReport) else "tdx"

    @property
    def report_data(self) -> bytes:
        """The 64 bytes the enclave chose to bind into the quote."""
        return self.report.report_data

    @property
    def debug(self) -> bool:
        """True when the quoted enclave or TD runs in debug mode."""
        return self.report.debug

    def pck_certificates(self) -> list[x509.Certificate]:
        """The PCK chain (leaf first) as ``cryptography`` certificates. Raises QuoteFormatError if unreadable."""
        from cryptography import x509

        pem = self.signature_data.pck_chain_pem.rstrip(b"\x00")
        try:
            return x509.load_pem_x509_certificates(pem)
        except ValueError as exc:
            raise QuoteFormatError(f"PCK certificate chain is not readable PEM: {exc}") from exc


class _Reader:
    """Bounded cursor: every read names what it reads, so a truncation error says exactly where."""

    def __init__(self, data: bytes, start: int, end: int) -> None:
        self.data = data
        self.pos = start
        self.end = end

    def take(self, size: int, what: str) -> bytes:
        if size < 0 or self.pos + size > self.end:
            raise QuoteFormatError(
                f"truncated quote: {what} needs {size} bytes at offset {self.pos}, "
                f"but only {max(self.end - self.pos, 0)} remain in its enclosing structure"
            )
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def u16(self, what: str) -> int:
        return struct.unpack("<H", self.take(2, what))[0]

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.take(4, what))[0]


def _parse_header(raw: bytes) -> QuoteHeader:
    r = _Reader(raw, 0, len(raw))
    data = r.take(HEADER_SIZE, "quote header")
    version, att_key_type, tee_type, qe_svn, pce_svn = struct.unpack_from("<HHIHH", data, 0)
    return QuoteHeader(version, att_key_type, tee_type, qe_svn, pce_svn, data[12:28], data[28:48])


def parse_sgx_report(data: bytes) -> SgxReport:
    """Parse a 384-byte SGX enclave report body."""
    if len(data) != SGX_REPORT_SIZE:
        raise QuoteFormatError(f"an SGX report is {SGX_REPORT_SIZE} bytes, got {len(data)}")
    return SgxReport(
        cpu_svn=data[0:16],
        misc_select=struct.unpack_from("<I", data, 16)[0],
        isv_ext_prod_id=data[32:48],
        attributes=data[48:64],
        mr_enclave=data[64:96],
        mr_signer=data[128:160],
        config_id=data[192:256],
        isv_prod_id=struct.unpack_from("<H", data, 256)[0],
        isv_svn=struct.unpack_from("<H", data, 258)[0],
        config_svn=struct.unpack_from("<H", data, 260)[0],
        isv_family_id=data[304:320],
        report_data=data[320:384],
    )


def parse_td_report(data: bytes) -> TdReport:
    """Parse a TD 1.0 (584-byte) or TD 1.5 (648-byte) report body."""
    if len(data) not in (TD10_REPORT_SIZE, TD15_REPORT_SIZE):
        raise QuoteFormatError(f"a TD report is {TD10_REPORT_SIZE} or {TD15_REPORT_SIZE} bytes, got {len(data)}")
    td15 = len(data) == TD15_REPORT_SIZE
    return TdReport(
        tee_tcb_svn=data[0:16],
        mr_seam=data[16:64],
        mr_signer_seam=data[64:112],
        seam_attributes=data[112:120],
        td_attributes=data[120:128],
        xfam=data[128:136],
        mr_td=data[136:184],
        mr_config_id=data[184:232],
        mr_owner=data[232:280],
        mr_owner_config=data[280:328],
        rtmr0=data[328:376],
        rtmr1=data[376:424],
        rtmr2=data[424:472],
        rtmr3=data[472:520],
        report_data=data[520:584],
        tee_tcb_svn2=data[584:600] if td15 else None,
        mr_service_td=data[600:648] if td15 else None,
    )


def _parse_body(raw: bytes, header: QuoteHeader) -> tuple[int | None, int, int]:
    """Return (body type or None, body start, body end); validates version, key type and TEE type."""
    if header.version not in (3, 4, 5):
        raise QuoteFormatError(f"unsupported quote version {header.version} (supported: 3, 4, 5)")
    if header.att_key_type != ATT_KEY_TYPE_ECDSA_P256:
        raise QuoteFormatError(
            f"unsupported attestation key type {header.att_key_type} (only 2, ECDSA-256-with-P-256, is supported)"
        )
    expected_tee = TEE_TYPE_SGX if header.version == 3 else TEE_TYPE_TDX
    if header.tee_type != expected_tee:
        raise QuoteFormatError(
            f"unsupported TEE type 0x{header.tee_type:x} for a v{header.version} quote "
            f"(supported: SGX v3, TDX v4, TDX v5; expected 0x{expected_tee:x})"
        )
    if header.version == 3:
        return None, HEADER_SIZE, HEADER_SIZE + SGX_REPORT_SIZE
    if header.version == 4:
        return None, HEADER_SIZE, HEADER_SIZE + TD10_REPORT_SIZE
    r = _Reader(raw, HEADER_SIZE, len(raw))
    body_type = r.u16("v5 body type")
    body_size = r.u32("v5 body size")
    expected = {BODY_TYPE_TD10: TD10_REPORT_SIZE, BODY_TYPE_TD15: TD15_REPORT_SIZE}.get(body_type)
    if expected is None:
        raise QuoteFormatError(f"unsupported v5 body type {body_type} (supported: 2 = TD 1.0, 3 = TD 1.5)")
    if body_size != expected:
        name = "TD 1.0" if body_type == BODY_TYPE_TD10 else "TD 1.5"
        raise QuoteFormatError(f"v5 body size is {body_size}, a {name} body (type {body_type}) is {expected} bytes")
    start = r.pos
    return body_type, start, start + body_size


@dataclass(frozen=True, slots=True)
class _QeBlock:
    qe_report_raw: bytes
    qe_report_signature: bytes
    qe_auth_data: bytes
    pck_chain_type: int
    pck_chain_pem: bytes
    spans: dict[str, tuple[int, int]]


def _parse_qe_block(r: _Reader, where: str) -> _QeBlock:
    """QE report, its signature, QE auth data and the PCK chain certification data (type 5)."""
    qe_at = r.pos
    qe_report_raw = r.take(SGX_REPORT_SIZE, "QE report")
    qe_sig_at = r.pos
    qe_report_signature = r.take(64, "QE report signature")
    auth_len = r.u16("QE auth data size")
    auth_at = r.pos
    qe_auth_data = r.take(auth_len, "QE auth data")
    chain_type = r.u16("PCK certification data type")
    if chain_type != CERT_TYPE_PCK_CHAIN:
        raise QuoteFormatError(f"unsupported certification data type {chain_type} {where} (expected 5, PCK chain)")
    chain_size = r.u32("PCK certification data size")
    chain_at = r.pos
    pem = r.take(chain_size, "PCK certificate chain")
    spans = {
        "qe_report": (qe_at, qe_sig_at),
        "qe_report_signature": (qe_sig_at, qe_sig_at + 64),
        "qe_auth_data": (auth_at, auth_at + auth_len),
        "pck_chain": (chain_at, chain_at + chain_size),
    }
    return _QeBlock(qe_report_raw, qe_report_signature, qe_auth_data, chain_type, pem, spans)


def _parse_signature_data(
    raw: bytes, version: int, start: int, end: int
) -> tuple[QuoteSignatureData, dict[str, tuple[int, int]]]:
    r = _Reader(raw, start, end)
    signature = r.take(64, "quote signature")
    attestation_key = r.take(64, "attestation key")
    if version == 3:
        block = _parse_qe_block(r, "in a v3 quote")
        outer_type = CERT_TYPE_PCK_CHAIN
    else:
        outer_type = r.u16("certification data type")
        if outer_type != CERT_TYPE_QE_REPORT:
            raise QuoteFormatError(
                f"unsupported certification data type {outer_type} in a v{version} quote (expected 6, QE report)"
            )
        outer_size = r.u32("certification data size")
        outer_at = r.pos
        r.take(outer_size, "QE report certification data (type 6)")
        inner = _Reader(raw, outer_at, outer_at + outer_size)
        block = _parse_qe_block(inner, "inside type 6")
        if inner.pos != inner.end:
            raise QuoteFormatError(
                f"QE report certification data (type 6) declares {outer_size} bytes "
                f"but its contents use {inner.pos - outer_at}"
            )
    if r.pos != end:
        raise QuoteFormatError(f"signature data declares {end - start} bytes but its contents use {r.pos - start}")
    data = QuoteSignatureData(
        signature=signature,
        attestation_key=attestation_key,
        qe_report=parse_sgx_report(block.qe_report_raw),
        qe_report_raw=block.qe_report_raw,
        qe_report_signature=block.qe_report_signature,
        qe_auth_data=block.qe_auth_data,
        certification_type=outer_type,
        pck_chain_type=block.pck_chain_type,
        pck_chain_pem=block.pck_chain_pem,
    )
    spans = {
        "signature_data": (start, end),
        "signature": (start, start + 64),
        "attestation_key": (start + 64, start + 128),
        **block.spans,
    }
    return data, spans


def parse_quote(raw: bytes) -> Quote:
    """Parse a raw DCAP quote (SGX v3, TDX v4 or TDX v5). Raises :class:`QuoteFormatError` if malformed.

    Bytes after the signature data are allowed and counted in :attr:`Quote.trailing_bytes`.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise TypeError(f"a quote is bytes, got {type(raw).__name__}")
    raw = bytes(raw)
    header = _parse_header(raw)
    body_type, body_start, body_end = _parse_body(raw, header)
    body = _Reader(raw, body_start, len(raw)).take(body_end - body_start, f"v{header.version} quote body")
    report: SgxReport | TdReport = parse_sgx_report(body) if header.version == 3 else parse_td_report(body)
    r = _Reader(raw, body_end, len(raw))
    sig_len = r.u32("signature data size")
    sig_start = r.pos
    if sig_start + sig_len > len(raw):
        raise QuoteFormatError(
            f"truncated quote: signature data declares {sig_len} bytes at offset {sig_start}, "
            f"but the quote has only {len(raw) - sig_start} left"
        )
    sig_data, spans = _parse_signature_data(raw, header.version, sig_start, sig_start + sig_len)
    layout = QuoteLayout(header=(0, HEADER_SIZE), body=(body_start, body_end), **spans)
    return Quote(
        header=header,
        body_type=body_type,
        report=report,
        signature_data=sig_data,
        signed_bytes=raw[:body_end],
        signature_data_len=sig_len,
        trailing_bytes=len(raw) - sig_start - sig_len,
        layout=layout,
    )


def measurement_of(quote: Quote | SgxReport | TdReport) -> bytes:
    """The teebridge on-chain measurement of a quote (or of its report body), 32 bytes. Normative; see
    docs/attestation.md.

    TDX: ``keccak256("teebridge/v1/tdx" || MRTD || MRCONFIGID || RTMR0 || RTMR1 || RTMR2 || RTMR3)``.
    SGX: ``keccak256("teebridge/v1/sgx" || MRENCLAVE || MRSIGNER || u16be(ISVPRODID) || u16be(ISVSVN))``.
    """
    report = quote.report if isinstance(quote, Quote) else quote
    if isinstance(report, TdReport):
        return keccak256(MEASUREMENT_TAG_TDX + report.mr_td + report.mr_config_id + b"".join(report.rtmrs))
    if isinstance(report, SgxReport):
        return keccak256(
            MEASUREMENT_TAG_SGX
            + report.mr_enclave
            + report.mr_signer
            + report.isv_prod_id.to_bytes(2, "big")
            + report.isv_svn.to_bytes(2, "big")
        )
    raise TypeError(f"not a quote or report: {type(quote).__name__}")
