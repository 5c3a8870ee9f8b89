"""``ai.similarity`` version 1: how close candidate texts are to a query text, by a named model.

Input ``(bytes32 modelHash, string query, string[] candidates)`` with 1..16 candidates. Output
``(bytes32 modelHash, uint16 best, int32[] scores)``: ``scores[i] = round(cos(embed(query),
embed(candidates[i])) * 1e6)`` and ``best`` the index of the highest score (lowest index on a tie).
"""

from __future__ import annotations

from coprocessor.ai.store import ModelStore
from coprocessor.jobs.ai_common import StoreSource, best_index, check_choices, check_text, cosine_scores, resolve_model
from coprocessor.jobs.base import Job, JobContext


def make_similarity_job(store: StoreSource = ModelStore.from_env) -> Job:
    """The ``ai.similarity@1`` job over ``store`` (or a function returning it)."""

    def handle(_context: JobContext, args: tuple[bytes, str, tuple[str, ...]]) -> tuple[bytes, int, list[int]]:
        model_hash, query, candidates = args
        check_text(query, "query")
        check_choices(candidates, "candidates", 1)
        model = resolve_model(store, model_hash)
        vectors = model.embed([query, *candidates])
        scores = cosine_scores(vectors[0], vectors[1:])
        return (model.model_hash, best_index(scores), scores)

    return Job(
        name="ai.similarity",
        version=1,
        input_types=("bytes32", "string", "string[]"),
        output_types=("bytes32", "uint16", "int32[]"),
        handler=handle,
        description=(
            "Cosine similarity x 1e6 of each candidate (1..16) to the query under the model with that content "
            "hash: (modelHash, best index, scores)."
        ),
    )
