"""A local stand-in for the exchanges the price oracle asks, with prices you set.

:class:`PriceReplay` is a small HTTP server (stdlib, in a thread) that answers every adapter's ticker
endpoint (``coprocessor.price.adapters.ADAPTERS``) for the pairs you give a price, using the real recorded
response bodies in ``../shared/testdata/exchanges`` (relative to the repository root) as templates: the
price fields take your price, the symbol fields the requested book and the time fields the current time.
Point the coprocessor at it with ``TEEBRIDGE_COPROCESSOR_PRICE_BASE_URLS=*=<base_url>`` and allow its loopback
address with ``TEEBRIDGE_COPROCESSOR_EGRESS_ALLOW=127.0.0.1`` (the enclave fetches only public addresses otherwise).

Per source you can override the price (``set_price(pair, p, source="kraken")``) or make it misbehave
(``set_mode("kraken", "slow")``): ``garbage`` (200 with bytes that are not JSON), ``html`` (a 502 HTML
error page), ``error`` (the exchange's own error body), ``slow`` (answers after ``slow_seconds``).
A book that has no price of its own but is quoted in USDT or USDC uses the USD price of its base.

    with PriceReplay({"ETH/USD": Decimal("3150.25")}) as replay:
        replay.set_price("ETH/USD", Decimal("3200"))
        ... replay.base_url ...
"""

from __future__ import annotations

import copy
import json
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from coprocessor.price.adapters import ADAPTERS, Pair, parse_pair

REPO_ROOT = Path(__file__).resolve().parent.parent
EXCHANGES_DIR = REPO_ROOT.parent / "shared" / "testdata" / "exchanges"
"""The recorded exchange responses (``../shared/testdata/exchanges`` from the repository root)."""

TEMPLATE_FILES = {
    "coinbase": "coinbase_advanced_api_v3_brokerage_market_products_BTC-USD_ticker.json",
    "coinbase_exchange": "coinbase_exchange_products_BTC-USDT_ticker.json",
    "binance": "binance_api_v3_ticker_price_BTCUSDT.json",
    "kraken": "kraken_0_public_Ticker_XBTUSDT.json",
    "bitstamp": "bitstamp_api_v2_ticker_btcusdt.json",
    "okx": "okx_api_v5_market_index-tickers_BTC-USDT.json",
    "gemini": "gemini_v1_pubticker_BTCUSD.json",
}
"""The recorded body each adapter's answers are made from."""

MODES = ("ok", "garbage", "html", "error", "slow")
ERROR_BODIES: dict[str, tuple[int, bytes]] = {
    "coinbase": (404, b'{"error":"NOT_FOUND","message":"product not found"}'),
    "coinbase_exchange": (404, b'{"message":"NotFound"}'),
    "binance": (400, b'{"code":-1121,"msg":"Invalid symbol."}'),
    "kraken": (200, b'{"error":["EQuery:Unknown asset pair"]}'),
    "bitstamp": (404, b'{"status":"error","reason":"Not found"}'),
    "okx": (200, b'{"code":"51001","msg":"Instrument ID does not exist.","data":[]}'),
    "gemini": (400, b'{"result":"error","reason":"InvalidSymbol","message":"Invalid symbol"}'),
}
HTML_PAGE = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"
PROXY_QUOTES = ("USDT", "USDC")


def load_templates(directory: Path = EXCHANGES_DIR) -> dict[str, Any]:
    """The parsed recorded bodies by adapter name (numbers kept as exact decimals)."""
    return {
        name: json.loads((directory / file).read_text(), parse_float=Decimal) for name, file in TEMPLATE_FILES.items()
    }


