"""Attestation policy: which verified quotes the gatekeeper accepts.

A :class:`verifier.dcap.DcapVerdict` says whether a quote is genuine and what Intel thinks of its
platform (the TCB status). The policy says whether *we* trust it: which enclave identities, which TCB
statuses and advisories, how old the collateral may be, and which report data is expected. Debug
enclaves are always refused unless ``allow_debug = true``, which exists for tests only.

The file format (TOML or JSON, same keys) is documented in docs/attestation.md; see examples/policy.toml.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from verifier.dcap import TCB_STATUSES, DcapVerdict
from verifier.quote import Quote, SgxReport, TdReport

DEFAULT_TCB_STATUSES = ("UpToDate",)

_TOP_KEYS = {
    "version",
    "accept_tcb_status",
    "allowed_advisories",
    "max_collateral_age_seconds",
    "expected_report_data",
    "allow_debug",
    "sgx",
    "tdx",
}
_SGX_KEYS = {"name", "mr_enclave", "mr_signer", "isv_prod_id", "min_isv_svn"}
_TDX_HEX48 = ("mr_td", "mr_config_id", "rtmr0", "rtmr1", "rtmr2", "rtmr3")
_TDX_KEYS = {"name", *_TDX_HEX48}
# Parts of the collateral whose issue date counts for its age. The root CA CRL is left out: Intel
# reissues it about once a year, so it would make every collateral set look a year old.
_AGED_PARTS = ("TCB info", "QE identity", "PCK CRL")


class PolicyError(ValueError):
    """A policy file that does not follow the schema; the message names the key."""


@dataclass(frozen=True)
class SgxIdentity:
    """An allowed SGX enclave: by MRENCLAVE, or by MRSIGNER + ISVPRODID + minimum ISVSVN (or both)."""

    name: str = ""
    mr_enclave: bytes | None = None
    mr_signer: bytes | None = None
    isv_prod_id: int | None = None
    min_isv_svn: int = 0

    def matches(self, report: SgxReport) -> bool:
        """True if ``report`` is this enclave."""
        if self.mr_enclave is not None and report.mr_enclave != self.mr_enclave:
            return False
        if self.mr_signer is not None:
            if report.mr_signer != self.mr_signer or report.isv_prod_id != self.isv_prod_id:
                return False
            if report.isv_svn < self.min_isv_svn:
                return False
        return True


@dataclass(frozen=True)
class TdxIdentity:
    """An allowed TD. Every field that is set must match; an omitted field matches anything."""

    name: str = ""
    mr_td: bytes | None = None
    mr_config_id: bytes | None = None
    rtmr0: bytes | None = None
    rtmr1: bytes | None = None
    rtmr2: bytes | None = None
    rtmr3: bytes | None = None

    def matches(self, report: TdReport) -> bool:
        """True if ``report`` matches every field this identity pins."""
        return all(getattr(self, name) is None or getattr(self, name) == getattr(report, name) for name in _TDX_HEX48)


@dataclass(frozen=True)
class PolicyDecision:
    """The policy's answer. ``code`` is stable for programs, ``reason`` is for people."""

    accept: bool
    reason: str
    code: str = ""


@dataclass(frozen=True)
class Policy:
    """Which verified quotes to accept. Load with :func:`load_policy`; see docs/attestation.md."""

    sgx: tuple[SgxIdentity, ...] = ()
    tdx: tuple[TdxIdentity, ...] = ()
    accept_tcb_status: frozenset[str] = frozenset(DEFAULT_TCB_STATUSES)
    allowed_advisories: frozenset[str] = frozenset()
    max_collateral_age: timedelta | None = None
    expected_report_data: bytes | None = None
    allow_debug: bool = False
    check_identity: bool = field(default=True, repr=False)

    @classmethod
    def tcb_only(cls) -> Policy:
        """The judgement without a policy file: a genuine, non-debug quote whose TCB status is UpToDate."""
        return cls(check_identity=False)

    def evaluate(
        self, quote: Quote, verdict: DcapVerdict, at: datetime, *, expected_report_data: bytes | None = None
    ) -> PolicyDecision:
        """Judge a quote that :func:`verifier.dcap.verify_quote` has verified (see :func:`evaluate`)."""
        return evaluate(self, quote, verdict, at, expected_report_data=expected_report_data)


def _reject(code: str, reason: str) -> PolicyDecision:
    return PolicyDecision(False, reason, code)


