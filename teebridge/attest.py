"""``teebridge attest verify``: verify a DCAP quote (SGX v3, TDX v4/v5) and print what it says.

    teebridge attest verify QUOTE [--collateral FILE | --pccs-url URL] [--policy FILE] [--at TIME] [--json]

QUOTE is a binary quote or a hex text file (autodetected; ``0x`` prefix and whitespace allowed). Without
collateral the quote is only parsed and the verdict is ``reject`` with reason "no collateral". Without
``--policy`` a genuine, non-debug quote is accepted only if its TCB status is UpToDate (see
docs/attestation.md). Exit status: 0 accept, 1 reject, 2 usage error (unreadable file, bad time, bad
policy file).

``add_arguments`` and ``run`` are meant to be wired into ``teebridge.cli``; ``main`` runs them alone.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from verifier.dcap import (
    Collateral,
    CollateralError,
    DcapVerdict,
    fetch_collateral,
    load_collateral,
    pck_ca_and_fmspc,
    verify_quote,
)
from verifier.policy import Policy, PolicyDecision, PolicyError, load_policy
from verifier.quote import Quote, QuoteFormatError, SgxReport, measurement_of, parse_quote

EXIT_ACCEPT = 0
EXIT_REJECT = 1
EXIT_USAGE = 2

_HEX_TEXT = set(string.hexdigits + string.whitespace)


class UsageError(Exception):
    """Bad command-line input: exit status 2."""


def add_arguments(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``attest`` command (with its ``verify`` action) to an argparse subparsers object."""
    attest = subparsers.add_parser("attest", help="verify TEE attestation quotes (Intel SGX / TDX DCAP)")
    actions = attest.add_subparsers(dest="attest_action", required=True)
    verify = actions.add_parser(
        "verify",
        help="verify a quote against Intel collateral and an optional policy",
        description="Verify a DCAP quote. Exit 0 = accept, 1 = reject, 2 = usage error.",
    )
    verify.add_argument("quote", type=Path, help="quote file: binary, or hex text (autodetected)")
    source = verify.add_mutually_exclusive_group()
    source.add_argument("--collateral", type=Path, help="collateral JSON file (dcap-qvl QuoteCollateralV3 format)")
    source.add_argument("--pccs-url", help="fetch the collateral from this PCCS / PCS base URL")
    verify.add_argument("--policy", type=Path, help="policy file (.toml or .json); default: TCB status UpToDate only")
    verify.add_argument("--at", help="verification time, ISO-8601 (e.g. 2025-07-19T10:00:34Z); default: now")
    verify.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return attest


def main(argv: list[str] | None = None) -> int:
    """Run ``attest`` on its own: ``main(["verify", "quote.bin", ...])`` or ``main(["attest", "verify", ...])``."""
    parser = argparse.ArgumentParser(prog="teebridge")
    sub = parser.add_subparsers(dest="command", required=True)
    add_arguments(sub)
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] != ["attest"]:
        args_list.insert(0, "attest")
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return run(args)


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Execute a parsed ``attest`` command; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    if getattr(args, "attest_action", None) != "verify":
        print("teebridge attest: unknown action", file=err)
        return EXIT_USAGE
    try:
        result = _verify(args)
    except UsageError as exc:
        print(f"teebridge attest verify: {exc}", file=err)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(result.to_json(), indent=2), file=out)
    else:
        print(result.to_text(), file=out)
    return EXIT_ACCEPT if result.accept else EXIT_REJECT


# ------------------------------------------------------------------------------------------- the command


