"""Shared fixtures for the coprocessor tests: configs, keys, request builders and a local JSON server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from coprocessor_testdata import LOCAL_EGRESS_ALLOW, REQUESTER

from coprocessor.config import CoprocessorConfig
from coprocessor.keys import EnclaveKeys
from verifier.protocol import Request


@pytest.fixture
def config(tmp_path: Path) -> CoprocessorConfig:
    """A config with short budgets so failure paths run fast, allowed to fetch the test servers on 127.0.0.1."""
    return CoprocessorConfig(
        data_dir=tmp_path / "data",
        job_timeout_seconds=2.0,
        http_timeout_seconds=0.5,
        max_result_bytes=256,
        max_offchain_result_bytes=2048,
        queue_timeout_seconds=2.0,
        workers=4,
        egress_allow=LOCAL_EGRESS_ALLOW,
    )


@pytest.fixture
def keys() -> EnclaveKeys:
    """Fresh enclave keys."""
    return EnclaveKeys.generate()


@pytest.fixture
def make_request() -> Callable[..., Request]:
    """Build a Request for ``job_id`` and ``data`` (the input envelope bytes); fields overridable."""
    counter = iter(range(1, 1_000_000))

    def build(job_id: bytes, data: bytes, *, requester: str = REQUESTER, **fields: object) -> Request:
        values: dict[str, object] = {
            "request_id": next(counter).to_bytes(32, "big"),
            "requester": requester,
            "job_id": job_id,
            "input": data,
            "callback_gas_limit": 200_000,
            "fee": 10**15,
            "expiry": 1_900_000_000,
        }
        values.update(fields)
        return Request.from_input(**values)  # type: ignore[arg-type]

    return build


class _JsonHandler(BaseHTTPRequestHandler):
    """Routes used by the http.json tests."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path
        if path == "/price":
            doc = {
                "data": {"markets": [{"symbol": "ETH", "price": "3150.123456789"}, {"price": 12.5, "up": True}]},
                "negative": -42.129,
                "hash": "0x" + "ab" * 32,
                "name": "teebridge",
                "big": 2**300,
                "key.with.dots": {"v": 7},
            }
            self._send(200, json.dumps(doc).encode())
        elif path == "/status/500":
            self._send(500, b'{"error": "boom"}')
        elif path == "/slow":
            time.sleep(1.5)
            self._send(200, b"{}")
        elif path == "/text":
            self._send(200, b"<html>not json</html>", "text/html")
        elif path == "/nan":
            self._send(200, b'{"v": NaN}')
        elif path == "/huge":
            self._send(200, b'{"pad": "' + b"x" * 4096 + b'"}')
        elif path == "/huge/unannounced":  # no Content-Length: only the streaming check can stop it
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b'{"pad": "' + b"x" * 4096 + b'"}')
            self.close_connection = True
        elif path == "/huge/announced":  # a large Content-Length and a stall: only the header check is quick
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b'{"pad": "')
            self.wfile.flush()
            time.sleep(1.5)
            self.close_connection = True
        elif path.startswith("/private"):  # answers only with the right API key, in a header or the query
            key = self.headers.get("X-Api-Key") or (path.split("key=")[1] if "key=" in path else "")
            if key == "sk-test-0123456789abcdef":
                self._send(200, b'{"balance": "1234.5"}')
            else:
                self._send(401, b'{"error": "bad key"}')
        elif path == "/redirect/ftp":
            self._send(302, b"", Location="ftp://127.0.0.1/file")
        elif path == "/redirect/ok":
            self._send(302, b"", Location="/price")
        elif path == "/redirect/loop":
            self._send(302, b"", Location="/redirect/loop")
        else:
            self._send(404, b'{"error": "not found"}')


@pytest.fixture(scope="session")
def json_server() -> Iterator[str]:
    """Base URL of a local HTTP server (in a thread) serving the routes of ``_JsonHandler``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JsonHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
