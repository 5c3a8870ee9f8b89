"""RPC failover: one web3 provider over several JSON-RPC URLs of the same chain, with per-URL health and jitter.

:class:`FailoverProvider` sends each request to the first healthy URL, in the order given. A URL that fails at the
transport level (connection refused or reset, timeout, HTTP 5xx/429, an unreadable answer) is marked down for a
backoff that doubles with each consecutive failure (capped), and the request goes on to the next URL; a URL whose
backoff has passed is tried again first (its order is its priority), and one success makes it healthy. When every
URL failed, the provider waits a jittered, growing delay and tries them all again, ``rounds`` times in all, then
raises :class:`RpcUnavailableError`. A JSON-RPC *error answer* (a revert, "nonce too low", "already known") is an
answer: it is returned to web3 as is, never retried elsewhere.

Every request the relayer makes is safe to repeat: reads, and ``eth_sendRawTransaction`` of bytes already persisted
(a second broadcast of the same signed transaction is "already known" at worst). Each URL must serve the same
chain: :meth:`FailoverProvider.check_chain_ids` checks at start, and a URL that could not be checked then is checked
the first time it is used (and disabled for good if its chain id differs).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from web3 import HTTPProvider
from web3.providers.base import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

log = logging.getLogger("teebridge.relayer.rpc")


class RpcUnavailableError(ConnectionError):
    """No RPC URL answered, after every retry."""


class ChainIdMismatchError(ValueError):
    """The RPC URLs do not all serve the same chain."""


@dataclass
class Endpoint:
    """One RPC URL and its health."""

    url: str
    provider: HTTPProvider
    failures: int = 0
    """Consecutive transport failures (0 = healthy)."""
    down_until: float = 0.0
    """Monotonic time before which the URL is only tried when no healthy one is left."""
    chain_checked: bool = False
    disabled: str | None = None
    """Why the URL is never used again (it serves another chain), or None."""


def split_urls(urls: str | Sequence[str]) -> tuple[str, ...]:
    """``urls`` as a tuple: each entry may itself be a comma-separated list; blanks are dropped."""
    items = [urls] if isinstance(urls, str) else list(urls)
    out = tuple(u.strip() for item in items for u in item.split(",") if u.strip())
    if not out:
        raise ValueError("give at least one RPC URL")
    return out


def redact_url(url: str) -> str:
    """The URL without a path or query (providers often put an API key there), for logs."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].split("@")[-1]
    return f"{scheme}://{host}" + ("/..." if "/" in rest.strip("/") else "")


