"""The dstack provider and dstack sealing against a fake guest agent on a real Unix socket.

The fake implements the agent's prpc-over-HTTP methods the provider uses, as Dstack-TEE/dstack defines them
(``guest-agent/rpc/proto/agent_rpc.proto``, ``guest-agent/src/rpc_service.rs``, ``sdk/curl/api.md`` and
``api-tappd.md``): ``POST /GetQuote``, ``/GetKey``, ``/Info`` on ``dstack.sock`` and ``/prpc/Tappd.TdxQuote``,
``/prpc/Tappd.RawQuote``, ``/prpc/Tappd.DeriveK256Key``, ``/prpc/Tappd.Info`` on the legacy ``tappd.sock``,
JSON bodies with hex ``bytes`` fields, ``{"error": ...}`` with HTTP 400 on bad input.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from coprocessor.attestation import AttestationUnavailableError, QuoteProvider, TeeLocations, create_provider
from coprocessor.attestation.dstack import DstackAgent, DstackError, DstackQuoteProvider
from coprocessor.keys import KEYS_FILE, KEYS_PURPOSE, load_or_create_keys, open_sealer
from coprocessor.sealing import DSTACK_SEAL_KEY_PATH, ROOT_KEY_FILE, DstackSealer, SealingError, SimulatedSealer

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = REPO_ROOT.parent / "shared" / "testdata" / "attestation" / "dcap-qvl" / "tdx_v4_quote_tappd.bin"
CODE_MEASUREMENT = bytes(range(32))
REPORT_DATA = bytes(range(100, 164))
EVENT_LOG = json.dumps(
    [
        {"imr": 0, "event_type": 2147483659, "digest": "ab" * 48, "event": "", "event_payload": ""},
        {"imr": 3, "event_type": 134217729, "digest": "cd" * 48, "event": "compose-hash", "event_payload": "0e"},
    ]
)


def tappd_quote() -> bytes:
    if not SAMPLE.is_file():
        pytest.fail(f"test data {SAMPLE} is missing (expected ../shared/testdata next to the repository)")
    return SAMPLE.read_bytes()


QUOTE = tappd_quote()


def measured(quote: bytes) -> bytes:
    return hashlib.sha256(b"measure:" + quote).digest()


@dataclass
class AgentState:
    """What the fake agent knows and what it was asked."""

    app_key: bytes = b"app-key-1"
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    echo_other_report_data: bool = False
    hash_always: bool = False
    """Play an old tappd that hashes report data whatever ``hash_algorithm`` says."""
    fail_with: tuple[int, str] | None = None

    def derive(self, path: str) -> bytes:
        """Deterministic in the app key and the path only, like ``derive_key(k256_app_key, [path], 32)``."""
        return hashlib.sha256(self.app_key + b"/" + path.encode()).digest()


class _AgentHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: AgentState

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            args = json.loads(raw or b"{}")
        except ValueError:
            self._send(400, {"error": "invalid JSON"})
            return
        self.state.requests.append((self.path, self.headers.get("Content-Type", ""), args))
        if self.state.fail_with is not None:
            status, message = self.state.fail_with
            self._send(status, {"error": message})
            return
        routes = {
            "/GetQuote": self.get_quote,
            "/GetKey": self.get_key,
            "/Info": self.info,
            "/prpc/Tappd.TdxQuote": self.tdx_quote,
            "/prpc/Tappd.RawQuote": lambda a: self.tdx_quote({**a, "hash_algorithm": "raw"}),
            "/prpc/Tappd.DeriveK256Key": self.derive_k256_key,
            "/prpc/Tappd.Info": self.info,
        }
        route = routes.get(self.path)
        if route is None:
            self._send(404, {"error": f"no method {self.path}"})
            return
        try:
            status, doc = route(args)
        except ValueError as exc:
            status, doc = 400, {"error": str(exc)}
        self._send(status, doc)

    def _report_data(self, args: dict[str, Any]) -> bytes:
        data = bytes.fromhex(args.get("report_data", ""))
        if len(data) > 64:
            raise ValueError("Report data is too long")
        return data.ljust(64, b"\0")

    def get_quote(self, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        data = self._report_data(args)
        echoed = bytes(64) if self.state.echo_other_report_data else data
        return 200, {"quote": QUOTE.hex(), "event_log": EVENT_LOG, "report_data": echoed.hex(), "vm_config": "{}"}

    def tdx_quote(self, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        algorithm = "sha512" if self.state.hash_always else args.get("hash_algorithm") or "sha512"
        if algorithm != "raw":  # the agent would hash "app-data:" + data into the report data
            return 200, {"quote": "00", "event_log": "[]", "hash_algorithm": algorithm, "prefix": "app-data:"}
        self._report_data(args)
        return 200, {"quote": QUOTE.hex(), "event_log": EVENT_LOG, "hash_algorithm": "raw", "prefix": ""}

    def get_key(self, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        key = self.state.derive(args.get("path", ""))
        return 200, {"key": key.hex(), "signature_chain": ["11" * 65, "22" * 65]}

    def derive_k256_key(self, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        key = self.state.derive(args.get("path", ""))
        return 200, {"k256_key": key.hex(), "k256_signature_chain": ["11" * 65, "22" * 65]}

    def info(self, _args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, {"app_id": "aa" * 20, "instance_id": "bb" * 20, "app_name": "teebridge"}


class FakeAgent:
    """A fake guest agent serving on ``socket`` in a thread."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.state = AgentState()
        handler = type("Handler", (_AgentHandler,), {"state": self.state})
        self._server = socketserver.ThreadingUnixStreamServer(str(socket), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def calls(self, path: str) -> list[dict[str, Any]]:
        return [args for p, _type, args in self.state.requests if p == path]


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A short directory for sockets (a Unix socket path must stay under ~107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="tb-agent-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agent(run_dir: Path) -> Iterator[FakeAgent]:
    fake = FakeAgent(run_dir / "dstack.sock")
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def tappd(run_dir: Path) -> Iterator[FakeAgent]:
    fake = FakeAgent(run_dir / "tappd.sock")
    try:
        yield fake
    finally:
        fake.close()


def test_dstack_quote_over_the_socket(agent: FakeAgent) -> None:
    provider = DstackQuoteProvider(agent.socket, measured)
    assert isinstance(provider, QuoteProvider)
    assert (provider.kind, provider.insecure, provider.warning) == ("dstack", False, None)
    assert provider.measurement() == measured(QUOTE)
    assert agent.calls("/GetQuote") == [{"report_data": "00" * 64}]  # the start-up quote

    evidence = provider.quote(REPORT_DATA)
    assert evidence == {
        "kind": "tdx",
        "insecure": False,
        "quote": "0x" + QUOTE.hex(),
        "eventLog": EVENT_LOG,
        "source": "dstack",
    }
    assert json.loads(json.dumps(evidence)) == evidence
    path, content_type, args = agent.state.requests[-1]
    assert (path, content_type, args) == ("/GetQuote", "application/json", {"report_data": REPORT_DATA.hex()})


def test_dstack_refuses_a_quote_over_other_report_data(agent: FakeAgent) -> None:
    provider = DstackQuoteProvider(agent.socket, measured)
    agent.state.echo_other_report_data = True
    with pytest.raises(DstackError, match="other report data"):
        provider.quote(REPORT_DATA)


def test_dstack_agent_errors_are_reported(agent: FakeAgent) -> None:
    agent.state.fail_with = (500, "Failed to get quote: QGS unreachable")
    with pytest.raises(DstackError, match=r"/GetQuote answered HTTP 500: Failed to get quote: QGS unreachable"):
        DstackQuoteProvider(agent.socket, measured)
    with pytest.raises(ValueError, match="64 bytes"):
        DstackAgent(agent.socket).get_quote(b"short")


def test_dstack_socket_without_an_agent(run_dir: Path) -> None:
    with pytest.raises(AttestationUnavailableError, match=r"socket .* not found"):
        DstackQuoteProvider(run_dir / "dstack.sock", measured)
    (run_dir / "dstack.sock").write_bytes(b"")  # a stale file where the socket should be
    with pytest.raises(DstackError, match="cannot reach the dstack guest agent"):
        DstackQuoteProvider(run_dir / "dstack.sock", measured)


def test_legacy_tappd_api(tappd: FakeAgent) -> None:
    provider = DstackQuoteProvider(tappd.socket, measured)
    assert provider.agent.legacy and provider.measurement() == measured(QUOTE)
    evidence = provider.quote(REPORT_DATA)
    assert evidence["quote"] == "0x" + QUOTE.hex() and evidence["eventLog"] == EVENT_LOG
    assert evidence["kind"] == "tdx" and evidence["source"] == "dstack"
    assert tappd.calls("/prpc/Tappd.TdxQuote")[-1] == {"report_data": REPORT_DATA.hex(), "hash_algorithm": "raw"}
    key = provider.agent.get_key("teebridge/v1/seal", "seal")
    assert key == tappd.state.derive("teebridge/v1/seal")
    assert tappd.calls("/prpc/Tappd.DeriveK256Key") == [{"path": "teebridge/v1/seal", "purpose": "seal"}]
    assert [p for p, _t, _a in tappd.state.requests if not p.startswith("/prpc/Tappd.")] == []
    tappd.state.hash_always = True
    with pytest.raises(DstackError, match="hashed the report data with 'sha512' instead of passing it raw"):
        provider.quote(REPORT_DATA)


def test_get_key_is_deterministic_per_path(agent: FakeAgent) -> None:
    client = DstackAgent(agent.socket)
    first = client.get_key("teebridge/v1/seal", "seal")
    assert len(first) == 32 and first == agent.state.derive("teebridge/v1/seal")
    assert client.get_key("teebridge/v1/seal") == first
    assert client.get_key("other/path") != first
    assert agent.calls("/GetKey")[0] == {"path": "teebridge/v1/seal", "purpose": "seal", "algorithm": "secp256k1"}


def test_dstack_sealing_root_round_trip(agent: FakeAgent, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    sealer = open_sealer("dstack", data_dir, dstack_socket=agent.socket)
    assert isinstance(sealer, DstackSealer) and sealer.key_path == DSTACK_SEAL_KEY_PATH
    first = load_or_create_keys(data_dir, sealer)
    assert sorted(p.name for p in data_dir.iterdir()) == [KEYS_FILE]  # no seal-root.key: the root is the KMS key
    assert agent.calls("/GetKey") == [{"path": DSTACK_SEAL_KEY_PATH, "purpose": "", "algorithm": "secp256k1"}]
    sealed = (data_dir / KEYS_FILE).read_bytes()
    secret = first.to_bytes()
    assert secret[:32] not in sealed and secret[32:] not in sealed
    assert agent.state.derive(DSTACK_SEAL_KEY_PATH) not in sealed

    again = load_or_create_keys(data_dir, open_sealer("dstack", data_dir, dstack_socket=agent.socket))
    assert again.to_bytes() == secret
    assert DstackSealer(agent.state.derive(DSTACK_SEAL_KEY_PATH)).unseal(sealed, KEYS_PURPOSE) == secret
    assert len(agent.calls("/GetKey")) == 2

    agent.state.app_key = b"another app"  # another app, or a KMS that no longer authorizes this one
    with pytest.raises(SealingError, match="another root than the dstack KMS key at path 'teebridge/v1/seal'"):
        load_or_create_keys(data_dir, open_sealer("dstack", data_dir, dstack_socket=agent.socket))
    with pytest.raises(SealingError, match="authentication"):
        SimulatedSealer.open(tmp_path / "sim").unseal(sealed, KEYS_PURPOSE)
    assert not (data_dir / ROOT_KEY_FILE).exists()


def test_dstack_sealing_needs_the_agent(agent: FakeAgent, tmp_path: Path) -> None:
    with pytest.raises(SealingError, match=r"no socket exists at .*absent\.sock"):
        open_sealer("dstack", tmp_path, dstack_socket=tmp_path / "absent.sock")
    agent.state.fail_with = (400, "Unsupported algorithm")
    with pytest.raises(SealingError, match=r"cannot get the sealing root from the dstack KMS.*Unsupported algorithm"):
        open_sealer("dstack", tmp_path, dstack_socket=agent.socket)
    with pytest.raises(ValueError, match="unknown sealing 'gramine'"):
        open_sealer("gramine", tmp_path)
    simulated = open_sealer("simulated", tmp_path / "sim")
    assert isinstance(simulated, SimulatedSealer) and (tmp_path / "sim" / ROOT_KEY_FILE).exists()


def test_auto_picks_dstack_first_and_the_first_socket_that_exists(agent: FakeAgent, tmp_path: Path) -> None:
    (tmp_path / "tsm").mkdir()  # configfs-tsm is there too: dstack still wins
    where = TeeLocations(tmp_path / "tsm", tmp_path / "attestation", (tmp_path / "missing.sock", agent.socket))
    provider = create_provider("auto", CODE_MEASUREMENT, measured, locations=where)
    assert isinstance(provider, DstackQuoteProvider) and provider.agent.socket == agent.socket
    assert provider.measurement() == measured(QUOTE)
    assert list((tmp_path / "tsm").iterdir()) == []

    nowhere = TeeLocations(tmp_path / "tsm", tmp_path / "attestation", (tmp_path / "missing.sock",))
    with pytest.raises(AttestationUnavailableError, match=r"no dstack guest agent socket found at .*missing\.sock"):
        create_provider("dstack", CODE_MEASUREMENT, measured, locations=nowhere)
