"""The gatekeeper as a service: re-attest every coprocessor on a schedule, renew, and revoke.

For each coprocessor, every ``check_interval`` seconds (apscheduler):

- fetch a fresh attestation for this chain and registry and verify it (``verifier.gatekeeper``);
- if it verifies and the signer is unknown, or its registration ends within ``renew_margin`` seconds,
  register it (again) with a new expiry;
- if verification fails with ``revoke=True`` (the evidence itself is bad: measurement or TCB status below
  policy, forged quote, wrong binding) and the signer is live, revoke it at once;
- if the enclave merely cannot be verified now (unreachable, stale collateral), do nothing: it is not
  renewed and lapses at its expiry unless verification recovers first.

When the operator gave the coprocessor's public URL (``endpoints``, ``--public-url``), registration records
it in the registry too (``registerSignerWithEndpoint``), and a check of a live signer whose recorded URL
differs sets it (``setSignerEndpoint``). Relayers started with ``--discover`` find the enclave there. The URL
is advisory: relayers verify that the enclave answering at it holds the signer's key, and the Router checks
every signature on chain whatever URL it came from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import httpx

from relayer.chain import ChainClient
from relayer.discovery import normalize_endpoint
from relayer.schedule import run_every
from verifier.attestation import AttestationError
from verifier.gatekeeper import Registration, fetch_attestation
from verifier.hexutil import to_checksum_address

log = logging.getLogger("teebridge.gatekeeper")

#: (attestation document, chain id, registry, chain time) -> the registration it justifies, or AttestationError
Evaluator = Callable[[dict[str, Any], int, str, int], Registration]


class Outcome(Enum):
    """What one check did."""

    REGISTERED = "registered"
    RENEWED = "renewed"
    FRESH = "fresh"
    REVOKED = "revoked"
    REFUSED = "refused"
    UNVERIFIABLE = "unverifiable"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of checking one coprocessor."""

    coprocessor: str
    outcome: Outcome
    signer: str | None = None
    expiry: int | None = None
    reason: str = ""
    endpoint: str | None = None
    """The public URL recorded in the registry by this check, if it recorded one."""


@dataclass(frozen=True)
class Rotation:
    """The outcome of a key rotation."""

    coprocessor: str
    old_signer: str
    new_signer: str
    new_expiry: int
    old_keys_retire_at: int
    """When the enclave destroys the old HPKE keys: the old registration's expiry."""


