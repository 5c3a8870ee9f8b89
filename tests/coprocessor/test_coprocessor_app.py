"""In-process checks of the app's error paths that a real server cannot easily be driven into."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from coprocessor_testdata import CHAIN_ID, REQUESTER, ROUTER
from starlette.applications import Starlette

from coprocessor.app import CoprocessorService, create_app
from coprocessor.config import CoprocessorConfig
from coprocessor.executor import OverloadedError
from verifier.envelope import plain
from verifier.hexutil import to_hex
from verifier.protocol import job_id

BODY = {
    "chainId": CHAIN_ID,
    "router": ROUTER,
    "requests": [
        {
            "requestId": "0x" + "11" * 32,
            "requester": REQUESTER,
            "jobId": to_hex(job_id("echo", 1)),
            "input": to_hex(plain(b"hi")),
            "callbackGasLimit": 1,
            "fee": 0,
            "expiry": 1,
        }
    ],
}


class Client:
    """A synchronous facade over httpx's in-process ASGI transport."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    def post(self, path: str, json: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://coprocessor") as client:
                return await client.post(path, json=json)

        return asyncio.run(call())


@pytest.fixture
def app_client(config: CoprocessorConfig) -> Iterator[tuple[Client, CoprocessorService]]:
    app = create_app(replace(config, max_request_bytes=2048))
    service: CoprocessorService = app.state.coprocessor
    yield Client(app), service
    service.executor.close()


def test_echo_in_process(app_client: tuple[Client, CoprocessorService]) -> None:
    client, _service = app_client
    response = client.post("/v1/execute", json=BODY)
    assert response.status_code == 200 and response.json()["fulfillments"][0]["result"] == "0x6869"


def test_unexpected_error_is_500_without_its_message(
    app_client: tuple[Client, CoprocessorService], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client, service = app_client

    def boom(*_args: Any) -> None:
        raise RuntimeError("SECRET-" + "IN-MESSAGE")  # joined at run time: the source line is logged

    monkeypatch.setattr(service.executor, "execute_batch", boom)
    response = client.post("/v1/execute", json=BODY)
    assert response.status_code == 500 and "internal error" in response.json()["error"]
    assert "RuntimeError" in caplog.text
    assert "SECRET-IN-MESSAGE" not in caplog.text and "SECRET-IN-MESSAGE" not in response.text


def test_overloaded_is_503_with_retry_after(
    app_client: tuple[Client, CoprocessorService], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, service = app_client

    def busy(*_args: Any) -> None:
        raise OverloadedError("no worker became free; retry later")

    monkeypatch.setattr(service.executor, "execute_batch", busy)
    response = client.post("/v1/execute", json=BODY)
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert "retry later" in response.json()["error"]


def test_body_over_limit_is_413(app_client: tuple[Client, CoprocessorService]) -> None:
    client, _service = app_client
    big = dict(BODY, padding="x" * 4096)
    response = client.post("/v1/execute", json=big)
    assert response.status_code == 413 and "2048 bytes" in response.json()["error"]


def test_lifespan_end_closes_the_pool(config: CoprocessorConfig) -> None:
    app = create_app(config)

    async def run_lifespan() -> None:
        async with app.router.lifespan_context(app):
            pass

    asyncio.run(run_lifespan())
    with pytest.raises(RuntimeError):
        app.state.coprocessor.executor._pool.submit(print)
