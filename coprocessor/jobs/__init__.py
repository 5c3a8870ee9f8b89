"""Jobs: named, versioned handlers the coprocessor runs on request inputs.

``job_id = keccak256("name@version")``. The built-in jobs are ``confidential.credit-score@1``,
``http.json@1``, ``http.json@2``, ``echo@1``, ``price@1``, ``llm.chat@1`` and the local-model jobs
``ai.embed@1``, ``ai.similarity@1`` and ``ai.classify@1`` (docs/ai-oracle.md); :func:`default_registry`
installs them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coprocessor.jobs.ai_classify import make_classify_job
from coprocessor.jobs.ai_embed import make_embed_job
from coprocessor.jobs.ai_similarity import make_similarity_job
from coprocessor.jobs.base import Handler, InvalidJobInputError, Job, JobContext, JobError, JobRegistry
from coprocessor.jobs.credit_score import CREDIT_SCORE_JOB
from coprocessor.jobs.echo import ECHO_JOB
from coprocessor.jobs.http_json import HTTP_JSON_JOB, HTTP_JSON_V2_JOB
from coprocessor.jobs.llm_chat import LLM_CHAT_JOB
from coprocessor.jobs.price import PRICE_JOB

if TYPE_CHECKING:
    from coprocessor.config import CoprocessorConfig

AI_JOBS: tuple[Job, ...] = (make_embed_job(), make_similarity_job(), make_classify_job())
"""The ``ai.*`` jobs over a model store read from ``TEEBRIDGE_COPROCESSOR_MODELS_DIR`` when they run."""
BUILTIN_JOBS: tuple[Job, ...] = (
    CREDIT_SCORE_JOB,
    HTTP_JSON_JOB,
    HTTP_JSON_V2_JOB,
    ECHO_JOB,
    PRICE_JOB,
    LLM_CHAT_JOB,
    *AI_JOBS,
)


def default_registry(config: CoprocessorConfig | None = None) -> JobRegistry:
    """A registry holding the built-in jobs; with ``config``, the price job uses that config's settings and
    the ``ai.*`` jobs share one model store over its ``models_dir`` (models load once, on first use)."""
    if config is None:
        return JobRegistry(BUILTIN_JOBS)
    from coprocessor.ai.store import ModelStore
    from coprocessor.jobs.price import make_price_job
    from coprocessor.price.settings import PriceSettings

    price = make_price_job(PriceSettings.from_config(config))
    store = ModelStore(config.models_dir)
    ai = (make_embed_job(store), make_similarity_job(store), make_classify_job(store))
    return JobRegistry((*(price if job is PRICE_JOB else job for job in BUILTIN_JOBS if job not in AI_JOBS), *ai))


__all__ = [
    "AI_JOBS",
    "BUILTIN_JOBS",
    "Handler",
    "InvalidJobInputError",
    "Job",
    "JobContext",
    "JobError",
    "JobRegistry",
    "default_registry",
]
