"""What a job is, the context it runs in, how it reports failure, and the registry of installed jobs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from eth_abi import encode, is_encodable_type

from coprocessor.egress import EgressPolicy
from verifier.protocol import job_id as compute_job_id

MAX_REASON_LENGTH = 200


class JobError(Exception):
    """A job failure with a reason that is safe to publish on-chain (status JOB_FAILED).

    The reason must never contain input plaintext, upstream response bodies or secrets.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason[:MAX_REASON_LENGTH])
        self.reason = reason[:MAX_REASON_LENGTH]


class InvalidJobInputError(JobError):
    """Decoded input the job cannot accept (status INVALID_INPUT); same rules for the reason."""


@dataclass(frozen=True, slots=True)
class JobContext:
    """Limits a running handler must respect."""

    deadline: float
    """``time.monotonic()`` value at which the handler's time budget ends."""
    http_timeout_seconds: float
    http_max_response_bytes: int
    secrets: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    """The values of the secret set the request names (empty when it names none). Use them; never put
    them in a result or an error reason (the executor withholds any result that contains one)."""
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    """Where outgoing HTTP may connect (:mod:`coprocessor.egress`); the default refuses every non-public
    address. Fetch through ``coprocessor.egress.guarded_client(context.egress)``, never a plain client."""

    def remaining(self) -> float:
        """Seconds left in the time budget (never negative)."""
        return max(0.0, self.deadline - time.monotonic())


Handler = Callable[[JobContext, Any], Any]
"""``handler(context, args)``: ``args`` is the tuple of decoded ABI values (or the raw payload bytes when
the job's ``input_types`` is None); returns a tuple matching ``output_types`` (or bytes when None)."""


@dataclass(frozen=True, slots=True)
class Job:
    """One installed job. ``job_id = keccak256("name@version")``.

    ``input_types`` / ``output_types`` are ABI type strings (``("uint256", "string")``); None means the
    payload / result is raw bytes with no ABI encoding.
    """

    name: str
    version: int
    input_types: tuple[str, ...] | None
    output_types: tuple[str, ...] | None
    handler: Handler = field(repr=False, compare=False)
    description: str = ""
    timeout_seconds: float | None = None
    """Time budget override; None uses the coprocessor's ``job_timeout_seconds``."""
    job_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "job_id", compute_job_id(self.name, self.version))
        for types in (self.input_types, self.output_types):
            for abi_type in types or ():
                if not is_encodable_type(abi_type):
                    raise ValueError(f"job {self.label}: {abi_type!r} is not an ABI type")
        if self.timeout_seconds is not None and not self.timeout_seconds > 0:
            raise ValueError(f"job {self.label}: timeout_seconds must be positive")

    @property
    def label(self) -> str:
        """``name@version``, the string hashed into the job id."""
        return f"{self.name}@{self.version}"

    def encode_output(self, value: Any) -> bytes:
        """The result bytes for a handler's return value; raises ``JobError`` if it does not fit the types."""
        if self.output_types is None:
            if not isinstance(value, bytes | bytearray):
                raise JobError("job returned a non-bytes result for a raw output")
            return bytes(value)
        try:
            return encode(list(self.output_types), list(value))
        except Exception as exc:  # eth_abi raises several unrelated types for bad values
            raise JobError("job produced output that does not match its ABI output types") from exc


class JobRegistry:
    """The jobs this coprocessor runs, by job id."""

    def __init__(self, jobs: Iterable[Job] = ()) -> None:
        self._jobs: dict[bytes, Job] = {}
        for job in jobs:
            self.register(job)

    def register(self, job: Job) -> None:
        """Install ``job``; raises ``ValueError`` if its id is already taken."""
        if job.job_id in self._jobs:
            raise ValueError(f"job {job.label} is already registered")
        self._jobs[job.job_id] = job

    def get(self, job_id: bytes) -> Job | None:
        """The job with this id, or None."""
        return self._jobs.get(job_id)

    def list(self) -> list[Job]:
        """All jobs, sorted by name then version."""
        return sorted(self._jobs.values(), key=lambda j: (j.name, j.version))

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs
