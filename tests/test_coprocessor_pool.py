"""The relayer's coprocessor pool: load balancing, failover, cool-down, and what it does not retry."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler

import pytest

from relayer.coprocessor_client import CoprocessorError
from relayer.coprocessor_pool import CoprocessorPool
from tests.helpers import DevEnclave, QuietJsonHandler, serve_http
from verifier.protocol import Domain, Request
from verifier.signed_result import SignedResult

CALLS: dict[str, int] = {}


def handler(name: str, status: int) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietJsonHandler):
        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self._answer()

        def _answer(self) -> None:
            CALLS[name] = CALLS.get(name, 0) + 1
            body = json.dumps({"status": "ok", "name": name} if status == 200 else {"error": name}).encode()
            self.send_json(body, status)

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


def _signing(name: str) -> type[BaseHTTPRequestHandler]:
    """Answers POST /v1/sign-batch with a fixed 65-byte signature (the pool does not check it; the submitter does)."""

    class Handler(QuietJsonHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            CALLS[name] = CALLS.get(name, 0) + 1
            body = json.dumps({"signature": "0x" + "11" * 65}).encode()
            self.send_json(body, 200)

    return Handler


def _signed_results() -> list[SignedResult]:
    request = Request(b"\x01" * 32, "0x" + "22" * 20, b"\x03" * 32, b"\x04" * 32, 100_000, 0, 2**40)
    return [DevEnclave.random().sign(request, b"answer", Domain(31337, "0x" + "33" * 20))]


def test_a_batch_signature_comes_from_the_member_holding_the_key() -> None:
    """A member with another key answers 409: the next is asked, and the refusal is not counted as a failure."""
    CALLS.clear()
    with serve_http(handler("foreign", 409)) as foreign, serve_http(_signing("owner")) as owner:
        pool = CoprocessorPool([foreign, owner])
        for _ in range(2):
            assert pool.sign_batch(31337, "0x" + "33" * 20, _signed_results()) == b"\x11" * 65
        assert CALLS == {"foreign": 2, "owner": 2}  # asked in list order: a walk does not move the round-robin
        assert all(s["failures"] == 0 for s in pool.status())
        pool.close()


def test_no_batch_signature_when_no_member_holds_the_key() -> None:
    CALLS.clear()
    with serve_http(handler("foreign", 409)) as foreign, serve_http(handler("down", 503)) as down:
        pool = CoprocessorPool([foreign, down])
        assert pool.sign_batch(31337, "0x" + "33" * 20, _signed_results()) is None
        status = {s["url"]: s for s in pool.status()}
        assert status[foreign]["failures"] == 0 and status[down]["failures"] == 1
        pool.close()
