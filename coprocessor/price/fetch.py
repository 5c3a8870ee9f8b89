"""Ask every source of a pair at once; keep the quotes that arrive in time and parse, note the rest.

Each source is fetched on its own thread with :func:`coprocessor.jobs.http_json.fetch` (GET, no proxies
from the environment, at most 5 redirects to http/https only, public addresses only unless ``egress_allow``
lists them (:mod:`coprocessor.egress`: operator-chosen base URLs get no exception), body at most
``http_max_response_bytes``),
within ``min(context.http_timeout_seconds, context.remaining())``. A source that times out, fails, answers
with a non-2xx status or returns something its adapter rejects is skipped and recorded with its reason;
the others go on. The whole call returns by the context's deadline (plus a small grace) even if a source
thread is still stuck; such a thread is abandoned and its source recorded as timed out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ALL_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from coprocessor.jobs.base import JobContext, JobError
from coprocessor.jobs.http_json import check_url
from coprocessor.jobs.http_json import fetch as http_fetch
from coprocessor.price.adapters import Quote, SourceError
from coprocessor.price.settings import Source

GRACE_SECONDS = 0.25
"""How long past its timeout the fetcher waits for a source thread before giving up on it."""


@dataclass(frozen=True, slots=True)
class FetchResult:
    """The quotes that arrived and the sources that did not, each with a publishable reason."""

    quotes: tuple[Quote, ...]
    failures: tuple[tuple[str, str], ...]


def _fetch_one(source: Source, context: JobContext, clock: Callable[[], float]) -> Quote:
    try:
        body = http_fetch(check_url(source.url()), context)
    except JobError as exc:
        raise SourceError(source.name, exc.reason) from None
    quote = source.adapter.parse(body)
    if quote.observed_at is None:  # no exchange timestamp: the time the answer arrived
        quote = Quote(quote.source, quote.price, int(clock()))
    return quote


def fetch_quotes(
    sources: Sequence[Source], context: JobContext, *, clock: Callable[[], float] = time.time
) -> FetchResult:
    """Fetch all ``sources`` in parallel; see the module docstring."""
    if not sources:
        return FetchResult((), ())
    budget = min(context.http_timeout_seconds, context.remaining())
    pool = ThreadPoolExecutor(max_workers=len(sources), thread_name_prefix="teebridge-price")
    try:
        futures = [pool.submit(_fetch_one, source, context, clock) for source in sources]
        wait(futures, timeout=budget + GRACE_SECONDS, return_when=ALL_COMPLETED)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    quotes: list[Quote] = []
    failures: list[tuple[str, str]] = []
    for source, future in zip(sources, futures, strict=True):
        if not future.done():
            failures.append((source.name, f"no answer within {budget:.3g} s"))
            continue
        exc = future.exception()
        if exc is None:
            quotes.append(future.result())
        elif isinstance(exc, SourceError):
            failures.append((source.name, exc.reason))
        else:
            failures.append((source.name, f"failed ({type(exc).__name__})"))
    return FetchResult(tuple(quotes), tuple(failures))
