"""When a push feed needs a new on-chain round: the first one, a price move past the deviation threshold,
or the heartbeat about to lapse (consumers' staleness guard reverts once it has)."""

from __future__ import annotations

from dataclasses import dataclass

from verifier.price_report import PriceReport


@dataclass(frozen=True)
class FeedConfig:
    """How one push feed is kept current."""

    pair: str
    address: str
    decimals: int = 8
    deviation_bps: int = 50
    """Push when the price moved by at least this many basis points (50 = 0.5 %) since the last round."""
    heartbeat: int = 3600
    """Seconds after which the on-chain answer counts as stale."""
    heartbeat_margin: float = 0.1
    """Push once this fraction of the heartbeat is left, so the answer never goes stale in between."""


@dataclass(frozen=True)
class OnChainRound:
    """The latest round of a feed as ``latestRoundData`` reports it."""

    round_id: int
    answer: int
    updated_at: int


def push_reason(config: FeedConfig, latest: OnChainRound | None, report: PriceReport, now: int) -> str | None:
    """Why ``report`` should be pushed now, or None when the feed is current enough."""
    if latest is None:
        return "first round"
    if report.observed_at <= latest.updated_at:
        return None  # nothing newer than what is on-chain (the feed would refuse it anyway)
    age = now - latest.updated_at
    if age >= config.heartbeat * (1 - config.heartbeat_margin):
        return f"heartbeat ({age}s since the last round, heartbeat {config.heartbeat}s)"
    moved = abs(report.answer - latest.answer)
    if latest.answer == 0:
        return "deviation (from zero)" if moved else None
    if moved * 10_000 >= config.deviation_bps * abs(latest.answer):
        return f"deviation ({moved * 10_000 / abs(latest.answer):.1f} bps >= {config.deviation_bps} bps)"
    return None
