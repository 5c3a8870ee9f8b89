"""A pool of coprocessors (several attested enclaves) behind the relayer: load balancing and failover.

Each call goes to the healthy member with the fewest calls in flight (ties: round-robin). A member that is
unreachable, times out or answers 5xx/503 is put aside for a cool-down that doubles with each consecutive
failure (up to :data:`MAX_COOLDOWN_SECONDS`) and the same call is tried on the next member; it is probed again
when its cool-down ends. A refusal (4xx: the request itself is bad) is not the member's fault and is raised
as it is. When every member fails the call fails as retryable, and the relayer tries again later.

The pool only spreads work: which enclave may answer which job is the chain's business. A result from an
enclave the registry does not (or no longer) accept fails the relayer's simulation before any gas is spent
and the request is retried, the next time on another member.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from relayer.coprocessor_client import CoprocessorClient, CoprocessorError
from relayer.store import StoredRequest
from verifier.signed_result import SignedResult

log = logging.getLogger("teebridge.relayer.pool")

BASE_COOLDOWN_SECONDS = 2.0
MAX_COOLDOWN_SECONDS = 60.0
T = TypeVar("T")


@dataclass
class _Member:
    client: CoprocessorClient
    failures: int = 0
    down_until: float = 0.0
    in_flight: int = 0


class CoprocessorPool:
    """Several coprocessors used as one; thread-safe."""

    def __init__(self, urls: Sequence[str], *, clock: Callable[[], float] = time.monotonic) -> None:
        if not urls:
            raise ValueError("a coprocessor pool needs at least one URL (--coprocessor)")
        self._members = [_Member(CoprocessorClient(url)) for url in dict.fromkeys(urls)]
        self._clock = clock
        self._lock = threading.Lock()
        self._turn = 0

    @property
    def urls(self) -> list[str]:
        """The members' base URLs."""
        return [m.client.base_url for m in self._members]

    def execute(self, chain_id: int, router: str, requests: list[StoredRequest]) -> list[SignedResult]:
        """``POST /v1/execute`` on one member, failing over to the others (see the module docstring)."""
        return self._call(lambda client: client.execute(chain_id, router, requests))

    def sign_batch(self, chain_id: int, router: str, results: list[SignedResult]) -> bytes | None:
        """One batch signature over ``results`` from the member whose key signed them; None if none can.

        A member holding another key refuses (409) and the next is asked; that is not a failure of the member.
        """
        for member in self._ordered():
            try:
                return member.client.sign_batch(chain_id, router, results)
            except CoprocessorError as exc:
                if exc.retryable:
                    self._failed(member, str(exc))
        return None

    def forward(self, path: str, body: bytes) -> tuple[int, bytes]:
        """Forward a secret upload to the members in turn until one accepts it (each enclave only opens
        ciphertexts sealed to its own key); the last answer if none does."""
        answer = (502, b'{"error": "no coprocessor answered"}')
        for member in self._ordered():
            answer = member.client.forward(path, body)
            if answer[0] == 200:
                return answer
        return answer

    def health(self) -> dict[str, Any]:
        """``GET /v1/health`` of the first member that answers."""
        return self._call(lambda client: client.health())

    def status(self) -> list[dict[str, Any]]:
        """Per member: URL, consecutive failures, seconds until it is tried again, calls in flight."""
        now = self._clock()
        with self._lock:
            return [
                {
                    "url": m.client.base_url,
                    "failures": m.failures,
                    "available_in_seconds": round(max(0.0, m.down_until - now), 3),
                    "in_flight": m.in_flight,
                }
                for m in self._members
            ]

    def close(self) -> None:
        """Close every member's connection pool."""
        for member in self._members:
            member.client.close()

    # ---------------------------------------------------------------- internals

    def _ordered(self) -> list[_Member]:
        """Healthy members (fewest in flight first, ties round-robin), then the resting ones (soonest back first)."""
        now = self._clock()
        with self._lock:
            self._turn += 1
            up = [m for m in self._members if m.down_until <= now]
            start = self._turn % len(up) if up else 0
            healthy = sorted(up[start:] + up[:start], key=lambda m: m.in_flight)  # stable: round-robin on ties
            resting = sorted((m for m in self._members if m.down_until > now), key=lambda m: m.down_until)
        return healthy + resting

    def _call(self, action: Callable[[CoprocessorClient], T]) -> T:
        failures: list[str] = []
        for member in self._ordered():
            with self._lock:
                member.in_flight += 1
            try:
                result = action(member.client)
            except CoprocessorError as exc:
                if not exc.retryable:
                    raise
                self._failed(member, str(exc))
                failures.append(f"{member.client.base_url}: {exc}")
                continue
            finally:
                with self._lock:
                    member.in_flight -= 1
            self._succeeded(member)
            return result
        raise CoprocessorError("every coprocessor failed: " + "; ".join(failures), retryable=True)

    def _failed(self, member: _Member, reason: str) -> None:
        with self._lock:
            member.failures += 1
            cooldown = min(MAX_COOLDOWN_SECONDS, BASE_COOLDOWN_SECONDS * 2 ** (member.failures - 1))
            member.down_until = self._clock() + cooldown
        if len(self._members) > 1:
            log.warning(
                "coprocessor %s failed (%s); trying another, back in %.0f s", member.client.base_url, reason, cooldown
            )

    def _succeeded(self, member: _Member) -> None:
        with self._lock:
            if member.failures:
                log.info("coprocessor %s is answering again", member.client.base_url)
            member.failures = 0
            member.down_until = 0.0