def evaluate(
    policy: Policy,
    quote: Quote,
    verdict: DcapVerdict,
    at: datetime,
    *,
    expected_report_data: bytes | None = None,
) -> PolicyDecision:
    """Accept ``quote`` only if ``verdict`` accepted it and it satisfies ``policy`` at time ``at``.

    Checks, in order: the verdict; that ``quote`` is the quote the verdict is about (same signed bytes);
    debug mode; TCB status; advisories; collateral freshness and age at ``at``; the enclave identity; the
    report data (both the policy's and ``expected_report_data`` when given). ``at`` must be timezone-aware.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("evaluation time must be timezone-aware (UTC)")
    if not verdict.accepted:
        return _reject("not_verified", f"quote not verified: {verdict.reason}: {verdict.detail}")
    if verdict.quote is None or verdict.quote.signed_bytes != quote.signed_bytes:
        return _reject("quote_mismatch", "the quote is not the one the verdict is about")
    if quote.debug and not policy.allow_debug:
        return _reject("debug", f"{quote.tee.upper()} enclave runs in debug mode: its memory is readable by the host")
    if verdict.tcb_status not in policy.accept_tcb_status:
        accepted = ", ".join(sorted(policy.accept_tcb_status))
        return _reject("tcb_status", f"TCB status {verdict.tcb_status} is not accepted (policy accepts: {accepted})")
    unexpected = [a for a in verdict.advisory_ids if a not in policy.allowed_advisories]
    if unexpected:
        return _reject("advisory", f"advisories not allowed by the policy: {', '.join(unexpected)}")
    freshness = _freshness_problem(policy, verdict, at)
    if freshness is not None:
        return _reject("collateral_age", freshness)
    identity_note = "identity not checked (no policy)"
    if policy.check_identity:
        identity = _identity_problem(policy, quote)
        if identity is not None:
            return _reject("identity", identity)
        identity_note = "identity allowed by the policy"
    for expected in (policy.expected_report_data, expected_report_data):
        if expected is not None and quote.report_data != expected:
            return _reject(
                "report_data",
                f"report data {quote.report_data.hex()[:16]}... is not the expected {expected.hex()[:16]}...",
            )
    return PolicyDecision(True, f"TCB status {verdict.tcb_status}, {identity_note}", "accepted")


def usable_until(policy: Policy, verdict: DcapVerdict) -> datetime | None:
    """The moment this verdict's collateral stops satisfying ``policy``: its next update, or earlier when the
    policy bounds the age of the TCB info, QE identity and PCK CRL. None without collateral validity."""
    if verdict.collateral_next_update is None or verdict.validity is None:
        return None
    deadline = verdict.collateral_next_update
    if policy.max_collateral_age is not None:
        issued = min(w.issued for w in verdict.validity.windows if w.part in _AGED_PARTS)
        deadline = min(deadline, issued + policy.max_collateral_age)
    return deadline


def _freshness_problem(policy: Policy, verdict: DcapVerdict, at: datetime) -> str | None:
    if verdict.collateral_next_update is None or verdict.validity is None:
        return "the verdict carries no collateral validity"
    if at >= verdict.collateral_next_update:
        return f"collateral is stale at {at.isoformat()} (next update was {verdict.collateral_next_update.isoformat()})"
    if policy.max_collateral_age is not None:
        issued = min(w.issued for w in verdict.validity.windows if w.part in _AGED_PARTS)
        age = at - issued
        if age > policy.max_collateral_age:
            return f"collateral is {age} old, more than the policy's {policy.max_collateral_age}"
    return None


def _identity_problem(policy: Policy, quote: Quote) -> str | None:
    report = quote.report
    if isinstance(report, SgxReport):
        if any(identity.matches(report) for identity in policy.sgx):
            return None
        return (
            f"SGX enclave mr_enclave={report.mr_enclave.hex()} mr_signer={report.mr_signer.hex()} "
            f"isv_prod_id={report.isv_prod_id} isv_svn={report.isv_svn} is not allowed by the policy"
        )
    if any(identity.matches(report) for identity in policy.tdx):
        return None
    return f"TD mr_td={report.mr_td.hex()} (with its RTMRs and MRCONFIGID) is not allowed by the policy"


# ---------------------------------------------------------------------------------------------- loading


def load_policy(path: str | Path) -> Policy:
    """Load a policy from a ``.toml`` or ``.json`` file. Raises PolicyError (OSError if unreadable)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise PolicyError(f"{path}: not valid JSON: {exc}") from exc
    elif path.suffix.lower() == ".toml":
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{path}: not valid TOML: {exc}") from exc
    else:
        raise PolicyError(f"{path}: policy files end in .toml or .json")
    try:
        return policy_from_dict(doc)
    except PolicyError as exc:
        raise PolicyError(f"{path}: {exc}") from exc


