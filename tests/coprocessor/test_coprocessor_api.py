"""The HTTP API, served by real uvicorn in a subprocess (``python -m coprocessor --port 0``)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from coprocessor_testdata import CHAIN_ID, REQUESTER, ROUTER
from eth_abi import decode, encode

from coprocessor.keys import KEYS_FILE, KEYS_PURPOSE, EnclaveKeys
from coprocessor.measurement import REPO_ROOT, code_measurement
from coprocessor.sealing import SimulatedSealer
from verifier.attestation import SIMULATED_WARNING, SimulatedQuote, report_data, verify_simulated_quote
from verifier.envelope import Binding, encrypt, key_id, plain
from verifier.hashing import keccak256
from verifier.hexutil import from_hex, to_hex
from verifier.protocol import Domain, Fulfillment, Request, Status, batch_digest, fulfillment_for, job_id
from verifier.signing import recover_signer
from verifier.suites import Suite, parse_key_bundle

LISTENING = "teebridge-coprocessor listening on "
REGISTRY = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
ECHO = job_id("echo", 1)
CREDIT = job_id("confidential.credit-score", 1)
MAX_BATCH = 4


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    data_dir: Path
    stderr_path: Path

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=15)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            if self.process.stdout:
                self.process.stdout.close()


def start_server(
    data_dir: Path, log_dir: Path, *args: str, env: dict[str, str] | None = None, script: Path | None = None
) -> Server:
    """Start the coprocessor and wait for its listening line (or for it to exit)."""
    stderr_path = log_dir / f"stderr-{len(list(log_dir.glob('stderr-*')))}.log"
    process = subprocess.Popen(
        [
            sys.executable,
            *([str(script)] if script else ["-m", "coprocessor"]),
            *("--data-dir", str(data_dir), "--port", "0", *args),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr_path.open("w"),
        text=True,
        env={**os.environ, **(env or {})},
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)
        lines.put("")  # EOF: the process exited

    threading.Thread(target=pump, daemon=True).start()
    try:
        line = lines.get(timeout=20)
    except queue.Empty:
        line = ""
    if not line.startswith(LISTENING):
        process.kill()
        process.wait()
        raise RuntimeError(f"coprocessor did not start: {line!r}\n{stderr_path.read_text()}")
    return Server(process, line[len(LISTENING) :].strip(), data_dir, stderr_path)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("api")
    running = start_server(
        base / "data", base, "--log-level", "DEBUG", env={"TEEBRIDGE_COPROCESSOR_MAX_BATCH": str(MAX_BATCH)}
    )
    try:
        yield running
    finally:
        assert running.stop() == 0


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        yield http


def request_json(job: bytes, data: bytes, nonce: int, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "requestId": to_hex(nonce.to_bytes(32, "big")),
        "requester": REQUESTER,
        "jobId": to_hex(job),
        "input": to_hex(data),
        "callbackGasLimit": 100_000,
        "fee": "1000000000000000",
        "expiry": 1_700_000_000,
    }
    doc.update(extra)
    return doc


def execute(client: httpx.Client, *requests: dict[str, Any], chain_id: Any = CHAIN_ID) -> httpx.Response:
    return client.post("/v1/execute", json={"chainId": chain_id, "router": ROUTER, "requests": list(requests)})


def check_signed(doc: dict[str, Any], sent: dict[str, Any], signer: str) -> None:
    """Recompute everything from what was sent, with verifier code only."""
    data = from_hex(sent["input"])
    request = Request.from_input(
        request_id=from_hex(sent["requestId"], 32),
        requester=sent["requester"],
        job_id=from_hex(sent["jobId"], 32),
        input=data,
        callback_gas_limit=sent["callbackGasLimit"],
        fee=int(sent["fee"]),
        expiry=sent["expiry"],
    )
    result = from_hex(doc["result"])
    fulfillment = fulfillment_for(request, doc["status"], result, from_hex(doc["measurement"], 32))
    assert doc["requestId"] == sent["requestId"]
    assert doc["commitment"] == to_hex(request.commitment())
    assert doc["resultHash"] == to_hex(keccak256(result))
    assert doc["measurement"] == to_hex(code_measurement())
    assert doc["signer"] == signer
    assert recover_signer(fulfillment.digest(Domain(CHAIN_ID, ROUTER)), from_hex(doc["signature"], 65)) == signer


def test_health(client: httpx.Client) -> None:
    response = client.get("/v1/health")
    assert response.status_code == 200
    doc = response.json()
    assert doc["status"] == "ok" and doc["attestation"] == "simulated" and doc["insecure"] is True
    assert doc["jobs"] == 9
    assert doc["measurement"] == to_hex(code_measurement())
    assert doc["signer"].startswith("0x") and doc["signer"] != doc["signer"].lower()  # checksummed


def test_attestation_binds_keys_to_chain_and_registry(client: httpx.Client) -> None:
    response = client.get("/v1/attestation", params={"chainId": CHAIN_ID, "registry": REGISTRY.lower()})
    assert response.status_code == 200
    doc = response.json()
    assert doc["kind"] == "simulated" and doc["insecure"] is True and doc["warning"] == SIMULATED_WARNING
    assert doc["chainId"] == CHAIN_ID and doc["registry"] == REGISTRY
    signer = client.get("/v1/health").json()["signer"]
    assert doc["signer"] == signer
    hpke = from_hex(doc["hpkeKeys"])
    keys = parse_key_bundle(hpke)
    assert doc["hpkeKeyIds"] == {suite.label: to_hex(key_id(key)) for suite, key in keys.items()}
    assert doc["measurement"] == to_hex(code_measurement())
    quote = SimulatedQuote.from_json(doc["quote"])
    verify_simulated_quote(quote)
    assert quote.measurement == code_measurement()
    assert quote.report_data == report_data(CHAIN_ID, REGISTRY, signer, hpke)
    other = client.get("/v1/attestation", params={"chainId": 1, "registry": REGISTRY}).json()
    assert other["quote"]["reportData"] != doc["quote"]["reportData"]


@pytest.mark.parametrize(
    "params,message",
    [
        ({}, "chainId"),
        ({"chainId": "31337"}, "registry"),
        ({"chainId": "abc", "registry": REGISTRY}, "chainId"),
        ({"chainId": "0", "registry": REGISTRY}, "chainId must be positive"),
        ({"chainId": "-1", "registry": REGISTRY}, "chainId"),
        ({"chainId": "1", "registry": "0x1234"}, "registry"),
        ({"chainId": "1", "registry": "0xE7f1725E7734CE288F8367e1Bb143E90bb3F0512"}, "checksum"),
    ],
)
def test_attestation_bad_params(client: httpx.Client, params: dict[str, str], message: str) -> None:
    response = client.get("/v1/attestation", params=params)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_jobs(client: httpx.Client) -> None:
    response = client.get("/v1/jobs")
    assert response.status_code == 200
    jobs = {j["name"]: j for j in response.json() if j["version"] == 1}
    assert {(j["name"], j["version"]) for j in response.json()} >= {("http.json", 1), ("http.json", 2)}
    assert set(jobs) == {
        "confidential.credit-score",
        "http.json",
        "echo",
        "price",
        "llm.chat",
        "ai.embed",
        "ai.similarity",
        "ai.classify",
    }
    assert jobs["ai.classify"]["inputTypes"] == ["bytes32", "string", "string[]"]
    credit = jobs["confidential.credit-score"]
    assert credit["jobId"] == to_hex(CREDIT) and credit["version"] == 1
    assert credit["inputTypes"] == ["uint256", "uint256", "uint16", "uint16"] and credit["outputTypes"] == ["uint16"]
    assert jobs["http.json"]["inputTypes"] == ["string", "string", "string", "uint8"]
    assert jobs["echo"]["inputTypes"] is None and jobs["echo"]["jobId"] == to_hex(ECHO)
    assert all(j["description"] for j in jobs.values())


def test_execute_plain_encrypted_and_unknown_in_order(client: httpx.Client) -> None:
    attestation = client.get("/v1/attestation", params={"chainId": CHAIN_ID, "registry": REGISTRY}).json()
    signer = attestation["signer"]
    hpke = parse_key_bundle(from_hex(attestation["hpkeKeys"]))[Suite.X25519]
    secret = encode(["uint256", "uint256", "uint16", "uint16"], [120_000, 12_000, 0, 120])
    sent = [
        request_json(ECHO, plain(b"hello"), 1, fee=5),
        request_json(CREDIT, encrypt(secret, hpke, Binding(CHAIN_ID, ROUTER, REQUESTER, CREDIT)), 2),
        request_json(b"\x07" * 32, plain(b""), 3),
        request_json(ECHO, b"\x09", 4),
    ]
    response = execute(client, *sent)
    assert response.status_code == 200, response.text
    docs = response.json()["fulfillments"]
    assert [d["status"] for d in docs] == [Status.OK, Status.OK, Status.UNKNOWN_JOB, Status.INVALID_INPUT]
    assert from_hex(docs[0]["result"]) == b"hello"
    assert decode(["uint16"], from_hex(docs[1]["result"])) == (300 + 225 + 200 + 100,)
    for doc, request in zip(docs, sent, strict=True):
        check_signed(doc, request, signer)


def test_execute_with_matching_input_hash_is_accepted(client: httpx.Client) -> None:
    data = plain(b"abc")
    response = execute(client, request_json(ECHO, data, 10, inputHash=to_hex(keccak256(data))))
    assert response.status_code == 200 and response.json()["fulfillments"][0]["status"] == Status.OK


@pytest.mark.parametrize(
    "body,message",
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"router": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "requests": []}', "missing chainId"),
    ],
)
def test_execute_malformed_body(client: httpx.Client, body: bytes, message: str) -> None:
    response = client.post("/v1/execute", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 and message in response.json()["error"]


@pytest.mark.parametrize(
    "override,message",
    [
        ({"requestId": "0x12"}, "requests[0].requestId"),
        ({"requester": "0x70997970c51812dc3A010C7d01b50e0d17dc79C8"}, "requests[0].requester has a wrong EIP-55"),
        ({"jobId": 5}, "requests[0].jobId"),
        ({"input": "zz"}, "requests[0].input"),
        ({"fee": "1.5"}, "requests[0].fee must be a decimal integer string"),
        ({"fee": -1}, "requests[0].fee must be in"),
        ({"fee": str(2**96)}, "requests[0].fee must be in"),
        ({"callbackGasLimit": True}, "requests[0].callbackGasLimit must be an integer"),
        ({"expiry": 2**64}, "requests[0].expiry"),
        ({"inputHash": to_hex(keccak256(b"other"))}, "inputHash"),
    ],
)
def test_execute_bad_request_fields(client: httpx.Client, override: dict[str, Any], message: str) -> None:
    response = execute(client, request_json(ECHO, plain(b"x"), 20, **override))
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_execute_missing_field_and_bad_chain(client: httpx.Client) -> None:
    doc = request_json(ECHO, plain(b"x"), 21)
    del doc["expiry"]
    assert "requests[0] is missing expiry" in execute(client, doc).json()["error"]
    assert execute(client, request_json(ECHO, plain(b"x"), 22), chain_id="31337").status_code == 400
    assert execute(client, request_json(ECHO, plain(b"x"), 22), chain_id=0).status_code == 400
    empty = client.post("/v1/execute", json={"chainId": CHAIN_ID, "router": ROUTER, "requests": []})
    assert empty.status_code == 400 and "non-empty" in empty.json()["error"]


def test_execute_too_many_requests(client: httpx.Client) -> None:
    ok = execute(client, *[request_json(ECHO, plain(b""), 30 + i) for i in range(MAX_BATCH)])
    assert ok.status_code == 200 and len(ok.json()["fulfillments"]) == MAX_BATCH
    response = execute(client, *[request_json(ECHO, plain(b""), 40 + i) for i in range(MAX_BATCH + 1)])
    assert response.status_code == 413 and f"at most {MAX_BATCH}" in response.json()["error"]


def _sign_batch(client: httpx.Client, fulfillments: list[dict[str, Any]]) -> httpx.Response:
    keys = ("requestId", "commitment", "status", "resultHash", "measurement", "signature")
    body = {"chainId": CHAIN_ID, "router": ROUTER, "fulfillments": [{k: f[k] for k in keys} for f in fulfillments]}
    return client.post("/v1/sign-batch", json=body)


def test_sign_batch_signs_only_its_own_fulfillments(client: httpx.Client) -> None:
    sent = [request_json(ECHO, plain(b"b%d" % i), 60 + i) for i in range(3)]
    docs = execute(client, *sent).json()["fulfillments"]
    response = _sign_batch(client, docs)
    assert response.status_code == 200, response.text
    answer = response.json()
    signer = client.get("/v1/health").json()["signer"]
    assert answer["signer"] == signer and answer["measurement"] == to_hex(code_measurement())
    fulfillments = [
        Fulfillment(
            from_hex(d["requestId"], 32),
            from_hex(d["commitment"], 32),
            d["status"],
            from_hex(d["resultHash"], 32),
            from_hex(d["measurement"], 32),
        )
        for d in docs
    ]
    digest = batch_digest(fulfillments, Domain(CHAIN_ID, ROUTER))
    assert recover_signer(digest, from_hex(answer["signature"], 65)) == signer

    # an item this enclave did not sign (here: its result hash changed) is refused, nothing is signed
    forged = dict(docs[1], resultHash=to_hex(keccak256(b"something else")))
    refused = _sign_batch(client, [docs[0], forged, docs[2]])
    assert refused.status_code == 409 and "fulfillments[1]" in refused.json()["error"]
    assert "signature" not in refused.json()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"chainId": CHAIN_ID, "router": ROUTER, "fulfillments": []}, "non-empty"),
        ({"chainId": CHAIN_ID, "router": ROUTER, "fulfillments": [{"requestId": "0x00"}]}, "is missing"),
        ({"chainId": 0, "router": ROUTER, "fulfillments": [{}]}, "fulfillments[0] is missing"),
    ],
)
def test_sign_batch_malformed(client: httpx.Client, body: dict[str, Any], message: str) -> None:
    response = client.post("/v1/sign-batch", json=body)
    assert response.status_code == 400 and message in response.json()["error"]


def test_unknown_route_and_method_are_json_errors(client: httpx.Client) -> None:
    assert client.get("/v1/nothing").status_code == 404
    assert "error" in client.get("/v1/nothing").json()
    response = client.get("/v1/execute")
    assert response.status_code == 405 and "error" in response.json()


def test_no_key_material_or_inputs_in_logs_or_responses(client: httpx.Client, server: Server) -> None:
    marker = b"PLAINTEXT-MARKER-7f3a"
    response = execute(client, request_json(ECHO, plain(marker), 50))
    assert response.status_code == 200
    root = SimulatedSealer.open(server.data_dir, create=False)
    secret = EnclaveKeys.from_bytes(root.unseal((server.data_dir / KEYS_FILE).read_bytes(), KEYS_PURPOSE)).to_bytes()
    texts = [
        server.stderr_path.read_text(),
        client.get("/v1/health").text,
        client.get("/v1/attestation", params={"chainId": 1, "registry": REGISTRY}).text,
        execute(client, request_json(ECHO, plain(b"x"), 51, inputHash="0x" + "00" * 32)).text,
    ]
    logs = texts[0]
    assert "request 0x" + (50).to_bytes(32, "big").hex() in logs and "echo@1" in logs  # the per-request DEBUG line
    assert "executed 1 request(s) in" in logs and "OK 1" in logs  # the per-batch INFO line
    assert marker.hex() not in logs and marker.decode() not in logs
    for text in texts:
        for part in (secret[:32], secret[32:], (server.data_dir / "seal-root.key").read_bytes()):
            assert part.hex() not in text.lower()


def test_sigterm_exits_cleanly_and_restart_keeps_the_signer(tmp_path: Path) -> None:
    first = start_server(tmp_path / "data", tmp_path)
    signer = httpx.get(first.url + "/v1/health").json()["signer"]
    assert first.stop() == 0
    second = start_server(tmp_path / "data", tmp_path, "--host", "127.0.0.1")
    try:
        assert httpx.get(second.url + "/v1/health").json()["signer"] == signer
    finally:
        assert second.stop() == 0
    assert "Shutting down" in first.stderr_path.read_text()


def test_hardware_provider_without_its_device_fails_at_start(tmp_path: Path) -> None:
    """No TEE here: asking for TDX must stop the server with a clear message, never fall back to simulated."""
    env_tsm = {"TEEBRIDGE_COPROCESSOR_TSM_REPORT_DIR": str(tmp_path / "no-configfs")}
    with pytest.raises(RuntimeError, match="configfs") as info:
        start_server(tmp_path / "data", tmp_path, "--attestation", "tdx", env=env_tsm)
    assert "Traceback" not in str(info.value)


BLOCKING_JOB_LAUNCHER = """
import sys, time
import coprocessor.app
from coprocessor.__main__ import main
from coprocessor.jobs import BUILTIN_JOBS, Job, JobRegistry

