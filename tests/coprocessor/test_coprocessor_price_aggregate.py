"""Aggregation: freshness, outliers, quorum and the exact median, with hypothesis for the properties."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coprocessor.price.adapters import Quote
from coprocessor.price.aggregate import QuorumError, aggregate, median, scale_answer

NOW = 1_800_000_000
D = Decimal


def q(price: str | Decimal, at: int | None = NOW, source: str = "s") -> Quote:
    return Quote(source, D(price), at)


def agg(quotes: list[Quote], **kw: object) -> object:
    args: dict[str, object] = {"now": NOW, "max_age": 60, "max_deviation": D("0.02"), "min_sources": 3}
    args.update(kw)
    return aggregate(quotes, **args)  # type: ignore[arg-type]


def test_median_odd_even_exact() -> None:
    assert median([D("3"), D("1"), D("2")]) == D("2")
    assert median([D("1"), D("2")]) == D("1.5")
    assert median([D("68923.66"), D("68923.67")]) == D("68923.665")
    assert median([D("1E+30"), D("3E-30")]) == D("500000000000000000000000000000.0000000000000000000000000000015")
    with pytest.raises(ValueError):
        median([])


def test_example_drops_stale_future_and_outlier() -> None:
    quotes = [
        q("100", NOW - 10, "a"),
        q("101", NOW - 61, "stale"),
        q("100.5", NOW, "b"),
        q("99.5", None, "c"),  # no exchange time: counts as now
        q("150", NOW, "outlier"),
        q("100", NOW + 60, "future"),
        q("101.5", NOW + 3, "d"),  # within the 5 s skew, counted as now
    ]
    result = agg(quotes)
    assert result.median == D("100.25")  # of 99.5, 100, 100.5, 101.5
    assert result.sources == 4
    assert result.observed_at == NOW - 10  # the oldest kept
    assert {quote.source: why for quote, why in result.dropped} == {
        "stale": "stale",
        "future": "future",
        "outlier": "outlier",
    }


def test_band_edge_is_inclusive() -> None:
    result = agg([q("100"), q("100"), q("102"), q("98"), q("102.01")])
    assert result.sources == 4 and result.median == D("100")


def test_quorum_failures() -> None:
    with pytest.raises(QuorumError, match="only 2 fresh quote"):
        agg([q("100"), q("100"), q("100", NOW - 1000)])
    with pytest.raises(QuorumError, match="only 1 of 5 fresh quotes"):
        agg([q("100"), q("100.1"), q("200"), q("300"), q("400")])
    # sources split into two camps: the median is between them and nobody agrees with it -> no price
    with pytest.raises(QuorumError, match="only 0 of 4 fresh quotes"):
        agg([q("100"), q("100.1"), q("200"), q("200.1")], min_sources=2)
    assert agg([q("100"), q("100.1"), q("100.2"), q("200"), q("300")]).median == D("100.1")
    with pytest.raises(QuorumError):
        agg([])


def test_max_age_boundary() -> None:
    assert agg([q("1", NOW - 60)] * 3).sources == 3
    with pytest.raises(QuorumError):
        agg([q("1", NOW - 61)] * 3)


prices = st.decimals(min_value=D("0.0001"), max_value=D("1000000"), places=6, allow_nan=False, allow_infinity=False)


@given(st.lists(prices, min_size=1, max_size=15), st.randoms(use_true_random=False))
def test_median_is_order_invariant_and_within_range(values: list[Decimal], rnd: random.Random) -> None:
    shuffled = list(values)
    rnd.shuffle(shuffled)
    assert median(shuffled) == median(values)
    assert min(values) <= median(values) <= max(values)


@given(
    st.lists(prices, min_size=3, max_size=12),
    st.decimals(min_value=D("0"), max_value=D("0.5"), places=3),
    st.randoms(use_true_random=False),
)
def test_aggregate_properties(values: list[Decimal], deviation: Decimal, rnd: random.Random) -> None:
    quotes = [q(v, NOW - i, f"s{i}") for i, v in enumerate(values)]
    center = median(values)
    within = [v for v in values if abs(v - center) <= deviation * center]
    try:
        result = agg(quotes, max_deviation=deviation, min_sources=1)
    except QuorumError:
        # possible only for an even count whose two middle values are both outside a narrow band
        assert within == [] and len(values) % 2 == 0
        return
    shuffled = list(quotes)
    rnd.shuffle(shuffled)
    again = agg(shuffled, max_deviation=deviation, min_sources=1)
    assert (again.median, again.sources, again.observed_at) == (result.median, result.sources, result.observed_at)
    kept = [quote.price for quote in result.kept]
    assert min(kept) <= result.median <= max(kept)
    assert sorted(kept) == sorted(within)
    assert result.sources == len(kept) == len(values) - len(result.dropped)


@given(
    st.decimals(min_value=D("1"), max_value=D("100000"), places=2),
    st.lists(st.decimals(min_value=D("-0.005"), max_value=D("0.005"), places=4), min_size=2, max_size=9),
    st.decimals(min_value=D("0.06"), max_value=D("100"), places=3),
    st.booleans(),
)
def test_an_outlier_beyond_the_band_never_moves_the_median(
    center: Decimal, offsets: list[Decimal], distance: Decimal, above: bool
) -> None:
    cluster = [q(center * (1 + o), NOW, f"c{i}") for i, o in enumerate(offsets)]
    factor = 1 + distance if above else 1 / (1 + distance)
    outlier = q(center * factor, NOW, "outlier")
    alone = agg(cluster, min_sources=2)
    with_outlier = agg([*cluster, outlier], min_sources=2)
    assert with_outlier.median == alone.median
    assert with_outlier.sources == alone.sources == len(cluster)
    assert [quote.source for quote, _ in with_outlier.dropped] == ["outlier"]


@given(st.lists(prices, min_size=0, max_size=5), st.integers(min_value=1, max_value=8))
def test_quorum_is_enforced(values: list[Decimal], min_sources: int) -> None:
    quotes = [q(v) for v in values]
    try:
        result = agg(quotes, min_sources=min_sources)
    except QuorumError:
        return
    assert result.sources >= min_sources


@pytest.mark.parametrize(
    ("price", "decimals", "answer"),
    [
        ("3150.123456789", 8, 315012345678),
        ("3150.123456789", 0, 3150),
        ("0.000000019", 8, 1),
        ("68923.665", 2, 6892366),
        ("1E+3", 8, 100000000000),
        ("-42.129", 2, -4212),  # toward zero
        ("5", 255, None),
    ],
)
def test_scale_answer_truncates_toward_zero(price: str, decimals: int, answer: int | None) -> None:
    if answer is None:
        with pytest.raises(ValueError, match="int256"):
            scale_answer(D(price), decimals)
    else:
        assert scale_answer(D(price), decimals) == answer
