"""``echo`` version 1: returns the input payload unchanged (raw bytes in, raw bytes out).

For tests and gas benchmarks: the result size is whatever the requester sends, up to the result limit.
"""

from __future__ import annotations

from coprocessor.jobs.base import Job, JobContext


def _handle(_context: JobContext, payload: bytes) -> bytes:
    return payload


ECHO_JOB = Job(
    name="echo",
    version=1,
    input_types=None,
    output_types=None,
    handler=_handle,
    description="Returns the input payload bytes unchanged (raw, no ABI). For tests and benchmarks.",
)
