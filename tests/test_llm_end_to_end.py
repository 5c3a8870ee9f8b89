"""llm.chat on the local stack: a sealed API key, an encrypted prompt, an answer signed and emitted on-chain."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import eth_abi
import pytest
from web3.logs import DISCARD

from coprocessor.jobs.llm_chat import prompt_hash
from teebridge.sdk import TeeBridgeClient
from teebridge.stack import USER_KEY, LocalStack
from tests.helpers import assert_reverts_with, serve_http
from verifier.hashing import keccak256
from verifier.protocol import Status, job_id

LLM = job_id("llm.chat", 1)
API_KEY = "sk-e2e-llm-5e6f7a8b9c0d1e2f3a4b"
TYPES = ["string", "string", "string", "string", "uint32", "uint16", "uint64"]


class _Chat(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ok = self.headers.get("Authorization") == f"Bearer {API_KEY}"
        words = int(body["messages"][-1]["content"].split()[-1])  # "... N" asks for N words
        doc = {"choices": [{"message": {"role": "assistant", "content": " ".join(["yes"] * words)}}]}
        data = json.dumps(doc if ok else {"error": "unauthorized"}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with serve_http(_Chat) as base:
        yield f"{base}/v1"


@pytest.fixture(scope="module")
def local() -> Iterator[LocalStack]:
    with LocalStack() as stack:
        yield stack


def test_llm_answer_is_signed_hashed_and_emitted(local: LocalStack, endpoint: str) -> None:
    client = TeeBridgeClient(local.anvil.rpc_url, local.deployment, USER_KEY)
    consumer, _ = client.chain.deploy("LlmAnswerConsumer", local.deployment.router, client.address)
    client.upload_secrets(LLM, "openai", {"apiKey": API_KEY}, requesters=[consumer.address], url=local.relayer_url)
    set_id = client.secret_set_id(LLM, "openai")

    def ask(words: int, gas: int) -> tuple[bytes, object]:
        prompt = f"Is this fine? Answer with words: {words}"
        payload = eth_abi.encode(TYPES, [endpoint, "local-model", "", prompt, 512, 0, 42])
        data = client.encrypt_input(payload, LLM, requester=consumer.address, secret_set_id=set_id)
        assert prompt.encode() not in data  # the prompt never appears on-chain
        receipt = client.chain.send(consumer.functions.ask(data, gas, 600))
        (asked,) = consumer.events.Asked().process_receipt(receipt, errors=DISCARD)
        request_id = bytes(asked["args"]["requestId"])
        answer = client.wait_for(request_id, receipt["blockNumber"])
        return prompt, answer

    prompt, answer = ask(3, 300_000)
    assert answer.status == Status.OK and answer.callback_succeeded
    logs = consumer.events.Answered().get_logs(from_block=answer.block_number, to_block=answer.block_number)
    (event,) = logs
    assert event["args"]["response"] == "yes yes yes" and event["args"]["model"] == "local-model"
    assert bytes(event["args"]["promptHash"]) == prompt_hash("", prompt, 512, 0, 42)
    assert bytes(event["args"]["endpointHash"]) == keccak256(endpoint.encode())
    assert consumer.functions.answerHashes(answer.request_id).call() == keccak256(b"yes yes yes")

    # a long answer: hash and length on-chain, the text from the relayer, checked by the SDK
    _, long_answer = ask(2000, 300_000)
    assert long_answer.status == Status.RESULT_OFFCHAIN and long_answer.callback_succeeded
    full = client.result_bytes(long_answer, url=local.relayer_url)
    assert eth_abi.decode(["bytes32", "string", "bytes32", "bytes32", "string"], full)[4] == " ".join(["yes"] * 2000)
    assert consumer.functions.answerHashes(long_answer.request_id).call() == keccak256(full)

    # only the owner may make the consumer spend the sealed key
    stranger = TeeBridgeClient(local.anvil.rpc_url, local.deployment, "0x" + "5" * 64)
    call = consumer.functions.ask(b"\x00", 100_000, 600)
    assert_reverts_with(call, stranger.chain.address, "NotOwner(address)")
