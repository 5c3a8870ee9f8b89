"""Exchange adapters: each parses its real recorded response and refuses malformed ones."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from coprocessor.measurement import REPO_ROOT
from coprocessor.price.adapters import ADAPTERS, Pair, SourceError, parse_pair

EXCHANGES = REPO_ROOT.parent / "shared" / "testdata" / "exchanges"

RECORDED = [
    # adapter, file, exact price, exchange time (Unix seconds) or None
    (
        "coinbase",
        "coinbase_advanced_api_v3_brokerage_market_products_BTC-USD_ticker.json",
        "68923.67",
        1775521738,  # 2026-04-07T00:28:58.544778Z, the newest of the three trades
    ),
    ("coinbase_exchange", "coinbase_exchange_products_BTC-USDT_ticker.json", "73367.8", 1710328241),
    ("binance", "binance_api_v3_ticker_price_BTCUSDT.json", "60740.00000000", None),
    ("kraken", "kraken_0_public_Ticker_XBTUSDT.json", "105899.40000", None),
    ("bitstamp", "bitstamp_api_v2_ticker_btcusdt.json", "73285", 1710328241),
    ("okx", "okx_api_v5_market_index-tickers_BTC-USDT.json", "103895", 1746942707),
    ("gemini", "gemini_v1_pubticker_BTCUSD.json", "11381.47", 1565587800),
]


def recorded(file: str) -> bytes:
    return (EXCHANGES / file).read_bytes()


def test_every_adapter_has_a_recording() -> None:
    assert {name for name, *_ in RECORDED} == set(ADAPTERS)


@pytest.mark.parametrize(("name", "file", "price", "observed_at"), RECORDED)
def test_parses_the_recorded_response(name: str, file: str, price: str, observed_at: int | None) -> None:
    quote = ADAPTERS[name].parse(recorded(file))
    assert quote.source == name
    assert quote.price == Decimal(price) and str(quote.price) == price  # exact, no float on the way
    assert quote.observed_at == observed_at


def test_urls_for_a_pair() -> None:
    btc = parse_pair("BTC/USD")
    urls = {name: a.url(btc, "http://127.0.0.1:9/") for name, a in ADAPTERS.items()}
    assert urls == {
        "coinbase": "http://127.0.0.1:9/api/v3/brokerage/market/products/BTC-USD/ticker?limit=1",
        "coinbase_exchange": "http://127.0.0.1:9/products/BTC-USD/ticker",
        "binance": "http://127.0.0.1:9/api/v3/ticker/price?symbol=BTCUSD",
        "kraken": "http://127.0.0.1:9/0/public/Ticker?pair=XBTUSD",
        "bitstamp": "http://127.0.0.1:9/api/v2/ticker/btcusd/",
        "okx": "http://127.0.0.1:9/api/v5/market/index-tickers?instId=BTC-USD",
        "gemini": "http://127.0.0.1:9/v1/pubticker/btcusd",
    }
    assert ADAPTERS["kraken"].url(Pair("ETH", "USDT")) == "https://api.kraken.com/0/public/Ticker?pair=ETHUSDT"


@pytest.mark.parametrize("text", ["ETH", "eth/usd", "ETH/USD/X", "ETH-USD", "/USD", "ETH/", "ETH /USD", "E?H/USD"])
def test_bad_pairs(text: str) -> None:
    with pytest.raises(ValueError, match="pair"):
        parse_pair(text)


GARBAGE = [b"", b"\x00\x13garbage{{", b"null", b"[]", b'"a string"', b"{}", b'{"price": NaN}']
HTML = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"


@pytest.mark.parametrize("name", sorted(ADAPTERS))
@pytest.mark.parametrize("body", GARBAGE)
def test_garbage_is_refused(name: str, body: bytes) -> None:
    with pytest.raises(SourceError) as info:
        ADAPTERS[name].parse(body)
    assert info.value.source == name


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_html_error_page_is_refused(name: str) -> None:
    with pytest.raises(SourceError, match="HTML"):
        ADAPTERS[name].parse(HTML)
    with pytest.raises(SourceError, match="HTML"):
        ADAPTERS[name].parse(b"\n  " + HTML)


@pytest.mark.parametrize(
    ("name", "body", "match"),
    [
        ("binance", b'{"code":-1121,"msg":"Invalid symbol. secret-ish text"}', "error code -1121"),
        ("kraken", b'{"error":["EQuery:Unknown asset pair"]}', r"1 error\(s\)"),
        ("kraken", b'{"error":["EGeneral:Too many requests"],"result":{}}', r"1 error\(s\)"),
        ("okx", b'{"code":"51001","msg":"Instrument ID does not exist.","data":[]}', "error code 51001"),
        ("okx", b'{"code":"50011","msg":"Too Many Requests","data":[{"idxPx":"1","ts":"1"}]}', "error code 50011"),
        ("gemini", b'{"result":"error","reason":"InvalidSymbol","message":"x"}', "exchange returned an error"),
        ("bitstamp", b'{"status":"error","reason":"Not found"}', "exchange returned an error"),
        ("coinbase_exchange", b'{"message":"NotFound"}', "error message"),
        ("coinbase", b'{"error":"NOT_FOUND","message":"x"}', "expected fields"),
    ],
)
def test_error_bodies_are_refused_without_quoting_them(name: str, body: bytes, match: str) -> None:
    with pytest.raises(SourceError, match=match) as info:
        ADAPTERS[name].parse(body)
    assert "secret" not in str(info.value) and "Invalid symbol" not in str(info.value)


def _with(file: str, edit: object) -> bytes:
    doc = json.loads(recorded(file))
    assert callable(edit)
    edit(doc)
    return json.dumps(doc).encode()


def _set_price(name: str, doc: dict, value: object) -> None:  # type: ignore[type-arg]
    if name == "coinbase":
        for trade in doc["trades"]:
            trade["price"] = value
    elif name in ("coinbase_exchange", "binance"):
        doc["price"] = value
    elif name == "kraken":
        doc["result"]["XBTUSDT"]["c"][0] = value
    elif name in ("bitstamp", "gemini"):
        doc["last"] = value
    elif name == "okx":
        doc["data"][0]["idxPx"] = value


@pytest.mark.parametrize(("name", "file"), [(n, f) for n, f, *_ in RECORDED])
@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("-1.5", "not positive"),
        ("0", "not positive"),
        ("0E-8", "not positive"),
        (-3, "not positive"),
        ("NaN", "not finite"),
        ("Infinity", "not finite"),
        ("-inf", "not finite"),
        ("", "not a number"),
        ("12abc", "not a number"),
        (True, "not a number"),
        (None, "not a number"),
        ([1], "not a number"),
    ],
)
def test_bad_prices_are_refused(name: str, file: str, value: object, match: str) -> None:
    body = _with(file, lambda doc: _set_price(name, doc, value))
    with pytest.raises(SourceError, match=match):
        ADAPTERS[name].parse(body)


@pytest.mark.parametrize(
    ("name", "file", "edit"),
    [
        ("coinbase", RECORDED[0][1], lambda d: d.update(trades=[])),
        ("coinbase", RECORDED[0][1], lambda d: d["trades"][0].pop("time")),
        ("coinbase", RECORDED[0][1], lambda d: d["trades"][0].update(time="2026-04-07T00:28:58")),  # no zone
        ("coinbase_exchange", RECORDED[1][1], lambda d: d.pop("price")),
        ("coinbase_exchange", RECORDED[1][1], lambda d: d.update(time="yesterday")),
        ("binance", RECORDED[2][1], lambda d: d.pop("price")),
        ("kraken", RECORDED[3][1], lambda d: d.pop("error")),
        ("kraken", RECORDED[3][1], lambda d: d.update(result={})),
        ("kraken", RECORDED[3][1], lambda d: d["result"].update(XETHZUSD=d["result"]["XBTUSDT"])),  # ambiguous
        ("kraken", RECORDED[3][1], lambda d: d["result"]["XBTUSDT"].update(c="105899.4")),
        ("bitstamp", RECORDED[4][1], lambda d: d.pop("timestamp")),
        ("bitstamp", RECORDED[4][1], lambda d: d.update(timestamp="-5")),
        ("okx", RECORDED[5][1], lambda d: d.update(data=[])),
        ("okx", RECORDED[5][1], lambda d: d["data"][0].update(ts="1.5")),
        ("gemini", RECORDED[6][1], lambda d: d.pop("volume")),
        ("gemini", RECORDED[6][1], lambda d: d["volume"].update(timestamp=True)),
    ],
)
def test_missing_or_malformed_fields_are_refused(name: str, file: str, edit: object) -> None:
    with pytest.raises(SourceError):
        ADAPTERS[name].parse(_with(file, edit))


def test_other_recorded_binance_endpoints_are_not_mistaken_for_a_ticker() -> None:
    # bookTicker has bid/ask but no "price": the ticker adapter must not guess
    with pytest.raises(SourceError, match="expected fields"):
        ADAPTERS["binance"].parse(recorded("binance_api_v3_ticker_bookTicker_BTCUSDT.json"))
