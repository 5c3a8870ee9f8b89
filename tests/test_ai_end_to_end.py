"""ai.classify on the local stack: a ModerationGate's request is answered by the real coprocessor on anvil."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from coprocessor.ai.builtin import BUILTIN_MODEL_HASH
from relayer.chain import ChainClient
from teebridge.client import wait_for_answer
from teebridge.stack import OWNER_KEY, USER_KEY, LocalStack
from teebridge.testkit import requested_in
from verifier.ai_result import decode_classification
from verifier.protocol import Status

LABELS = ["a kind and respectful comment", "a hateful, abusive insult"]
PUBLISHED, BLOCKED, FAILED = 2, 3, 4


@pytest.fixture(scope="module")
def local() -> Iterator[LocalStack]:
    with LocalStack() as stack:
        yield stack


def test_moderation_gate_acts_on_the_enclaves_classification(local: LocalStack) -> None:
    owner = ChainClient(local.anvil.rpc_url, OWNER_KEY)
    user = ChainClient(local.anvil.rpc_url, USER_KEY)
    router = user.contract("Router", local.deployment.router)
    gate, _ = owner.deploy("ModerationGate", router.address, BUILTIN_MODEL_HASH, LABELS, 0, 20_000)
    as_user = user.contract("ModerationGate", gate.address)
    sent = {}
    for text in ("Great talk yesterday, I learned a lot.", "I hate you, you worthless piece of trash."):
        receipt = user.send(as_user.functions.submit(text))
        request, _ = requested_in(router, receipt)
        sent[text] = (request, receipt["blockNumber"])
    verdicts = []
    for request, block in sent.values():
        answer = wait_for_answer(router, request.request_id, from_block=block, timeout=60)
        assert answer.status == Status.OK and answer.callback_succeeded
        assert answer.signer == local.registration.signer
        assert decode_classification(answer.result, expected_model=BUILTIN_MODEL_HASH).margin >= 20_000
        verdicts.append(gate.functions.posts(request.request_id).call()[1])
    assert verdicts == [PUBLISHED, BLOCKED]


def test_gate_trusting_a_model_the_enclave_lacks_never_publishes(local: LocalStack) -> None:
    owner = ChainClient(local.anvil.rpc_url, OWNER_KEY)
    user = ChainClient(local.anvil.rpc_url, USER_KEY)
    router = user.contract("Router", local.deployment.router)
    gate, _ = owner.deploy("ModerationGate", router.address, b"\x5a" * 32, LABELS, 0, 0)
    receipt = user.send(user.contract("ModerationGate", gate.address).functions.submit("Thanks for the help!"))
    request, _ = requested_in(router, receipt)
    answer = wait_for_answer(router, request.request_id, from_block=receipt["blockNumber"], timeout=60)
    assert answer.status == Status.INVALID_INPUT and answer.callback_succeeded
    assert gate.functions.posts(request.request_id).call()[1] == FAILED
