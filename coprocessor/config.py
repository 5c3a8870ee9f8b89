"""The coprocessor's settings: one frozen dataclass, filled from defaults, the environment or arguments."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from coprocessor.admin import MIN_ADMIN_TOKEN_LENGTH
from coprocessor.egress import EgressPolicy, parse_networks

ENV_PREFIX = "TEEBRIDGE_COPROCESSOR_"
DEFAULT_DATA_DIR = Path(".teebridge") / "coprocessor"
MIB = 1024 * 1024
DEFAULT_TSM_REPORT_DIR = Path("/sys/kernel/config/tsm/report")
DEFAULT_GRAMINE_ATTESTATION_DIR = Path("/dev/attestation")
SEALING_MODES = ("simulated", "dstack")
"""``sealing`` values: a root secret file in ``data_dir``, or a key from the dstack KMS (``GetKey``)."""
DEFAULT_PRICE_SOURCES: dict[str, tuple[str, ...]] = {
    "ETH/USD": ("coinbase", "kraken", "bitstamp", "gemini", "okx"),
    "BTC/USD": ("coinbase", "kraken", "bitstamp", "gemini", "okx"),
}
"""``price_sources`` when none are configured: USD-quoted venues only (Binance has no USD books; add it as
``binance:ETH/USDT`` to accept the USDT book as a USD proxy)."""


@dataclass(frozen=True, slots=True)
class CoprocessorConfig:
    """Everything the coprocessor needs to start; validated on construction.

    Each field can be set from the environment as ``TEEBRIDGE_COPROCESSOR_<FIELD NAME IN UPPER CASE>``
    (see :meth:`from_env`).
    """

    data_dir: Path
    """Where the sealed keys (``keys.sealed``) and the simulated sealing root (``seal-root.key``) live."""
    host: str = "127.0.0.1"
    port: int = 0
    """TCP port of the HTTP API; 0 lets the OS pick one (the chosen port is printed at start)."""
    attestation: str = "simulated"
    """Name of the quote provider (``coprocessor.attestation.PROVIDERS``): ``simulated``, ``tdx``, ``sgx``,
    ``dstack``, or ``auto`` (detect the TEE; refuses to start where there is none)."""
    sealing: str = "simulated"
    """How ``keys.sealed`` is encrypted (:data:`SEALING_MODES`): ``simulated`` (a root file in ``data_dir``)
    or ``dstack`` (a key the dstack KMS derives for this app)."""
    tsm_report_dir: Path = DEFAULT_TSM_REPORT_DIR
    """The Linux configfs-tsm report directory the ``tdx`` provider uses."""
    gramine_attestation_dir: Path = DEFAULT_GRAMINE_ATTESTATION_DIR
    """Gramine's attestation pseudo-directory the ``sgx`` provider uses."""
    dstack_socket: Path | None = None
    """The dstack guest agent's Unix socket; None: the first of the standard paths that exists
    (``/var/run/dstack.sock``..., then the legacy ``/var/run/tappd.sock``...)."""
    job_timeout_seconds: float = 10.0
    """Default time budget of one job handler, counted from the moment it starts running."""
    max_result_bytes: int = 4096
    """Largest result that goes on-chain as it is. A longer successful result goes off-chain (below)."""
    max_offchain_result_bytes: int = MIB
    """Largest successful result kept off-chain: the chain gets ``abi.encode(bytes32 keccak256(result),
    uint256 length)`` with status RESULT_OFFCHAIN and the relayer keeps the bytes. 0 turns this off;
    anything longer is RESULT_TOO_LARGE."""
    max_batch: int = 256
    """Most requests in one ``POST /v1/execute``."""
    http_max_response_bytes: int = MIB
    """Largest upstream response body the ``http.json`` job reads."""
    http_timeout_seconds: float = 5.0
    """Total time the ``http.json`` job gives an upstream request (also capped by the job budget)."""
    egress_allow: tuple[str, ...] = ()
    """Addresses or CIDR networks outgoing HTTP may reach although they are not public (``coprocessor.egress``:
    loopback, RFC 1918, link-local... are refused otherwise), for every job and price source alike. Empty by
    default; ``127.0.0.1`` is for local tests and demos only. Environment: ``127.0.0.1,10.1.0.0/16``."""
    workers: int = 16
    """Threads that run job handlers."""
    queue_timeout_seconds: float = 60.0
    """How long a job may wait for a free worker before the batch is refused as busy (HTTP 503)."""
    max_request_bytes: int = 8 * MIB
    """Largest HTTP request body the API accepts."""
    price_sources: dict[str, tuple[str, ...]] = dataclass_field(default_factory=lambda: dict(DEFAULT_PRICE_SOURCES))
    """Pair -> the sources the ``price`` job and ``/v1/price-report`` ask. A source is an adapter name
    (``coprocessor.price.adapters.ADAPTERS``) or ``adapter:BASE/QUOTE`` to ask that exchange for another book
    (``binance:ETH/USDT`` for ``ETH/USD``). Each adapter at most once per pair. Environment:
    ``ETH/USD=coinbase,kraken,binance:ETH/USDT;BTC/USD=coinbase,kraken`` (replaces the defaults)."""
    price_base_urls: dict[str, str] = dataclass_field(default_factory=dict)
    """Adapter name -> base URL replacing the exchange's public one (``*`` for every adapter). Environment:
    ``binance=http://127.0.0.1:9000;kraken=http://127.0.0.1:9001`` or ``*=http://127.0.0.1:9000``."""
    price_min_sources: int = 3
    """Fewest quotes a price may be the median of; with fewer there is no price (job failure, HTTP 422)."""
    price_max_deviation: float = 0.02
    """Quotes further than this fraction from the median of the fresh quotes are dropped as outliers."""
    price_max_age_seconds: int = 60
    """Quotes whose exchange timestamp is older than this are dropped as stale."""
    price_timeout_seconds: float = 3.0
    """Time each exchange request gets (also capped by the job budget); a slower source is skipped."""
    models_dir: Path | None = None
    """Registered models for the ``ai.*`` jobs, one ``<model hash>/`` directory each (``teebridge models
    register``); None: ``data_dir/models``. The built-in MiniLM needs no registration."""
    admin_token: str | None = dataclass_field(default=None, repr=False)
    """Token that ``POST /v1/keys/rotate`` and ``/v1/keys/activate`` require (``Authorization: Bearer``), at
    least 16 characters; None: those endpoints answer loopback clients only (``coprocessor.admin``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        for name in ("tsm_report_dir", "gramine_attestation_dir"):
            object.__setattr__(self, name, Path(getattr(self, name)))
        if self.dstack_socket is not None:
            object.__setattr__(self, "dstack_socket", Path(self.dstack_socket))
        object.__setattr__(self, "models_dir", Path(self.models_dir or self.data_dir / "models"))
        if not self.host:
            raise ValueError("host must not be empty")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if not self.attestation:
            raise ValueError("attestation must name a quote provider, e.g. 'simulated'")
        if self.sealing not in SEALING_MODES:
            raise ValueError(f"sealing must be one of {', '.join(SEALING_MODES)}; got {self.sealing!r}")
        for name in ("job_timeout_seconds", "http_timeout_seconds", "queue_timeout_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("max_result_bytes", "max_batch", "http_max_response_bytes", "workers", "max_request_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_offchain_result_bytes < 0:
            raise ValueError(f"max_offchain_result_bytes must be 0 (off) or more, got {self.max_offchain_result_bytes}")
        if self.admin_token is not None and len(self.admin_token) < MIN_ADMIN_TOKEN_LENGTH:
            raise ValueError(f"admin_token must have at least {MIN_ADMIN_TOKEN_LENGTH} characters; short is guessable")
        try:
            object.__setattr__(self, "egress_allow", tuple(str(net) for net in parse_networks(self.egress_allow)))
        except ValueError as exc:
            raise ValueError(f"egress_allow: {exc}") from None
        self._check_price_settings()

    def egress_policy(self) -> EgressPolicy:
        """Where outgoing HTTP may connect: public addresses plus ``egress_allow``."""
        return EgressPolicy(parse_networks(self.egress_allow))

    def _check_price_settings(self) -> None:
        object.__setattr__(self, "price_sources", {k: tuple(v) for k, v in dict(self.price_sources).items()})
        object.__setattr__(self, "price_base_urls", dict(self.price_base_urls))
        if self.price_min_sources < 1:
            raise ValueError(f"price_min_sources must be at least 1, got {self.price_min_sources}")
        if not 0 <= self.price_max_deviation < 1:
            raise ValueError(f"price_max_deviation must be a fraction in [0, 1), got {self.price_max_deviation}")
        if self.price_max_age_seconds < 1:
            raise ValueError(f"price_max_age_seconds must be at least 1, got {self.price_max_age_seconds}")
        if not self.price_timeout_seconds > 0:
            raise ValueError(f"price_timeout_seconds must be positive, got {self.price_timeout_seconds}")
        from coprocessor.price.settings import check_price_sources  # the price package imports this module

        check_price_sources(self.price_sources, self.price_base_urls)
        self._check_base_urls_reachable()

    def _check_base_urls_reachable(self) -> None:
        """Refuse a ``price_base_urls`` entry whose host is an address the egress policy refuses: it could never
        be fetched. (A host name is resolved, and checked, only when fetched.)"""
        policy = self.egress_policy()
        for name, url in self.price_base_urls.items():
            try:
                address = ipaddress.ip_address(urlsplit(url).hostname or "")
            except ValueError:
                continue
            kind = policy.refused_kind(address)
            if kind is not None:
                raise ValueError(
                    f"price_base_urls[{name!r}] points at {address}, a {kind} address the enclave does not fetch; "
                    "add it to egress_allow (TEEBRIDGE_COPROCESSOR_EGRESS_ALLOW) if this is a local test setup"
                )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> CoprocessorConfig:
        """Build a config from ``TEEBRIDGE_COPROCESSOR_*`` variables, then apply ``overrides``.

        ``TEEBRIDGE_COPROCESSOR_DATA_DIR`` defaults to ``.teebridge/coprocessor`` (relative to the working
        directory). An unparsable value raises ``ValueError`` naming the variable.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {"data_dir": DEFAULT_DATA_DIR}
        for field in fields(cls):
            var = ENV_PREFIX + field.name.upper()
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            try:
                values[field.name] = _PARSERS[field.name](raw)
            except ValueError as exc:
                raise ValueError(f"{var}={raw!r} is not valid: {exc}") from exc
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "data_dir": Path,
    "host": str,
    "port": int,
    "attestation": str,
    "sealing": str,
    "tsm_report_dir": Path,
    "gramine_attestation_dir": Path,
    "dstack_socket": Path,
    "job_timeout_seconds": float,
    "max_result_bytes": int,
    "max_offchain_result_bytes": int,
    "max_batch": int,
    "http_max_response_bytes": int,
    "http_timeout_seconds": float,
    "egress_allow": lambda raw: tuple(str(net) for net in parse_networks(e for e in raw.split(",") if e.strip())),
    "workers": int,
    "queue_timeout_seconds": float,
    "max_request_bytes": int,
    "price_sources": lambda raw: _parse_price_sources(raw),
    "price_base_urls": lambda raw: _parse_base_urls(raw),
    "price_min_sources": int,
    "price_max_deviation": float,
    "price_max_age_seconds": int,
    "price_timeout_seconds": float,
    "models_dir": Path,
    "admin_token": str,
}


def _entries(raw: str) -> list[tuple[str, str]]:
    """``key=value;key=value`` (blank entries ignored) as pairs; ``ValueError`` on an entry without ``=``."""
    out = []
    for entry in raw.split(";"):
        if not entry.strip():
            continue
        key, sep, value = entry.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"expected key=value, got {entry.strip()!r}")
        out.append((key.strip(), value.strip()))
    return out


def _parse_price_sources(raw: str) -> dict[str, tuple[str, ...]]:
    """``ETH/USD=coinbase,kraken;BTC/USD=okx,gemini`` -> ``{"ETH/USD": ("coinbase", "kraken"), ...}``."""
    return {pair: tuple(s.strip() for s in names.split(",") if s.strip()) for pair, names in _entries(raw)}


def _parse_base_urls(raw: str) -> dict[str, str]:
    """``binance=http://127.0.0.1:9000;*=http://127.0.0.1:9001`` -> a dict."""
    return dict(_entries(raw))
