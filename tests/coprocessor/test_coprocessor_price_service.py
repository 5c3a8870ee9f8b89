"""The price pipeline end to end against the replay server: fetcher, ``price@1`` job, ``/v1/price-report``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import httpx
import pytest
from coprocessor_testdata import CHAIN_ID, LOCAL_EGRESS_ALLOW, ROUTER
from eth_abi import decode, encode

from coprocessor.app import CoprocessorService, create_app
from coprocessor.config import CoprocessorConfig
from coprocessor.egress import EgressPolicy
from coprocessor.executor import Executor
from coprocessor.jobs import BUILTIN_JOBS, JobContext, JobRegistry
from coprocessor.jobs.price import make_price_job
from coprocessor.keys import EnclaveKeys
from coprocessor.price.fetch import fetch_quotes
from coprocessor.price.settings import PriceSettings
from teebridge.price_replay import PriceReplay
from verifier.envelope import plain
from verifier.hashing import keccak256
from verifier.price_report import PRICE_JOB_ID, SignedPriceReport, feed_id, verify_price_report
from verifier.protocol import Domain, Status, fulfillment_for
from verifier.signing import recover_signer

SOURCES = ("coinbase", "kraken", "bitstamp", "gemini", "okx")
REGISTRY = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
MEASUREMENT = keccak256(b"price test measurement")
PRICE = Decimal("3150.25")


@pytest.fixture
def replay() -> Iterator[PriceReplay]:
    with PriceReplay({"ETH/USD": PRICE}, slow_seconds=3.0) as server:
        yield server


@pytest.fixture
def price_config(config: CoprocessorConfig, replay: PriceReplay) -> CoprocessorConfig:
    return replace(
        config,
        price_sources={"ETH/USD": SOURCES, "BTC/USD": ("coinbase",)},
        price_base_urls={"*": replay.base_url},
        price_timeout_seconds=0.4,
    )


def context(seconds: float = 2.0) -> JobContext:
    return JobContext(
        deadline=time.monotonic() + seconds,
        http_timeout_seconds=1.0,
        http_max_response_bytes=65536,
        egress=EgressPolicy.allowing(*LOCAL_EGRESS_ALLOW),
    )


def test_builtin_registry_has_price_at_1() -> None:
    (job,) = [j for j in BUILTIN_JOBS if j.name == "price"]
    assert job.job_id == PRICE_JOB_ID
    assert job.input_types == ("string", "uint8") and job.output_types == ("int256", "uint16", "uint64")


def test_config_from_env() -> None:
    env = {
        "TEEBRIDGE_COPROCESSOR_PRICE_SOURCES": "ETH/USD=coinbase, kraken,binance:ETH/USDT ; BTC/USD=okx",
        "TEEBRIDGE_COPROCESSOR_PRICE_BASE_URLS": "*=http://127.0.0.1:9;kraken=http://127.0.0.1:10",
        "TEEBRIDGE_COPROCESSOR_PRICE_MIN_SOURCES": "2",
        "TEEBRIDGE_COPROCESSOR_PRICE_MAX_DEVIATION": "0.015",
        "TEEBRIDGE_COPROCESSOR_PRICE_MAX_AGE_SECONDS": "30",
        "TEEBRIDGE_COPROCESSOR_PRICE_TIMEOUT_SECONDS": "1.5",
        "TEEBRIDGE_COPROCESSOR_EGRESS_ALLOW": "127.0.0.1",  # the base URLs are local: allowed explicitly
    }
    config = CoprocessorConfig.from_env(env)
    assert config.price_sources == {"ETH/USD": ("coinbase", "kraken", "binance:ETH/USDT"), "BTC/USD": ("okx",)}
    settings = PriceSettings.from_config(config)
    assert settings.max_deviation == Decimal("0.015") and settings.min_sources == 2
    assert [s.url() for s in settings.sources["ETH/USD"]] == [
        "http://127.0.0.1:9/api/v3/brokerage/market/products/ETH-USD/ticker?limit=1",
        "http://127.0.0.1:10/0/public/Ticker?pair=ETHUSD",
        "http://127.0.0.1:9/api/v3/ticker/price?symbol=ETHUSDT",
    ]
    defaults = CoprocessorConfig.from_env({})
    assert defaults.price_min_sources == 3 and defaults.price_max_deviation == 0.02
    assert defaults.price_max_age_seconds == 60 and "ETH/USD" in defaults.price_sources


@pytest.mark.parametrize(
    ("var", "value", "match"),
    [
        ("PRICE_SOURCES", "ETH/USD=nasdaq", "unknown price source 'nasdaq'"),
        ("PRICE_SOURCES", "ETH/USD=kraken,kraken", "more than once"),
        ("PRICE_SOURCES", "ETH/USD=binance:ETH/USDT,binance", "more than once"),
        ("PRICE_SOURCES", "ethusd=kraken", "pair"),
        ("PRICE_SOURCES", "ETH/USD", "key=value"),
        ("PRICE_BASE_URLS", "nasdaq=http://x", "unknown adapter"),
        ("PRICE_BASE_URLS", "kraken=ftp://x", "http"),
        ("PRICE_MAX_DEVIATION", "1.5", "fraction"),
        ("PRICE_MIN_SOURCES", "0", "at least 1"),
    ],
)
def test_bad_price_settings(var: str, value: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CoprocessorConfig.from_env({"TEEBRIDGE_COPROCESSOR_" + var: value})


def test_fetcher_skips_a_slow_and_a_garbage_source(price_config: CoprocessorConfig, replay: PriceReplay) -> None:
    replay.set_mode("kraken", "slow")
    replay.set_mode("okx", "garbage")
    replay.set_price("ETH/USD", Decimal("3151"), source="gemini")
    settings = PriceSettings.from_config(price_config)
    started = time.monotonic()
    result = fetch_quotes(settings.sources["ETH/USD"], replace(context(), http_timeout_seconds=0.4))
    elapsed = time.monotonic() - started
    assert elapsed < 1.5  # in parallel, bounded by the timeout
    assert {q.source: q.price for q in result.quotes} == {
        "coinbase": PRICE,
        "bitstamp": PRICE,
        "gemini": Decimal("3151"),
    }
    reasons = dict(result.failures)
    assert set(reasons) == {"kraken", "okx"}
    assert "timed out" in reasons["kraken"] or "no answer" in reasons["kraken"]
    assert reasons["okx"] == "response is not valid JSON"
    assert all(abs(q.observed_at - time.time()) < 5 for q in result.quotes if q.observed_at is not None)
    assert all(replay.requests[s] == 1 for s in SOURCES)


def test_fetcher_records_http_errors_and_refused_connections(replay: PriceReplay) -> None:
    replay.set_mode("coinbase", "html")
    replay.set_mode("kraken", "error")
    settings = PriceSettings.from_config(
        CoprocessorConfig(
            data_dir=".",
            price_sources={"ETH/USD": ("coinbase", "kraken", "bitstamp")},
            price_base_urls={"*": replay.base_url, "bitstamp": "http://127.0.0.1:1"},
            egress_allow=LOCAL_EGRESS_ALLOW,
        )
    )
    result = fetch_quotes(settings.sources["ETH/USD"], context())
    assert result.quotes == ()
    reasons = dict(result.failures)
    assert reasons["coinbase"] == "upstream returned HTTP 502"
    assert reasons["kraken"] == "exchange returned 1 error(s)"
    assert reasons["bitstamp"].startswith("upstream request failed")


# -- the price@1 job through the executor -------------------------------------------------------------------


@pytest.fixture
def executor(price_config: CoprocessorConfig, keys: EnclaveKeys) -> Iterator[Executor]:
    job = make_price_job(PriceSettings.from_config(price_config))
    with Executor(keys, JobRegistry([job]), price_config, MEASUREMENT) as ex:
        yield ex


def run_price(executor: Executor, make_request: Any, pair: str, decimals: int) -> tuple[Any, Any]:
    data = plain(encode(["string", "uint8"], [pair, decimals]))
    request = make_request(PRICE_JOB_ID, data)
    signed = executor.execute(CHAIN_ID, ROUTER, request, data)
    expected = fulfillment_for(request, signed.status, signed.result, MEASUREMENT)
    assert recover_signer(expected.digest(Domain(CHAIN_ID, ROUTER)), signed.signature) == executor.keys.signer_address
    return signed, request


def test_job_returns_the_scaled_median(executor: Executor, make_request: Any, replay: PriceReplay) -> None:
    replay.set_price("ETH/USD", Decimal("3150.5"), source="okx")
    replay.set_price("ETH/USD", Decimal("3149.99"), source="kraken")  # sorted: 3149.99 3150.25 x3 ... median 3150.25
    before = int(time.time())
    signed, _ = run_price(executor, make_request, "ETH/USD", 8)
    assert signed.status == Status.OK
    answer, sources, observed_at = decode(["int256", "uint16", "uint64"], signed.result)
    assert answer == 315025000000 and sources == 5
    assert before - 1 <= observed_at <= int(time.time())


def test_job_price_moves_with_the_replay(executor: Executor, make_request: Any, replay: PriceReplay) -> None:
    replay.set_price("ETH/USD", Decimal("2999.123456789"))
    signed, _ = run_price(executor, make_request, "ETH/USD", 6)
    assert decode(["int256", "uint16", "uint64"], signed.result)[:2] == (2999123456, 5)


def test_job_quorum_failure_is_a_signed_job_failure(executor: Executor, make_request: Any, replay: PriceReplay) -> None:
    replay.set_mode("kraken", "garbage")
    replay.set_mode("okx", "error")
    replay.set_price("ETH/USD", Decimal("4000"), source="gemini")  # an outlier
    signed, _ = run_price(executor, make_request, "ETH/USD", 8)
    assert signed.status == Status.JOB_FAILED
    (reason,) = decode(["string"], signed.result)
    assert reason.startswith("no price: only 2 of 3 fresh quotes")
    assert "kraken" in reason and "okx" in reason and "127.0.0.1" not in reason


@pytest.mark.parametrize(("pair", "match"), [("eth/usd", "pair"), ("DOGE/USD", "no price sources")])
def test_job_bad_pair_is_invalid_input(executor: Executor, make_request: Any, pair: str, match: str) -> None:
    signed, _ = run_price(executor, make_request, pair, 8)
    assert signed.status == Status.INVALID_INPUT
    assert match in decode(["string"], signed.result)[0]


# -- POST /v1/price-report ----------------------------------------------------------------------------------


class Client:
    """Synchronous calls into the ASGI app (no lifespan)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://coprocessor") as client:
                return await client.post(path, **kwargs)

        return asyncio.run(call())


