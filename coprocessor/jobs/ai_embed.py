"""``ai.embed`` version 1: a text's embedding by a named model, with a compact commitment to it.

Input ``(bytes32 modelHash, string text, uint8 format)``. Output ``(bytes32 modelHash, bytes32 vectorHash,
uint16 dimensions, uint8 format, bytes vector)``:

- ``format`` 0: ``int8``, one signed byte per dimension, ``q = clamp(round(v * 127), -127, 127)`` (for a
  unit-length vector, ``v ~ q / 127``); 1: ``float32``, 4 bytes little-endian per dimension.
- ``vectorHash = keccak256(vector)``: what a contract stores; the vector itself is for off-chain use.
- ``modelHash`` echoes the model that answered (the same as requested).

MiniLM (384 dimensions): 576 result bytes in int8, 1728 in float32. Unknown model: INVALID_INPUT.
"""

from __future__ import annotations

import numpy as np

from coprocessor.ai.store import ModelStore
from coprocessor.jobs.ai_common import StoreSource, check_text, resolve_model
from coprocessor.jobs.base import InvalidJobInputError, Job, JobContext
from verifier.hashing import keccak256

FORMAT_INT8 = 0
FORMAT_FLOAT32 = 1
INT8_SCALE = 127


def pack_vector(vector: np.ndarray, fmt: int) -> bytes:
    """The vector's bytes in ``fmt`` (:data:`FORMAT_INT8` or :data:`FORMAT_FLOAT32`)."""
    if fmt == FORMAT_INT8:
        return np.clip(np.rint(vector * INT8_SCALE), -INT8_SCALE, INT8_SCALE).astype(np.int8).tobytes()
    if fmt == FORMAT_FLOAT32:
        return vector.astype("<f4").tobytes()
    raise InvalidJobInputError(f"format must be 0 (int8) or 1 (float32), got {fmt}")


def unpack_vector(data: bytes, fmt: int) -> np.ndarray:
    """The float32 vector packed by :func:`pack_vector` (int8 values scaled back by 1/127)."""
    if fmt == FORMAT_INT8:
        return np.frombuffer(data, dtype=np.int8).astype(np.float32) / INT8_SCALE
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def make_embed_job(store: StoreSource = ModelStore.from_env) -> Job:
    """The ``ai.embed@1`` job over ``store`` (or a function returning it)."""

    def handle(_context: JobContext, args: tuple[bytes, str, int]) -> tuple[bytes, bytes, int, int, bytes]:
        model_hash, text, fmt = args
        if fmt not in (FORMAT_INT8, FORMAT_FLOAT32):
            raise InvalidJobInputError(f"format must be 0 (int8) or 1 (float32), got {fmt}")
        check_text(text, "text")
        model = resolve_model(store, model_hash)
        vector = model.embed([text])[0]
        packed = pack_vector(vector, fmt)
        return (model.model_hash, keccak256(packed), int(vector.shape[0]), fmt, packed)

    return Job(
        name="ai.embed",
        version=1,
        input_types=("bytes32", "string", "uint8"),
        output_types=("bytes32", "bytes32", "uint16", "uint8", "bytes"),
        handler=handle,
        description=(
            "Embedding of a text by the model with that content hash: (modelHash, keccak256(vector), dimensions, "
            "format, vector); format 0 = int8 (round(v*127)), 1 = float32 little-endian."
        ),
    )
