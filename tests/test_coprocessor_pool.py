"""The relayer's coprocessor pool: load balancing, failover, cool-down, and what it does not retry."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler

import pytest

from relayer.coprocessor_client import CoprocessorError
from relayer.coprocessor_pool import CoprocessorPool
from tests.helpers import serve_http

CALLS: dict[str, int] = {}


def handler(name: str, status: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self._answer()

        def _answer(self) -> None:
            CALLS[name] = CALLS.get(name, 0) + 1
            body = json.dumps({"status": "ok", "name": name} if status == 200 else {"error": name}).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def test_calls_spread_over_healthy_members_and_fail_over() -> None:
    CALLS.clear()
    clock = [100.0]
    with serve_http(handler("a", 200)) as a, serve_http(handler("b", 200)) as b, serve_http(handler("down", 503)) as d:
        pool = CoprocessorPool([a, d, b], clock=lambda: clock[0])
        names = [pool.health()["name"] for _ in range(6)]
        assert set(names) == {"a", "b"} and names.count("a") == names.count("b") == 3
        assert CALLS["down"] == 1  # tried once, then rested
        status = {s["url"]: s for s in pool.status()}
        assert status[d]["failures"] == 1 and status[d]["available_in_seconds"] == 2.0
        clock[0] += 2.5  # its cool-down is over: it is tried again, fails, rests twice as long
        for _ in range(3):
            pool.health()
        assert CALLS["down"] == 2 and {s["url"]: s for s in pool.status()}[d]["available_in_seconds"] == 4.0
        pool.close()


def test_a_refusal_is_not_retried_elsewhere_and_all_down_is_retryable() -> None:
    CALLS.clear()
    with serve_http(handler("bad", 400)) as bad, serve_http(handler("ok", 200)) as ok:
        pool = CoprocessorPool([bad, ok])
        with pytest.raises(CoprocessorError) as refused:
            for _ in range(2):  # round-robin: one of the two calls starts at the refusing member
                pool.health()
        assert not refused.value.retryable and CALLS.get("bad") == 1
    with serve_http(handler("x", 503)) as x, serve_http(handler("y", 500)) as y:
        pool = CoprocessorPool([x, y])
        with pytest.raises(CoprocessorError, match="every coprocessor failed") as info:
            pool.health()
        assert info.value.retryable


def test_unreachable_member_is_skipped() -> None:
    with serve_http(handler("alive", 200)) as alive:
        pool = CoprocessorPool(["http://127.0.0.1:9", alive])
        assert {pool.health()["name"] for _ in range(4)} == {"alive"}


def test_secret_uploads_go_to_each_member_until_one_accepts() -> None:
    CALLS.clear()
    with serve_http(handler("other-key", 400)) as other, serve_http(handler("mine", 200)) as mine:
        pool = CoprocessorPool([other, mine])
        for _ in range(3):
            status, body = pool.forward("/v1/secrets", b"{}")
            assert status == 200 and json.loads(body)["name"] == "mine"
    with serve_http(handler("nobody", 400)) as nobody:
        assert CoprocessorPool([nobody]).forward("/v1/secrets", b"{}")[0] == 400


def test_a_pool_needs_a_member() -> None:
    with pytest.raises(ValueError, match="at least one URL"):
        CoprocessorPool([])
