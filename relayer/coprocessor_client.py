"""HTTP client for a coprocessor's API (docs/coprocessor-api.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from relayer.store import StoredRequest
from verifier.hexutil import from_hex, to_hex
from verifier.price_report import SignedPriceReport
from verifier.signed_result import SignedResult

SIGNED_ITEM_FIELDS = ("requestId", "commitment", "status", "resultHash", "measurement", "signature")
"""What ``POST /v1/sign-batch`` needs of each signed result (``SignedResult.to_json`` has them all)."""


class CoprocessorError(RuntimeError):
    """The coprocessor could not be reached or refused the call. ``retryable`` says whether to try again."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass
class CoprocessorClient:
    """Talks to one coprocessor."""

    base_url: str
    #: A batch of slow jobs may take a while: each handler has its own budget (10 s by default) and may
    #: queue for a worker.
    timeout: float = 120.0
    _http: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._http = httpx.Client(base_url=self.base_url.rstrip("/"), timeout=self.timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CoprocessorError(f"coprocessor {self.base_url} unreachable: {exc}", retryable=True) from exc
        if response.status_code >= 500:
            raise CoprocessorError(f"coprocessor error {response.status_code}: {response.text[:300]}", retryable=True)
        if response.status_code >= 400:
            raise CoprocessorError(
                f"coprocessor refused ({response.status_code}): {response.text[:300]}", retryable=False
            )
        return response.json()

    def forward(self, path: str, body: bytes) -> tuple[int, bytes]:
        """POST ``body`` to ``path`` as it is and return the coprocessor's status and body (502 if unreachable)."""
        try:
            response = self._http.post(path, content=body, headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            return 502, json.dumps({"error": f"coprocessor {self.base_url} unreachable: {exc}"}).encode()
        return response.status_code, response.content

    def health(self) -> dict[str, Any]:
        """``GET /v1/health``."""
        return self._call("GET", "/v1/health")

    def attestation(self, chain_id: int, registry: str) -> dict[str, Any]:
        """``GET /v1/attestation`` for this chain and registry."""
        return self._call("GET", "/v1/attestation", params={"chainId": chain_id, "registry": registry})

    def price_report(self, pair: str, decimals: int, chain_id: int, registry: str) -> SignedPriceReport:
        """``POST /v1/price-report``: a fresh signed price for ``pair``. A quorum failure is not retryable now."""
        body = {"pair": pair, "decimals": decimals, "chainId": chain_id, "registry": registry}
        return SignedPriceReport.from_json(self._call("POST", "/v1/price-report", json=body))

    def sign_batch(self, chain_id: int, router: str, results: list[SignedResult]) -> bytes:
        """``POST /v1/sign-batch``: one ``FulfillmentBatch`` signature over ``results`` (in order).

        Refused (not retryable) when this coprocessor's current key did not sign every one of them.
        """
        body = {
            "chainId": chain_id,
            "router": router,
            # the fields the enclave needs to recompute each item's digest; not the result bytes themselves
            "fulfillments": [{k: doc[k] for k in SIGNED_ITEM_FIELDS} for doc in (r.to_json() for r in results)],
        }
        data = self._call("POST", "/v1/sign-batch", json=body)
        try:
            return from_hex(data["signature"], 65)
        except (KeyError, TypeError, ValueError) as exc:
            raise CoprocessorError(f"malformed /v1/sign-batch answer: {exc}", retryable=False) from exc

    def execute(self, chain_id: int, router: str, requests: list[StoredRequest]) -> list[SignedResult]:
        """``POST /v1/execute``: signed results in the order of ``requests``."""
        body = {
            "chainId": chain_id,
            "router": router,
            "requests": [
                {
                    "requestId": to_hex(r.request_id),
                    "requester": r.requester,
                    "jobId": to_hex(r.job_id),
                    "input": to_hex(r.input),
                    # from the Requested event, so the enclave refuses (unsigned) anything inconsistent
                    "inputHash": to_hex(r.request().input_hash),
                    "callbackGasLimit": r.callback_gas_limit,
                    "fee": str(r.fee),
                    "expiry": r.expiry,
                }
                for r in requests
            ],
        }
        data = self._call("POST", "/v1/execute", json=body)
        results = [SignedResult.from_json(item) for item in data.get("fulfillments", [])]
        if len(results) != len(requests):
            raise CoprocessorError(f"asked for {len(requests)} results, got {len(results)}", retryable=True)
        return results
