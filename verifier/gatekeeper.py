"""The gatekeeper's decision: fetch a coprocessor's attestation, verify it, and say what to register.

It checks, in order: the evidence kind is one the policy accepts (simulated only where allowed, and only
on the local chain); the quote verifies; the quote's measurement is on the allowlist; and the quote's
report data binds *this* signer and HPKE key to *this* chain and registry. Only then does it produce a
:class:`Registration`; sending it on-chain is the caller's job (``teebridge gatekeeper register``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from verifier.attestation import (
    SIMULATED_KIND,
    AttestationError,
    SimulatedQuote,
    report_data,
    verify_simulated_quote,
)
from verifier.hexutil import from_hex, to_checksum_address, to_hex
from verifier.suites import parse_key_bundle

LOCAL_CHAIN_ID = 31337
DEFAULT_VALIDITY_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Allowlist:
    """Which enclaves the gatekeeper will register."""

    measurements: frozenset[bytes]
    allow_simulated: bool = False
    validity_seconds: int = DEFAULT_VALIDITY_SECONDS

    def describe(self) -> str:
        """One line for logs and errors."""
        listed = ", ".join(to_hex(m) for m in sorted(self.measurements)) or "(empty)"
        return f"measurements [{listed}], simulated {'allowed' if self.allow_simulated else 'refused'}"


@dataclass(frozen=True)
class Registration:
    """What the registry is asked to record for one enclave key."""

    signer: str
    measurement: bytes
    expiry: int
    simulated: bool
    hpke_keys: bytes
    evidence: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)


def key_bundle_of(doc: dict[str, Any]) -> bytes:
    """The attestation document's HPKE key bundle (``hpkeKeys``), checked to parse (``verifier.suites``)."""
    bundle = from_hex(doc["hpkeKeys"])
    try:
        parse_key_bundle(bundle)
    except ValueError as exc:
        raise AttestationError(f"malformed HPKE key bundle: {exc}") from exc
    return bundle


