"""The llm.chat job against a real OpenAI-compatible HTTP server on 127.0.0.1, through the executor."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from coprocessor_testdata import CHAIN_ID, LOCAL_EGRESS_ALLOW, REQUESTER, ROUTER
from eth_abi import decode, encode

from coprocessor.config import CoprocessorConfig
from coprocessor.executor import Executor, SignedFulfillment
from coprocessor.jobs import JobRegistry
from coprocessor.jobs.llm_chat import LLM_CHAT_JOB, prompt_hash
from coprocessor.keys import EnclaveKeys, load_or_create_keys
from coprocessor.sealing import SimulatedSealer
from coprocessor.secrets import SecretStore
from tests.helpers import QuietJsonHandler, serve_http
from verifier.envelope import Binding, encrypt, plain
from verifier.hashing import keccak256
from verifier.protocol import Request, Status
from verifier.secrets import SecretSetUpload, secret_set_id, secrets_info, sign_upload
from verifier.signing import address_of_private_key
from verifier.suites import Suite, key_id, seal

API_KEY = "sk-llm-test-9f8e7d6c5b4a39281706"
OWNER_KEY = keccak256(b"llm job owner")
OWNER = address_of_private_key(OWNER_KEY)
MEASUREMENT = keccak256(b"test measurement")
SEEN: list[dict] = []


class _Chat(QuietJsonHandler):
    """/v1/chat/completions as OpenAI serves it; /slow/v1 stalls, /broken/v1 answers 500, /odd/v1 non-chat JSON."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        SEEN.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if self.path.startswith("/slow/"):
            time.sleep(1.5)
        if self.path.startswith("/broken/"):
            return self._send(500, {"error": {"message": "model overloaded"}})
        if self.path.startswith("/odd/"):
            return self._send(200, {"object": "list", "data": []})
        if self.headers.get("Authorization") != f"Bearer {API_KEY}":
            return self._send(401, {"error": {"message": "Incorrect API key provided"}})
        prompt = body["messages"][-1]["content"]
        words = "positive" if "love" in prompt else "negative"
        content = f"{words} (seed {body['seed']}, t={body['temperature']})" if body["max_tokens"] < 1000 else "x" * 6000
        self._send(
            200,
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
            },
        )

    def _send(self, status: int, doc: dict) -> None:
        data = json.dumps(doc).encode()
        self.send_json(data, status)


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    with serve_http(_Chat) as base:
        yield base


@pytest.fixture
def config(tmp_path: Path) -> CoprocessorConfig:
    """The default size limits: 4,096 bytes on-chain, 1 MiB off-chain; the test API on 127.0.0.1 allowed."""
    return CoprocessorConfig(
        data_dir=tmp_path / "data", workers=4, queue_timeout_seconds=5.0, egress_allow=LOCAL_EGRESS_ALLOW
    )


@pytest.fixture
def keys(config: CoprocessorConfig) -> EnclaveKeys:
    return load_or_create_keys(config.data_dir)


@pytest.fixture
def store(config: CoprocessorConfig, keys: EnclaveKeys) -> SecretStore:
    store = SecretStore(config.data_dir, SimulatedSealer.open(config.data_dir), keys)
    public_key = keys.public_key(Suite.X25519)
    info = secrets_info(CHAIN_ID, OWNER, LLM_CHAT_JOB.job_id, "openai")
    sealed = seal(Suite.X25519, public_key, json.dumps({"apiKey": API_KEY}).encode(), info)
    ciphertext = bytes([Suite.X25519]) + key_id(public_key) + sealed
    upload = SecretSetUpload(OWNER, CHAIN_ID, LLM_CHAT_JOB.job_id, "openai", 1, 0, (REQUESTER,), ciphertext, b"")
    store.put(sign_upload(OWNER_KEY, upload))
    return store


@pytest.fixture
def executor(keys: EnclaveKeys, config: CoprocessorConfig, store: SecretStore) -> Iterator[Executor]:
    with Executor(keys, JobRegistry([LLM_CHAT_JOB]), config, MEASUREMENT, store) as ex:
        yield ex


SET_ID = secret_set_id(CHAIN_ID, OWNER, LLM_CHAT_JOB.job_id, "openai")


def chat_input(endpoint: str, prompt: str, *, max_tokens: int = 64, model: str = "gpt-test", seed: int = 7) -> bytes:
    types = list(LLM_CHAT_JOB.input_types or ())
    return encode(types, [endpoint, model, "Answer in one word.", prompt, max_tokens, 200, seed])


def ask(
    executor: Executor, make_request: Callable[..., Request], payload: bytes, *, secrets: bool = True
) -> SignedFulfillment:
    data = plain(payload, secret_set_id=SET_ID if secrets else None)
    return executor.execute(CHAIN_ID, ROUTER, make_request(LLM_CHAT_JOB.job_id, data), data)


