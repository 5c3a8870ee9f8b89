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
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode, encode

from coprocessor.config import CoprocessorConfig
from coprocessor.jobs.base import InvalidJobInputError, Job, JobContext, JobError, JobRegistry
from coprocessor.keys import EnclaveKeys
from coprocessor.secrets import EMPTY_SECRETS, SecretStore, SecretUnavailableError
from verifier.envelope import Binding, EnvelopeError, ResultKey, encrypt_result, open_input, parse_input
from verifier.hashing import keccak256
from verifier.hexutil import to_checksum_address, to_hex
from verifier.protocol import Domain, Fulfillment, Request, Status, fulfillment_for, offchain_reference

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
    full_result: bytes | None = None
    """With status RESULT_OFFCHAIN: the full result, whose hash and length ``result`` holds."""

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
            "fullResult": to_hex(self.full_result) if self.full_result is not None else None,
        }


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: Status
    result: bytes


@dataclass(slots=True)
class _Prepared:
    """A request on its way: its outcome (or the run that will produce it) and what the result needs."""

    work: _Outcome | _Run
    result_key: ResultKey | None = None
    secrets: Mapping[str, str] = field(default_factory=lambda: EMPTY_SECRETS)


class _Run:
    """One handler invocation on the pool: records when it started and never raises out of the worker."""

    def __init__(
        self, job: Job, args: Any, budget: float, config: CoprocessorConfig, secrets: Mapping[str, str]
    ) -> None:
        self.job = job
        self.args = args
        self.budget = budget
        self.config = config
        self.secrets = secrets
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
            secrets=self.secrets,
            egress=self.config.egress_policy(),
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

    def __init__(
        self,
        keys: EnclaveKeys,
        jobs: JobRegistry,
        config: CoprocessorConfig,
        measurement: bytes,
        secrets: SecretStore | None = None,
    ) -> None:
        if len(measurement) != 32:
            raise ValueError("a measurement is 32 bytes")
        self.keys = keys
        self.secrets = secrets
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
        prepared = [self._prepare(domain, request, data) for request, data in items]
        runs = [p.work for p in prepared if isinstance(p.work, _Run)]
        for run in runs:
            run.future = self._pool.submit(run)
        queue_deadline = time.monotonic() + self.config.queue_timeout_seconds
        try:
            outcomes = [
                p.work if isinstance(p.work, _Outcome) else self._await(p.work, queue_deadline) for p in prepared
            ]
        except OverloadedError:
            for run in runs:
                assert run.future is not None
                run.future.cancel()
            raise
        signed = []
        for (request, _data), prep, outcome in zip(items, prepared, outcomes, strict=True):
            final = _withhold_secrets(outcome, prep.secrets)
            if prep.result_key is not None:
                sealed = encrypt_result(
                    final.result, prep.result_key, domain.chain_id, domain.router, request.request_id
                )
                final = _Outcome(final.status, sealed)
            final, full_result = self._fit_on_chain(final)
            signed.append(self._sign(domain, request, final, full_result))
            if log.isEnabledFor(logging.DEBUG):
                job = self.jobs.get(request.job_id)
                log.debug(
                    "request %s job %s status %s",
                    to_hex(request.request_id),
                    job.label if job else to_hex(request.job_id),
                    final.status.name,
                )
        # one line a batch: at a thousand requests a second, a line each would cost more than signing them
        statuses = Counter(s.status.name for s in signed)
        log.info(
            "executed %d request(s) in %.1f ms: %s",
            len(signed),
            (time.monotonic() - started) * 1000,
            ", ".join(f"{name} {count}" for name, count in sorted(statuses.items())),
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

    def _prepare(self, domain: Domain, request: Request, data: bytes) -> _Prepared:
        try:
            parsed = parse_input(data)
        except EnvelopeError as exc:
            return _Prepared(failure(Status.INVALID_INPUT, str(exc)))
        prepared = _Prepared(failure(Status.INVALID_INPUT, ""), result_key=parsed.result_key)
        job = self.jobs.get(request.job_id)
        if job is None:
            prepared.work = failure(Status.UNKNOWN_JOB, f"no job with id {to_hex(request.job_id)} is installed here")
            return prepared
        binding = Binding(domain.chain_id, domain.router, request.requester, request.job_id)
        try:
            opened = open_input(data, binding, self.keys.lookup)
        except EnvelopeError as exc:
            status = Status.UNKNOWN_KEY if exc.unknown_key else Status.DECRYPTION_FAILED
            prepared.work = failure(status if exc.decryption or exc.unknown_key else Status.INVALID_INPUT, str(exc))
            return prepared
        if opened.secret_set_id is not None:
            try:
                if self.secrets is None:
                    raise SecretUnavailableError("this coprocessor keeps no secrets")
                prepared.secrets = self.secrets.resolve(
                    opened.secret_set_id, domain.chain_id, request.job_id, request.requester
                )
            except SecretUnavailableError as exc:
                prepared.work = failure(Status.SECRET_UNAVAILABLE, str(exc))
                return prepared
        try:
            args = decode_payload(job, opened.payload)
        except InvalidJobInputError as exc:
            prepared.work = failure(Status.INVALID_INPUT, exc.reason)
            return prepared
        budget = job.timeout_seconds or self.config.job_timeout_seconds
        prepared.work = _Run(job, args, budget, self.config, prepared.secrets)
        return prepared

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
        limit = max(self.config.max_result_bytes, self.config.max_offchain_result_bytes)
        if len(result) > limit:
            return failure(
                Status.RESULT_TOO_LARGE, f"result is {len(result)} bytes; this coprocessor signs at most {limit}"
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

    def _fit_on_chain(self, outcome: _Outcome) -> tuple[_Outcome, bytes | None]:
        """A result longer than ``max_result_bytes`` goes off-chain (successes only) or is RESULT_TOO_LARGE."""
        size, inline, offchain = (
            len(outcome.result),
            self.config.max_result_bytes,
            self.config.max_offchain_result_bytes,
        )
        if size <= inline:
            return outcome, None
        if outcome.status == Status.OK and size <= offchain:
            return _Outcome(Status.RESULT_OFFCHAIN, offchain_reference(outcome.result)), outcome.result
        limit = offchain if outcome.status == Status.OK else inline
        return failure(Status.RESULT_TOO_LARGE, f"result is {size} bytes; this coprocessor signs at most {limit}"), None

    def _sign(
        self, domain: Domain, request: Request, outcome: _Outcome, full_result: bytes | None = None
    ) -> SignedFulfillment:
        fulfillment = fulfillment_for(request, outcome.status, outcome.result, self.measurement)
        signature = self.keys.sign(fulfillment.digest(domain))
        return SignedFulfillment(
            request,
            outcome.status,
            outcome.result,
            self.measurement,
            self.keys.signer_address,
            signature,
            domain,
            full_result,
        )


def _withhold_secrets(outcome: _Outcome, secrets: Mapping[str, str]) -> _Outcome:
    """The outcome, unless its bytes contain a secret value: then a JOB_FAILED that says so (and no value)."""
    for value in secrets.values():
        if value.encode() in outcome.result:
            return failure(Status.JOB_FAILED, "result withheld: it contains a value of the request's secret set")
    return outcome


def _failure_of(exc: BaseException) -> _Outcome:
    """The outcome for a handler exception; only curated reasons and type names are published."""
    if isinstance(exc, InvalidJobInputError):
        return failure(Status.INVALID_INPUT, exc.reason)
    if isinstance(exc, JobError):
        return failure(Status.JOB_FAILED, exc.reason)
    return failure(Status.JOB_FAILED, f"job raised {type(exc).__name__}")
