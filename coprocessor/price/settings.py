"""The ``price_*`` settings as the price pipeline uses them (validated, adapters resolved)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from coprocessor.price.adapters import ADAPTERS, Adapter, Pair, parse_pair

if TYPE_CHECKING:
    from coprocessor.config import CoprocessorConfig


class UnknownPairError(ValueError):
    """The pair is well formed but has no sources configured."""


ALL_ADAPTERS = "*"
"""The ``price_base_urls`` key that applies to every adapter without its own entry."""


@dataclass(frozen=True, slots=True)
class Source:
    """One source of a pair: an exchange adapter and the book it is asked for (usually the pair itself)."""

    adapter: Adapter
    pair: Pair
    base_url: str | None = None

    @property
    def name(self) -> str:
        """The adapter's name (quotes and failures are labelled with it)."""
        return self.adapter.name

    def url(self) -> str:
        """The URL to fetch."""
        return self.adapter.url(self.pair, self.base_url)


def parse_source(pair: Pair, spec: str, base_urls: Mapping[str, str]) -> Source:
    """``"kraken"`` or ``"binance:ETH/USDT"`` for ``pair``; ``ValueError`` for an unknown adapter or bad pair."""
    name, _, book = spec.partition(":")
    adapter = ADAPTERS.get(name)
    if adapter is None:
        raise ValueError(f"unknown price source {name!r}; known: {', '.join(sorted(ADAPTERS))}")
    base_url = base_urls.get(name, base_urls.get(ALL_ADAPTERS))
    return Source(adapter, parse_pair(book) if book else pair, base_url)


def check_price_sources(sources: Mapping[str, Sequence[str]], base_urls: Mapping[str, str]) -> None:
    """``ValueError`` naming the problem unless every pair, source and base URL is usable."""
    for name, url in base_urls.items():
        if name != ALL_ADAPTERS and name not in ADAPTERS:
            raise ValueError(f"price_base_urls names unknown adapter {name!r}; known: {', '.join(sorted(ADAPTERS))}")
        if not (url.startswith("http://") or url.startswith("https://")):
            raise ValueError(f"price_base_urls[{name!r}] must be an http:// or https:// URL")
    for pair_text, specs in sources.items():
        try:
            pair = parse_pair(pair_text)
        except ValueError as exc:
            raise ValueError(f"price_sources: {pair_text!r}: {exc}") from None
        if not specs:
            raise ValueError(f"price_sources[{pair_text!r}] lists no sources")
        resolved = [parse_source(pair, spec, base_urls) for spec in specs]
        names = [s.name for s in resolved]
        if len(set(names)) != len(names):
            raise ValueError(f"price_sources[{pair_text!r}] lists an exchange more than once (one vote each)")


@dataclass(frozen=True, slots=True)
class PriceSettings:
    """Validated price settings; build with :meth:`from_config` or :meth:`from_env`."""

    sources: Mapping[str, tuple[Source, ...]]
    min_sources: int = 3
    max_deviation: Decimal = Decimal("0.02")
    max_age_seconds: int = 60
    timeout_seconds: float = 3.0

    @classmethod
    def from_config(cls, config: CoprocessorConfig) -> PriceSettings:
        """The settings in a coprocessor config (already validated by it)."""
        sources = {
            pair_text: tuple(parse_source(parse_pair(pair_text), spec, config.price_base_urls) for spec in specs)
            for pair_text, specs in config.price_sources.items()
        }
        return cls(
            sources=sources,
            min_sources=config.price_min_sources,
            max_deviation=Decimal(repr(config.price_max_deviation)),
            max_age_seconds=config.price_max_age_seconds,
            timeout_seconds=config.price_timeout_seconds,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PriceSettings:
        """The settings from the ``TEEBRIDGE_COPROCESSOR_PRICE_*`` variables (defaults where unset)."""
        from coprocessor.config import CoprocessorConfig

        return cls.from_config(CoprocessorConfig.from_env(os.environ if environ is None else environ))

    def sources_for(self, pair: str) -> tuple[Source, ...]:
        """The sources of ``pair``; ``KeyError`` if the pair is not configured."""
        return self.sources[pair]
