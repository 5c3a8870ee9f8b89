"""The price oracle inside the enclave: exchange adapters, a parallel fetcher and a median with quorum.

:mod:`.adapters` turns a pair into each exchange's URL and its response into a :class:`Quote`;
:mod:`.fetch` asks every configured source of a pair at once and keeps what answers in time;
:mod:`.aggregate` drops stale quotes and outliers and takes the median, or refuses without a quorum;
:mod:`.settings` holds the ``price_*`` settings and :mod:`.observe` runs the whole pipeline.
"""

from __future__ import annotations

from coprocessor.price.adapters import ADAPTERS, Adapter, Pair, Quote, SourceError, parse_pair
from coprocessor.price.aggregate import Aggregate, QuorumError, aggregate, median, scale_answer
from coprocessor.price.fetch import FetchResult, fetch_quotes
from coprocessor.price.observe import Observation, observe
from coprocessor.price.settings import PriceSettings, Source, UnknownPairError

__all__ = [
    "ADAPTERS",
    "Adapter",
    "Aggregate",
    "FetchResult",
    "Observation",
    "Pair",
    "PriceSettings",
    "QuorumError",
    "Quote",
    "Source",
    "SourceError",
    "UnknownPairError",
    "aggregate",
    "fetch_quotes",
    "median",
    "observe",
    "parse_pair",
    "scale_answer",
]
