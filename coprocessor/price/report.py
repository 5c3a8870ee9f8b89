"""``POST /v1/price-report``: parse the request, observe the price, sign a :class:`SignedPriceReport`.

The report is the normative EIP-712 ``PriceReport`` of :mod:`verifier.price_report`, signed with the
enclave key over the domain ``{chainId, verifyingContract: registry}`` and carrying the same measurement
the executor signs fulfillments with.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from coprocessor.jobs.base import JobContext
from coprocessor.price.adapters import parse_pair
from coprocessor.price.aggregate import scale_answer
from coprocessor.price.observe import observe
from coprocessor.price.settings import PriceSettings
from coprocessor.wire import WireError, parse_address, parse_chain_id, parse_int
from verifier.price_report import PriceReport, SignedPriceReport, feed_id

MAX_BODY_BYTES = 4096
"""Largest ``/v1/price-report`` request body."""


class Signer(Protocol):
    """What signing a report needs from :class:`coprocessor.keys.EnclaveKeys`."""

    signer_address: str

    def sign(self, digest: bytes) -> bytes:
        """A 65-byte signature over a 32-byte digest."""
        ...


@dataclass(frozen=True, slots=True)
class PriceReportRequest:
    """A parsed ``/v1/price-report`` body."""

    pair: str
    decimals: int
    chain_id: int
    registry: str


def parse_price_report_request(document: Any) -> PriceReportRequest:
    """``{"pair": "ETH/USD", "decimals": 8, "chainId": 31337, "registry": "0x.."}``; ``WireError`` if not."""
    if not isinstance(document, dict):
        raise WireError("the body must be a JSON object with pair, decimals, chainId and registry")
    missing = [k for k in ("pair", "decimals", "chainId", "registry") if k not in document]
    if missing:
        raise WireError(f"missing field(s): {', '.join(missing)}")
    try:
        parse_pair(document["pair"])
    except ValueError as exc:
        raise WireError(f"pair: {exc}") from None
    return PriceReportRequest(
        pair=document["pair"],
        decimals=parse_int(document["decimals"], "decimals", maximum=255),
        chain_id=parse_chain_id(parse_int(document["chainId"], "chainId", allow_string=True)),
        registry=parse_address(document["registry"], "registry"),
    )


def make_price_report(
    request: PriceReportRequest,
    settings: PriceSettings,
    keys: Signer,
    measurement: bytes,
    context: JobContext,
    *,
    clock: Callable[[], float] = time.time,
) -> SignedPriceReport:
    """Observe ``request.pair`` and sign the report. Raises ``UnknownPairError`` (no sources for the pair),
    ``QuorumError`` (too few agreeing quotes) or ``AnswerOverflowError`` (the answer does not fit int256)."""
    observation = observe(request.pair, settings, context, clock=clock)
    agg = observation.aggregate
    report = PriceReport(
        feed_id=feed_id(request.pair),
        answer=scale_answer(agg.median, request.decimals),
        decimals=request.decimals,
        observed_at=agg.observed_at,
        sources=agg.sources,
        measurement=measurement,
    )
    signature = keys.sign(report.digest(request.chain_id, request.registry))
    return SignedPriceReport(report, keys.signer_address, signature)
