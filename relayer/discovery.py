"""Coprocessors discovered from the registry (``relayer --discover``; docs/relayer.md, "Discovery").

The gatekeeper may publish, next to each signer it registers, the public URL of the enclave's coprocessor
(``EnclaveRegistry.SignerEndpointSet``). Each :meth:`RegistryDiscovery.refresh`:

1. reads the ``SignerEndpointSet`` logs since the last refresh (overlapping the last
   :data:`REORG_OVERLAP` blocks, so a reorg cannot hide one) to learn which signers ever published one;
2. reads the current state of each through the registry's views (``signerInfo``, ``signerEndpoint``,
   ``simulatedAttestationsAllowed``): a signer is live when registered, not revoked, not expired at the
   latest block's time, and not simulated unless the registry accepts simulated signers;
3. asks each live signer's endpoint ``GET /v1/health`` and keeps the endpoint only if the enclave there
   reports that very signer (and the registered measurement). An endpoint that cannot be reached keeps
   the verdict of its last check (the pool's cool-down deals with a member that is down).

The logs are only a list of names to look up: what counts is the registry's state at the latest block,
read again on every refresh. The endpoint is advisory. It lets the relayer find an enclave, and nothing
more: every fulfilment is still checked on chain (``isAuthorized``), so a wrong URL can only waste work,
which the identity check above and the pool's signer pinning keep small.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from web3.contract import Contract

from verifier.hexutil import to_checksum_address

log = logging.getLogger("teebridge.relayer.discovery")

#: The longest endpoint the registry stores (``EnclaveRegistry.MAX_ENDPOINT_LENGTH``).
MAX_ENDPOINT_LENGTH = 256
#: Blocks of logs read per ``eth_getLogs`` call.
LOG_CHUNK = 5_000
#: Blocks read again on each refresh, so an endpoint set in a block that a reorg replaced is not missed.
REORG_OVERLAP = 64
#: Seconds to wait for an endpoint's ``/v1/health``.
PROBE_TIMEOUT = 3.0

#: (endpoint) -> its ``GET /v1/health`` document; raises httpx.HTTPError or ValueError when it cannot answer.
Probe = Callable[[str], dict[str, Any]]


def normalize_endpoint(url: str) -> str:
    """``url`` as a pool member's base URL (no trailing slash); ValueError if it is not an http(s) base URL."""
    if len(url.encode()) > MAX_ENDPOINT_LENGTH:
        raise ValueError(f"endpoint is longer than {MAX_ENDPOINT_LENGTH} bytes")
    if any(c.isspace() for c in url):
        raise ValueError(f"endpoint {url!r} contains whitespace")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"endpoint {url!r} is not an http:// or https:// URL with a host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"endpoint {url!r} must be a plain base URL (no credentials, query or fragment)")
    return url.rstrip("/")


def probe_health(endpoint: str) -> dict[str, Any]:
    """``GET <endpoint>/v1/health`` (the coprocessor's signer and measurement)."""
    response = httpx.get(endpoint + "/v1/health", timeout=PROBE_TIMEOUT)
    response.raise_for_status()
    document = response.json()
    if not isinstance(document, dict):
        raise ValueError("/v1/health did not answer a JSON object")
    return document


@dataclass
class DiscoveryReport:
    """What one refresh found."""

    endpoints: dict[str, str] = field(default_factory=dict)
    """Verified endpoints: base URL -> the live signer whose enclave answers there."""
    refused: dict[str, str] = field(default_factory=dict)
    """Endpoints of live signers left out, with the reason (wrong key, malformed URL, never reachable)."""
    candidates: int = 0
    """Signers that ever published an endpoint and were not revoked."""
    block: int = 0
    """The block whose state this reflects."""


