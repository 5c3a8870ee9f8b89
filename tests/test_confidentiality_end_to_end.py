"""Confidentiality on the real local stack, through the SDK: anvil, a coprocessor, the gatekeeper, a relayer.

Encrypted requests and results (both suites), a secret set uploaded through the relayer and used by
``http.json@2`` against a local API that wants the key, scoping on-chain, key rotation with requests sealed to
the old key during the overlap, and a grep of every log and response for the secret value.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import eth_abi
import httpx
import pytest

from teebridge.anvil import DEV_KEYS
from teebridge.gatekeeper_service import GatekeeperService
from teebridge.sdk import ResultMismatchError, SecretsUploadError, TeeBridgeClient
from teebridge.stack import USER_KEY, LocalStack
from tests.helpers import QuietJsonHandler, serve_http
from verifier.protocol import Status, job_id
from verifier.suites import DecryptionError, Suite

CREDIT = job_id("confidential.credit-score", 1)
ECHO = job_id("echo", 1)
HTTP_JSON_V2 = job_id("http.json", 2)
APPLICANT = eth_abi.encode(["uint256", "uint256", "uint16", "uint16"], [85_000, 22_000, 1, 52])
API_KEY = "sk-e2e-SEALED-0f1e2d3c4b5a69788796a5b4"
SEEN_KEYS: list[str] = []


class _Api(QuietJsonHandler):
    """A stand-in for a paid API: answers only with the right key."""

    def do_GET(self) -> None:
        key = self.headers.get("Authorization", "")
        SEEN_KEYS.append(key)
        ok = key == f"Bearer {API_KEY}"
        body = json.dumps({"balance": "42.5"} if ok else {"error": "unauthorized"}).encode()
        self.send_json(body, 200 if ok else 401)


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    with serve_http(_Api) as base:
        yield f"{base}/account"


@pytest.fixture(scope="module")
def local() -> Iterator[LocalStack]:
    with LocalStack() as stack:
        yield stack


@pytest.fixture(scope="module")
def client(local: LocalStack) -> TeeBridgeClient:
    return TeeBridgeClient(local.anvil.rpc_url, local.deployment, USER_KEY)


def test_registry_publishes_both_suites(client: TeeBridgeClient, local: LocalStack) -> None:
    (key,) = client.enclave_keys(CREDIT)
    assert key.signer == local.registration.signer
    assert key.suites == (Suite.X25519, Suite.MLKEM768_X25519)
    assert client.registry.functions.hpkeSuites(key.signer).call() == 0b110


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.label)
def test_encrypted_request_and_result_through_the_sdk(client: TeeBridgeClient, local: LocalStack, suite: Suite) -> None:
    consumer = local.deployment.consumer
    mine, theirs = client.new_result_key(suite), client.new_result_key(suite)
    data = client.encrypt_input(APPLICANT, CREDIT, requester=consumer, suite=suite, result_key=mine)
    # ExampleConsumer stores the whole result: a post-quantum ciphertext (1,120-byte enc) needs ~0.9 M gas for that
    gas = 300_000 if suite is Suite.X25519 else 1_500_000
    sent = client.request(CREDIT, data, consumer=consumer, callback_gas_limit=gas)
    assert sent.encrypted
    answer = client.wait(sent, timeout=30)
    assert answer.status == Status.OK and answer.callback_succeeded
    (score,) = eth_abi.decode(["uint16"], client.decrypt_result(answer, mine))
    assert 300 <= score <= 850
    stored = client.chain.contract("ExampleConsumer", consumer).functions.answerOf(sent.request_id).call()
    assert stored[2] == answer.result and len(answer.result) > 32  # the consumer holds only ciphertext
    with pytest.raises(DecryptionError):
        client.decrypt_result(answer, theirs)


def test_a_sealed_secret_is_used_by_its_job_and_never_seen(
    client: TeeBridgeClient, local: LocalStack, api: str
) -> None:
    consumer = local.deployment.consumer
    uploaded = client.upload_secrets(
        HTTP_JSON_V2, "billing", {"token": API_KEY}, requesters=[consumer], url=local.relayer_url
    )
    assert [u.signer for u in uploaded] == [local.registration.signer]
    set_id = client.secret_set_id(HTTP_JSON_V2, "billing")
    assert uploaded[0].secret_set_id == set_id
    payload = eth_abi.encode(
        ["string", "string[]", "string", "string", "uint8"],
        [api, ["Authorization: Bearer {{secrets.token}}"], "balance", "uint256", 1],
    )
    data = client.encrypt_input(payload, HTTP_JSON_V2, requester=consumer, secret_set_id=set_id)
    answer = client.wait(client.request(HTTP_JSON_V2, data, consumer=consumer), timeout=30)
    assert answer.status == Status.OK and eth_abi.decode(["uint256"], answer.result) == (425,)
    assert SEEN_KEYS[-1] == f"Bearer {API_KEY}"  # the upstream got the key; nobody else did

    # another job naming the same set: a signed refusal on-chain
    other = client.wait(client.request(ECHO, client.plain_input(b"x", secret_set_id=set_id), consumer=consumer))
    assert other.status == Status.SECRET_UNAVAILABLE
    assert "another job" in eth_abi.decode(["string"], other.result)[0]
    # the owner's own account may use it straight from the Router; another account may not
    direct = client.wait(client.request(HTTP_JSON_V2, client.plain_input(payload, secret_set_id=set_id)))
    assert direct.status == Status.OK
    stranger = TeeBridgeClient(local.anvil.rpc_url, local.deployment, DEV_KEYS[5])
    refused = stranger.wait(stranger.request(HTTP_JSON_V2, stranger.plain_input(payload, secret_set_id=set_id)))
    assert refused.status == Status.SECRET_UNAVAILABLE
    assert "does not allow requester" in eth_abi.decode(["string"], refused.result)[0]

    # a replayed (same version) upload is refused, through the relayer, with the enclave's reason
    with pytest.raises(SecretsUploadError, match="not above the stored version"):
        client.upload_secrets(
            HTTP_JSON_V2, "billing", {"token": API_KEY}, url=local.relayer_url, version=uploaded[0].version
        )
    status = httpx.get(f"{local.coprocessor_url}/v1/secrets/0x{set_id.hex()}").json()
    assert status["version"] == uploaded[0].version and API_KEY not in json.dumps(status)

    # deletion: the next request is refused
    assert client.delete_secrets(HTTP_JSON_V2, "billing", url=local.relayer_url).deleted
    gone = client.wait(client.request(HTTP_JSON_V2, data, consumer=consumer))
    assert gone.status == Status.SECRET_UNAVAILABLE and "deleted" in eth_abi.decode(["string"], gone.result)[0]

    # the value appears in no answer, no log of the stack, no file it wrote and no transaction
    for result in (answer.result, other.result, direct.result, refused.result, gone.result):
        assert API_KEY.encode() not in result
    assert local.workdir is not None
    for log in local.workdir.glob("*.log"):
        assert API_KEY not in log.read_text(errors="replace"), log
    for path in local.workdir.rglob("*"):
        if path.is_file():
            assert API_KEY.encode() not in path.read_bytes(), path
    latest = client.chain.w3.eth.block_number
    for number in range(local.deployment.deploy_block, latest + 1):
        for tx in client.chain.w3.eth.get_block(number, full_transactions=True)["transactions"]:
            assert API_KEY.encode() not in bytes(tx["input"])


def test_a_large_result_goes_off_chain_and_is_checked_by_the_sdk(client: TeeBridgeClient, local: LocalStack) -> None:
    """Over the coprocessor's 4,096-byte on-chain limit: hash and length on-chain, bytes from the relayer."""
    output = bytes(range(256)) * 20  # 5,120 bytes
    mine = client.new_result_key()
    answer = client.wait(
        client.request(ECHO, client.plain_input(output, result_key=mine), consumer=local.deployment.consumer)
    )
    assert answer.status == Status.RESULT_OFFCHAIN and len(answer.result) == 64
    (digest, length) = eth_abi.decode(["bytes32", "uint256"], answer.result)
    assert length == len(output) + 1 + 32 + 16  # the ciphertext: suite, enc, tag
    with pytest.raises(ValueError, match="pass url="):
        client.result_bytes(answer)
    assert client.decrypt_result(answer, mine, url=local.relayer_url) == output
    plain_answer = client.wait(client.request(ECHO, client.plain_input(output), consumer=local.deployment.consumer))
    assert client.result_bytes(plain_answer, url=local.relayer_url) == output
    # a relayer serving other bytes is caught
    with serve_http(_Liar) as liar, pytest.raises(ResultMismatchError, match="not the signed result"):
        client.result_bytes(plain_answer, url=liar)
    assert digest != b"\x00" * 32