def fetch_attestation(
    coprocessor_url: str, chain_id: int, registry: str, timeout: float = 10.0, *, keys: str = "current"
) -> dict[str, Any]:
    """``GET /v1/attestation`` from a coprocessor, for this chain and registry (``keys="pending"`` during a
    rotation)."""
    try:
        response = httpx.get(
            coprocessor_url.rstrip("/") + "/v1/attestation",
            params={"chainId": chain_id, "registry": registry, "keys": keys},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise AttestationError(f"cannot reach coprocessor at {coprocessor_url}: {exc}", revoke=False) from exc
    if response.status_code != 200:
        raise AttestationError(f"coprocessor answered {response.status_code}: {response.text[:300]}", revoke=False)
    return response.json()


def simulated_evaluator(allowlist: Allowlist) -> Callable[[dict[str, Any], int, str, int], Registration]:
    """An evaluator ``(doc, chain_id, registry, now) -> Registration`` for simulated evidence."""

    def evaluate(doc: dict[str, Any], chain_id: int, registry: str, now: int) -> Registration:
        return evaluate_attestation(doc, chain_id=chain_id, registry=registry, allowlist=allowlist, now=now)

    return evaluate


def evaluate_attestation(
    doc: dict[str, Any], *, chain_id: int, registry: str, allowlist: Allowlist, now: int | None = None
) -> Registration:
    """Verify an attestation document; return the registration it justifies or raise AttestationError."""
    try:
        signer = to_checksum_address(doc["signer"])
        hpke_keys = key_bundle_of(doc)
        kind = doc["kind"]
        quote_doc = doc["quote"]
    except (KeyError, ValueError, TypeError) as exc:
        raise AttestationError(f"malformed attestation document: {exc}") from exc

    if kind != SIMULATED_KIND:
        raise AttestationError(f"attestation kind {kind!r} is not supported by this gatekeeper yet")
    if not allowlist.allow_simulated:
        raise AttestationError("simulated attestation refused: the policy does not allow simulated enclaves")
    if chain_id != LOCAL_CHAIN_ID:
        raise AttestationError(f"simulated attestation refused on chain {chain_id}: only the local chain 31337")
    quote = SimulatedQuote.from_json(quote_doc)
    verify_simulated_quote(quote)

    if quote.measurement not in allowlist.measurements:
        raise AttestationError(
            f"measurement {to_hex(quote.measurement)} is not on the allowlist ({allowlist.describe()})"
        )
    expected = report_data(chain_id, registry, signer, hpke_keys)
    if quote.report_data != expected:
        raise AttestationError(
            "report data does not bind this signer and HPKE key to this chain and registry "
            f"(quote has {to_hex(quote.report_data)[:18]}..., expected {to_hex(expected)[:18]}...)"
        )
    issued = int(time.time()) if now is None else now
    return Registration(
        signer=signer,
        measurement=quote.measurement,
        expiry=issued + allowlist.validity_seconds,
        simulated=True,
        hpke_keys=hpke_keys,
        evidence=doc,
    )


# ---------------------------------------------------------------- hardware quotes (TDX, SGX) via DCAP

#: DCAP failures that mean "cannot verify right now", not "this enclave is bad": no revocation for these.
TRANSIENT_REASONS = frozenset({"collateral_not_yet_valid", "collateral_expired", "collateral_unavailable"})
TRANSIENT_POLICY_CODES = frozenset({"collateral_age"})

#: (parsed quote) -> its collateral; raises verifier.dcap.CollateralError when it cannot be had.
CollateralSource = Callable[[Any], Any]
#: (chain id, registry, signer, HPKE public key) -> the report data the quote must carry.
ReportDataBinding = Callable[[int, str, str, bytes], bytes]


def dcap_evaluator(
    policy: Any,
    collateral_for: CollateralSource,
    *,
    validity_seconds: int = DEFAULT_VALIDITY_SECONDS,
    binding: ReportDataBinding = report_data,
) -> Callable[[dict[str, Any], int, str, int], Registration]:
    """An evaluator for TDX/SGX evidence: DCAP verification, then ``policy`` (``verifier.policy.Policy``).

    The registration's expiry is the earliest of ``now + validity_seconds``, the collateral's next update
    and, when the policy bounds collateral age, the moment the collateral becomes too old: a signer never
    outlives the evidence that admitted it.
    """
    from datetime import UTC, datetime

    from verifier.dcap import CollateralError, verify_quote
    from verifier.policy import usable_until
    from verifier.quote import QuoteFormatError, measurement_of, parse_quote

    def evaluate(doc: dict[str, Any], chain_id: int, registry: str, now: int) -> Registration:
        try:
            signer = to_checksum_address(doc["signer"])
            hpke_keys = key_bundle_of(doc)
            evidence = doc["quote"]
            kind = evidence["kind"]
            raw = from_hex(evidence["quote"])
        except (KeyError, ValueError, TypeError) as exc:
            raise AttestationError(f"malformed attestation document: {exc}") from exc
        if kind not in ("tdx", "sgx"):
            raise AttestationError(f"evidence kind {kind!r} is not a hardware quote this policy can judge")
        try:
            quote = parse_quote(raw)
        except QuoteFormatError as exc:
            raise AttestationError(f"malformed quote: {exc}") from exc
        if quote.tee != kind:
            raise AttestationError(f"evidence says {kind} but the quote is {quote.tee}")
        try:
            collateral = collateral_for(quote)
        except CollateralError as exc:
            raise AttestationError(f"collateral unavailable: {exc}", revoke=False) from exc
        at = datetime.fromtimestamp(now, UTC)
        verdict = verify_quote(raw, collateral, at)
        if not verdict.accepted:
            reason = verdict.reason.value if verdict.reason else "verification_failed"
            raise AttestationError(
                f"quote refused ({reason}): {verdict.describe()}", revoke=reason not in TRANSIENT_REASONS
            )
        expected = binding(chain_id, registry, signer, hpke_keys)
        decision = policy.evaluate(quote, verdict, at, expected_report_data=expected)
        if not decision.accept:
            raise AttestationError(
                f"policy refused ({decision.code}): {decision.reason}",
                revoke=decision.code not in TRANSIENT_POLICY_CODES,
            )
        expiry = now + validity_seconds
        deadline = usable_until(policy, verdict)
        if deadline is not None:
            expiry = min(expiry, int(deadline.timestamp()))
        return Registration(signer, measurement_of(quote), expiry, False, hpke_keys, evidence=doc)

    return evaluate


def combined_evaluator(
    *,
    allowlist: Allowlist | None = None,
    hardware: Callable[[dict[str, Any], int, str, int], Registration] | None = None,
) -> Callable[[dict[str, Any], int, str, int], Registration]:
    """Route simulated evidence to ``allowlist`` and TDX/SGX evidence to ``hardware``; refuse what has none."""

    def evaluate(doc: dict[str, Any], chain_id: int, registry: str, now: int) -> Registration:
        kind = (doc.get("quote") or {}).get("kind") if isinstance(doc.get("quote"), dict) else None
        if kind == SIMULATED_KIND:
            if allowlist is None:
                raise AttestationError("simulated attestation refused: this gatekeeper has no simulated allowlist")
            return evaluate_attestation(doc, chain_id=chain_id, registry=registry, allowlist=allowlist, now=now)
        if hardware is None:
            raise AttestationError(f"evidence kind {kind!r} refused: this gatekeeper has no hardware policy")
        return hardware(doc, chain_id, registry, now)

    return evaluate
