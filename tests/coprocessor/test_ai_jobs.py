"""The ai.* jobs end to end through the executor: signed results, ranks and labels, errors, model binding."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from ai_testdata import tiny_onnx_model
from coprocessor_testdata import CHAIN_ID, ROUTER
from eth_abi import decode, encode

from coprocessor.ai.builtin import BUILTIN_MODEL_HASH
from coprocessor.ai.store import ModelStore
from coprocessor.config import CoprocessorConfig
from coprocessor.executor import Executor, SignedFulfillment
from coprocessor.jobs import JobRegistry
from coprocessor.jobs.ai_classify import make_classify_job
from coprocessor.jobs.ai_embed import make_embed_job, unpack_vector
from coprocessor.jobs.ai_similarity import make_similarity_job
from coprocessor.keys import EnclaveKeys
from teebridge.models import register_model
from verifier.ai_result import ModelMismatchError, decode_classification, decode_embedding, decode_similarity
from verifier.envelope import plain
from verifier.protocol import Request, Status, fulfillment_for, job_id
from verifier.signing import recover_signer

EMBED, SIMILARITY, CLASSIFY = job_id("ai.embed", 1), job_id("ai.similarity", 1), job_id("ai.classify", 1)
SENTIMENT = ["a positive, enthusiastic review", "a negative, angry complaint"]
TOPICS = ["sports", "politics", "cooking"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelStore, bytes]:
    """A store with the built-in MiniLM and a registered tiny ONNX model (model B)."""
    root = tmp_path_factory.mktemp("models")
    tiny_onnx_model(root / "tiny")
    tiny_hash, _ = register_model(root / "tiny", root / "registered", "tiny")
    return ModelStore(root / "registered"), tiny_hash


@pytest.fixture
def run(models: tuple[ModelStore, bytes], tmp_path: Path, keys: EnclaveKeys, make_request: Callable[..., Request]):
    store, _ = models
    config = CoprocessorConfig(data_dir=tmp_path, job_timeout_seconds=30, workers=2)
    executor = Executor(
        keys,
        JobRegistry([make_embed_job(store), make_similarity_job(store), make_classify_job(store)]),
        config,
        b"\x42" * 32,
    )

    def execute(job: bytes, types: list[str], values: list[object] | None, raw: bytes | None = None):
        payload = encode(types, values) if raw is None else raw
        signed = executor.execute(CHAIN_ID, ROUTER, make_request(job, plain(payload)), plain(payload))
        assert recover_signer(signed.digest(), signed.signature) == keys.signer_address
        return signed

    yield execute
    executor.close()


def reason(signed: SignedFulfillment) -> str:
    return decode(["string"], signed.result)[0]


def classify(run, text: str, labels: list[str], model: bytes = BUILTIN_MODEL_HASH) -> int:
    signed = run(CLASSIFY, ["bytes32", "string", "string[]"], [model, text, labels])
    assert signed.status == Status.OK, reason(signed)
    result = decode_classification(signed.result, expected_model=model)
    assert len(result.scores) == len(labels) and result.margin >= 0
    return result.best


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I absolutely love this phone, the battery lasts forever!", 0),
        ("The new movie is awesome and I loved every minute of it.", 0),
        ("Terrible service, the food was cold and the waiter was rude.", 1),
        ("Worst purchase ever.", 1),
    ],
)
def test_classify_sentiment(run, text: str, expected: int) -> None:
    assert classify(run, text, SENTIMENT) == expected


def test_classify_topics(run) -> None:
    assert classify(run, "The striker scored twice in the final minutes of the match.", TOPICS) == 0
    assert classify(run, "The senate passed the budget bill after a long debate.", TOPICS) == 1
    assert classify(run, "Simmer the onions in butter until golden, then add the garlic.", TOPICS) == 2


def test_similarity_ranks_paraphrase_first(run) -> None:
    candidates = ["The girl is carrying a baby.", "A man is eating a piece of bread.", "A man is riding a horse."]
    signed = run(
        SIMILARITY, ["bytes32", "string", "string[]"], [BUILTIN_MODEL_HASH, "A man is eating food.", candidates]
    )
    assert signed.status == Status.OK
    result = decode_similarity(signed.result, expected_model=BUILTIN_MODEL_HASH)
    assert result.best == 1
    assert result.scores[1] > result.scores[2] > result.scores[0]
    assert all(-1_000_000 <= s <= 1_000_000 for s in result.scores)


def test_embed_int8_and_float32_agree_and_commit_to_the_vector(run) -> None:
    types = ["bytes32", "string", "uint8"]
    small = run(EMBED, types, [BUILTIN_MODEL_HASH, "A man is eating food.", 0])
    full = run(EMBED, types, [BUILTIN_MODEL_HASH, "A man is eating food.", 1])
    assert small.status == full.status == Status.OK
    a, b = decode_embedding(small.result, BUILTIN_MODEL_HASH), decode_embedding(full.result, BUILTIN_MODEL_HASH)
    assert (a.dimensions, len(a.vector), b.dimensions, len(b.vector)) == (384, 384, 384, 1536)
    assert len(small.result) == 576 and len(full.result) == 1728  # both well under max_result_bytes (4096)
    va, vb = unpack_vector(a.vector, 0), unpack_vector(b.vector, 1)
    assert abs(float(np.linalg.norm(vb)) - 1) < 1e-5
    assert np.abs(va - vb).max() <= 0.5 / 127 + 1e-6
    near = unpack_vector(
        decode_embedding(run(EMBED, types, [BUILTIN_MODEL_HASH, "A man eats a meal.", 1]).result).vector, 1
    )
    far = unpack_vector(
        decode_embedding(run(EMBED, types, [BUILTIN_MODEL_HASH, "Stocks fell sharply.", 1]).result).vector, 1
    )
    assert vb @ near > vb @ far


def test_unknown_model_is_a_signed_invalid_input(run) -> None:
    unknown = b"\x77" * 32
    signed = run(CLASSIFY, ["bytes32", "string", "string[]"], [unknown, "hello", SENTIMENT])
    assert signed.status == Status.INVALID_INPUT
    assert f"model 0x{unknown.hex()} is not installed" in reason(signed)
    assert BUILTIN_MODEL_HASH.hex() in reason(signed)  # says what is available


@pytest.mark.parametrize(
    ("job", "types", "values", "message"),
    [
        (CLASSIFY, ["bytes32", "string", "string[]"], [BUILTIN_MODEL_HASH, "hi", ["only one"]], "give 2 to 16 labels"),
        (CLASSIFY, ["bytes32", "string", "string[]"], [BUILTIN_MODEL_HASH, "hi", ["a", " "]], r"labels\[1\] is empty"),
        (CLASSIFY, ["bytes32", "string", "string[]"], [BUILTIN_MODEL_HASH, "hi", ["a"] * 17], "give 2 to 16 labels"),
        (SIMILARITY, ["bytes32", "string", "string[]"], [BUILTIN_MODEL_HASH, "x" * 9000, ["a"]], "9000 bytes"),
        (EMBED, ["bytes32", "string", "uint8"], [BUILTIN_MODEL_HASH, "hi", 2], "format must be 0"),
        (EMBED, ["bytes32", "string"], [BUILTIN_MODEL_HASH, "hi"], "does not decode"),
    ],
)
def test_malformed_input_is_a_signed_invalid_input(run, job: bytes, types, values, message: str) -> None:
    signed = run(job, types, values)
    assert signed.status == Status.INVALID_INPUT
    assert re.search(message, reason(signed))


def test_result_signed_for_model_a_does_not_verify_as_model_b(run, models: tuple[ModelStore, bytes]) -> None:
    _, tiny = models
    text = "I absolutely love this phone!"
    from_a = run(CLASSIFY, ["bytes32", "string", "string[]"], [BUILTIN_MODEL_HASH, text, SENTIMENT])
    from_b = run(CLASSIFY, ["bytes32", "string", "string[]"], [tiny, text, SENTIMENT])
    assert from_a.status == from_b.status == Status.OK
    # both are validly signed, each naming the model that answered
    assert decode_classification(from_a.result).model_hash == BUILTIN_MODEL_HASH
    assert decode_classification(from_b.result).model_hash == tiny
    with pytest.raises(ModelMismatchError, match=f"produced by model 0x{BUILTIN_MODEL_HASH.hex()}"):
        decode_classification(from_a.result, expected_model=tiny)
    with pytest.raises(ModelMismatchError):
        decode_classification(from_b.result, expected_model=BUILTIN_MODEL_HASH)
    # the signature covers keccak256(result): putting B's hash into A's result gives another digest
    swapped = fulfillment_for(from_a.request, from_a.status, tiny + from_a.result[32:], from_a.measurement)
    assert swapped.digest(from_a.domain) != from_a.digest()


def test_tampered_registered_model_is_a_signed_job_failure(
    tmp_path: Path, keys: EnclaveKeys, make_request: Callable[..., Request]
) -> None:
    tiny_onnx_model(tmp_path / "tiny")
    model_hash, stored = register_model(tmp_path / "tiny", tmp_path / "models")
    (stored / "tokenizer.json").write_text((stored / "tokenizer.json").read_text().replace("[UNK]", "[UNKNOWN]", 1))
    store = ModelStore(tmp_path / "models", builtin=False)
    config = CoprocessorConfig(data_dir=tmp_path / "data", workers=1)
    with Executor(keys, JobRegistry([make_embed_job(store)]), config, b"\x42" * 32) as executor:
        payload = plain(encode(["bytes32", "string", "uint8"], [model_hash, "hello", 0]))
        signed = executor.execute(CHAIN_ID, ROUTER, make_request(EMBED, payload), payload)
    assert signed.status == Status.JOB_FAILED
    assert "failed its integrity check: the tokenizer file (tokenizer.json) does not match" in reason(signed)
