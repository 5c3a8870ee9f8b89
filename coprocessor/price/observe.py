"""The whole price pipeline for one pair: fetch every source, aggregate, scale."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from coprocessor.jobs.base import JobContext
from coprocessor.price.aggregate import Aggregate, QuorumError, aggregate, scale_answer
from coprocessor.price.fetch import fetch_quotes
from coprocessor.price.settings import PriceSettings, UnknownPairError

__all__ = ["Observation", "UnknownPairError", "observe", "scale_answer"]


@dataclass(frozen=True, slots=True)
class Observation:
    """An aggregated price and the sources that gave none."""

    pair: str
    aggregate: Aggregate
    failures: tuple[tuple[str, str], ...]


def observe(
    pair: str, settings: PriceSettings, context: JobContext, *, clock: Callable[[], float] = time.time
) -> Observation:
    """Fetch and aggregate ``pair``'s price. Raises :class:`UnknownPairError` for an unconfigured pair and
    :class:`QuorumError` (message safe to publish: counts and source names, never URLs or bodies) without
    a quorum."""
    sources = settings.sources.get(pair)
    if sources is None:
        raise UnknownPairError(f"no price sources are configured for {pair}")
    fetch_context = JobContext(
        deadline=context.deadline,
        http_timeout_seconds=min(settings.timeout_seconds, context.http_timeout_seconds),
        http_max_response_bytes=context.http_max_response_bytes,
        egress=context.egress,
    )
    result = fetch_quotes(sources, fetch_context, clock=clock)
    try:
        agg = aggregate(
            result.quotes,
            now=int(clock()),
            max_age=settings.max_age_seconds,
            max_deviation=settings.max_deviation,
            min_sources=settings.min_sources,
        )
    except QuorumError as exc:
        failed = ", ".join(sorted(name for name, _ in result.failures))
        suffix = f"; no quote from {failed}" if failed else ""
        raise QuorumError(f"{exc}{suffix}") from None
    return Observation(pair, agg, result.failures)