@pytest.fixture
def app_client(price_config: CoprocessorConfig) -> Iterator[tuple[Client, CoprocessorService]]:
    app = create_app(price_config)
    service: CoprocessorService = app.state.coprocessor
    yield Client(app), service
    service.executor.close()


BODY = {"pair": "ETH/USD", "decimals": 8, "chainId": CHAIN_ID, "registry": REGISTRY}


def test_price_report_is_signed_by_the_enclave(app_client: tuple[Client, CoprocessorService]) -> None:
    client, service = app_client
    response = client.post("/v1/price-report", json=BODY)
    assert response.status_code == 200, response.text
    doc = response.json()
    signed = SignedPriceReport.from_json(doc)
    verify_price_report(signed, CHAIN_ID, REGISTRY)
    assert signed.signer == service.keys.signer_address
    assert signed.report.measurement == service.measurement == service.executor.measurement
    assert signed.report.feed_id == feed_id("ETH/USD")
    assert signed.report.answer == 315025000000 and doc["answer"] == "315025000000"
    assert signed.report.decimals == 8 and signed.report.sources == 5
    assert abs(signed.report.observed_at - time.time()) < 5
    with pytest.raises(ValueError):
        verify_price_report(signed, CHAIN_ID + 1, REGISTRY)  # bound to the chain


