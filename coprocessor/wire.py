"""Parsing and validation of the HTTP API's JSON inputs. Every error message says what is wrong and where."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coprocessor.batch_signing import SignedItem
from verifier.hashing import keccak256
from verifier.hexutil import from_hex, to_checksum_address
from verifier.protocol import Fulfillment, Request

UINT256_MAX = 2**256 - 1
SIGNED_FULFILLMENT_FIELDS = ("requestId", "commitment", "status", "resultHash", "measurement", "signature")
REQUEST_FIELDS = ("requestId", "requester", "jobId", "input", "callbackGasLimit", "fee", "expiry")


class WireError(ValueError):
    """A malformed API input (HTTP 400). The message names the field."""


class TooManyRequestsError(WireError):
    """More requests in one call than ``max_batch`` (HTTP 413)."""


@dataclass(frozen=True, slots=True)
class ExecuteCall:
    """A parsed ``POST /v1/execute`` body."""

    chain_id: int
    router: str
    items: list[tuple[Request, bytes]]


def parse_int(value: Any, name: str, *, maximum: int = UINT256_MAX, allow_string: bool = False) -> int:
    """A non-negative integer from a JSON number (or, with ``allow_string``, a decimal string)."""
    if allow_string and isinstance(value, str):
        if not (value.isascii() and value.isdigit()) or len(value) > 78:
            raise WireError(f"{name} must be a decimal integer string, got {value[:40]!r}")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "an integer or a decimal string" if allow_string else "an integer"
        raise WireError(f"{name} must be {kind}, got {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise WireError(f"{name} must be in 0..{maximum}, got {value}")
    return value


def parse_address(value: Any, name: str) -> str:
    """A checksummed address from hex; a mixed-case input must carry a valid EIP-55 checksum."""
    if not isinstance(value, str):
        raise WireError(f"{name} must be a 0x-prefixed 20-byte hex address")
    try:
        checksummed = to_checksum_address(from_hex(value, 20))
    except ValueError as exc:
        raise WireError(f"{name} must be a 0x-prefixed 20-byte hex address: {exc}") from exc
    body = value[2:] if value.startswith(("0x", "0X")) else value
    if body != body.lower() and body != body.upper() and checksummed[2:] != body:
        raise WireError(f"{name} has a wrong EIP-55 checksum (expected {checksummed})")
    return checksummed


def parse_hex(value: Any, name: str, length: int | None = None) -> bytes:
    """Bytes from 0x-prefixed hex, of ``length`` bytes when given."""
    if not isinstance(value, str) or not value.startswith(("0x", "0X")):
        raise WireError(f"{name} must be a 0x-prefixed hex string")
    try:
        return from_hex(value, length)
    except ValueError as exc:
        raise WireError(f"{name}: {exc}") from exc


def parse_chain_id(value: Any, name: str = "chainId") -> int:
    """A positive chain id."""
    chain_id = parse_int(value, name)
    if chain_id == 0:
        raise WireError(f"{name} must be positive")
    return chain_id


def parse_request(item: Any, name: str) -> tuple[Request, bytes]:
    """One entry of ``requests``: the committed Request fields and the raw input bytes.

    ``inputHash`` is optional: when given (as in the Router's ``Requested`` event) it is kept, and the
    executor refuses the batch if the input does not hash to it; when absent it is computed from ``input``.
    """
    if not isinstance(item, Mapping):
        raise WireError(f"{name} must be an object")
    missing = [k for k in REQUEST_FIELDS if k not in item]
    if missing:
        raise WireError(f"{name} is missing {', '.join(missing)}")
    data = parse_hex(item["input"], f"{name}.input")
    input_hash = (
        parse_hex(item["inputHash"], f"{name}.inputHash", 32) if item.get("inputHash") is not None else keccak256(data)
    )
    try:
        request = Request(
            request_id=parse_hex(item["requestId"], f"{name}.requestId", 32),
            requester=parse_address(item["requester"], f"{name}.requester"),
            job_id=parse_hex(item["jobId"], f"{name}.jobId", 32),
            input_hash=input_hash,
            callback_gas_limit=parse_int(item["callbackGasLimit"], f"{name}.callbackGasLimit", maximum=2**32 - 1),
            fee=parse_int(item["fee"], f"{name}.fee", maximum=2**96 - 1, allow_string=True),
            expiry=parse_int(item["expiry"], f"{name}.expiry", maximum=2**64 - 1),
        )
    except WireError:
        raise
    except ValueError as exc:
        raise WireError(f"{name}: {exc}") from exc
    return request, data


def parse_execute(body: Any, max_batch: int) -> ExecuteCall:
    """Parse a ``POST /v1/execute`` body; raises ``WireError`` (or ``TooManyRequestsError``) when malformed."""
    if not isinstance(body, Mapping):
        raise WireError('the body must be a JSON object {"chainId": ..., "router": ..., "requests": [...]}')
    for key in ("chainId", "router", "requests"):
        if key not in body:
            raise WireError(f"the body is missing {key}")
    chain_id = parse_chain_id(body["chainId"])
    router = parse_address(body["router"], "router")
    requests = body["requests"]
    if not isinstance(requests, list) or not requests:
        raise WireError("requests must be a non-empty list")
    if len(requests) > max_batch:
        raise TooManyRequestsError(f"{len(requests)} requests in one call; this coprocessor takes at most {max_batch}")
    items = [parse_request(item, f"requests[{i}]") for i, item in enumerate(requests)]
    return ExecuteCall(chain_id, router, items)


@dataclass(frozen=True, slots=True)
class SignBatchCall:
    """A parsed ``POST /v1/sign-batch`` body."""

    chain_id: int
    router: str
    items: list[SignedItem]


def parse_sign_batch(document: Any, max_items: int) -> SignBatchCall:
    """``{"chainId", "router", "fulfillments": [{requestId, commitment, status, resultHash, measurement,
    signature}, ...]}``: the fulfilments (as ``/v1/execute`` returned them) to sign as one batch, in order."""
    if not isinstance(document, Mapping):
        raise WireError("the body must be a JSON object with chainId, router and fulfillments")
    entries = document.get("fulfillments")
    if not isinstance(entries, list) or not entries:
        raise WireError("fulfillments must be a non-empty list")
    if len(entries) > max_items:
        raise TooManyRequestsError(f"{len(entries)} fulfillments in one call; at most {max_items}")
    items = []
    for index, entry in enumerate(entries):
        name = f"fulfillments[{index}]"
        if not isinstance(entry, Mapping):
            raise WireError(f"{name} must be an object")
        missing = [k for k in SIGNED_FULFILLMENT_FIELDS if k not in entry]
        if missing:
            raise WireError(f"{name} is missing {', '.join(missing)}")
        fulfillment = Fulfillment(
            request_id=parse_hex(entry["requestId"], f"{name}.requestId", 32),
            commitment=parse_hex(entry["commitment"], f"{name}.commitment", 32),
            status=parse_int(entry["status"], f"{name}.status", maximum=255),
            result_hash=parse_hex(entry["resultHash"], f"{name}.resultHash", 32),
            measurement=parse_hex(entry["measurement"], f"{name}.measurement", 32),
        )
        items.append(SignedItem(fulfillment, parse_hex(entry["signature"], f"{name}.signature", 65)))
    return SignBatchCall(
        parse_chain_id(document.get("chainId")), parse_address(document.get("router"), "router"), items
    )
