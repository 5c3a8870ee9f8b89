"""The push decision of the feed relayer."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relayer.feed_policy import FeedConfig, OnChainRound, push_reason
from verifier.price_report import PriceReport, feed_id

CONFIG = FeedConfig("ETH/USD", "0x" + "11" * 20, deviation_bps=50, heartbeat=3600)


def report(answer: int, observed_at: int) -> PriceReport:
    return PriceReport(feed_id("ETH/USD"), answer, 8, observed_at, 5, b"\x00" * 32)


def test_first_round_is_pushed() -> None:
    assert push_reason(CONFIG, None, report(100, 10), now=10) == "first round"


def test_small_move_within_the_heartbeat_is_not_pushed() -> None:
    assert push_reason(CONFIG, OnChainRound(1, 1_000_000, 1000), report(1_004_999, 1100), now=1100) is None


def test_move_past_the_threshold_is_pushed() -> None:
    reason = push_reason(CONFIG, OnChainRound(1, 1_000_000, 1000), report(995_000, 1100), now=1100)
    assert reason is not None and reason.startswith("deviation")


def test_heartbeat_is_honoured_before_it_lapses() -> None:
    latest = OnChainRound(1, 1_000_000, 1000)
    assert push_reason(CONFIG, latest, report(1_000_000, 4000), now=4000) is None  # 3000 s < 3240 s
    reason = push_reason(CONFIG, latest, report(1_000_000, 4240), now=4240)
    assert reason is not None and reason.startswith("heartbeat")


def test_nothing_newer_is_never_pushed() -> None:
    assert push_reason(CONFIG, OnChainRound(1, 100, 1000), report(999, 1000), now=99_999) is None


@given(old=st.integers(1, 10**30), new=st.integers(0, 10**30), bps=st.integers(1, 10_000))
def test_deviation_rule_is_exact_integer_math(old: int, new: int, bps: int) -> None:
    config = FeedConfig("ETH/USD", "0x" + "11" * 20, deviation_bps=bps, heartbeat=10**9)
    pushed = push_reason(config, OnChainRound(1, old, 0), report(new, 1), now=1) is not None
    assert pushed == (abs(new - old) * 10_000 >= bps * old)
