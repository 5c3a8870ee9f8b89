"""A pool of coprocessors (several attested enclaves) behind the relayer: load balancing and failover.

Each call goes to the healthy member with the fewest calls in flight (ties: round-robin). A member that is
unreachable, times out or answers 5xx/503 is put aside for a cool-down that doubles with each consecutive
failure (up to :data:`MAX_COOLDOWN_SECONDS`) and the same call is tried on the next member; it is probed again
when its cool-down ends. A refusal (4xx: the request itself is bad) is not the member's fault and is raised
as it is. When every member fails the call fails as retryable, and the relayer tries again later.

The pool only spreads work: which enclave may answer which job is the chain's business. A result from an
enclave the registry does not (or no longer) accept fails the relayer's simulation before any gas is spent
and the request is retried, the next time on another member.

Members come from configuration (``--coprocessor``: fixed for the process's life) and, with ``--discover``,
from the registry (``relayer.discovery``: replaced as a whole by :meth:`CoprocessorPool.set_discovered`).
A discovered member is pinned to the signer the registry lists for its endpoint: if it ever answers with
results signed by another key, those results are not used, the call fails over, and the member is refused
until the registry lists another signer for that endpoint.

A member whose key the registry no longer holds live (revoked, expired: ``relayer.signer_liveness``, learnt when
the Router refuses one of its results) is given no more requests to execute: its results would be refused. The
pool learns each member's key from its answers (a discovered member's is its pinned signer); results signed with
an excluded key are thrown away and the call goes to the next member, without a cool-down (the member is fine, its
key is not). A configured member holding an excluded key is asked ``GET /v1/health`` now and then
(:data:`KEY_RECHECK_SECONDS`), so one restarted with a new key is used again. When no member is left with a live
key the call fails with :class:`NoLiveSignerError` (retryable: the requests wait, and an enclave registered or
discovered meanwhile takes them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from relayer.coprocessor_client import CoprocessorClient, CoprocessorError
from relayer.signer_liveness import SignerLiveness
from relayer.store import StoredRequest
from verifier.hexutil import to_checksum_address
from verifier.signed_result import SignedResult

log = logging.getLogger("teebridge.relayer.pool")

BASE_COOLDOWN_SECONDS = 2.0
MAX_COOLDOWN_SECONDS = 60.0
#: Seconds between two ``GET /v1/health`` of a configured member whose key is excluded (was it given a new one?).
KEY_RECHECK_SECONDS = 30.0
T = TypeVar("T")


class NoLiveSignerError(CoprocessorError):
    """Every member of the pool holds a key the registry no longer accepts (or failed): nothing can execute now."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class _StaleKeyError(Exception):
    """A member answered with results signed by an excluded key (internal: the call moves to the next member)."""


CONFIGURED = "configured"
DISCOVERED = "discovered"


@dataclass
class _Member:
    client: CoprocessorClient
    origin: str = CONFIGURED
    signer: str | None = None
    """For a discovered member: the only signer whose results are accepted from it."""
    failures: int = 0
    down_until: float = 0.0
    in_flight: int = 0
    removed: bool = False
    holds: str | None = None
    """The key it signed its last results with (or reported in ``/v1/health``), once known."""
    measurement: bytes | None = None
    """The measurement of its last results, once known."""
    recheck_at: float = 0.0
    """When its ``/v1/health`` may be asked again while its key is excluded."""


