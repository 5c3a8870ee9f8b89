"""One adapter per exchange: the public ticker URL for a pair and a strict parser of its real response.

Every parser takes the raw body bytes and returns a :class:`Quote` or raises :class:`SourceError` with a
short reason that never quotes the body (it is published as part of a job failure). A price must be a
JSON number or numeric string that is finite and positive; numbers are parsed as exact decimals.
Where the exchange reports a time for the price it becomes ``observed_at`` (Unix seconds, rounded down);
otherwise ``observed_at`` is None and the fetcher uses the time the response arrived.

=====================  ==============================================================  ================================
adapter                endpoint (``ETH/USD``)                                          price, time
=====================  ==============================================================  ================================
``coinbase``           ``/api/v3/brokerage/market/products/ETH-USD/ticker?limit=1``     newest trade, its time
``coinbase_exchange``  ``/products/ETH-USD/ticker``                                    ``price``, ``time``
``binance``            ``/api/v3/ticker/price?symbol=ETHUSD``                          ``price``, none
``kraken``             ``/0/public/Ticker?pair=ETHUSD`` (BTC is spelled XBT)           last trade ``c[0]``, none
``bitstamp``           ``/api/v2/ticker/ethusd/``                                      ``last``, ``timestamp``
``okx``                ``/api/v5/market/index-tickers?instId=ETH-USD``                 ``idxPx``, ``ts`` (ms)
``gemini``             ``/v1/pubticker/ethusd``                                        ``last``, ``volume.timestamp`` ms
=====================  ==============================================================  ================================
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

_SYMBOL = re.compile(r"^[A-Z0-9]{1,15}$")
MAX_TIMESTAMP = 2**63
"""Exchange timestamps at or above this (in seconds) are refused as garbage."""


class SourceError(Exception):
    """One source gave no usable price. ``reason`` is safe to publish (it never quotes the response)."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Quote:
    """One exchange's price for a pair."""

    source: str
    price: Decimal
    observed_at: int | None
    """Unix seconds of the exchange's own timestamp for the price, or None if its format has none."""


@dataclass(frozen=True, slots=True)
class Pair:
    """A trading pair such as ``ETH/USD`` (base ``ETH``, quote ``USD``)."""

    base: str
    quote: str

    def __str__(self) -> str:
        return f"{self.base}/{self.quote}"


def parse_pair(text: str) -> Pair:
    """``"ETH/USD"`` -> ``Pair("ETH", "USD")``; ``ValueError`` unless it is two upper-case symbols of 1-15
    letters or digits joined by one ``/``."""
    if not isinstance(text, str):
        raise ValueError("a pair is a string like 'ETH/USD'")
    parts = text.split("/")
    if len(parts) != 2 or not all(_SYMBOL.match(p) for p in parts):
        raise ValueError("a pair is two upper-case symbols joined by '/', like 'ETH/USD'")
    return Pair(parts[0], parts[1])


@dataclass(frozen=True, slots=True)
class Adapter:
    """An exchange: where to ask for a pair's price and how to read the answer."""

    name: str
    default_base_url: str
    path: Callable[[Pair], str]
    """The path and query for a pair, starting with ``/``."""
    parser: Callable[[Any], tuple[Any, int | None]]
    """Takes the parsed JSON document, returns ``(raw price value, observed_at)``; raises ``ValueError``,
    ``KeyError``, ``IndexError`` or ``TypeError`` on a wrong shape, or ``SourceError`` on an error body."""

    def url(self, pair: Pair, base_url: str | None = None) -> str:
        """The full URL for ``pair``; ``base_url`` (e.g. ``http://127.0.0.1:8080``) replaces the default."""
        return (base_url or self.default_base_url).rstrip("/") + self.path(pair)

    def parse(self, body: bytes) -> Quote:
        """The quote in a response body; ``SourceError`` on garbage, an error body, a missing field or a
        price that is not a finite positive number."""
        document = _json(self.name, body)
        try:
            raw_price, observed_at = self.parser(document)
        except SourceError as exc:
            raise SourceError(self.name, exc.reason) from None
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise SourceError(self.name, "response does not have the expected fields") from exc
        return Quote(self.name, _price(self.name, raw_price), observed_at)


def _reject_constant(_name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _json(source: str, body: bytes) -> Any:
    if body.lstrip()[:1] == b"<":
        raise SourceError(source, "response is an HTML page, not JSON")
    try:
        return json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, ArithmeticError, RecursionError) as exc:
        raise SourceError(source, "response is not valid JSON") from exc


