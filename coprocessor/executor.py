"""The executor: turns (request, input) into a signed Fulfillment.

For every request it (1) checks the input hashes to the request's ``inputHash`` (if not, the relayer sent
inconsistent data: :class:`BadRequest`, nothing is signed), (2) finds the job, (3) opens the input envelope
(decrypting it with the enclave's HPKE key and the request's binding), (4) decodes the ABI payload,
(5) runs the handler on a worker thread under the job's time budget, (6) encodes and size-checks the
output, and (7) signs the EIP-712 Fulfillment. Every failure from (2) on becomes a signed non-OK status
whose result is ``abi.encode(string reason)``; nothing is dropped.

Time budget: counted from the moment the handler starts on a worker. Python cannot kill a thread, so a
handler that overruns is reported as TIMEOUT and left running in the background until it returns; it
occupies a worker meanwhile (see ``stuck_handlers``). If no worker frees up within
``queue_timeout_seconds`` the whole batch is refused with :class:`OverloadedError` and nothing is signed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from eth_abi import decode, encode

from coprocessor.config import CoprocessorConfig
from coprocessor.jobs.base import InvalidJobInputError, Job, JobContext, JobError, JobRegistry
from coprocessor.keys import EnclaveKeys
from verifier.envelope import Binding, EnvelopeError, open_envelope
from verifier.hashing import keccak256
from verifier.hexutil import to_checksum_address, to_hex
from verifier.protocol import Domain, Fulfillment, Request, Status, fulfillment_for

log = logging.getLogger(__name__)


class BadRequest(ValueError):  # noqa: N818 - the name the API contract uses
    """The caller's data is inconsistent (an input that does not hash to its ``inputHash``, a bad domain).

    Nothing is signed for the whole call; the message says what is wrong.
    """


class OverloadedError(RuntimeError):
    """No worker thread became free in time; nothing is signed. Retry later."""


@dataclass(frozen=True, slots=True)
class SignedFulfillment:
    """A Fulfillment for ``request`` with its result bytes and the enclave's signature."""

    request: Request
    status: Status
    result: bytes
    measurement: bytes
    signer: str
    signature: bytes
    domain: Domain

    def fulfillment(self) -> Fulfillment:
        """The signed EIP-712 struct."""
        return fulfillment_for(self.request, self.status, self.result, self.measurement)

    def digest(self) -> bytes:
        """The EIP-712 digest the signature is over."""
        return self.fulfillment().digest(self.domain)

    def to_json(self) -> dict[str, Any]:
        """The JSON form returned by ``POST /v1/execute``."""
        fulfillment = self.fulfillment()
        return {
            "requestId": to_hex(self.request.request_id),
            "commitment": to_hex(fulfillment.commitment),
            "status": int(self.status),
            "result": to_hex(self.result),
            "resultHash": to_hex(fulfillment.result_hash),
            "measurement": to_hex(self.measurement),
            "signer": self.signer,
            "signature": to_hex(self.signature),
        }


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: Status
    result: bytes


class _Run:
    """One handler invocation on the pool: records when it started and never raises out of the worker."""

    def __init__(self, job: Job, args: Any, budget: float, config: CoprocessorConfig) -> None:
        self.job = job
        self.args = args
        self.budget = budget
        self.config = config
        self.started = threading.Event()
        self.started_at = 0.0
        self.future: Future[tuple[bool, Any]] | None = None

    def __call__(self) -> tuple[bool, Any]:
        self.started_at = time.monotonic()
        self.started.set()
        context = JobContext(
            deadline=self.started_at + self.budget,
            http_timeout_seconds=self.config.http_timeout_seconds,
            http_max_response_bytes=self.config.http_max_response_bytes,
        )
        try:
            return True, self.job.handler(context, self.args)
        except BaseException as exc:  # the worker must report every failure, whatever its type
            return False, exc


def failure(status: Status, reason: str) -> _Outcome:
    """A non-OK outcome carrying ``abi.encode(string reason)``."""
    return _Outcome(status, encode(["string"], [reason]))


def decode_payload(job: Job, payload: bytes) -> Any:
    """The handler's arguments; ``InvalidJobInputError`` unless ``payload`` is the canonical ABI encoding."""
    if job.input_types is None:
        return payload
    types = list(job.input_types)
    signature = f"({','.join(types)})"
    try:
        values = decode(types, payload)
    except Exception as exc:  # eth_abi raises several types (DecodingError, UnicodeDecodeError, ...)
        raise InvalidJobInputError(f"payload does not decode as {signature}") from exc
    if encode(types, list(values)) != payload:
        raise InvalidJobInputError(
            f"payload is not the canonical ABI encoding of {signature} (extra or non-standard bytes)"
        )
    return values


