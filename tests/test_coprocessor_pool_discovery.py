"""The pool's discovered members: replaced as a set, configured ones untouched, each pinned to its signer."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from relayer.coprocessor_client import CoprocessorError
from relayer.coprocessor_pool import CoprocessorPool
from relayer.discovery import normalize_endpoint
from relayer.store import StoredRequest
from tests.helpers import QuietJsonHandler, serve_http

HONEST = "0x" + "aa" * 20
OTHER = "0x" + "bb" * 20
CALLS: dict[str, int] = {}


def executor(name: str, signer: str) -> type[BaseHTTPRequestHandler]:
    """A stand-in coprocessor whose /v1/execute answers one result per request, claiming ``signer``."""

    class Handler(QuietJsonHandler):
        def do_GET(self) -> None:
            self._reply({"status": "ok", "signer": signer})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            CALLS[name] = CALLS.get(name, 0) + 1
            results = [
                {
                    "requestId": r["requestId"],
                    "commitment": "0x" + "00" * 32,
                    "status": 0,
                    "result": "0x",
                    "measurement": "0x" + "00" * 32,
                    "signer": signer,
                    "signature": "0x" + "00" * 65,
                }
                for r in body["requests"]
            ]
            self._reply({"fulfillments": results})

        def _reply(self, doc: object) -> None:
            data = json.dumps(doc).encode()
            self.send_json(data, 200)

    return Handler


def request() -> StoredRequest:
    return StoredRequest(
        request_id=b"\x01" * 32,
        requester="0x" + "11" * 20,
        job_id=b"\x22" * 32,
        input=b"\x00",
        callback_gas_limit=100_000,
        fee=0,
        expiry=2**40,
        block_number=1,
        tx_hash="0x" + "33" * 32,
    )


def test_discovered_members_are_replaced_as_a_set_and_configured_ones_stay() -> None:
    pool = CoprocessorPool(["http://a"], discovery=True)
    assert pool.set_discovered({"http://a": HONEST, "http://b": HONEST}) == (["http://b"], [])
    assert pool.urls == ["http://a", "http://b"]  # a configured URL is not added twice
    assert {m["url"]: (m["origin"], m["signer"]) for m in pool.status()} == {
        "http://a": ("configured", None),
        "http://b": ("discovered", HONEST),
    }
    assert pool.set_discovered({"http://b": OTHER, "http://c": HONEST}) == (["http://b", "http://c"], ["http://b"])
    assert pool.set_discovered({}) == ([], ["http://b", "http://c"])
    assert pool.urls == ["http://a"] and pool.counts() == {"configured": 1, "discovered": 0}
    pool.close()


def test_an_empty_discovery_pool_says_so_and_is_retryable() -> None:
    with pytest.raises(ValueError, match="--discover"):
        CoprocessorPool([])
    pool = CoprocessorPool([], discovery=True)
    with pytest.raises(CoprocessorError, match="none discovered yet") as info:
        pool.health()
    assert info.value.retryable


def test_a_discovered_member_signing_with_another_key_is_removed_and_stays_out() -> None:
    CALLS.clear()
    with serve_http(executor("impostor", OTHER)) as impostor, serve_http(executor("honest", HONEST)) as honest:
        pool = CoprocessorPool([], discovery=True)
        pool.set_discovered({impostor: HONEST, honest: HONEST})
        for _ in range(2):  # round-robin: one of the two calls starts at the impostor
            (result,) = pool.execute(31337, "0x" + "cc" * 20, [request()])
            assert result.signer.lower() == HONEST
        assert CALLS["impostor"] == 1 and pool.urls == [honest]
        assert pool.set_discovered({impostor: HONEST, honest: HONEST}) == ([], [])  # refused while listed so
        assert pool.set_discovered({impostor: OTHER, honest: HONEST}) == ([impostor], [])  # a new signer: a new try
        pool.close()


@pytest.mark.parametrize(
    "url",
    ["ftp://host", "http://", "https://user:pw@host", "http://host/?q=1", "http://ho st", "https://" + "a" * 249],
)
def test_malformed_endpoints_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        normalize_endpoint(url)


def test_an_endpoint_loses_its_trailing_slash() -> None:
    assert normalize_endpoint("https://enclave.example.org:8443/api/") == "https://enclave.example.org:8443/api"


def test_the_relayer_needs_a_coprocessor_or_discovery(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from relayer.__main__ import main

    monkeypatch.setenv("TEEBRIDGE_RELAYER_KEY", "0x" + "01" * 32)
    with pytest.raises(SystemExit) as exit_:
        main(["--rpc-url", "http://127.0.0.1:1", "--router", "0x" + "12" * 20, "--db", "x.sqlite"])
    assert exit_.value.code == 2
    assert "give at least one --coprocessor URL, or --discover" in capsys.readouterr().err


def test_the_gatekeeper_wants_one_public_url_per_coprocessor(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from teebridge.cli import main

    args = ["gatekeeper", "register", "--rpc-url", "http://127.0.0.1:1", "--deployment", str(tmp_path / "d.json")]
    args += ["--allow-simulated", "--measurement", "0x" + "00" * 32, "--coprocessor", "http://a", "--coprocessor"]
    args += ["http://b", "--public-url", "https://a.example.org"]
    assert main(args) != 0
    assert "1 --public-url for 2 --coprocessor" in capsys.readouterr().err