def _price(source: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise SourceError(source, "price is not a number or numeric string")
    try:
        price = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except (InvalidOperation, ValueError) as exc:
        raise SourceError(source, "price is not a number") from exc
    if not price.is_finite():
        raise SourceError(source, "price is not finite")
    if price <= 0:
        raise SourceError(source, "price is not positive")
    return price


def _seconds(value: Any, *, millis: bool = False) -> int:
    """Unix seconds from an integer or digit string (milliseconds if ``millis``)."""
    if isinstance(value, bool):
        raise TypeError("timestamp is a boolean")
    if isinstance(value, str):
        if not value.isdigit():
            raise ValueError("timestamp is not a digit string")
        value = int(value)
    if not isinstance(value, int) or value < 0:
        raise ValueError("timestamp is not a non-negative integer")
    seconds = value // 1000 if millis else value
    if seconds >= MAX_TIMESTAMP:
        raise ValueError("timestamp is out of range")
    return seconds


def _iso_seconds(value: Any) -> int:
    """Unix seconds (rounded down) of an ISO 8601 time with an explicit offset, e.g. ``...T11:10:41.27Z``."""
    if not isinstance(value, str):
        raise TypeError("time is not a string")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("time has no timezone")
    return int(parsed.timestamp() // 1)


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("expected a JSON object")
    return value


# Coinbase Advanced Trade, public market data: {"trades":[{"price","time",...}],"best_bid","best_ask"}.
def _coinbase(doc: Any) -> tuple[Any, int | None]:
    trades = _dict(doc)["trades"]
    if not isinstance(trades, list) or not trades:
        raise ValueError("no trades")
    newest = max(trades, key=lambda t: _iso_seconds(_dict(t)["time"]))
    return newest["price"], _iso_seconds(newest["time"])


# Coinbase Exchange: {"price","time","bid","ask",...}; errors are {"message": "..."}.
def _coinbase_exchange(doc: Any) -> tuple[Any, int | None]:
    doc = _dict(doc)
    if "message" in doc and "price" not in doc:
        raise SourceError("coinbase_exchange", "exchange returned an error message")
    return doc["price"], _iso_seconds(doc["time"])


# Binance: {"symbol","price"}; errors are {"code": -1121, "msg": "..."}.
def _binance(doc: Any) -> tuple[Any, int | None]:
    doc = _dict(doc)
    if "code" in doc and "price" not in doc:
        code = doc["code"]
        shown = code if isinstance(code, int) and not isinstance(code, bool) else "?"
        raise SourceError("binance", f"exchange returned error code {shown}")
    return doc["price"], None


# Kraken: {"error": [], "result": {"<its pair name>": {"c": [last price, lot volume], ...}}}.
def _kraken(doc: Any) -> tuple[Any, int | None]:
    doc = _dict(doc)
    errors = doc.get("error")
    if not isinstance(errors, list):
        raise ValueError("no error list")
    if errors:
        raise SourceError("kraken", f"exchange returned {len(errors)} error(s)")
    result = _dict(doc["result"])
    if len(result) != 1:
        raise ValueError("expected exactly one pair in the result")
    (ticker,) = result.values()
    last = _dict(ticker)["c"]
    if not isinstance(last, list):
        raise TypeError("c is not a list")
    return last[0], None


# Bitstamp: {"last", "timestamp" (seconds as a string), ...}; errors are {"status": "error", ...} or HTML.
def _bitstamp(doc: Any) -> tuple[Any, int | None]:
    doc = _dict(doc)
    if doc.get("status") == "error" or ("errors" in doc and "last" not in doc):
        raise SourceError("bitstamp", "exchange returned an error")
    return doc["last"], _seconds(doc["timestamp"])


# OKX index tickers: {"code":"0","msg":"","data":[{"idxPx","ts" (ms),...}]}; errors have another code.
def _okx(doc: Any) -> tuple[Any, int | None]:
    doc = _dict(doc)
    code = doc["code"]
    if code not in ("0", 0):
        shown = code if isinstance(code, str) and code.isdigit() else "?"
        raise SourceError("okx", f"exchange returned error code {shown}")
    data = doc["data"]
    if not isinstance(data, list) or len(data) != 1:
        raise ValueError("expected exactly one ticker")
    item = _dict(data[0])
    return item["idxPx"], _seconds(item["ts"], millis=True)


# Gemini: {"last", "volume": {..., "timestamp" (ms)}}; errors are {"result":"error","reason":...}.
def _gemini(doc: Any) -> tuple[Any, int | None]:
    doc = _dict(doc)
    if doc.get("result") == "error":
        raise SourceError("gemini", "exchange returned an error")
    return doc["last"], _seconds(_dict(doc["volume"])["timestamp"], millis=True)


def _kraken_symbol(symbol: str) -> str:
    return "XBT" if symbol == "BTC" else symbol


ADAPTERS: dict[str, Adapter] = {
    a.name: a
    for a in (
        Adapter(
            "coinbase",
            "https://api.coinbase.com",
            lambda p: f"/api/v3/brokerage/market/products/{p.base}-{p.quote}/ticker?limit=1",
            _coinbase,
        ),
        Adapter(
            "coinbase_exchange",
            "https://api.exchange.coinbase.com",
            lambda p: f"/products/{p.base}-{p.quote}/ticker",
            _coinbase_exchange,
        ),
        Adapter(
            "binance", "https://api.binance.com", lambda p: f"/api/v3/ticker/price?symbol={p.base}{p.quote}", _binance
        ),
        Adapter(
            "kraken",
            "https://api.kraken.com",
            lambda p: f"/0/public/Ticker?pair={_kraken_symbol(p.base)}{_kraken_symbol(p.quote)}",
            _kraken,
        ),
        Adapter(
            "bitstamp",
            "https://www.bitstamp.net",
            lambda p: f"/api/v2/ticker/{p.base.lower()}{p.quote.lower()}/",
            _bitstamp,
        ),
        Adapter(
            "okx", "https://www.okx.com", lambda p: f"/api/v5/market/index-tickers?instId={p.base}-{p.quote}", _okx
        ),
        Adapter(
            "gemini", "https://api.gemini.com", lambda p: f"/v1/pubticker/{p.base.lower()}{p.quote.lower()}", _gemini
        ),
    )
}
"""The adapters by name (the names ``price_sources`` and ``price_base_urls`` use)."""
