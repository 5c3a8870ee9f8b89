"""Fetching collateral from a PCCS: a local HTTP server on 127.0.0.1 serves the recorded collateral."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from attest_testdata import cli_json, data_path, dcap_qvl_collateral, quote_of, read, utc

from verifier.dcap import Collateral, CollateralError, Reason, fetch_collateral, verify_quote

SGX = "dcap-qvl/sgx_v3_quote.bin"
TDX4 = "dcap-qvl/tdx_v4_quote.bin"


@dataclass
class FakePccs:
    """Routes ``(path, sorted query)`` to ``(status, headers, body)``; records every request."""

    routes: dict[tuple[str, str], tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    url: str = ""

    def serve(self, collateral: Collateral, *, tee: str, ca: str, fmspc: str) -> None:
        """Serve ``collateral`` the way a PCCS does (PEM chains URL-encoded in headers, root CRL as hex)."""
        signed = {
            "tcb": f'{{"tcbInfo":{collateral.tcb_info},"signature":"{collateral.tcb_info_signature.hex()}"}}',
            "qe": f'{{"enclaveIdentity":{collateral.qe_identity},'
            f'"signature":"{collateral.qe_identity_signature.hex()}"}}',
        }
        self.routes = {
            ("/sgx/certification/v4/pckcrl", f"ca={ca}&encoding=der"): (
                200,
                {"SGX-PCK-CRL-Issuer-Chain": quote(collateral.pck_crl_issuer_chain)},
                collateral.pck_crl,
            ),
            ("/sgx/certification/v4/rootcacrl", ""): (200, {}, collateral.root_ca_crl.hex().encode()),
            (f"/{tee}/certification/v4/tcb", f"fmspc={fmspc}"): (
                200,
                {"TCB-Info-Issuer-Chain": quote(collateral.tcb_info_issuer_chain)},
                signed["tcb"].encode(),
            ),
            (f"/{tee}/certification/v4/qe/identity", "update=standard"): (
                200,
                {"SGX-Enclave-Identity-Issuer-Chain": quote(collateral.qe_identity_issuer_chain)},
                signed["qe"].encode(),
            ),
        }


@pytest.fixture
def pccs() -> Iterator[FakePccs]:
    state = FakePccs()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = "&".join(f"{k}={v[0]}" for k, v in sorted(parse_qs(parts.query).items()))
            state.requests.append(self.path)
            status, headers, body = state.routes.get((parts.path, query), (404, {}, b"not found"))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize(
    ("name", "tee", "ca", "fmspc", "at"),
    [
        (SGX, "sgx", "processor", "00A067110000", "1752919277"),
        (TDX4, "tdx", "platform", "B0C06F000000", "1752919234"),
    ],
)
def test_fetched_collateral_is_the_recorded_one(pccs: FakePccs, name: str, tee: str, ca: str, fmspc: str, at: str):
    recorded = dcap_qvl_collateral(name.removeprefix("dcap-qvl/").removesuffix(".bin"))
    pccs.serve(recorded, tee=tee, ca=ca, fmspc=fmspc)
    fetched = fetch_collateral(pccs.url, quote_of(name))
    assert fetched == recorded  # byte for byte, signed JSON included
    assert len(pccs.requests) == 4
    expected = verify_quote(read(name), recorded, utc(at))
    got = verify_quote(read(name), fetched, utc(at))
    assert got.accepted and (got.tcb_status, got.advisory_ids) == (expected.tcb_status, expected.advisory_ids)


def test_base_url_may_include_the_api_path_and_raw_bytes_work(pccs: FakePccs) -> None:
    recorded = dcap_qvl_collateral("tdx_v4_quote")
    pccs.serve(recorded, tee="tdx", ca="platform", fmspc="B0C06F000000")
    assert fetch_collateral(pccs.url + "/sgx/certification/v4/", read(TDX4)) == recorded


def test_pccs_errors_are_collateral_errors(pccs: FakePccs) -> None:
    recorded = dcap_qvl_collateral("tdx_v4_quote")
    pccs.serve(recorded, tee="tdx", ca="platform", fmspc="000000000000")  # wrong FMSPC: TCB info is a 404
    with pytest.raises(CollateralError, match=r"tcb.*answered HTTP 404"):
        fetch_collateral(pccs.url, quote_of(TDX4))
    pccs.serve(recorded, tee="tdx", ca="platform", fmspc="B0C06F000000")
    key = ("/tdx/certification/v4/qe/identity", "update=standard")
    status, _, body = pccs.routes[key]
    pccs.routes[key] = (status, {}, body)
    with pytest.raises(CollateralError, match="no SGX-Enclave-Identity-Issuer-Chain header"):
        fetch_collateral(pccs.url, quote_of(TDX4))
    pccs.routes[key] = (status, {"SGX-Enclave-Identity-Issuer-Chain": "x"}, b'{"signature":"00"}')
    with pytest.raises(CollateralError, match="no 'enclaveIdentity' member"):
        fetch_collateral(pccs.url, quote_of(TDX4))


def test_tampered_pccs_answer_fails_verification(pccs: FakePccs) -> None:
    """A PCCS is not trusted: what it serves is verified like any other collateral."""
    recorded = dcap_qvl_collateral("tdx_v4_quote")
    pccs.serve(recorded, tee="tdx", ca="platform", fmspc="B0C06F000000")
    key = ("/tdx/certification/v4/tcb", "fmspc=B0C06F000000")
    status, headers, body = pccs.routes[key]
    pccs.routes[key] = (status, headers, body.replace(b'"tcbEvaluationDataNumber":17', b'"tcbEvaluationDataNumber":99'))
    fetched = fetch_collateral(pccs.url, quote_of(TDX4))
    verdict = verify_quote(read(TDX4), fetched, utc("1752919234"))
    assert verdict.reason == Reason.COLLATERAL_SIGNATURE_INVALID


def test_unreachable_pccs() -> None:
    with pytest.raises(CollateralError, match="cannot fetch"):
        fetch_collateral("http://127.0.0.1:9", quote_of(TDX4), timeout=2)


def test_cli_with_pccs_url(pccs: FakePccs) -> None:
    pccs.serve(dcap_qvl_collateral("tdx_v4_quote"), tee="tdx", ca="platform", fmspc="B0C06F000000")
    quote_path = data_path(TDX4)
    code, doc = cli_json("verify", quote_path, "--pccs-url", pccs.url, "--at", "2025-07-19T10:00:34Z")
    assert code == 0 and doc["tcb_status"] == "UpToDate"
    pccs.routes.clear()
    code, doc = cli_json("verify", quote_path, "--pccs-url", pccs.url, "--at", "2025-07-19T10:00:34Z")
    assert code == 1 and doc["reason_code"] == "collateral_unavailable"
    assert json.dumps(doc)  # still one JSON object, with the parsed fields
    assert doc["mr_td"] is not None