def reason(signed: SignedFulfillment) -> str:
    return decode(["string"], signed.result)[0]


def test_answer_commits_to_endpoint_model_prompt_and_response(
    executor: Executor, make_request: Callable[..., Request], api: str
) -> None:
    endpoint = f"{api}/v1"
    signed = ask(executor, make_request, chat_input(endpoint, "I love this product"))
    assert signed.status == Status.OK
    endpoint_hash, model, p_hash, r_hash, response = decode(list(LLM_CHAT_JOB.output_types or ()), signed.result)
    assert response == "positive (seed 7, t=0.2)"
    assert endpoint_hash == keccak256(endpoint.encode()) and model == "gpt-test"
    assert p_hash == prompt_hash("Answer in one word.", "I love this product", 64, 200, 7)
    assert r_hash == keccak256(response.encode())
    call = SEEN[-1]
    assert call["path"] == "/v1/chat/completions" and call["auth"] == f"Bearer {API_KEY}"
    assert call["body"]["messages"][0] == {"role": "system", "content": "Answer in one word."}
    assert (call["body"]["max_tokens"], call["body"]["seed"], call["body"]["temperature"]) == (64, 7, 0.2)


def test_a_long_answer_goes_off_chain(executor: Executor, make_request: Callable[..., Request], api: str) -> None:
    signed = ask(executor, make_request, chat_input(f"{api}/v1", "essay please", max_tokens=4000))
    assert signed.status == Status.RESULT_OFFCHAIN and signed.full_result is not None
    assert decode(list(LLM_CHAT_JOB.output_types or ()), signed.full_result)[4] == "x" * 6000


def test_an_encrypted_prompt_works_like_a_plain_one(
    executor: Executor, keys: EnclaveKeys, make_request: Callable[..., Request], api: str
) -> None:
    payload = chat_input(f"{api}/v1", "I love secrets")
    binding = Binding(CHAIN_ID, ROUTER, REQUESTER, LLM_CHAT_JOB.job_id)
    data = encrypt(payload, keys.public_key(), binding, secret_set_id=SET_ID)
    assert b"I love secrets" not in data
    signed = executor.execute(CHAIN_ID, ROUTER, make_request(LLM_CHAT_JOB.job_id, data), data)
    assert signed.status == Status.OK


@pytest.mark.parametrize(
    ("path", "secrets", "message"),
    [
        ("/broken/v1", True, "HTTP 500"),
        ("/v1", False, "HTTP 401"),  # no secret set: no key
        ("/odd/v1", True, "not a chat completion"),
        ("/slow/v1", True, "timed out"),
    ],
    ids=["server-error", "no-key", "not-chat", "timeout"],
)
def test_upstream_failures_are_signed_job_failures(
    executor: Executor, make_request: Callable[..., Request], api: str, path: str, secrets: bool, message: str
) -> None:
    from coprocessor.jobs import llm_chat

    original = llm_chat.UPSTREAM_TIMEOUT_SECONDS
    llm_chat.UPSTREAM_TIMEOUT_SECONDS = 0.5
    try:
        signed = ask(executor, make_request, chat_input(f"{api}{path}", "hello there"), secrets=secrets)
    finally:
        llm_chat.UPSTREAM_TIMEOUT_SECONDS = original
    assert signed.status == Status.JOB_FAILED and message in reason(signed)
    assert API_KEY not in reason(signed) and "hello there" not in reason(signed)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (chat_input("ftp://example.com", "hi"), "http:// or https://"),
        (chat_input("http://127.0.0.1:9/v1", "hi", max_tokens=0), "maxTokens"),
        (chat_input("http://127.0.0.1:9/v1", ""), "prompt is empty"),
        (chat_input("http://127.0.0.1:9/v1", "hi", model=""), "model must be"),
        (b"\x01\x02", "does not decode"),
    ],
)
def test_malformed_inputs_are_signed_invalid_input(
    executor: Executor, make_request: Callable[..., Request], payload: bytes, message: str
) -> None:
    signed = ask(executor, make_request, payload)
    assert signed.status == Status.INVALID_INPUT and message in reason(signed)


def test_the_api_key_never_leaves_the_enclave(
    executor: Executor, make_request: Callable[..., Request], api: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    results = [
        ask(executor, make_request, chat_input(f"{api}{path}", f"say {API_KEY}"))
        for path in ("/v1", "/broken/v1", "/odd/v1")
    ]
    for signed in results:
        assert API_KEY.encode() not in signed.result and API_KEY not in json.dumps(signed.to_json())
    assert API_KEY not in caplog.text