def policy_from_dict(doc: Any) -> Policy:
    """Build a policy from its parsed document (the TOML/JSON schema). Raises PolicyError."""
    if not isinstance(doc, dict):
        raise PolicyError("a policy is a table/object")
    _no_unknown(doc, _TOP_KEYS, "policy")
    if doc.get("version", 1) != 1:
        raise PolicyError(f"unsupported policy version {doc.get('version')!r} (this verifier reads version 1)")
    statuses = _str_list(doc, "accept_tcb_status", list(DEFAULT_TCB_STATUSES))
    for status in statuses:
        if status not in TCB_STATUSES:
            raise PolicyError(f"accept_tcb_status: unknown TCB status {status!r} (one of {sorted(TCB_STATUSES)})")
        if status == "Revoked":
            raise PolicyError("accept_tcb_status: 'Revoked' can never be accepted")
    if not statuses:
        raise PolicyError("accept_tcb_status: must list at least one status")
    advisories = [a.upper() for a in _str_list(doc, "allowed_advisories", [])]
    max_age = doc.get("max_collateral_age_seconds")
    if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int) or max_age <= 0):
        raise PolicyError("max_collateral_age_seconds: must be a positive integer")
    allow_debug = doc.get("allow_debug", False)
    if not isinstance(allow_debug, bool):
        raise PolicyError("allow_debug: must be true or false")
    sgx = tuple(_sgx_identity(entry, i) for i, entry in enumerate(_table_list(doc, "sgx")))
    tdx = tuple(_tdx_identity(entry, i) for i, entry in enumerate(_table_list(doc, "tdx")))
    if not sgx and not tdx:
        raise PolicyError("the policy allows no enclave identity: add at least one [[sgx]] or [[tdx]] entry")
    report_data = doc.get("expected_report_data")
    return Policy(
        sgx=sgx,
        tdx=tdx,
        accept_tcb_status=frozenset(statuses),
        allowed_advisories=frozenset(advisories),
        max_collateral_age=timedelta(seconds=max_age) if max_age is not None else None,
        expected_report_data=_hex(report_data, 64, "expected_report_data") if report_data is not None else None,
        allow_debug=allow_debug,
    )


def _no_unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def _str_list(doc: dict[str, Any], key: str, default: list[str]) -> list[str]:
    value = doc.get(key, default)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{key}: must be a list of non-empty strings")
    return value


def _table_list(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise PolicyError(f"{key}: must be a list of tables ([[{key}]] in TOML, an array of objects in JSON)")
    return value


def _hex(value: Any, length: int, where: str) -> bytes:
    if not isinstance(value, str):
        raise PolicyError(f"{where}: must be a hex string")
    text = value.removeprefix("0x").removeprefix("0X")
    try:
        data = bytes.fromhex(text)
    except ValueError as exc:
        raise PolicyError(f"{where}: not valid hex") from exc
    if len(data) != length:
        raise PolicyError(f"{where}: must be {length} bytes ({2 * length} hex digits), got {len(data)}")
    return data


def _uint16(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise PolicyError(f"{where}: must be an integer from 0 to 65535")
    return value


def _name(entry: dict[str, Any], where: str) -> str:
    name = entry.get("name", "")
    if not isinstance(name, str):
        raise PolicyError(f"{where}.name: must be a string")
    return name


def _sgx_identity(entry: dict[str, Any], index: int) -> SgxIdentity:
    where = f"sgx[{index}]"
    _no_unknown(entry, _SGX_KEYS, where)
    mr_enclave = _hex(entry["mr_enclave"], 32, f"{where}.mr_enclave") if "mr_enclave" in entry else None
    mr_signer = _hex(entry["mr_signer"], 32, f"{where}.mr_signer") if "mr_signer" in entry else None
    if mr_signer is not None and "isv_prod_id" not in entry:
        raise PolicyError(f"{where}: mr_signer needs isv_prod_id (and usually min_isv_svn)")
    if mr_signer is None and ("isv_prod_id" in entry or "min_isv_svn" in entry):
        raise PolicyError(f"{where}: isv_prod_id and min_isv_svn only apply together with mr_signer")
    if mr_enclave is None and mr_signer is None:
        raise PolicyError(f"{where}: needs mr_enclave, or mr_signer with isv_prod_id")
    return SgxIdentity(
        name=_name(entry, where),
        mr_enclave=mr_enclave,
        mr_signer=mr_signer,
        isv_prod_id=_uint16(entry["isv_prod_id"], f"{where}.isv_prod_id") if "isv_prod_id" in entry else None,
        min_isv_svn=_uint16(entry.get("min_isv_svn", 0), f"{where}.min_isv_svn"),
    )


def _tdx_identity(entry: dict[str, Any], index: int) -> TdxIdentity:
    where = f"tdx[{index}]"
    _no_unknown(entry, _TDX_KEYS, where)
    values = {key: _hex(entry[key], 48, f"{where}.{key}") for key in _TDX_HEX48 if key in entry}
    if not values:
        raise PolicyError(f"{where}: pins nothing; set at least mr_td (omitted fields match anything)")
    return TdxIdentity(name=_name(entry, where), **values)
