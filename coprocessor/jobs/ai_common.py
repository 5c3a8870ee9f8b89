"""What the ``ai.*`` jobs share: finding the requested model, input limits, and the score encoding.

An unknown model hash is INVALID_INPUT (the requester named a model this coprocessor does not offer); a
known model that cannot be loaded (files missing or failing their integrity check) is JOB_FAILED. Both
reasons name the hash and say what to do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from coprocessor.ai.builtin import BUILTIN_MODEL_HASH
from coprocessor.ai.store import LoadedModel, ModelStore, ModelUnavailableError, UnknownModelError
from coprocessor.jobs.base import InvalidJobInputError, JobError

MAX_TEXT_BYTES = 8192
"""Longest text (UTF-8 bytes) an ``ai.*`` job accepts; the model reads at most its ``maxSeqLength`` tokens."""
MAX_LABEL_BYTES = 512
"""Longest label or candidate (UTF-8 bytes)."""
MAX_CHOICES = 16
"""Most labels (``ai.classify``) or candidates (``ai.similarity``) in one request."""
SCORE_SCALE = 1_000_000
"""Cosine similarities are published as ``round(cosine * 1e6)``, an int32 in -1e6..1e6."""

StoreSource = ModelStore | Callable[[], ModelStore]


def resolve_model(store: StoreSource, model_hash: bytes) -> LoadedModel:
    """The loaded model named by ``model_hash``; a curated ``InvalidJobInputError`` / ``JobError`` if not."""
    current = store if isinstance(store, ModelStore) else store()
    try:
        return current.get(model_hash)
    except UnknownModelError:
        raise InvalidJobInputError(
            f"model 0x{model_hash.hex()} is not installed on this coprocessor; the built-in MiniLM is "
            f"0x{BUILTIN_MODEL_HASH.hex()}, others must be registered (teebridge models register)"
        ) from None
    except ModelUnavailableError as exc:
        raise JobError(f"model 0x{model_hash.hex()[:16]}.. is unavailable: {exc}") from None


def check_text(text: str, what: str, limit: int = MAX_TEXT_BYTES) -> None:
    """``InvalidJobInputError`` if ``text`` is longer than ``limit`` UTF-8 bytes."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise InvalidJobInputError(f"{what} is {size} bytes; at most {limit} are accepted")


def check_choices(choices: Sequence[str], what: str, minimum: int) -> None:
    """Between ``minimum`` and :data:`MAX_CHOICES` non-empty strings, each within :data:`MAX_LABEL_BYTES`."""
    if not minimum <= len(choices) <= MAX_CHOICES:
        raise InvalidJobInputError(f"give {minimum} to {MAX_CHOICES} {what}, got {len(choices)}")
    for index, choice in enumerate(choices):
        if not choice.strip():
            raise InvalidJobInputError(f"{what}[{index}] is empty")
        check_text(choice, f"{what}[{index}]", MAX_LABEL_BYTES)


def cosine_scores(query: np.ndarray, others: np.ndarray) -> list[int]:
    """``round(cos(query, other) * 1e6)`` for each row of ``others``, as Python ints in -1e6..1e6."""
    q = query / max(float(np.linalg.norm(query)), 1e-12)
    norms = np.maximum(np.linalg.norm(others, axis=1), 1e-12)
    cosines = np.clip((others @ q) / norms, -1.0, 1.0)
    return [round(float(c) * SCORE_SCALE) for c in cosines]


def best_index(scores: Sequence[int]) -> int:
    """Index of the highest score; the lowest index wins a tie."""
    return max(range(len(scores)), key=lambda i: (scores[i], -i))