@dataclass
class VerifyResult:
    """Everything ``attest verify`` reports."""

    source: str
    at: datetime
    accept: bool
    reason: str
    reason_code: str
    quote: Quote | None = None
    verdict: DcapVerdict | None = None
    pck: tuple[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object."""
        doc: dict[str, Any] = {
            "verdict": "accept" if self.accept else "reject",
            "reason": self.reason,
            "reason_code": self.reason_code,
            "at": _iso(self.at),
            "tcb_status": self.verdict.tcb_status if self.verdict else None,
            "advisory_ids": list(self.verdict.advisory_ids) if self.verdict else [],
            "qe_tcb_status": self.verdict.qe_tcb_status if self.verdict else None,
            "platform_tcb_status": self.verdict.platform_tcb_status if self.verdict else None,
            "collateral_next_update": _iso(self.verdict.collateral_next_update)
            if self.verdict and self.verdict.collateral_next_update
            else None,
            "tee": None,
            "version": None,
        }
        doc.update(dict.fromkeys(_ALL_FIELDS))
        doc["measurement"] = None
        if self.quote is not None:
            doc.update(_quote_fields(self.quote))
            doc["measurement"] = "0x" + measurement_of(self.quote).hex()
        doc["pck_ca"], doc["fmspc"] = self.pck if self.pck else (None, None)
        return doc

    def to_text(self) -> str:
        """The human-readable report."""
        lines = [f"quote: {self.source}"]
        if self.quote is not None:
            fields = _quote_fields(self.quote)
            for key, value in fields.items():
                if value is not None:
                    lines.append(f"  {key:<22} {value}")
            lines.append(f"  {'measurement':<22} 0x{measurement_of(self.quote).hex()}  (teebridge, keccak256)")
            if self.pck:
                lines.append(f"  {'pck':<22} {self.pck[0]} CA, FMSPC {self.pck[1]}")
        lines.append(f"verification time: {_iso(self.at)}")
        verdict = self.verdict
        if verdict is not None and verdict.validity is not None:
            v = verdict.validity
            lines.append(
                f"collateral: {v.tcb_info_id} TCB info, FMSPC {v.fmspc}, "
                f"evaluation data number {v.tcb_evaluation_data_number}"
            )
            for window in v.windows:
                lines.append(
                    f"  {window.part:<12} issued {_iso(window.issued)}, next update {_iso(window.next_update)}"
                )
        if verdict is not None and verdict.accepted:
            lines.append(
                f"tcb status: {verdict.tcb_status} (QE {verdict.qe_tcb_status}, platform {verdict.platform_tcb_status})"
            )
            lines.append(f"advisories: {', '.join(verdict.advisory_ids) or 'none'}")
        word = "ACCEPT" if self.accept else "REJECT"
        lines.append(f"verdict: {word}: {self.reason}")
        return "\n".join(lines)


_SGX_FIELDS = (
    "cpu_svn",
    "misc_select",
    "attributes",
    "mr_enclave",
    "mr_signer",
    "isv_prod_id",
    "isv_svn",
    "config_id",
    "config_svn",
)
_TDX_FIELDS = (
    "tee_tcb_svn",
    "mr_seam",
    "mr_signer_seam",
    "seam_attributes",
    "td_attributes",
    "xfam",
    "mr_td",
    "mr_config_id",
    "mr_owner",
    "mr_owner_config",
    "rtmr0",
    "rtmr1",
    "rtmr2",
    "rtmr3",
    "tee_tcb_svn2",
    "mr_service_td",
)
_ALL_FIELDS = (*_SGX_FIELDS, *_TDX_FIELDS, "report_data", "debug")


def _quote_fields(quote: Quote) -> dict[str, Any]:
    header = quote.header
    fields: dict[str, Any] = {
        "tee": quote.tee,
        "version": quote.version,
        "body_type": quote.body_type,
        "att_key_type": header.att_key_type,
        "qe_svn": header.qe_svn,
        "pce_svn": header.pce_svn,
        "qe_vendor_id": header.qe_vendor_id.hex(),
    }
    report = quote.report
    names = _SGX_FIELDS if isinstance(report, SgxReport) else _TDX_FIELDS
    for name in names:
        value = getattr(report, name)
        fields[name] = value.hex() if isinstance(value, bytes) else value
    fields["report_data"] = report.report_data.hex()
    fields["debug"] = report.debug
    fields["signature_data_len"] = quote.signature_data_len
    fields["trailing_bytes"] = quote.trailing_bytes
    qe = quote.signature_data.qe_report
    fields["qe_report_mr_enclave"] = qe.mr_enclave.hex()
    fields["qe_report_mr_signer"] = qe.mr_signer.hex()
    fields["qe_report_isv_svn"] = qe.isv_svn
    return fields


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """ISO-8601 time; a time without zone is taken as UTC. Raises UsageError."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"--at {text!r} is not an ISO-8601 time (e.g. 2025-07-19T10:00:34Z)") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def read_quote_file(path: Path) -> bytes:
    """Read a quote: binary, or hex text (``.hex`` files, or any file that is only hex digits). Raises UsageError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read quote {path}: {exc.strerror or exc}") from exc
    text = data.strip()
    if text[:2] in (b"0x", b"0X"):
        text = text[2:]
    looks_hex = bool(text) and all(chr(c) in _HEX_TEXT for c in text)
    if path.suffix.lower() == ".hex" or looks_hex:
        try:
            return bytes.fromhex("".join(text.decode("ascii").split()))
        except (UnicodeDecodeError, ValueError) as exc:
            raise UsageError(f"quote {path} looks like hex but is not valid hex") from exc
    return data


def _verify(args: argparse.Namespace) -> VerifyResult:
    at = parse_time(args.at) if args.at else datetime.now(UTC)
    raw = read_quote_file(args.quote)
    policy = _policy(args.policy)
    collateral_file: Collateral | None = None
    collateral_problem: str | None = None
    if args.collateral is not None:
        try:
            collateral_file = load_collateral(args.collateral)
        except OSError as exc:
            raise UsageError(f"cannot read collateral {args.collateral}: {exc.strerror or exc}") from exc
        except CollateralError as exc:
            collateral_problem = f"collateral file {args.collateral}: {exc}"
    source = str(args.quote)
    try:
        quote = parse_quote(raw)
    except QuoteFormatError as exc:
        return VerifyResult(source, at, False, f"malformed quote: {exc}", "malformed_quote")
    pck = _pck(quote)
    if collateral_problem is not None:
        return VerifyResult(source, at, False, collateral_problem, "malformed_collateral", quote, pck=pck)
    collateral = collateral_file
    if collateral is None and args.pccs_url:
        try:
            collateral = fetch_collateral(args.pccs_url, quote)
        except CollateralError as exc:
            return VerifyResult(
                source, at, False, f"collateral unavailable: {exc}", "collateral_unavailable", quote, pck=pck
            )
    if collateral is None:
        return VerifyResult(source, at, False, "no collateral", "no_collateral", quote, pck=pck)
    verdict = verify_quote(raw, collateral, at)
    if not verdict.accepted:
        return VerifyResult(source, at, False, verdict.describe(), str(verdict.reason), quote, verdict, pck)
    decision: PolicyDecision = policy.evaluate(quote, verdict, at)
    return VerifyResult(source, at, decision.accept, decision.reason, decision.code, quote, verdict, pck)


def _policy(path: Path | None) -> Policy:
    if path is None:
        return Policy.tcb_only()
    try:
        return load_policy(path)
    except OSError as exc:
        raise UsageError(f"cannot read policy {path}: {exc.strerror or exc}") from exc
    except PolicyError as exc:
        raise UsageError(f"bad policy: {exc}") from exc


def _pck(quote: Quote) -> tuple[str, str] | None:
    try:
        return pck_ca_and_fmspc(quote)
    except (CollateralError, QuoteFormatError, ValueError):
        return None


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["UsageError", "VerifyResult", "add_arguments", "main", "parse_time", "read_quote_file", "run"]
