"""The coprocessor's HTTP API (Starlette). ``create_app(config)`` loads or creates the sealed keys, measures
the code, picks the quote provider and returns the ASGI app. docs/coprocessor-api.md is the reference.

    GET  /v1/health                               liveness, signer, measurement
    GET  /v1/attestation?chainId=N&registry=0x..  quote binding the keys to one chain and registry
    GET  /v1/jobs                                 installed jobs
    POST /v1/execute                              run requests, return signed Fulfillments
    POST /v1/price-report                         observe a pair's price, return a signed PriceReport
    GET  /v1/keys                                 current, pending and retired public keys
    POST /v1/keys/rotate                          make a pending key set (attest it with ?keys=pending)
    POST /v1/keys/activate                        make the pending key set current
    POST /v1/secrets                              store a job owner's signed, encrypted secret set
    POST /v1/secrets/delete                       delete a secret set (signed by its owner)
    GET  /v1/secrets/{secretSetId}                version, expiry and deletion state of a secret set
"""

from __future__ import annotations

import functools
import json
import logging
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from coprocessor.admin import AdminRefusedError, check_admin
from coprocessor.attestation import Measure, QuoteProvider, TeeLocations, create_provider
from coprocessor.batch_signing import ForeignItemError, sign_batch
from coprocessor.config import CoprocessorConfig
from coprocessor.executor import BadRequest, Executor, OverloadedError
from coprocessor.jobs import JobContext, JobRegistry, default_registry
from coprocessor.keys import EnclaveKeys, KeySet, RotationError, load_or_create_keys, open_sealer
from coprocessor.measurement import code_measurement
from coprocessor.price.aggregate import AnswerOverflowError, QuorumError
from coprocessor.price.report import MAX_BODY_BYTES, make_price_report, parse_price_report_request
from coprocessor.price.settings import PriceSettings, UnknownPairError
from coprocessor.secrets import SecretStore
from coprocessor.wire import (
    TooManyRequestsError,
    WireError,
    parse_address,
    parse_chain_id,
    parse_execute,
    parse_hex,
    parse_int,
    parse_sign_batch,
)
from verifier.attestation import report_data
from verifier.hexutil import to_hex
from verifier.protocol import Domain
from verifier.quote import measurement_of, parse_quote
from verifier.secrets import SecretSetDeletion, SecretSetError, SecretSetUpload

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"
#: The most fulfilments one ``/v1/sign-batch`` call signs (a 30M-gas block holds fewer trivial fulfilments).
MAX_SIGN_BATCH_ITEMS = 2048
MAX_SECRETS_BODY = 65536
Endpoint = Callable[[HttpRequest], Awaitable[Response]]


