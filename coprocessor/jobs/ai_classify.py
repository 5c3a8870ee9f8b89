"""``ai.classify`` version 1: zero-shot classification of a text against labels given in the request.

Input ``(bytes32 modelHash, string text, string[] labels)`` with 2..16 labels. Each label is embedded as
written (so write it as a short description: ``"a positive, enthusiastic review"`` works better than
``"positive"``) and compared with the text by cosine similarity. Output ``(bytes32 modelHash, uint16 label,
int32 margin, int32[] scores)``: ``scores[i] = round(cos(embed(text), embed(labels[i])) * 1e6)``, ``label``
the index of the highest score (lowest index on a tie), ``margin`` the best score minus the second best
(a consumer can refuse to act on a close call).
"""

from __future__ import annotations

from coprocessor.ai.store import ModelStore
from coprocessor.jobs.ai_common import StoreSource, best_index, check_choices, check_text, cosine_scores, resolve_model
from coprocessor.jobs.base import Job, JobContext


def make_classify_job(store: StoreSource = ModelStore.from_env) -> Job:
    """The ``ai.classify@1`` job over ``store`` (or a function returning it)."""

    def handle(_context: JobContext, args: tuple[bytes, str, tuple[str, ...]]) -> tuple[bytes, int, int, list[int]]:
        model_hash, text, labels = args
        check_text(text, "text")
        check_choices(labels, "labels", 2)
        model = resolve_model(store, model_hash)
        vectors = model.embed([text, *labels])
        scores = cosine_scores(vectors[0], vectors[1:])
        best = best_index(scores)
        runner_up = max(s for i, s in enumerate(scores) if i != best)
        return (model.model_hash, best, scores[best] - runner_up, scores)

    return Job(
        name="ai.classify",
        version=1,
        input_types=("bytes32", "string", "string[]"),
        output_types=("bytes32", "uint16", "int32", "int32[]"),
        handler=handle,
        description=(
            "Zero-shot classification of the text against 2..16 labels (each embedded as written) under the model "
            "with that content hash: (modelHash, label index, margin, cosine scores x 1e6)."
        ),
    )