def _post(url: str, body: dict[str, Any] | None, timeout: float, token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        response = httpx.post(url, json=body, timeout=timeout, headers=headers)
    except httpx.HTTPError as exc:
        raise RuntimeError(f"cannot reach {url}: {exc}") from exc
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")
    return response.json()


@dataclass
class GatekeeperService:
    """Keeps the registry's view of a set of coprocessors current."""

    gatekeeper: ChainClient
    registry_address: str
    coprocessors: list[str]
    evaluate: Evaluator
    renew_margin: int = 24 * 3600
    check_interval: float = 300.0
    endpoints: dict[str, str] = field(default_factory=dict)
    admin_token: str | None = field(default=None, repr=False)
    """The coprocessors' admin token for key rotation (``coprocessor.admin``); None: send none."""
    """Coprocessor URL (as in ``coprocessors``) -> the public URL relayers should use for it (recorded in the
    registry at registration; none recorded for a coprocessor not listed here)."""
    _chain_id: int = field(init=False)

    def __post_init__(self) -> None:
        self._chain_id = self.gatekeeper.chain_id
        self.registry = self.gatekeeper.contract("EnclaveRegistry", self.registry_address)
        for url, public in list(self.endpoints.items()):
            try:
                self.endpoints[url] = normalize_endpoint(public)
            except ValueError as exc:
                raise ValueError(f"public URL of {url}: {exc}; give an http(s) base URL relayers can reach") from exc

    def check(self, coprocessor_url: str) -> CheckResult:
        """Re-attest one coprocessor and act on the result."""
        now = self.gatekeeper.w3.eth.get_block("latest")["timestamp"]
        try:
            doc = fetch_attestation(coprocessor_url, self._chain_id, self.registry_address)
            signer = to_checksum_address(doc["signer"])
        except (AttestationError, KeyError, ValueError) as exc:
            return CheckResult(coprocessor_url, Outcome.UNVERIFIABLE, reason=str(exc))
        _measurement, expiry, revoked, _simulated, _key = self.registry.functions.signerInfo(signer).call()
        live = expiry > now and not revoked
        try:
            registration = self.evaluate(doc, self._chain_id, self.registry_address, now)
        except AttestationError as exc:
            if exc.revoke and live:
                self.gatekeeper.send(self.registry.functions.revokeSigner(signer))
                log.warning("revoked %s (%s): %s", signer, coprocessor_url, exc)
                return CheckResult(coprocessor_url, Outcome.REVOKED, signer, reason=str(exc))
            outcome = Outcome.REFUSED if exc.revoke else Outcome.UNVERIFIABLE
            log.warning("%s %s: %s", outcome.value, coprocessor_url, exc)
            return CheckResult(coprocessor_url, outcome, signer, reason=str(exc))
        if revoked:
            reason = "signer was revoked; the enclave needs a new key"
            return CheckResult(coprocessor_url, Outcome.REFUSED, signer, reason=reason)
        endpoint = self.endpoints.get(coprocessor_url)
        if live and expiry - now > self.renew_margin:
            published = None
            if endpoint is not None and self.registry.functions.signerEndpoint(signer).call() != endpoint:
                self.gatekeeper.send(self.registry.functions.setSignerEndpoint(signer, endpoint))
                log.info("published endpoint %s for %s", endpoint, signer)
                published = endpoint
            return CheckResult(coprocessor_url, Outcome.FRESH, signer, expiry, endpoint=published)
        self._register(registration, endpoint)
        outcome = Outcome.RENEWED if expiry else Outcome.REGISTERED
        log.info(
            "%s %s (%s) until %d%s",
            outcome.value,
            signer,
            coprocessor_url,
            registration.expiry,
            f", endpoint {endpoint}" if endpoint else "",
        )
        return CheckResult(coprocessor_url, outcome, signer, registration.expiry, endpoint=endpoint)

    def rotate(self, coprocessor_url: str, timeout: float = 30.0) -> Rotation:
        """Rotate a coprocessor's keys (docs/confidentiality.md, "Key rotation").

        The enclave makes a pending key set; its attestation is verified like any other and the new signer
        registered; then the enclave makes it current and keeps the old HPKE keys until the old
        registration's expiry. Raises ``AttestationError`` (nothing activated) if the pending keys do not
        verify, ``RuntimeError`` if the coprocessor refuses a step.
        """
        base = coprocessor_url.rstrip("/")
        current = fetch_attestation(coprocessor_url, self._chain_id, self.registry_address)
        old_signer = to_checksum_address(current["signer"])
        _measurement, old_expiry, _revoked, _simulated, _key = self.registry.functions.signerInfo(old_signer).call()
        _post(f"{base}/v1/keys/rotate", None, timeout, self.admin_token)
        doc = fetch_attestation(coprocessor_url, self._chain_id, self.registry_address, keys="pending")
        now = self.gatekeeper.w3.eth.get_block("latest")["timestamp"]
        registration = self.evaluate(doc, self._chain_id, self.registry_address, now)
        self._register(registration, self.endpoints.get(coprocessor_url))
        retire = {"signer": registration.signer, "retireAt": int(old_expiry)}
        _post(f"{base}/v1/keys/activate", retire, timeout, self.admin_token)
        log.info(
            "rotated %s: %s -> %s; old HPKE keys kept until %d",
            coprocessor_url,
            old_signer,
            registration.signer,
            old_expiry,
        )
        return Rotation(coprocessor_url, old_signer, registration.signer, registration.expiry, int(old_expiry))

    def _register(self, registration: Registration, endpoint: str | None = None) -> None:
        self.forget_expired(registration.measurement, keep=registration.signer)
        args = (
            registration.signer,
            registration.measurement,
            registration.expiry,
            registration.simulated,
            registration.hpke_keys,
        )
        if endpoint is None:
            self.gatekeeper.send(self.registry.functions.registerSigner(*args))
        else:
            self.gatekeeper.send(self.registry.functions.registerSignerWithEndpoint(*args, endpoint))

    def forget_expired(self, measurement: bytes, keep: str | None = None) -> list[str]:
        """Drop the expired signers of ``measurement`` from the registry's list (``forgetExpiredSigner``), which
        holds at most ``MAX_SIGNERS_PER_MEASUREMENT``: without it, rotations and replaced enclaves would fill it
        and the next registration would revert. ``keep`` (the signer about to be renewed) is left alone. Returns
        the signers forgotten."""
        now = self.gatekeeper.w3.eth.get_block("latest")["timestamp"]
        forgotten = []
        for signer in self.registry.functions.signersOf(measurement).call():
            if keep is not None and signer.lower() == keep.lower():
                continue
            expiry = self.registry.functions.signerInfo(signer).call()[1]
            if expiry <= now:
                self.gatekeeper.send(self.registry.functions.forgetExpiredSigner(signer))
                forgotten.append(signer)
                log.info("forgot expired signer %s (measurement 0x%s)", signer, measurement.hex())
        return forgotten

    def registry_view(self, signer: str | None) -> Registration:
        """What the registry records for ``signer`` now."""
        if signer is None:
            raise ValueError("no signer")
        measurement, expiry, _revoked, simulated, key = self.registry.functions.signerInfo(signer).call()
        return Registration(signer, bytes(measurement), expiry, simulated, bytes(key))

    def check_all(self) -> list[CheckResult]:
        """Check every coprocessor; one failing never stops the others."""
        results = []
        for url in self.coprocessors:
            try:
                results.append(self.check(url))
            except Exception as exc:  # a flaky RPC must not stop the loop
                log.warning("check of %s failed: %s", url, exc)
                results.append(CheckResult(url, Outcome.UNVERIFIABLE, reason=str(exc)))
        return results

    def run_forever(self) -> None:
        """Run :meth:`check_all` every ``check_interval`` seconds until SIGTERM/SIGINT."""
        run_every(self.check_interval, self.check_all)
