"""The median of a pair's quotes, after dropping stale quotes and outliers, with a minimum quorum.

The rule, exactly (:func:`aggregate`):

1. Freshness. A quote with ``observed_at`` None counts as observed at ``now``. A quote is dropped if
   ``observed_at < now - max_age`` (stale) or ``observed_at > now + max_future_skew`` (from the future).
   Kept quotes with a time after ``now`` count as observed at ``now``.
2. Fewer than ``min_sources`` fresh quotes: :class:`QuorumError`.
3. Outliers. ``m = median(fresh prices)``; a quote is kept if ``|price - m| <= max_deviation * m``
   (inclusive), otherwise dropped. One pass: the band is not recomputed after dropping.
4. Fewer than ``min_sources`` kept quotes: :class:`QuorumError` (no report rather than a bad one).
5. The answer is ``median(kept prices)``; ``sources`` the number kept; ``observed_at`` the *oldest*
   observation time among the kept quotes (the report is at least that fresh).

``median`` of an odd count is the middle value; of an even count the mean of the two middle values,
computed exactly with decimals (no floating point, no rounding context: the sum of two finite decimals
divided by two is exact).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, Inexact, localcontext

from coprocessor.price.adapters import Quote

INT256_MAX = 2**255 - 1
DEFAULT_MAX_FUTURE_SKEW = 5
"""Seconds an exchange's clock may run ahead of the enclave's before its quote counts as from the future."""


class AnswerOverflowError(ValueError):
    """The scaled price does not fit int256 (too many decimals)."""


class QuorumError(Exception):
    """Too few usable quotes to publish a price. The message is safe to publish."""


@dataclass(frozen=True, slots=True)
class Aggregate:
    """The aggregated price of one pair."""

    median: Decimal
    sources: int
    """How many quotes the median was taken over."""
    observed_at: int
    """Unix seconds: the oldest observation among those quotes."""
    kept: tuple[Quote, ...] = ()
    dropped: tuple[tuple[Quote, str], ...] = ()
    """Quotes left out, each with the reason (``stale``, ``future``, ``outlier``)."""


def median(values: Sequence[Decimal]) -> Decimal:
    """The exact median; ``ValueError`` for no values."""
    if not values:
        raise ValueError("the median of no values")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    low, high = ordered[middle - 1], ordered[middle]
    exponent = min(int(low.as_tuple().exponent), int(high.as_tuple().exponent))
    with localcontext() as ctx:
        # Enough digits for the sum and one more for the halving; the Inexact trap proves nothing rounds.
        ctx.prec = max(low.adjusted(), high.adjusted(), 0) - min(exponent, 0) + 4
        ctx.traps[Inexact] = True
        return (low + high) / 2


def aggregate(
    quotes: Iterable[Quote],
    *,
    now: int,
    max_age: int,
    max_deviation: Decimal,
    min_sources: int,
    max_future_skew: int = DEFAULT_MAX_FUTURE_SKEW,
) -> Aggregate:
    """Apply the rule in the module docstring; raises :class:`QuorumError` without a quorum."""
    if min_sources < 1:
        raise ValueError("min_sources must be at least 1")
    if max_deviation < 0:
        raise ValueError("max_deviation must not be negative")
    dropped: list[tuple[Quote, str]] = []
    fresh: list[tuple[Quote, int]] = []
    for quote in quotes:
        at = now if quote.observed_at is None else quote.observed_at
        if at < now - max_age:
            dropped.append((quote, "stale"))
        elif at > now + max_future_skew:
            dropped.append((quote, "future"))
        else:
            fresh.append((quote, min(at, now)))
    if len(fresh) < min_sources:
        raise QuorumError(f"only {len(fresh)} fresh quote(s), {min_sources} required")
    center = median([q.price for q, _ in fresh])
    band = max_deviation * center
    kept: list[tuple[Quote, int]] = []
    for quote, at in fresh:
        if abs(quote.price - center) <= band:
            kept.append((quote, at))
        else:
            dropped.append((quote, "outlier"))
    if len(kept) < min_sources:
        raise QuorumError(
            f"only {len(kept)} of {len(fresh)} fresh quotes within {max_deviation} of their median, "
            f"{min_sources} required"
        )
    return Aggregate(
        median=median([q.price for q, _ in kept]),
        sources=len(kept),
        observed_at=min(at for _, at in kept),
        kept=tuple(q for q, _ in kept),
        dropped=tuple(dropped),
    )


def scale_answer(price: Decimal, decimals: int) -> int:
    """``price * 10**decimals`` truncated toward zero, exactly; :class:`AnswerOverflowError` if it does not fit
    int256."""
    if not price.is_finite():
        raise ValueError("price is not finite")
    sign, digits, exponent = price.as_tuple()
    coefficient = int("".join(map(str, digits)) or "0")
    shift = int(exponent) + decimals
    magnitude = coefficient * 10**shift if shift >= 0 else coefficient // 10**-shift
    if magnitude > INT256_MAX:
        raise AnswerOverflowError(f"the price scaled by 10**{decimals} does not fit int256")
    return -magnitude if sign else magnitude
