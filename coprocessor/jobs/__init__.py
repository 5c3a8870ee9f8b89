"""Jobs: named, versioned handlers the coprocessor runs on request inputs.

``job_id = keccak256("name@version")``. The built-in jobs are ``confidential.credit-score@1``,
``http.json@1``, ``http.json@2``, ``echo@1``, ``price@1`` and ``llm.chat@1``; :func:`default_registry`
installs them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coprocessor.jobs.base import Handler, InvalidJobInputError, Job, JobContext, JobError, JobRegistry
from coprocessor.jobs.credit_score import CREDIT_SCORE_JOB
from coprocessor.jobs.echo import ECHO_JOB
from coprocessor.jobs.http_json import HTTP_JSON_JOB, HTTP_JSON_V2_JOB
from coprocessor.jobs.llm_chat import LLM_CHAT_JOB
from coprocessor.jobs.price import PRICE_JOB

if TYPE_CHECKING:
    from coprocessor.config import CoprocessorConfig

BUILTIN_JOBS: tuple[Job, ...] = (CREDIT_SCORE_JOB, HTTP_JSON_JOB, HTTP_JSON_V2_JOB, ECHO_JOB, PRICE_JOB, LLM_CHAT_JOB)


def default_registry(config: CoprocessorConfig | None = None) -> JobRegistry:
    """A registry holding the built-in jobs; with ``config``, the price job uses that config's settings."""
    if config is None:
        return JobRegistry(BUILTIN_JOBS)
    from coprocessor.jobs.price import make_price_job
    from coprocessor.price.settings import PriceSettings

    price = make_price_job(PriceSettings.from_config(config))
    return JobRegistry(tuple(price if job is PRICE_JOB else job for job in BUILTIN_JOBS))


__all__ = [
    "BUILTIN_JOBS",
    "Handler",
    "InvalidJobInputError",
    "Job",
    "JobContext",
    "JobError",
    "JobRegistry",
    "default_registry",
]
