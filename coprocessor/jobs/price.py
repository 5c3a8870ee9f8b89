"""``price`` version 1: the median exchange price of a pair, for on-demand requests through the Router.

Input ``(string pair, uint8 decimals)``; output ``(int256 answer, uint16 sources, uint64 observedAt)``.
``answer`` is the aggregated median (:mod:`coprocessor.price.aggregate`) times ``10**decimals``, truncated
toward zero; ``sources`` the number of quotes it is the median of; ``observedAt`` the oldest of their
observation times (Unix seconds). The sources of each pair and the aggregation limits are the ``price_*``
settings (``coprocessor.config``).

A malformed pair, a pair with no configured sources, or an answer that does not fit int256 is
INVALID_INPUT; too few fresh, agreeing quotes is JOB_FAILED (no price rather than a bad one).

The coprocessor's registry (``default_registry(config)``) builds this job from the app's own config, the
same settings the ``/v1/price-report`` route uses. The module-level :data:`PRICE_JOB` (in ``BUILTIN_JOBS``)
reads the ``TEEBRIDGE_COPROCESSOR_PRICE_*`` environment variables when it runs.
"""

from __future__ import annotations

from collections.abc import Callable

from coprocessor.jobs.base import InvalidJobInputError, Job, JobContext, JobError
from coprocessor.price.adapters import parse_pair
from coprocessor.price.aggregate import AnswerOverflowError, QuorumError, scale_answer
from coprocessor.price.settings import PriceSettings, UnknownPairError

SettingsSource = PriceSettings | Callable[[], PriceSettings]


def make_price_job(settings: SettingsSource = PriceSettings.from_env) -> Job:
    """The ``price@1`` job using ``settings`` (or a function returning them, called on every run)."""

    def handle(context: JobContext, args: tuple[str, int]) -> tuple[int, int, int]:
        pair, decimals = args
        try:
            parse_pair(pair)
        except ValueError as exc:
            raise InvalidJobInputError(str(exc)) from None
        # imported here: the fetcher uses coprocessor.jobs, which imports this module
        from coprocessor.price.observe import observe

        current = settings if isinstance(settings, PriceSettings) else settings()
        try:
            observation = observe(pair, current, context)
        except UnknownPairError as exc:
            raise InvalidJobInputError(str(exc)) from None
        except QuorumError as exc:
            raise JobError(f"no price: {exc}") from None
        agg = observation.aggregate
        try:
            answer = scale_answer(agg.median, decimals)
        except AnswerOverflowError as exc:
            raise InvalidJobInputError(str(exc)) from None
        return (answer, agg.sources, agg.observed_at)

    return Job(
        name="price",
        version=1,
        input_types=("string", "uint8"),
        output_types=("int256", "uint16", "uint64"),
        handler=handle,
        description=(
            "Median exchange price of a pair ('ETH/USD') from the configured sources, stale quotes and outliers "
            "dropped, at least price_min_sources agreeing; answer scaled by 10**decimals, truncated toward zero."
        ),
    )


PRICE_JOB = make_price_job()
"""The built-in ``price@1`` job (settings from the environment)."""