def _iso(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def render(source: str, template: Any, pair: Pair, price: Decimal, now: float) -> Any:
    """``template`` (a recorded body of ``source``) with ``pair``, ``price`` and ``now`` filled in."""
    doc = copy.deepcopy(template)
    p = str(price)
    ms = int(now * 1000)
    if source == "coinbase":
        for trade in doc["trades"]:
            trade.update(price=p, time=_iso(now), product_id=f"{pair.base}-{pair.quote}")
        doc.update(best_bid=p, best_ask=p)
    elif source == "coinbase_exchange":
        doc.update(price=p, bid=p, ask=p, time=_iso(now))
    elif source == "binance":
        doc.update(symbol=f"{pair.base}{pair.quote}", price=p)
    elif source == "kraken":
        (ticker,) = doc["result"].values()
        ticker["a"][0] = ticker["b"][0] = ticker["c"][0] = p
        base = "XBT" if pair.base == "BTC" else pair.base
        doc["result"] = {f"{base}{pair.quote}": ticker}
    elif source == "bitstamp":
        doc.update(last=p, bid=p, ask=p, timestamp=str(int(now)))
    elif source == "okx":
        doc["data"][0].update(instId=f"{pair.base}-{pair.quote}", idxPx=p, ts=str(ms))
    elif source == "gemini":
        doc.update(last=p, bid=p, ask=p)
        doc["volume"] = {pair.base: "1", pair.quote: "1", "timestamp": ms}
    else:
        raise ValueError(f"no template for {source!r}")
    return doc


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (a fetcher giving up on a slow source) are normal here; others are printed."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class PriceReplay:
    """The replay server; see the module docstring. Thread-safe setters; use as a context manager."""

    def __init__(
        self,
        prices: Mapping[str, Decimal] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        slow_seconds: float = 5.0,
        templates_dir: Path = EXCHANGES_DIR,
    ) -> None:
        self._templates = load_templates(templates_dir)
        self._lock = threading.Lock()
        self._prices: dict[tuple[str, str | None], Decimal] = {}
        self._modes: dict[str, str] = {}
        self._release = threading.Event()
        self.slow_seconds = slow_seconds
        self.requests: dict[str, int] = {}
        """How many requests each source received."""
        for pair, price in (prices or {}).items():
            self.set_price(pair, price)
        self._server = _QuietServer((host, port), self._handler_class())
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the server (valid once constructed; serving after :meth:`start`)."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def set_price(self, pair: str, price: Decimal, *, source: str | None = None) -> None:
        """Serve ``price`` for ``pair`` (from every source, or only ``source``)."""
        parse_pair(pair)
        if source is not None and source not in ADAPTERS:
            raise ValueError(f"unknown source {source!r}")
        with self._lock:
            self._prices[(pair, source)] = Decimal(price)

    def set_mode(self, source: str, mode: str) -> None:
        """Make ``source`` answer normally (``ok``) or misbehave (``garbage``, ``html``, ``error``, ``slow``)."""
        if source not in ADAPTERS or mode not in MODES:
            raise ValueError(f"unknown source {source!r} or mode {mode!r} (modes: {', '.join(MODES)})")
        with self._lock:
            self._modes[source] = mode

    def price_of(self, source: str, pair: Pair) -> Decimal | None:
        """The price ``source`` serves for ``pair``, or None (404)."""
        with self._lock:
            for key in (str(pair), *(f"{pair.base}/USD" for q in PROXY_QUOTES if pair.quote == q)):
                for who in (source, None):
                    if (key, who) in self._prices:
                        return self._prices[(key, who)]
        return None

    def start(self) -> PriceReplay:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="price-replay", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release slow answers and close the socket."""
        self._release.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()

    def __enter__(self) -> PriceReplay:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _route(self, path: str) -> tuple[str, Pair] | None:
        with self._lock:
            books = {parse_pair(pair) for pair, _ in self._prices}
        books |= {Pair(b.base, q) for b in books if b.quote == "USD" for q in PROXY_QUOTES}
        for name, adapter in ADAPTERS.items():
            for book in books:
                if adapter.path(book) == path:
                    return name, book
        return None

    def _answer(self, path: str, now: float) -> tuple[int, str, bytes]:
        routed = self._route(path)
        if routed is None:
            return 404, "application/json", b'{"error":"unknown endpoint or pair"}'
        source, pair = routed
        with self._lock:
            self.requests[source] = self.requests.get(source, 0) + 1
            mode = self._modes.get(source, "ok")
        if mode == "slow":
            self._release.wait(self.slow_seconds)
        elif mode == "garbage":
            return 200, "application/json", b"\x00\x13garbage{{"
        elif mode == "html":
            return 502, "text/html", HTML_PAGE
        elif mode == "error":
            status, body = ERROR_BODIES[source]
            return status, "application/json", body
        price = self.price_of(source, pair)
        if price is None:
            status, body = ERROR_BODIES[source]
            return status, "application/json", body
        doc = render(source, self._templates[source], pair, price, now)
        return 200, "application/json", json.dumps(doc, default=str).encode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        replay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                status, content_type, body = replay._answer(self.path, datetime.now(UTC).timestamp())
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        return Handler