class FailoverProvider(JSONBaseProvider):
    """A synchronous web3 provider over several RPC URLs of one chain (see the module docstring)."""

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        timeout: float = 10.0,
        rounds: int = 5,
        base_backoff: float = 1.0,
        max_backoff: float = 30.0,
        retry_delay: float = 0.25,
    ) -> None:
        super().__init__()
        self.endpoints = [
            Endpoint(url, HTTPProvider(url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None))
            for url in split_urls(urls)
        ]
        self.rounds = max(1, rounds)
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.retry_delay = retry_delay
        self.expected_chain_id: int | None = None
        self._lock = threading.Lock()

    @property
    def urls(self) -> tuple[str, ...]:
        """The URLs, in priority order."""
        return tuple(e.url for e in self.endpoints)

    def __str__(self) -> str:
        return f"FailoverProvider({', '.join(redact_url(u) for u in self.urls)})"

    # ---------------------------------------------------------------- chain id

    def check_chain_ids(self) -> int:
        """Ask every URL for its chain id; return it. Raise :class:`ChainIdMismatchError` if two differ, and
        :class:`RpcUnavailableError` if none answers. A URL that does not answer now is checked on first use."""
        seen: dict[str, int] = {}
        for endpoint in self.endpoints:
            try:
                seen[endpoint.url] = self._chain_id_of(endpoint)
            except Exception as exc:  # down at start: checked when it is first used
                log.warning(
                    "RPC %s did not answer eth_chainId at start (%s); checked on first use",
                    redact_url(endpoint.url),
                    exc,
                )
                continue
            endpoint.chain_checked = True
        if not seen:
            raise RpcUnavailableError(
                f"no RPC URL answered eth_chainId ({', '.join(redact_url(u) for u in self.urls)}): check --rpc-url"
                " and that the nodes are running"
            )
        if len(set(seen.values())) > 1:
            listing = ", ".join(f"{redact_url(u)} -> {c}" for u, c in seen.items())
            raise ChainIdMismatchError(f"the RPC URLs serve different chains ({listing}): give URLs of one chain only")
        self.expected_chain_id = next(iter(seen.values()))
        return self.expected_chain_id

    def _chain_id_of(self, endpoint: Endpoint, attempts: int | None = None) -> int:
        """The URL's chain id, asked up to ``attempts`` times (default ``rounds``; jittered pauses between)."""
        attempts = attempts or self.rounds
        for round_ in range(attempts):
            try:
                response = endpoint.provider.make_request(RPCEndpoint("eth_chainId"), [])
                if "error" in response:
                    raise ValueError(f"eth_chainId failed: {response['error']}")
                return int(response["result"], 16)
            except (OSError, ValueError):
                if round_ == attempts - 1:
                    raise
                time.sleep(self.retry_delay * 2**round_ * random.uniform(0.5, 1.5))
        raise AssertionError("unreachable")

    def _verify(self, endpoint: Endpoint) -> None:
        """Check a URL that was down at start the first time it answers; disable it if it serves another chain."""
        if endpoint.chain_checked or self.expected_chain_id is None:
            return
        chain_id = self._chain_id_of(endpoint, attempts=1)  # a failure here counts as the URL's failure
        endpoint.chain_checked = True
        if chain_id != self.expected_chain_id:
            endpoint.disabled = f"chain id {chain_id}, not {self.expected_chain_id}"
            log.error(
                "RPC %s serves chain %d, not %d: never using it; fix --rpc-url",
                redact_url(endpoint.url),
                chain_id,
                self.expected_chain_id,
            )
            raise ChainIdMismatchError(endpoint.disabled)

    # ---------------------------------------------------------------- requests

    def _order(self) -> list[Endpoint]:
        """Healthy URLs in the given order, then those backing off (soonest back first); never disabled ones."""
        now = time.monotonic()
        usable = [e for e in self.endpoints if e.disabled is None]
        healthy = [e for e in usable if e.down_until <= now]
        resting = sorted((e for e in usable if e.down_until > now), key=lambda e: e.down_until)
        return healthy + resting

    def _failed(self, endpoint: Endpoint, method: str, exc: BaseException) -> None:
        with self._lock:
            endpoint.failures += 1
            backoff = min(self.max_backoff, self.base_backoff * 2 ** (endpoint.failures - 1))
            endpoint.down_until = time.monotonic() + backoff * random.uniform(0.8, 1.2)
        log.warning(
            "RPC %s failed on %s (%s: %s); backing off it for %.1fs",
            redact_url(endpoint.url),
            method,
            type(exc).__name__,
            str(exc)[:160],
            backoff,
        )

    def _succeeded(self, endpoint: Endpoint) -> None:
        if endpoint.failures:
            log.info("RPC %s answers again", redact_url(endpoint.url))
        with self._lock:
            endpoint.failures = 0
            endpoint.down_until = 0.0

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        """Send one JSON-RPC request to the first URL that answers (see the module docstring)."""
        last: BaseException | None = None
        for round_ in range(self.rounds):
            if round_:
                time.sleep(self.retry_delay * 2 ** (round_ - 1) * random.uniform(0.5, 1.5))
            for endpoint in self._order():
                try:
                    self._verify(endpoint)
                    response = endpoint.provider.make_request(method, params)
                except ChainIdMismatchError as exc:
                    last = exc
                    continue
                except (OSError, ValueError) as exc:  # requests' errors are OSErrors; ValueError: unreadable JSON
                    last = exc
                    self._failed(endpoint, method, exc)
                    continue
                self._succeeded(endpoint)
                return response
        raise RpcUnavailableError(
            f"{method}: no RPC URL answered after {self.rounds} rounds"
            f" ({', '.join(redact_url(u) for u in self.urls)}); last error: {last}. Check the nodes and --rpc-url"
        )

    def is_connected(self, show_traceback: bool = False) -> bool:
        """Whether any URL answers ``web3_clientVersion``."""
        try:
            self.make_request(RPCEndpoint("web3_clientVersion"), [])
        except RpcUnavailableError:
            if show_traceback:
                raise
            return False
        return True
