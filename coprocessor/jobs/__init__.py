"""Jobs: named, versioned handlers the coprocessor runs on request inputs.

``job_id = keccak256("name@version")``. The built-in jobs are ``confidential.credit-score@1``,
``http.json@1`` and ``echo@1``; :func:`default_registry` installs all three.
"""

from __future__ import annotations

from coprocessor.jobs.base import Handler, InvalidJobInputError, Job, JobContext, JobError, JobRegistry
from coprocessor.jobs.credit_score import CREDIT_SCORE_JOB
from coprocessor.jobs.echo import ECHO_JOB
from coprocessor.jobs.http_json import HTTP_JSON_JOB

BUILTIN_JOBS: tuple[Job, ...] = (CREDIT_SCORE_JOB, HTTP_JSON_JOB, ECHO_JOB)


def default_registry() -> JobRegistry:
    """A registry holding the built-in jobs."""
    return JobRegistry(BUILTIN_JOBS)


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
