"""DCAP quote verification against Intel collateral, pinned to the Intel SGX Root CA.

The cryptographic work is done by Phala's ``dcap-qvl`` (PCK chain and CRLs, quote and QE report
signatures, QE report data binding, TCB info and QE identity signatures and matching); this module adds
what a gatekeeper needs around it:

* collateral in dcap-qvl's ``QuoteCollateralV3`` JSON format, built from Intel PCS / PCCS response bodies
  (:func:`collateral_from_pcs`) or fetched from a PCCS (:func:`fetch_collateral`);
* the collateral's validity window (:func:`collateral_validity`), read from the signed TCB info and
  QE identity JSON and from the CRLs, checked before anything else;
* a verdict with a stable failure code (:class:`Reason`) instead of an exception string;
* a cross-check that the report dcap-qvl verified is the report :mod:`verifier.quote` parsed, so the
  measurement we compute is over the verified bytes.

Verification time is always an explicit, timezone-aware ``datetime``; nothing here reads the clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from verifier.intel_root import INTEL_SGX_ROOT_CA_DER
from verifier.quote import Quote, QuoteFormatError, SgxReport, TdReport, parse_quote

#: TCB statuses Intel defines, for policy validation.
TCB_STATUSES = frozenset(
    {
        "UpToDate",
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded",
        "OutOfDate",
        "OutOfDateConfigurationNeeded",
        "Revoked",
    }
)


class CollateralError(ValueError):
    """Collateral that cannot be read or fetched; the message says which part and why."""


class Reason(StrEnum):
    """Stable failure codes of :func:`verify_quote` (the human detail is in :attr:`DcapVerdict.detail`)."""

    MALFORMED_QUOTE = "malformed_quote"
    MALFORMED_COLLATERAL = "malformed_collateral"
    COLLATERAL_NOT_YET_VALID = "collateral_not_yet_valid"
    COLLATERAL_EXPIRED = "collateral_expired"
    COLLATERAL_SIGNATURE_INVALID = "collateral_signature_invalid"
    COLLATERAL_MISMATCH = "collateral_mismatch"
    CERT_CHAIN_INVALID = "cert_chain_invalid"
    CERT_EXPIRED = "cert_expired"
    CERT_NOT_YET_VALID = "cert_not_yet_valid"
    CERT_REVOKED = "cert_revoked"
    QUOTE_SIGNATURE_INVALID = "quote_signature_invalid"
    QE_REPORT_SIGNATURE_INVALID = "qe_report_signature_invalid"
    QE_REPORT_DATA_MISMATCH = "qe_report_data_mismatch"
    QE_IDENTITY_MISMATCH = "qe_identity_mismatch"
    UNKNOWN_QE_VENDOR = "unknown_qe_vendor"
    SERVICE_TD_UNSUPPORTED = "service_td_unsupported"
    TCB_LEVEL_NOT_FOUND = "tcb_level_not_found"
    TCB_REVOKED = "tcb_revoked"
    REPORT_MISMATCH = "report_mismatch"
    VERIFICATION_FAILED = "verification_failed"


# dcap-qvl error text -> reason. Checked in order; the first substring found wins. Matching is on the
# full error chain (dcap-qvl's "Caused by:" lines included), case-sensitive.
_ERROR_MAP: tuple[tuple[str, Reason], ...] = (
    ("Failed to decode quote", Reason.MALFORMED_QUOTE),
    ("CrlExpired", Reason.COLLATERAL_EXPIRED),
    ("certificate revocation list expired", Reason.COLLATERAL_EXPIRED),
    ("issue date is in the future", Reason.COLLATERAL_NOT_YET_VALID),
    ("TCBInfo expired", Reason.COLLATERAL_EXPIRED),
    ("QE Identity expired", Reason.COLLATERAL_EXPIRED),
    ("Collateral expired", Reason.COLLATERAL_EXPIRED),
    ("CertRevoked", Reason.CERT_REVOKED),
    ("CertExpired", Reason.CERT_EXPIRED),
    ("CertNotValidYet", Reason.CERT_NOT_YET_VALID),
    ("certificate expired", Reason.CERT_EXPIRED),
    ("Signature is invalid for tcb_info", Reason.COLLATERAL_SIGNATURE_INVALID),
    ("Signature is invalid for qe_identity", Reason.COLLATERAL_SIGNATURE_INVALID),
    ("InvalidCrlSignatureForPublicKey", Reason.COLLATERAL_SIGNATURE_INVALID),
    ("UnknownRevocationStatus", Reason.COLLATERAL_MISMATCH),
    ("Failed to verify certificate chain", Reason.CERT_CHAIN_INVALID),
    ("Failed to parse PCK certificate", Reason.CERT_CHAIN_INVALID),
    ("Certificate chain is too short", Reason.CERT_CHAIN_INVALID),
    ("Failed to get PCK certificate chain", Reason.CERT_CHAIN_INVALID),
    ("Failed to parse TCB Info leaf certificate", Reason.CERT_CHAIN_INVALID),
    ("Failed to parse QE Identity leaf certificate", Reason.CERT_CHAIN_INVALID),
    ("ISV enclave report signature is invalid", Reason.QUOTE_SIGNATURE_INVALID),
    ("Signature is invalid for qe_report", Reason.QE_REPORT_SIGNATURE_INVALID),
    ("QE report hash mismatch", Reason.QE_REPORT_DATA_MISMATCH),
    ("Unknown QE vendor ID", Reason.UNKNOWN_QE_VENDOR),
    ("QE MISCSELECT mismatch", Reason.QE_IDENTITY_MISMATCH),
    ("QE ISVPRODID mismatch", Reason.QE_IDENTITY_MISMATCH),
    ("QE report validation failed", Reason.QE_IDENTITY_MISMATCH),
    ("Unsupported QE Identity", Reason.COLLATERAL_MISMATCH),
    ("Fmspc mismatch", Reason.COLLATERAL_MISMATCH),
    ("Fmspc length mismatch", Reason.COLLATERAL_MISMATCH),
    ("quote with non-", Reason.COLLATERAL_MISMATCH),
    ("component count mismatch", Reason.COLLATERAL_MISMATCH),
    ("TDX module MRSIGNER mismatch", Reason.COLLATERAL_MISMATCH),
    ("TDX module SEAMATTRIBUTES", Reason.COLLATERAL_MISMATCH),
    ("No matching TCB level found", Reason.TCB_LEVEL_NOT_FOUND),
    ("MR service TD", Reason.SERVICE_TD_UNSUPPORTED),
    ("Invalid TCB", Reason.MALFORMED_COLLATERAL),
    ("should be valid JSON", Reason.MALFORMED_COLLATERAL),
    ("Failed to parse", Reason.MALFORMED_COLLATERAL),
)


def classify_error(message: str) -> Reason:
    """Map a dcap-qvl error message to a :class:`Reason` (``VERIFICATION_FAILED`` when unrecognised)."""
    for needle, reason in _ERROR_MAP:
        if needle in message:
            return reason
    return Reason.VERIFICATION_FAILED


# --------------------------------------------------------------------------------------------- collateral


@dataclass(frozen=True)
class Collateral:
    """Everything besides the quote that verification needs (dcap-qvl's ``QuoteCollateralV3``).

    ``tcb_info`` and ``qe_identity`` are the exact signed JSON texts: their signatures cover these bytes,
    so they are never re-serialised.
    """

    pck_crl_issuer_chain: str
    root_ca_crl: bytes
    pck_crl: bytes
    tcb_info_issuer_chain: str
    tcb_info: str
    tcb_info_signature: bytes
    qe_identity_issuer_chain: str
    qe_identity: str
    qe_identity_signature: bytes

    @classmethod
    def from_json(cls, text: str | bytes) -> Collateral:
        """Parse dcap-qvl's QuoteCollateralV3 JSON (byte fields as hex). Raises CollateralError."""
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise CollateralError(f"collateral is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise CollateralError("collateral JSON must be an object")
        values: dict[str, Any] = {}
        for name in ("pck_crl_issuer_chain", "tcb_info_issuer_chain", "tcb_info", "qe_identity_issuer_chain"):
            values[name] = _str_field(doc, name)
        values["qe_identity"] = _str_field(doc, "qe_identity")
        for name in ("root_ca_crl", "pck_crl", "tcb_info_signature", "qe_identity_signature"):
            text_value = _str_field(doc, name)
            try:
                values[name] = bytes.fromhex(text_value.removeprefix("0x"))
            except ValueError as exc:
                raise CollateralError(f"collateral field {name!r} is not hex") from exc
        return cls(**values)

    def to_json(self) -> str:
        """Serialise to dcap-qvl's QuoteCollateralV3 JSON (round-trips with :meth:`from_json`)."""
        return json.dumps(
            {
                "pck_crl_issuer_chain": self.pck_crl_issuer_chain,
                "root_ca_crl": self.root_ca_crl.hex(),
                "pck_crl": self.pck_crl.hex(),
                "tcb_info_issuer_chain": self.tcb_info_issuer_chain,
                "tcb_info": self.tcb_info,
                "tcb_info_signature": self.tcb_info_signature.hex(),
                "qe_identity_issuer_chain": self.qe_identity_issuer_chain,
                "qe_identity": self.qe_identity,
                "qe_identity_signature": self.qe_identity_signature.hex(),
            },
            indent=2,
        )

    def to_dcap(self) -> Any:
        """The equivalent ``dcap_qvl.QuoteCollateralV3`` object."""
        import dcap_qvl

        return dcap_qvl.QuoteCollateralV3(
            self.pck_crl_issuer_chain,
            self.root_ca_crl,
            self.pck_crl,
            self.tcb_info_issuer_chain,
            self.tcb_info,
            self.tcb_info_signature,
            self.qe_identity_issuer_chain,
            self.qe_identity,
            self.qe_identity_signature,
        )


def _str_field(doc: dict[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str):
        raise CollateralError(f"collateral field {name!r} is missing or not a string")
    return value


def load_collateral(path: str | Path) -> Collateral:
    """Read a QuoteCollateralV3 JSON file. Raises CollateralError (or OSError if unreadable)."""
    return Collateral.from_json(Path(path).read_text(encoding="utf-8"))


def signed_member(body: str, key: str) -> str:
    """The exact text of top-level member ``key`` of the JSON object ``body`` (what Intel signs).

    PCS bodies look like ``{"tcbInfo":{...},"signature":"..."}`` and the signature covers the inner
    object's bytes as sent, so it is cut out of the body rather than re-serialised.
    """
    decoder = json.JSONDecoder()
    pos = _skip_ws(body, 0)
    if body[pos : pos + 1] != "{":
        raise CollateralError("PCS response body is not a JSON object")
    pos += 1
    while True:
        pos = _skip_ws(body, pos)
        try:
            name, pos = decoder.raw_decode(body, pos)
            pos = _skip_ws(body, pos)
            if body[pos : pos + 1] != ":":
                raise ValueError("expected ':'")
            start = _skip_ws(body, pos + 1)
            _, end = decoder.raw_decode(body, start)
        except ValueError as exc:
            raise CollateralError(f"PCS response body is not valid JSON near offset {pos}: {exc}") from exc
        if name == key:
            return body[start:end]
        pos = _skip_ws(body, end)
        if body[pos : pos + 1] != ",":
            raise CollateralError(f"PCS response body has no {key!r} member")
        pos += 1


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _pcs_signature(body: str, what: str) -> bytes:
    try:
        value = json.loads(signed_member(body, "signature"))
        return bytes.fromhex(value)
    except (ValueError, TypeError) as exc:
        raise CollateralError(f"{what} response has no hex 'signature'") from exc


def _maybe_hex(data: bytes) -> bytes:
    """PCCS serves some CRLs hex-encoded. DER (``30 82 ...``) always has non-hex-digit bytes; hex text has none."""
    text = data.strip()
    if text and all(c in _HEX_DIGITS for c in text):
        return bytes.fromhex(text.decode("ascii"))
    return data


_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


def collateral_from_pcs(
    *,
    pck_crl: bytes,
    pck_crl_issuer_chain: str,
    root_ca_crl: bytes,
    tcb_info_body: str,
    tcb_info_issuer_chain: str,
    qe_identity_body: str,
    qe_identity_issuer_chain: str,
) -> Collateral:
    """Assemble collateral from Intel PCS / PCCS responses: bodies as served, issuer chains as PEM.

    CRLs may be DER or hex-encoded DER. The TCB info and QE identity bodies are the raw responses
    (``{"tcbInfo": ..., "signature": ...}`` and ``{"enclaveIdentity": ..., "signature": ...}``).
    """
    return Collateral(
        pck_crl_issuer_chain=pck_crl_issuer_chain,
        root_ca_crl=_maybe_hex(root_ca_crl),
        pck_crl=_maybe_hex(pck_crl),
        tcb_info_issuer_chain=tcb_info_issuer_chain,
        tcb_info=signed_member(tcb_info_body, "tcbInfo"),
        tcb_info_signature=_pcs_signature(tcb_info_body, "TCB info"),
        qe_identity_issuer_chain=qe_identity_issuer_chain,
        qe_identity=signed_member(qe_identity_body, "enclaveIdentity"),
        qe_identity_signature=_pcs_signature(qe_identity_body, "QE identity"),
    )


def pck_ca_and_fmspc(quote: Quote) -> tuple[str, str]:
    """``("processor" | "platform", FMSPC upper-case hex)`` of the quote's PCK certificate."""
    import dcap_qvl

    certs = quote.pck_certificates()
    if not certs:
        raise CollateralError("the quote carries no PCK certificate")
    issuer = certs[0].issuer.rfc4514_string()
    if "PCK Processor CA" in issuer:
        ca = "processor"
    elif "PCK Platform CA" in issuer:
        ca = "platform"
    else:
        raise CollateralError(f"unknown PCK issuer {issuer!r}")
    try:
        ext = dcap_qvl.parse_pck_extension_from_pem(quote.signature_data.pck_chain_pem.rstrip(b"\x00"))
    except ValueError as exc:
        raise CollateralError(f"cannot read the PCK certificate's SGX extension: {exc}") from exc
    return ca, bytes(ext.fmspc).hex().upper()


def fetch_collateral(pccs_url: str, quote: Quote | bytes, *, timeout: float = 30.0, client: Any = None) -> Collateral:
    """Fetch the collateral for ``quote`` from a PCCS (or Intel PCS-compatible) base URL over HTTP(S).

    Uses the v4 API: ``/sgx/certification/v4/pckcrl?ca=...&encoding=der``, ``/sgx/certification/v4/rootcacrl``,
    ``/{sgx|tdx}/certification/v4/tcb?fmspc=...`` and ``/{sgx|tdx}/certification/v4/qe/identity``. The
    result is *not* trusted: it is verified like any other collateral.
    """
    import httpx

    parsed = quote if isinstance(quote, Quote) else parse_quote(quote)
    ca, fmspc = pck_ca_and_fmspc(parsed)
    base = pccs_url.rstrip("/")
    for suffix in ("/sgx/certification/v4", "/tdx/certification/v4"):
        base = base.removesuffix(suffix)
    tee = parsed.tee
    own_client = client is None
    http = client if client is not None else httpx.Client(timeout=timeout, follow_redirects=False)
    try:

        def get(path: str, params: dict[str, str] | None = None) -> Any:
            url = f"{base}/{path}"
            try:
                response = http.get(url, params=params)
            except httpx.HTTPError as exc:
                raise CollateralError(f"cannot fetch {url}: {exc}") from exc
            if response.status_code != 200:
                raise CollateralError(f"{url} answered HTTP {response.status_code}")
            return response

        def header(response: Any, *names: str) -> str:
            for name in names:
                if name in response.headers:
                    return unquote(response.headers[name])
            raise CollateralError(f"{response.url} has no {names[0]} header")

        crl = get("sgx/certification/v4/pckcrl", {"ca": ca, "encoding": "der"})
        root_crl = get("sgx/certification/v4/rootcacrl")
        tcb = get(f"{tee}/certification/v4/tcb", {"fmspc": fmspc})
        qe = get(f"{tee}/certification/v4/qe/identity", {"update": "standard"})
        return collateral_from_pcs(
            pck_crl=crl.content,
            pck_crl_issuer_chain=header(crl, "SGX-PCK-CRL-Issuer-Chain"),
            root_ca_crl=root_crl.content,
            tcb_info_body=tcb.text,
            tcb_info_issuer_chain=header(tcb, "TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"),
            qe_identity_body=qe.text,
            qe_identity_issuer_chain=header(qe, "SGX-Enclave-Identity-Issuer-Chain", "Enclave-Identity-Issuer-Chain"),
        )
    finally:
        if own_client:
            http.close()


# ----------------------------------------------------------------------------------------------- validity


@dataclass(frozen=True)
class ValidityWindow:
    """When one part of the collateral was issued and when Intel will next update it."""

    part: str
    issued: datetime
    next_update: datetime


@dataclass(frozen=True)
class CollateralValidity:
    """The validity of a whole collateral set: every part must be current at the verification time."""

    windows: tuple[ValidityWindow, ...]
    tcb_info_id: str
    fmspc: str
    tcb_evaluation_data_number: int

    @property
    def not_before(self) -> datetime:
        """The latest issue time of any part."""
        return max(w.issued for w in self.windows)

    @property
    def next_update(self) -> datetime:
        """The earliest next update of any part: after it the set is stale."""
        return min(w.next_update for w in self.windows)

    def check(self, at: datetime) -> tuple[Reason, str] | None:
        """None if the set is current at ``at`` (``not_before <= at < next_update``), else why not."""
        for window in self.windows:
            if at < window.issued:
                return (
                    Reason.COLLATERAL_NOT_YET_VALID,
                    f"{window.part} issued {_iso(window.issued)} is after the verification time {_iso(at)}",
                )
        for window in self.windows:
            if at >= window.next_update:
                return (
                    Reason.COLLATERAL_EXPIRED,
                    f"{window.part} next update {_iso(window.next_update)} is not after the verification time "
                    f"{_iso(at)}: the collateral is stale",
                )
        return None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _intel_time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise CollateralError(f"{what} is missing")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CollateralError(f"{what} {value!r} is not an ISO-8601 time") from exc
    if moment.tzinfo is None:
        raise CollateralError(f"{what} {value!r} has no time zone")
    return moment.astimezone(UTC)


def _signed_json(text: str, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise CollateralError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise CollateralError(f"{what} is not a JSON object")
    return doc


def _crl_window(der: bytes, part: str) -> ValidityWindow:
    from cryptography import x509

    try:
        crl = x509.load_der_x509_crl(der)
    except ValueError as exc:
        raise CollateralError(f"{part} is not a DER CRL: {exc}") from exc
    if crl.next_update_utc is None:
        raise CollateralError(f"{part} has no nextUpdate")
    return ValidityWindow(part, crl.last_update_utc, crl.next_update_utc)


def collateral_validity(collateral: Collateral) -> CollateralValidity:
    """Read issue and next-update times of the TCB info, QE identity and both CRLs. Raises CollateralError."""
    tcb = _signed_json(collateral.tcb_info, "TCB info")
    qe = _signed_json(collateral.qe_identity, "QE identity")
    windows = (
        ValidityWindow(
            "TCB info",
            _intel_time(tcb.get("issueDate"), "TCB info issueDate"),
            _intel_time(tcb.get("nextUpdate"), "TCB info nextUpdate"),
        ),
        ValidityWindow(
            "QE identity",
            _intel_time(qe.get("issueDate"), "QE identity issueDate"),
            _intel_time(qe.get("nextUpdate"), "QE identity nextUpdate"),
        ),
        _crl_window(collateral.pck_crl, "PCK CRL"),
        _crl_window(collateral.root_ca_crl, "root CA CRL"),
    )
    evaluation = tcb.get("tcbEvaluationDataNumber")
    return CollateralValidity(
        windows=windows,
        tcb_info_id=str(tcb.get("id", "SGX")),
        fmspc=str(tcb.get("fmspc", "")).lower(),
        tcb_evaluation_data_number=evaluation if isinstance(evaluation, int) else -1,
    )


# ----------------------------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class DcapVerdict:
    """The outcome of :func:`verify_quote`.

    ``accepted`` means the quote is genuine: it parses, the collateral is current at ``at``, the PCK chain
    leads to the pinned Intel root and is not revoked, the QE report and quote signatures hold, the QE
    matches Intel's QE identity and a TCB level applies that is not ``Revoked``. Whether ``tcb_status``
    and ``advisory_ids`` are acceptable is the policy's call (:mod:`verifier.policy`).
    """

    accepted: bool
    at: datetime
    reason: Reason | None = None
    detail: str = ""
    tcb_status: str | None = None
    advisory_ids: tuple[str, ...] = ()
    qe_tcb_status: str | None = None
    platform_tcb_status: str | None = None
    collateral_next_update: datetime | None = None
    validity: CollateralValidity | None = None
    quote: Quote | None = field(default=None, repr=False)

    def describe(self) -> str:
        """One line for logs: the status, or the failure code and detail."""
        if self.accepted:
            advisories = ", ".join(self.advisory_ids) or "none"
            return f"verified: TCB status {self.tcb_status}, advisories {advisories}"
        return f"{self.reason}: {self.detail}"


def _utc(at: datetime) -> datetime:
    if not isinstance(at, datetime):
        raise TypeError(f"verification time must be a datetime, got {type(at).__name__}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("verification time must be timezone-aware (UTC)")
    return at.astimezone(UTC)


def verify_quote(
    raw: bytes,
    collateral: Collateral,
    at: datetime,
    *,
    root_ca_der: bytes = INTEL_SGX_ROOT_CA_DER,
) -> DcapVerdict:
    """Verify a raw DCAP quote with ``collateral`` as of ``at`` (timezone-aware; never the wall clock).

    Order: parse the quote (:func:`verifier.quote.parse_quote`); read the collateral's validity and refuse
    it unless every part is current at ``at``; dcap-qvl verification against ``root_ca_der`` (the pinned
    Intel SGX Root CA unless a test says otherwise); cross-check dcap-qvl's report against our parse.
    Never raises for a bad quote or collateral: the verdict says why.
    """
    import dcap_qvl

    at = _utc(at)
    try:
        quote = parse_quote(raw)
    except QuoteFormatError as exc:
        return DcapVerdict(False, at, Reason.MALFORMED_QUOTE, str(exc))
    try:
        validity = collateral_validity(collateral)
    except CollateralError as exc:
        return DcapVerdict(False, at, Reason.MALFORMED_COLLATERAL, str(exc), quote=quote)
    base: dict[str, Any] = {
        "collateral_next_update": validity.next_update,
        "validity": validity,
        "quote": quote,
    }
    chain_problem = _chain_root_problem(quote, root_ca_der)
    if chain_problem is not None:
        return DcapVerdict(False, at, Reason.CERT_CHAIN_INVALID, chain_problem, **base)
    problem = validity.check(at)
    if problem is not None:
        return DcapVerdict(False, at, problem[0], problem[1], **base)
    try:
        report = dcap_qvl.verify_with_root_ca(bytes(raw), collateral.to_dcap(), root_ca_der, int(at.timestamp()))
    except (ValueError, RuntimeError) as exc:
        message = " ".join(str(exc).split())
        return DcapVerdict(False, at, classify_error(message), message, **base)
    details = json.loads(report.to_json())
    status = str(report.status)
    advisories = tuple(str(a) for a in report.advisory_ids)
    result: dict[str, Any] = {
        "tcb_status": status,
        "advisory_ids": advisories,
        "qe_tcb_status": (details.get("qe_status") or {}).get("status"),
        "platform_tcb_status": (details.get("platform_status") or {}).get("status"),
        **base,
    }
    mismatch = _report_mismatch(quote, details.get("report"))
    if mismatch:
        return DcapVerdict(False, at, Reason.REPORT_MISMATCH, mismatch, **result)
    if status == "Revoked":
        return DcapVerdict(False, at, Reason.TCB_REVOKED, "Intel lists this platform's TCB as revoked", **result)
    return DcapVerdict(True, at, **result)


def _chain_root_problem(quote: Quote, root_ca_der: bytes) -> str | None:
    """The quote's PCK chain must parse and end in the pinned root, byte for byte.

    dcap-qvl anchors the chain at the pinned root and ignores the copy embedded in the quote; we refuse a
    quote whose embedded root differs, so a corrupted or substituted root never passes unnoticed.
    """
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        certs = quote.pck_certificates()
    except QuoteFormatError as exc:
        return str(exc)
    if len(certs) != 3:
        return f"the PCK chain has {len(certs)} certificate(s); expected 3 (PCK leaf, PCK CA, root CA)"
    if certs[-1].public_bytes(Encoding.DER) != root_ca_der:
        return "the PCK chain does not end in the pinned Intel SGX Root CA"
    return None


_DCAP_FIELD_NAMES = {"rt_mr0": "rtmr0", "rt_mr1": "rtmr1", "rt_mr2": "rtmr2", "rt_mr3": "rtmr3"}


def _report_mismatch(quote: Quote, dcap_report: Any) -> str | None:
    """Compare every field dcap-qvl reports with our parse; a difference means the parsers disagree."""
    if not isinstance(dcap_report, dict) or len(dcap_report) != 1:
        return "dcap-qvl returned no report to cross-check"
    ((kind, fields),) = dcap_report.items()
    expected_kind = SgxReport if kind == "SgxEnclave" else TdReport
    if not isinstance(quote.report, expected_kind) or not isinstance(fields, dict):
        return f"dcap-qvl verified a {kind} report but the quote parses as {quote.tee}"
    for name, value in fields.items():
        ours = getattr(quote.report, _DCAP_FIELD_NAMES.get(name, name), None)
        if ours is None:
            continue  # reserved fields we do not model
        theirs = bytes.fromhex(value) if isinstance(value, str) else value
        if ours != theirs:
            return f"field {name}: dcap-qvl verified {value!r}, our parser read {ours!r}"
    return None