class _Liar(QuietJsonHandler):
    def do_GET(self) -> None:
        body = bytes(range(256)) * 19 + bytes(256)
        self.send_json(body, content_type=None)


def test_key_rotation_keeps_old_ciphertexts_working_during_the_overlap(
    client: TeeBridgeClient, local: LocalStack
) -> None:
    """Last in this module: it changes the stack's signer."""
    consumer = local.deployment.consumer
    old = client.enclave_key(CREDIT)
    sealed_to_old = client.encrypt_input(APPLICANT, CREDIT, requester=consumer, enclave=old)
    gatekeeper = local.gatekeeper
    assert isinstance(gatekeeper, GatekeeperService)
    rotation = gatekeeper.rotate(local.coprocessor_url)
    assert rotation.old_signer == old.signer and rotation.new_signer != old.signer
    assert rotation.old_keys_retire_at == old.expiry
    signers = {k.signer for k in client.enclave_keys(CREDIT)}
    assert signers == {old.signer, rotation.new_signer}  # both registered until the old one expires
    answer = client.wait(client.request(CREDIT, sealed_to_old, consumer=consumer), timeout=30)
    assert answer.status == Status.OK and answer.signer == rotation.new_signer
    keys = httpx.get(f"{local.coprocessor_url}/v1/keys").json()
    assert keys["current"]["signer"] == rotation.new_signer
    assert {r["retireAt"] for r in keys["retired"]} == {old.expiry} and len(keys["retired"]) == 2
    fresh = client.encrypt_input(APPLICANT, CREDIT, requester=consumer, enclave=client.enclave_key(CREDIT))
    assert client.wait(client.request(CREDIT, fresh, consumer=consumer), timeout=30).status == Status.OK


