"""Decode ``ai.*`` job results and check which model answered.

The Fulfillment signature covers the result bytes, and the result's first word is the content hash of the
model that answered (docs/ai-oracle.md). A client that trusts one model must check that word: a result
signed for model A is a valid signature over A's hash and is refused here when B was expected.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi import decode

from verifier.hashing import keccak256

EMBED_OUTPUT = ("bytes32", "bytes32", "uint16", "uint8", "bytes")
SIMILARITY_OUTPUT = ("bytes32", "uint16", "int32[]")
CLASSIFY_OUTPUT = ("bytes32", "uint16", "int32", "int32[]")
SCORE_SCALE = 1_000_000


class ModelMismatchError(ValueError):
    """The result was produced by another model than the one expected."""


@dataclass(frozen=True, slots=True)
class Embedding:
    """An ``ai.embed@1`` result."""

    model_hash: bytes
    vector_hash: bytes
    dimensions: int
    format: int
    vector: bytes


@dataclass(frozen=True, slots=True)
class Scores:
    """An ``ai.similarity@1`` (``margin`` 0) or ``ai.classify@1`` result; scores are cosines x 1e6."""

    model_hash: bytes
    best: int
    margin: int
    scores: tuple[int, ...]


def _expect(model_hash: bytes, expected: bytes | None) -> None:
    if expected is not None and model_hash != expected:
        raise ModelMismatchError(
            f"the result was produced by model 0x{model_hash.hex()}, not the expected 0x{expected.hex()}"
        )


def decode_embedding(result: bytes, expected_model: bytes | None = None) -> Embedding:
    """Decode an ``ai.embed@1`` result; checks ``vectorHash`` and, if given, the model hash."""
    model_hash, vector_hash, dims, fmt, vector = decode(list(EMBED_OUTPUT), result)
    _expect(model_hash, expected_model)
    if keccak256(vector) != vector_hash:
        raise ValueError("vectorHash is not keccak256(vector)")
    if len(vector) != dims * (1 if fmt == 0 else 4):
        raise ValueError(f"a {dims}-dimensional vector in format {fmt} cannot be {len(vector)} bytes")
    return Embedding(model_hash, vector_hash, dims, fmt, vector)


def decode_similarity(result: bytes, expected_model: bytes | None = None) -> Scores:
    """Decode an ``ai.similarity@1`` result; checks the model hash if given."""
    model_hash, best, scores = decode(list(SIMILARITY_OUTPUT), result)
    _expect(model_hash, expected_model)
    return Scores(model_hash, best, 0, tuple(scores))


def decode_classification(result: bytes, expected_model: bytes | None = None) -> Scores:
    """Decode an ``ai.classify@1`` result; checks the model hash if given."""
    model_hash, label, margin, scores = decode(list(CLASSIFY_OUTPUT), result)
    _expect(model_hash, expected_model)
    return Scores(model_hash, label, margin, tuple(scores))