def block(context, payload):
    time.sleep(30)  # ignores its budget, like a badly written handler
    return payload

BLOCK = Job("test.block", 1, None, None, block)
coprocessor.app.default_registry = lambda *_: JobRegistry([*BUILTIN_JOBS, BLOCK])
sys.exit(main(sys.argv[1:]))
"""


def test_timed_out_handler_does_not_block_shutdown(tmp_path: Path) -> None:
    launcher = tmp_path / "launch_blocking.py"
    launcher.write_text(BLOCKING_JOB_LAUNCHER)
    env = {"TEEBRIDGE_COPROCESSOR_JOB_TIMEOUT_SECONDS": "0.3", "PYTHONPATH": str(REPO_ROOT)}
    running = start_server(tmp_path / "data", tmp_path, env=env, script=launcher)
    try:
        sent = request_json(job_id("test.block", 1), plain(b""), 60)
        response = httpx.post(
            running.url + "/v1/execute", json={"chainId": CHAIN_ID, "router": ROUTER, "requests": [sent]}, timeout=10
        )
        doc = response.json()["fulfillments"][0]
        assert doc["status"] == Status.TIMEOUT
        assert decode(["string"], from_hex(doc["result"])) == ("job exceeded its time budget of 0.3 s",)
        started = time.monotonic()
    finally:
        code = running.stop()
    assert code == 0
    assert time.monotonic() - started < 5  # the handler would hold the interpreter for 30 s
    assert "still running past their budget" in running.stderr_path.read_text()