def test_keys_rotate_on_the_command_line(client: TeeBridgeClient, local: LocalStack, tmp_path: Path) -> None:
    """`teebridge keys rotate` (after the rotation above: a second one) and `teebridge keys show`."""
    before = httpx.get(f"{local.coprocessor_url}/v1/keys").json()["current"]["signer"]
    record = tmp_path / "deployment.json"
    local.deployment.save(record)
    measurement = "0x" + local.registration.measurement.hex()
    command = [sys.executable, "-m", "teebridge.cli", "keys", "rotate", "--rpc-url", local.anvil.rpc_url]
    command += ["--deployment", str(record), "--coprocessor", local.coprocessor_url]
    command += ["--allow-simulated", "--measurement", measurement]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TEEBRIDGE_GATEKEEPER_KEY": DEV_KEYS[1]},
    )
    assert done.returncode == 0, done.stderr
    after = httpx.get(f"{local.coprocessor_url}/v1/keys").json()["current"]["signer"]
    assert after != before and f"rotated {before} -> {after}" in done.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "teebridge.cli", "keys", "show", "--coprocessor", local.coprocessor_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(shown.stdout)["current"]["signer"] == after
    data = client.encrypt_input(APPLICANT, CREDIT, requester=local.deployment.consumer)
    answer = client.wait(client.request(CREDIT, data, consumer=local.deployment.consumer), timeout=30)
    assert answer.status == Status.OK and answer.signer == after
