"""Key management (``POST /v1/keys/rotate`` and ``/v1/keys/activate``) answers only the operator: the admin
token when one is set, loopback clients otherwise (``coprocessor.admin``)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest

from coprocessor.admin import AdminRefusedError, check_admin, is_loopback
from coprocessor.config import CoprocessorConfig
from teebridge.gatekeeper_service import _post
from tests.coprocessor.test_coprocessor_api import Server, start_server
from tests.helpers import serve_http

TOKEN = "a-long-enough-admin-token-0123456789"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1"])
def test_without_a_token_loopback_clients_may_manage_keys(host: str) -> None:
    check_admin(None, host, None)


@pytest.mark.parametrize("host", ["192.0.2.7", "10.0.0.5", "fd00::2", "testclient", "", None])
def test_without_a_token_other_clients_are_refused_with_what_to_do(host: str | None) -> None:
    with pytest.raises(AdminRefusedError) as info:
        check_admin(None, host, None)
    assert info.value.status == 403 and "TEEBRIDGE_COPROCESSOR_ADMIN_TOKEN" in str(info.value)


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer wrong-token-wrong-token-wrong", f"Basic {TOKEN}", TOKEN]
)
def test_with_a_token_only_that_bearer_token_is_accepted_even_from_loopback(authorization: str | None) -> None:
    with pytest.raises(AdminRefusedError) as info:
        check_admin(TOKEN, "127.0.0.1", authorization)
    assert info.value.status == 401
    check_admin(TOKEN, "192.0.2.7", f"Bearer {TOKEN}")
    check_admin(TOKEN, "192.0.2.7", f"bearer {TOKEN}")


def test_the_token_is_long_and_never_in_the_config_repr(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 16"):
        CoprocessorConfig(data_dir=tmp_path, admin_token="short")
    config = CoprocessorConfig.from_env({"TEEBRIDGE_COPROCESSOR_ADMIN_TOKEN": TOKEN}, data_dir=tmp_path)
    assert config.admin_token == TOKEN and TOKEN not in repr(config)
    assert is_loopback("::1") and not is_loopback("not an address")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("admin")
    running = start_server(base / "data", base, env={"TEEBRIDGE_COPROCESSOR_ADMIN_TOKEN": TOKEN})
    try:
        yield running
    finally:
        assert running.stop() == 0


def test_a_coprocessor_with_a_token_rotates_only_for_its_holder(guarded: Server) -> None:
    with httpx.Client(base_url=guarded.url, timeout=10) as http:
        before = http.get("/v1/keys").json()
        for headers in ({}, {"Authorization": "Bearer not-the-token-not-the-token"}):
            refused = http.post("/v1/keys/rotate", headers=headers)
            assert refused.status_code == 401 and "Bearer" in refused.json()["error"]
            assert refused.headers["www-authenticate"] == "Bearer"
        assert http.get("/v1/keys").json() == before  # nothing pending
        admin = {"Authorization": f"Bearer {TOKEN}"}
        pending = http.post("/v1/keys/rotate", headers=admin).json()["pending"]
        activate = {"signer": pending["signer"], "retireAt": 2_000_000_000}
        assert http.post("/v1/keys/activate", json=activate).status_code == 401
        assert http.get("/v1/keys").json()["current"] == before["current"]
        assert http.post("/v1/keys/activate", json=activate, headers=admin).json()["current"] == pending
        assert http.get("/v1/health").json()["signer"] == pending["signer"]


def _non_loopback_address() -> str | None:
    """An address of this host on a non-loopback interface (no packet is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if is_loopback(address) else address


def test_a_coprocessor_without_a_token_refuses_key_management_from_another_host(tmp_path: Path) -> None:
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this host has no non-loopback IPv4 address to connect from")
    server = start_server(tmp_path / "data", tmp_path, "--host", "0.0.0.0")
    try:
        port = server.url.rsplit(":", 1)[1]
        with httpx.Client(base_url=f"http://{address}:{port}", timeout=10) as http:
            refused = http.post("/v1/keys/rotate")
            assert refused.status_code == 403 and "TEEBRIDGE_COPROCESSOR_ADMIN_TOKEN" in refused.json()["error"]
            assert http.get("/v1/keys").json()["pending"] is None
            assert http.get("/v1/health").status_code == 200  # the rest of the API is unchanged
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert http.post("/v1/keys/rotate").status_code == 200
    finally:
        assert server.stop() == 0


def test_the_gatekeeper_sends_its_admin_token() -> None:
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_args: object) -> None:
            pass

    with serve_http(Handler) as url:
        _post(url + "/v1/keys/rotate", None, 5, TOKEN)
        _post(url + "/v1/keys/rotate", None, 5)
    assert seen == [f"Bearer {TOKEN}", None]
