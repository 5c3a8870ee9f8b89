"""The coprocessor's HTTP API (Starlette). ``create_app(config)`` loads or creates the sealed keys, measures
the code, picks the quote provider and returns the ASGI app. docs/coprocessor-api.md is the reference.

    GET  /v1/health                               liveness, signer, measurement
    GET  /v1/attestation?chainId=N&registry=0x..  quote binding the keys to one chain and registry
    GET  /v1/jobs                                 installed jobs
    POST /v1/execute                              run requests, return signed Fulfillments
    POST /v1/price-report                         observe a pair's price, return a signed PriceReport
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

from coprocessor.attestation import Measure, QuoteProvider, TeeLocations, create_provider
from coprocessor.config import CoprocessorConfig
from coprocessor.executor import BadRequest, Executor, OverloadedError
from coprocessor.jobs import JobContext, JobRegistry, default_registry
from coprocessor.keys import EnclaveKeys, load_or_create_keys, open_sealer
from coprocessor.measurement import code_measurement
from coprocessor.price.aggregate import AnswerOverflowError, QuorumError
from coprocessor.price.report import MAX_BODY_BYTES, make_price_report, parse_price_report_request
from coprocessor.price.settings import PriceSettings, UnknownPairError
from coprocessor.wire import TooManyRequestsError, WireError, parse_address, parse_chain_id, parse_execute, parse_int
from verifier.attestation import report_data
from verifier.hexutil import to_hex
from verifier.quote import measurement_of, parse_quote

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"
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

    async def health(self, _request: HttpRequest) -> Response:
        """``GET /v1/health``."""
        return JSONResponse(
            {
                "status": "ok",
                "signer": self.keys.signer_address,
                "measurement": to_hex(self.measurement),
                "attestation": self.provider.kind,
                "insecure": self.provider.insecure,
                "jobs": len(self.jobs),
            }
        )

    async def attestation(self, request: HttpRequest) -> Response:
        """``GET /v1/attestation?chainId=N&registry=0x..``."""
        params = request.query_params
        if "chainId" not in params or "registry" not in params:
            return error(400, "query parameters chainId (decimal) and registry (0x address) are required")
        try:
            chain_id = parse_chain_id(parse_int(params["chainId"], "chainId", allow_string=True))
            registry = parse_address(params["registry"], "registry")
        except WireError as exc:
            return error(400, str(exc))
        data = report_data(chain_id, registry, self.keys.signer_address, self.keys.hpke_public_key)
        quote = await run_in_threadpool(self.provider.quote, data)
        return JSONResponse(
            {
                "kind": self.provider.kind,
                "insecure": self.provider.insecure,
                "warning": self.provider.warning,
                "signer": self.keys.signer_address,
                "hpkePublicKey": to_hex(self.keys.hpke_public_key),
                "hpkeKeyId": to_hex(self.keys.hpke_key_id),
                "measurement": to_hex(self.measurement),
                "chainId": chain_id,
                "registry": registry,
                "quote": quote,
            }
        )

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
        limit = self.config.max_request_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return error(413, f"request body is larger than {limit} bytes; send fewer or smaller requests")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return error(413, f"request body is larger than {limit} bytes; send fewer or smaller requests")
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            return error(400, "the body is not valid JSON; send a JSON object with chainId, router and requests")
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

    async def price_report(self, request: HttpRequest) -> Response:
        """``POST /v1/price-report``: observe a pair's price now and return a signed ``PriceReport``.

        400 for a bad body or an unconfigured pair, 422 when too few sources agree (no report rather than a
        bad one).
        """
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return error(413, f"request body is larger than {MAX_BODY_BYTES} bytes")
        try:
            call = parse_price_report_request(json.loads(body))
        except (ValueError, RecursionError) as exc:
            message = str(exc) if isinstance(exc, WireError) else "the body is not valid JSON"
            return error(400, f"{message}; send {{pair, decimals, chainId, registry}}")
        context = JobContext(
            deadline=time.monotonic() + self.config.job_timeout_seconds,
            http_timeout_seconds=self.config.http_timeout_seconds,
            http_max_response_bytes=self.config.http_max_response_bytes,
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
            Route("/v1/price-report", _guarded(self.price_report), methods=["POST"]),
        ]


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
    executor = Executor(keys, registry, config, measurement)
    service = CoprocessorService(config, keys, measurement, provider, registry, executor)
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