def error(status_code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The API's error shape: ``{"error": message}``."""
    return JSONResponse({"error": message}, status_code=status_code, headers=headers)


@dataclass(frozen=True, slots=True)
class CoprocessorService:
    """Everything the endpoints need, built once by :func:`create_app` (``app.state.coprocessor``)."""

    config: CoprocessorConfig
    keys: EnclaveKeys
    measurement: bytes
    provider: QuoteProvider
    jobs: JobRegistry
    executor: Executor
    secrets: SecretStore

    async def health(self, _request: HttpRequest) -> Response:
        """``GET /v1/health``."""
        return JSONResponse(
            {
                "status": "ok",
                "signer": self.keys.signer_address,
                "hpkeSuites": [suite.label for suite in self.keys.suites],
                "measurement": to_hex(self.measurement),
                "attestation": self.provider.kind,
                "insecure": self.provider.insecure,
                "jobs": len(self.jobs),
            }
        )

    async def attestation(self, request: HttpRequest) -> Response:
        """``GET /v1/attestation?chainId=N&registry=0x..[&keys=pending]``."""
        params = request.query_params
        if "chainId" not in params or "registry" not in params:
            return error(400, "query parameters chainId (decimal) and registry (0x address) are required")
        try:
            chain_id = parse_chain_id(parse_int(params["chainId"], "chainId", allow_string=True))
            registry = parse_address(params["registry"], "registry")
        except WireError as exc:
            return error(400, str(exc))
        which = params.get("keys", "current")
        if which not in ("current", "pending"):
            return error(400, "keys must be 'current' or 'pending'")
        key_set = self.keys.current if which == "current" else self.keys.pending
        if key_set is None:
            return error(409, "no rotation in progress: POST /v1/keys/rotate first")
        data = report_data(chain_id, registry, key_set.signer_address, key_set.key_bundle)
        quote = await run_in_threadpool(self.provider.quote, data)
        return JSONResponse(
            {
                "kind": self.provider.kind,
                "insecure": self.provider.insecure,
                "warning": self.provider.warning,
                "signer": key_set.signer_address,
                "hpkeKeys": to_hex(key_set.key_bundle),
                "hpkeKeyIds": {suite.label: to_hex(pair.key_id) for suite, pair in key_set.hpke.items()},
                "measurement": to_hex(self.measurement),
                "chainId": chain_id,
                "registry": registry,
                "quote": quote,
            }
        )

    async def list_keys(self, _request: HttpRequest) -> Response:
        """``GET /v1/keys``: the public halves of the current, pending and retired keys."""
        pending = self.keys.pending
        return JSONResponse(
            {
                "current": _key_set_json(self.keys.current),
                "pending": _key_set_json(pending) if pending is not None else None,
                "retired": [
                    {"suite": r.pair.suite.label, "keyId": to_hex(r.pair.key_id), "retireAt": r.retire_at}
                    for r in self.keys.retired
                ],
            }
        )

    def _refuse_non_admin(self, request: HttpRequest) -> Response | None:
        """An error response unless this client may manage keys (``coprocessor.admin``)."""
        client = request.client.host if request.client else None
        try:
            check_admin(self.config.admin_token, client, request.headers.get("authorization"))
        except AdminRefusedError as exc:
            log.warning("refused key management from %s: %s", client, exc)
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            return error(exc.status, str(exc), headers=headers)
        return None

    async def rotate_keys(self, request: HttpRequest) -> Response:
        """``POST /v1/keys/rotate``: make (or return) the pending key set (admin only)."""
        if (refused := self._refuse_non_admin(request)) is not None:
            return refused
        pending = await run_in_threadpool(self.keys.begin_rotation)
        return JSONResponse({"pending": _key_set_json(pending)})

    async def activate_keys(self, request: HttpRequest) -> Response:
        """``POST /v1/keys/activate`` with ``{"signer": pending signer, "retireAt": unix seconds}`` (admin only)."""
        if (refused := self._refuse_non_admin(request)) is not None:
            return refused
        try:
            body = json.loads(await request.body())
            signer = parse_address(body["signer"], "signer")
            retire_at = parse_int(body["retireAt"], "retireAt", maximum=2**64 - 1)
        except (ValueError, KeyError, TypeError) as exc:
            message = str(exc) if isinstance(exc, WireError) else "send a JSON object {signer, retireAt}"
            return error(400, message)
        try:
            current = await run_in_threadpool(self.keys.complete_rotation, signer, retire_at)
        except RotationError as exc:
            return error(409, str(exc))
        return JSONResponse({"current": _key_set_json(current)})

    async def put_secrets(self, request: HttpRequest) -> Response:
        """``POST /v1/secrets``: store a signed, encrypted secret set."""
        return await self._secrets_call(request, lambda doc: self.secrets.put(SecretSetUpload.from_json(doc)))

    async def delete_secrets(self, request: HttpRequest) -> Response:
        """``POST /v1/secrets/delete``: delete a secret set."""
        return await self._secrets_call(request, lambda doc: self.secrets.delete(SecretSetDeletion.from_json(doc)))

    async def get_secrets(self, request: HttpRequest) -> Response:
        """``GET /v1/secrets/{secretSetId}``: version, expiry and deletion state (never a value)."""
        try:
            secret_set_id = parse_hex(request.path_params["secret_set_id"], "secretSetId", 32)
        except WireError as exc:
            return error(400, str(exc))
        info = self.secrets.info(secret_set_id)
        if info is None:
            return error(404, f"no secret set {to_hex(secret_set_id)} is stored here")
        return JSONResponse(info.to_json())

    async def _secrets_call(self, request: HttpRequest, action: Callable[[object], object]) -> Response:
        body = await request.body()
        if len(body) > MAX_SECRETS_BODY:
            return error(413, f"request body is larger than {MAX_SECRETS_BODY} bytes")
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            return error(400, "the body is not valid JSON")
        try:
            info = await run_in_threadpool(action, doc)
        except SecretSetError as exc:
            return error(400, str(exc))
        assert hasattr(info, "to_json")
        return JSONResponse(info.to_json())

    async def list_jobs(self, _request: HttpRequest) -> Response:
        """``GET /v1/jobs``: a JSON array of the installed jobs."""
        return JSONResponse(
            [
                {
                    "jobId": to_hex(job.job_id),
                    "name": job.name,
                    "version": job.version,
                    "inputTypes": list(job.input_types) if job.input_types is not None else None,
                    "outputTypes": list(job.output_types) if job.output_types is not None else None,
                    "description": job.description,
                }
                for job in self.jobs.list()
            ]
        )

    async def execute(self, request: HttpRequest) -> Response:
        """``POST /v1/execute``: run a batch of requests and return their signed fulfillments in order."""
        document = await self._read_json(request, "requests")
        if isinstance(document, Response):
            return document
        try:
            call = parse_execute(document, self.config.max_batch)
        except TooManyRequestsError as exc:
            return error(413, f"{exc}; split the batch")
        except WireError as exc:
            return error(400, str(exc))
        try:
            signed = await run_in_threadpool(self.executor.execute_batch, call.chain_id, call.router, call.items)
        except BadRequest as exc:
            return error(400, str(exc))
        except OverloadedError as exc:
            return error(503, str(exc), headers={"Retry-After": RETRY_AFTER_SECONDS})
        return JSONResponse({"fulfillments": [s.to_json() for s in signed]})

    async def sign_batch(self, request: HttpRequest) -> Response:
        """``POST /v1/sign-batch``: one ``FulfillmentBatch`` signature over fulfilments this enclave signed.

        409 when an item was signed by another key (another enclave, or this one before a key rotation): the
        relayer then submits the items with their own signatures.
        """
        document = await self._read_json(request, "fulfillments")
        if isinstance(document, Response):
            return document
        try:
            call = parse_sign_batch(document, MAX_SIGN_BATCH_ITEMS)
        except TooManyRequestsError as exc:
            return error(413, f"{exc}; split the batch")
        except WireError as exc:
            return error(400, str(exc))
        try:
            domain = Domain(call.chain_id, call.router)
            signer, signature = await run_in_threadpool(sign_batch, self.keys, self.measurement, domain, call.items)
        except ForeignItemError as exc:
            return error(409, f"{exc}; submit these items with their own signatures")
        return JSONResponse(
            {
                "signer": signer,
                "measurement": to_hex(self.measurement),
                "signature": to_hex(signature),
            }
        )

    async def _read_body(self, request: HttpRequest, limit: int, hint: str) -> bytes | Response:
        """The raw body, or a 413 when it is over ``limit`` bytes (``hint`` says what to send instead)."""
        declared = request.headers.get("content-length", "")
        too_large = error(413, f"request body is larger than {limit} bytes{hint}")
        if declared.isdigit() and int(declared) > limit:
            return too_large
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return too_large
        return bytes(body)

    async def _read_json(self, request: HttpRequest, what: str) -> object:
        """The JSON body (at most ``max_request_bytes``), or the error response to send instead."""
        body = await self._read_body(request, self.config.max_request_bytes, f"; send fewer or smaller {what}")
        if isinstance(body, Response):
            return body
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            return error(400, f"the body is not valid JSON; send a JSON object with chainId, router and {what}")

    async def price_report(self, request: HttpRequest) -> Response:
        """``POST /v1/price-report``: observe a pair's price now and return a signed ``PriceReport``.

        400 for a bad body or an unconfigured pair, 422 when too few sources agree (no report rather than a
        bad one).
        """
        body = await self._read_body(request, MAX_BODY_BYTES, "")
        if isinstance(body, Response):
            return body
        try:
            call = parse_price_report_request(json.loads(body))
        except (ValueError, RecursionError) as exc:
            message = str(exc) if isinstance(exc, WireError) else "the body is not valid JSON"
            return error(400, f"{message}; send {{pair, decimals, chainId, registry}}")
        context = JobContext(
            deadline=time.monotonic() + self.config.job_timeout_seconds,
            http_timeout_seconds=self.config.http_timeout_seconds,
            http_max_response_bytes=self.config.http_max_response_bytes,
            egress=self.config.egress_policy(),
        )
        settings = PriceSettings.from_config(self.config)
        try:
            signed = await run_in_threadpool(make_price_report, call, settings, self.keys, self.measurement, context)
        except UnknownPairError as exc:
            return error(400, str(exc))
        except QuorumError as exc:
            return error(422, f"no price for {call.pair}: {exc}")
        except AnswerOverflowError as exc:
            return error(400, str(exc))
        return JSONResponse(signed.to_json())

    def routes(self) -> list[Route]:
        """The API routes."""
        return [
            Route("/v1/health", _guarded(self.health), methods=["GET"]),
            Route("/v1/attestation", _guarded(self.attestation), methods=["GET"]),
            Route("/v1/jobs", _guarded(self.list_jobs), methods=["GET"]),
            Route("/v1/execute", _guarded(self.execute), methods=["POST"]),
            Route("/v1/sign-batch", _guarded(self.sign_batch), methods=["POST"]),
            Route("/v1/price-report", _guarded(self.price_report), methods=["POST"]),
            Route("/v1/keys", _guarded(self.list_keys), methods=["GET"]),
            Route("/v1/keys/rotate", _guarded(self.rotate_keys), methods=["POST"]),
            Route("/v1/keys/activate", _guarded(self.activate_keys), methods=["POST"]),
            Route("/v1/secrets", _guarded(self.put_secrets), methods=["POST"]),
            Route("/v1/secrets/delete", _guarded(self.delete_secrets), methods=["POST"]),
            Route("/v1/secrets/{secret_set_id}", _guarded(self.get_secrets), methods=["GET"]),
        ]


def _key_set_json(key_set: KeySet) -> dict[str, object]:
    return {
        "signer": key_set.signer_address,
        "hpkeKeys": to_hex(key_set.key_bundle),
        "hpkeKeyIds": {suite.label: to_hex(pair.key_id) for suite, pair in key_set.hpke.items()},
    }


async def _http_exception(_request: HttpRequest, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, exc.detail, headers=dict(exc.headers or {}))


def _guarded(endpoint: Endpoint) -> Endpoint:
    """Turn an unexpected exception into a 500 without letting its message reach a log or the client.

    Only the exception type and the code locations are logged: messages may quote request data. (Raising
    to Starlette's error middleware would have the server log the full exception.)
    """

    @functools.wraps(endpoint)
    async def wrapper(request: HttpRequest) -> Response:
        try:
            return await endpoint(request)
        except HTTPException:
            raise
        except Exception as exc:
            frames = "".join(traceback.format_tb(exc.__traceback__))
            log.error("internal error %s in %s at\n%s", type(exc).__name__, request.url.path, frames)
            return error(500, "internal error in the coprocessor; see its log")

    return wrapper


def measure_quote(raw: bytes) -> bytes:
    """The on-chain measurement of a hardware quote (``verifier.quote.measurement_of``)."""
    return measurement_of(parse_quote(raw))


def create_app(
    config: CoprocessorConfig, *, jobs: JobRegistry | None = None, measure: Measure = measure_quote
) -> Starlette:
    """Build the coprocessor app: unseal (or create) the keys, measure the code, start the job pool.

    ``jobs`` replaces the built-in job registry (for tests). The executor's worker pool is closed when
    the app's lifespan ends.
    """
    code = code_measurement()
    sealer = open_sealer(config.sealing, config.data_dir, dstack_socket=config.dstack_socket)
    keys = load_or_create_keys(config.data_dir, sealer)
    provider = create_provider(config.attestation, code, measure, locations=TeeLocations.from_config(config))
    # simulated: the code measurement; hardware: derived from the enclave's own start-up quote
    measurement = provider.measurement()
    registry = default_registry(config) if jobs is None else jobs
    secrets = SecretStore(config.data_dir, sealer, keys)
    executor = Executor(keys, registry, config, measurement, secrets)
    service = CoprocessorService(config, keys, measurement, provider, registry, executor, secrets)
    log.info(
        "coprocessor ready: signer %s, measurement %s, attestation %s, %d jobs",
        keys.signer_address,
        to_hex(measurement),
        provider.kind,
        len(registry),
    )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            executor.close()

    app = Starlette(
        routes=service.routes(),
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_exception},
    )
    app.state.coprocessor = service
    return app