def test_price_report_follows_the_price_and_truncates(
    app_client: tuple[Client, CoprocessorService], replay: PriceReplay
) -> None:
    client, _ = app_client
    replay.set_price("ETH/USD", Decimal("3333.999999999"))
    doc = client.post("/v1/price-report", json={**BODY, "decimals": 2, "chainId": str(CHAIN_ID)}).json()
    assert doc["answer"] == "333399" and doc["decimals"] == 2


def test_price_report_422_without_quorum(app_client: tuple[Client, CoprocessorService], replay: PriceReplay) -> None:
    client, _ = app_client
    for source in ("coinbase", "kraken", "bitstamp"):
        replay.set_mode(source, "html")
    response = client.post("/v1/price-report", json=BODY)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error.startswith("no price for ETH/USD: only 2 fresh quote(s), 3 required")
    assert "127.0.0.1" not in error and "0x" not in error


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({**BODY, "pair": "ETHUSD"}, "pair"),
        ({**BODY, "pair": "DOGE/USD"}, "no price sources are configured for DOGE/USD"),
        ({**BODY, "decimals": 256}, "decimals"),
        ({**BODY, "decimals": -1}, "decimals"),
        ({**BODY, "decimals": 80}, "int256"),
        ({**BODY, "chainId": 0}, "chainId"),
        ({**BODY, "registry": "0x1234"}, "registry"),
        ({"pair": "ETH/USD"}, "missing field"),
        ([1, 2], "JSON object"),
    ],
)
def test_price_report_400_on_bad_input(app_client: tuple[Client, CoprocessorService], body: Any, match: str) -> None:
    client, _ = app_client
    response = client.post("/v1/price-report", json=body)
    assert response.status_code == 400
    assert match in response.json()["error"]


def test_price_report_400_on_non_json_and_413_on_huge(app_client: tuple[Client, CoprocessorService]) -> None:
    client, _ = app_client
    assert client.post("/v1/price-report", content=b"{not json").status_code == 400
    assert client.post("/v1/price-report", content=b"x" * 10_000).status_code == 413