class Executor:
    """Runs jobs and signs their Fulfillments with the enclave key. Thread-safe; call :meth:`close` at exit."""

    def __init__(self, keys: EnclaveKeys, jobs: JobRegistry, config: CoprocessorConfig, measurement: bytes) -> None:
        if len(measurement) != 32:
            raise ValueError("a measurement is 32 bytes")
        self.keys = keys
        self.jobs = jobs
        self.config = config
        self.measurement = measurement
        self._pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="teebridge-job")
        self._lock = threading.Lock()
        self._stuck = 0

    @property
    def stuck_handlers(self) -> int:
        """Handlers that overran their budget and are still running in the background."""
        with self._lock:
            return self._stuck

    def execute(self, chain_id: int, router: str, request: Request, input: bytes) -> SignedFulfillment:
        """Run one request and sign its Fulfillment (see the module docstring for the steps)."""
        return self.execute_batch(chain_id, router, [(request, input)])[0]

    def execute_batch(
        self, chain_id: int, router: str, items: Sequence[tuple[Request, bytes]]
    ) -> list[SignedFulfillment]:
        """Run many requests concurrently; the fulfillments come back in the order of ``items``.

        Raises :class:`BadRequest` (nothing signed) if any input does not hash to its request's
        ``inputHash`` or the domain is invalid, and :class:`OverloadedError` (nothing signed) if the workers
        stay busy past ``queue_timeout_seconds``.
        """
        domain = self._domain(chain_id, router)
        for index, (request, data) in enumerate(items):
            if keccak256(data) != request.input_hash:
                raise BadRequest(
                    f"requests[{index}]: keccak256(input) is {to_hex(keccak256(data))} but the request's inputHash "
                    f"is {to_hex(request.input_hash)}; send the exact input bytes from the Requested event"
                )
        started = time.monotonic()
        prepared: list[_Outcome | _Run] = [self._prepare(domain, request, data) for request, data in items]
        runs = [p for p in prepared if isinstance(p, _Run)]
        for run in runs:
            run.future = self._pool.submit(run)
        queue_deadline = time.monotonic() + self.config.queue_timeout_seconds
        try:
            outcomes = [p if isinstance(p, _Outcome) else self._await(p, queue_deadline) for p in prepared]
        except OverloadedError:
            for run in runs:
                assert run.future is not None
                run.future.cancel()
            raise
        signed = []
        for (request, _data), outcome in zip(items, outcomes, strict=True):
            signed.append(self._sign(domain, request, outcome))
            job = self.jobs.get(request.job_id)
            log.info(
                "request %s job %s status %s %.1f ms",
                to_hex(request.request_id),
                job.label if job else to_hex(request.job_id),
                outcome.status.name,
                (time.monotonic() - started) * 1000,
            )
        return signed

    def close(self) -> None:
        """Stop accepting work; queued handlers are cancelled, running ones are not waited for."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @staticmethod
    def _domain(chain_id: int, router: str) -> Domain:
        if isinstance(chain_id, bool) or not isinstance(chain_id, int) or not 0 < chain_id < 2**256:
            raise BadRequest(f"chainId must be a positive integer, got {chain_id!r}")
        try:
            return Domain(chain_id, to_checksum_address(router))
        except ValueError as exc:
            raise BadRequest(f"router is not a 20-byte address: {exc}") from exc

    def _prepare(self, domain: Domain, request: Request, data: bytes) -> _Outcome | _Run:
        job = self.jobs.get(request.job_id)
        if job is None:
            return failure(Status.UNKNOWN_JOB, f"no job with id {to_hex(request.job_id)} is installed here")
        binding = Binding(domain.chain_id, domain.router, request.requester, request.job_id)
        try:
            payload = open_envelope(data, binding, self.keys.hpke_private_key)
        except EnvelopeError as exc:
            return failure(Status.DECRYPTION_FAILED if exc.decryption else Status.INVALID_INPUT, str(exc))
        try:
            args = decode_payload(job, payload)
        except InvalidJobInputError as exc:
            return failure(Status.INVALID_INPUT, exc.reason)
        budget = job.timeout_seconds or self.config.job_timeout_seconds
        return _Run(job, args, budget, self.config)

    def _await(self, run: _Run, queue_deadline: float) -> _Outcome:
        assert run.future is not None
        if not run.started.wait(timeout=max(0.0, queue_deadline - time.monotonic())):
            if run.future.cancel():
                raise OverloadedError(
                    f"no worker became free within {self.config.queue_timeout_seconds:g} s "
                    f"({self.stuck_handlers} handlers are overrunning their budget); retry later"
                )
            run.started.wait()  # it started between the wait and the cancel
        remaining = run.started_at + run.budget - time.monotonic()
        try:
            ok, value = run.future.result(timeout=max(0.0, remaining))
        except TimeoutError:
            self._note_stuck(run)
            return failure(Status.TIMEOUT, f"job exceeded its time budget of {run.budget:g} s")
        if not ok:
            return _failure_of(value)
        try:
            result = run.job.encode_output(value)
        except JobError as exc:
            return failure(Status.JOB_FAILED, exc.reason)
        if len(result) > self.config.max_result_bytes:
            return failure(
                Status.RESULT_TOO_LARGE,
                f"result is {len(result)} bytes; this coprocessor signs at most {self.config.max_result_bytes}",
            )
        return _Outcome(Status.OK, result)

    def _note_stuck(self, run: _Run) -> None:
        assert run.future is not None
        with self._lock:
            self._stuck += 1
            stuck = self._stuck
        log.warning(
            "job %s exceeded its %g s budget; its thread keeps running in the background (%d overrunning)",
            run.job.label,
            run.budget,
            stuck,
        )
        run.future.add_done_callback(self._unstuck)

    def _unstuck(self, _future: Future[tuple[bool, Any]]) -> None:
        with self._lock:
            self._stuck -= 1

    def _sign(self, domain: Domain, request: Request, outcome: _Outcome) -> SignedFulfillment:
        fulfillment = fulfillment_for(request, outcome.status, outcome.result, self.measurement)
        signature = self.keys.sign(fulfillment.digest(domain))
        return SignedFulfillment(
            request, outcome.status, outcome.result, self.measurement, self.keys.signer_address, signature, domain
        )


def _failure_of(exc: BaseException) -> _Outcome:
    """The outcome for a handler exception; only curated reasons and type names are published."""
    if isinstance(exc, InvalidJobInputError):
        return failure(Status.INVALID_INPUT, exc.reason)
    if isinstance(exc, JobError):
        return failure(Status.JOB_FAILED, exc.reason)
    return failure(Status.JOB_FAILED, f"job raised {type(exc).__name__}")