class CoprocessorPool:
    """Several coprocessors used as one; thread-safe."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        discovery: bool = False,
        clock: Callable[[], float] = time.monotonic,
        liveness: SignerLiveness | None = None,
    ) -> None:
        if not urls and not discovery:
            raise ValueError("a coprocessor pool needs at least one URL (--coprocessor) or discovery (--discover)")
        self._members = [_Member(CoprocessorClient(url)) for url in dict.fromkeys(urls)]
        self._clock = clock
        self._lock = threading.Lock()
        self._turn = 0
        self._refused: set[tuple[str, str]] = set()
        self._retired: list[_Member] = []
        self.liveness = liveness
        """The signers found not live; their members get no work (None: every member is used)."""
        self._stale_warned: set[tuple[str, str, str]] = set()

    @property
    def urls(self) -> list[str]:
        """The members' base URLs."""
        with self._lock:
            return [m.client.base_url for m in self._members]

    def set_discovered(self, endpoints: dict[str, str]) -> tuple[list[str], list[str]]:
        """Make the discovered members exactly ``endpoints`` (base URL -> the signer the registry lists for it).

        Configured members stay as they are (a URL configured and discovered is used once, unpinned); an
        endpoint refused for answering with another key stays out while the registry lists the same signer.
        Returns the URLs added and removed.
        """
        with self._lock:
            # out for a whole refresh interval and idle: nothing can still be using them
            idle = [m for m in self._retired if m.in_flight == 0]
            self._retired = [m for m in self._retired if m.in_flight]
            for member in idle:
                member.client.close()
            current = {m.client.base_url: m for m in self._members if m.origin == DISCOVERED}
            configured = {m.client.base_url for m in self._members if m.origin == CONFIGURED}
            wanted = {
                url: signer
                for url, signer in endpoints.items()
                if url not in configured and (url, signer) not in self._refused
            }
            removed = [url for url, m in current.items() if wanted.get(url) != m.signer]
            added = [url for url, signer in wanted.items() if url not in current or url in removed]
            keep = [m for m in self._members if not (m.origin == DISCOVERED and m.client.base_url in removed)]
            for url in removed:
                self._retire(current[url])
            self._members = keep + [
                _Member(CoprocessorClient(url), origin=DISCOVERED, signer=wanted[url]) for url in added
            ]
        return added, removed

    def execute(self, chain_id: int, router: str, requests: list[StoredRequest]) -> list[SignedResult]:
        """``POST /v1/execute`` on one member, failing over to the others (see the module docstring)."""
        jobs = {r.job_id for r in requests}
        return self._call(
            lambda client: client.execute(chain_id, router, requests),
            check=lambda member, results: self._check_results(member, requests, results),
            skip=lambda member: self._stale_member(member, jobs),
        )

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
            if member.removed:
                continue
            answer = member.client.forward(path, body)
            if answer[0] == 200:
                return answer
        return answer

    def health(self) -> dict[str, Any]:
        """``GET /v1/health`` of the first member that answers."""
        return self._call(lambda client: client.health())

    def status(self) -> list[dict[str, Any]]:
        """Per member: URL, origin (configured or discovered), pinned signer, consecutive failures, seconds until
        it is tried again, calls in flight."""
        now = self._clock()
        with self._lock:
            return [
                {
                    "url": m.client.base_url,
                    "origin": m.origin,
                    "signer": m.signer,
                    "failures": m.failures,
                    "available_in_seconds": round(max(0.0, m.down_until - now), 3),
                    "in_flight": m.in_flight,
                    "holds": m.signer or m.holds,
                    "excluded": self._excluded_key(m),
                }
                for m in self._members
            ]

    def live_members(self) -> int:
        """How many members are not known to hold an excluded key (for ``/health``)."""
        with self._lock:
            return sum(1 for m in self._members if self._excluded_key(m) is None)

    def counts(self) -> dict[str, int]:
        """How many members came from each origin (``configured``, ``discovered``)."""
        with self._lock:
            return {origin: sum(1 for m in self._members if m.origin == origin) for origin in (CONFIGURED, DISCOVERED)}

    def close(self) -> None:
        """Close every member's connection pool."""
        with self._lock:
            members, self._members, self._retired = self._members + self._retired, [], []
        for member in members:
            member.client.close()

    # ---------------------------------------------------------------- internals

    def _ordered(self, *, take_turn: bool = False) -> list[_Member]:
        """Healthy members (fewest in flight first, ties round-robin), then the resting ones (soonest back first).

        Only load-balanced calls (``take_turn``) move the round-robin on: a lookup that merely walks the members
        (a secret upload, a batch signature) must not, or two members would see every other call only.
        """
        now = self._clock()
        with self._lock:
            if take_turn:
                self._turn += 1
            up = [m for m in self._members if m.down_until <= now]
            start = self._turn % len(up) if up else 0
            healthy = sorted(up[start:] + up[:start], key=lambda m: m.in_flight)  # stable: round-robin on ties
            resting = sorted((m for m in self._members if m.down_until > now), key=lambda m: m.down_until)
        return healthy + resting

    def _call(
        self,
        action: Callable[[CoprocessorClient], T],
        check: Callable[[_Member, T], None] | None = None,
        skip: Callable[[_Member], str | None] | None = None,
    ) -> T:
        failures: list[str] = []
        stale: list[str] = []
        for member in self._ordered(take_turn=True):
            with self._lock:
                if member.removed:
                    continue
            why = skip(member) if skip is not None else None
            if why is not None:
                stale.append(f"{member.client.base_url}: {why}")
                continue
            with self._lock:
                member.in_flight += 1
            try:
                result = action(member.client)
                if check is not None:
                    check(member, result)
            except _StaleKeyError as exc:
                stale.append(f"{member.client.base_url}: {exc}")
                continue
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
        if stale and not failures:
            raise NoLiveSignerError("no coprocessor whose results the registry accepts: " + "; ".join(stale))
        if not failures:
            raise CoprocessorError(
                "no coprocessor in the pool: none configured (--coprocessor) and none discovered yet (--discover"
                " keeps looking in the registry)",
                retryable=True,
            )
        raise CoprocessorError("every coprocessor failed: " + "; ".join(failures + stale), retryable=True)

    def _excluded_key(self, member: _Member) -> str | None:
        """Why ``member``'s key (pinned or last seen) is excluded, or None (lock held or not: reads only)."""
        key = member.signer or member.holds
        if key is None or self.liveness is None:
            return None
        why = self.liveness.known_not_live(key)
        return None if why is None else f"holds signer {key}, {why}"

    def _stale_member(self, member: _Member, jobs: set[bytes]) -> str | None:
        """Why ``member`` must not execute requests of ``jobs`` now (it holds an excluded key, or runs a measurement
        one of them does not approve); None if it may.

        A configured member's key may have been replaced (the enclave restarted with a new one): its
        ``/v1/health`` is asked at most every :data:`KEY_RECHECK_SECONDS`, and a new key lifts the exclusion.
        """
        why = self._excluded_key(member)
        if why is None:
            if self.liveness is None or member.measurement is None:
                return None
            refusing = sorted(j for j in jobs if self.liveness.known_unapproved(j, member.measurement))
            if not refusing:
                return None
            return f"runs measurement 0x{member.measurement.hex()}, which job 0x{refusing[0].hex()} does not approve"
        if member.signer is not None or self._clock() < member.recheck_at:
            return why
        member.recheck_at = self._clock() + KEY_RECHECK_SECONDS
        try:
            reported = to_checksum_address(str(member.client.health().get("signer", "")))
        except (CoprocessorError, ValueError, TypeError):
            return why
        if member.holds is not None and reported.lower() != member.holds.lower():
            log.info("coprocessor %s now holds signer %s (was %s)", member.client.base_url, reported, member.holds)
            member.holds = reported
            member.measurement = None  # a new key may come with a new image: learnt from its next answer
        return self._excluded_key(member)

    def _check_results(self, member: _Member, requests: list[StoredRequest], results: list[SignedResult]) -> None:
        """Refuse results from a discovered member that signed with another key than its pinned one (the member is
        dropped), or that are stale (an excluded key, or a measurement the job does not approve): they are thrown
        away and the member is skipped from now on for what made them stale."""
        self._pinned_signer(member, results)
        if not results:
            return
        member.holds = results[-1].signer
        member.measurement = results[-1].measurement
        if self.liveness is None:
            return
        stale: dict[str, str] = {}
        for request, result in zip(requests, results, strict=False):
            why = self.liveness.known_stale(result.signer, request.job_id, result.measurement)
            if why is not None:
                stale.setdefault(result.signer, why)
        if not stale:
            return
        url = member.client.base_url
        for signer, why in stale.items():
            if (url, signer.lower(), why) not in self._stale_warned:
                self._stale_warned.add((url, signer.lower(), why))
                log.warning(
                    "coprocessor %s signs with %s, whose results the registry no longer accepts (%s): it gets no more"
                    " such work; restart it with a new key (or an approved image) and have the gatekeeper register"
                    " it, or remove it",
                    url,
                    signer,
                    why,
                )
        raise _StaleKeyError(", ".join(f"signed with {signer}, {why}" for signer, why in stale.items()))

    def _pinned_signer(self, member: _Member, results: list[SignedResult]) -> None:
        """A discovered member must sign with the key the registry lists for its endpoint; else refuse it."""
        if member.signer is None:
            return
        wrong = {r.signer for r in results if r.signer.lower() != member.signer.lower()}
        if not wrong:
            return
        url = member.client.base_url
        with self._lock:
            self._refused.add((url, member.signer))
            if member in self._members:
                self._members.remove(member)
                self._retire(member)
        log.warning(
            "removed discovered coprocessor %s: it signed with %s, but the registry lists %s for it",
            url,
            ", ".join(sorted(wrong)),
            member.signer,
        )
        raise CoprocessorError(f"coprocessor {url} signed with another key than its registered one", retryable=True)

    def _retire(self, member: _Member) -> None:
        """Mark ``member`` out (lock held). Its client stays open until the next :meth:`set_discovered` finds it
        idle (or :meth:`close`): a call that picked it just before may still be using it."""
        member.removed = True
        self._retired.append(member)

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