class RegistryDiscovery:
    """Finds live enclaves' endpoints in one registry; :meth:`refresh` is cheap enough to call every 30 s."""

    def __init__(
        self, registry: Contract, *, start_block: int = 0, probe: Probe = probe_health, chunk: int = LOG_CHUNK
    ) -> None:
        self.registry = registry
        self._start_block = max(0, start_block)
        self._scanned_to: int | None = None
        self._probe = probe
        self._chunk = max(1, chunk)
        self._candidates: set[str] = set()
        self._verified: dict[tuple[str, str], bool] = {}
        self._reported: dict[tuple[str, str], str] = {}

    def refresh(self) -> DiscoveryReport:
        """Read new logs and the registry's current state; verify the live endpoints (see the module docstring)."""
        w3 = self.registry.w3
        head = w3.eth.get_block("latest")
        self._scan(int(head["number"]))
        now = int(head["timestamp"])
        block = int(head["number"])
        simulated_ok = bool(self.registry.functions.simulatedAttestationsAllowed().call(block_identifier=block))
        report = DiscoveryReport(block=block)
        live: list[tuple[str, str, bytes]] = []
        for signer in sorted(self._candidates):
            measurement, expiry, revoked, simulated, _keys = self.registry.functions.signerInfo(signer).call(
                block_identifier=block
            )
            if revoked:  # for good: a revoked signer can never be registered again
                self._candidates.discard(signer)
                self._forget(signer)
                continue
            endpoint = self.registry.functions.signerEndpoint(signer).call(block_identifier=block)
            if expiry <= now or (simulated and not simulated_ok) or not endpoint:
                self._forget(signer)
                continue
            live.append((signer, endpoint, bytes(measurement)))
        report.candidates = len(self._candidates)
        for signer, endpoint, measurement in live:
            try:
                url = normalize_endpoint(endpoint)
            except ValueError as exc:
                self._refuse(report, endpoint, signer, str(exc))
                continue
            reason = self._verify(url, signer, measurement)
            if reason is None:
                report.endpoints.setdefault(url, signer)
                self._reported.pop((url, signer), None)
            else:
                self._refuse(report, url, signer, reason)
        return report

    # ---------------------------------------------------------------- internals

    def _scan(self, head: int) -> None:
        """Add the signers of ``SignerEndpointSet`` logs up to ``head`` to the candidates."""
        start = self._start_block
        if self._scanned_to is not None:
            start = max(start, self._scanned_to + 1 - REORG_OVERLAP)
        event = self.registry.events.SignerEndpointSet()
        while start <= head:
            end = min(head, start + self._chunk - 1)
            for entry in event.get_logs(from_block=start, to_block=end):
                self._candidates.add(to_checksum_address(entry["args"]["signer"]))
            start = end + 1
            self._scanned_to = end

    def _verify(self, url: str, signer: str, measurement: bytes) -> str | None:
        """None if the enclave at ``url`` holds ``signer``'s key (and runs ``measurement``); else why not."""
        key = (url, signer)
        try:
            health = self._probe(url)
            holder = to_checksum_address(str(health.get("signer", "")))
            claimed = bytes.fromhex(str(health.get("measurement", "")).removeprefix("0x"))
        except (httpx.HTTPError, ValueError, TypeError) as exc:
            if self._verified.get(key):
                return None  # verified before and merely down now: the pool's cool-down handles it
            return f"unreachable ({exc}); will try again"
        if holder != signer:
            self._verified[key] = False
            return f"the enclave there holds {holder}, not {signer}"
        if claimed != measurement:
            self._verified[key] = False
            return f"the enclave there runs measurement 0x{claimed.hex()}, not the registered 0x{measurement.hex()}"
        self._verified[key] = True
        return None

    def _refuse(self, report: DiscoveryReport, url: str, signer: str, reason: str) -> None:
        report.refused[url] = f"{signer}: {reason}"
        if self._reported.get((url, signer)) != reason:
            self._reported[(url, signer)] = reason
            log.warning("not using endpoint %s of signer %s: %s", url, signer, reason)

    def _forget(self, signer: str) -> None:
        for key in [k for k in self._verified if k[1] == signer]:
            del self._verified[key]
        for key in [k for k in self._reported if k[1] == signer]:
            del self._reported[key]
