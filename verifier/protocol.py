"""The teebridge wire protocol: ids, the request commitment, status codes and the EIP-712 Fulfillment.

This module is the single encoder of every structure that is hashed or signed. The coprocessor signs
with it, the relayer checks with it, and the Router's Solidity computes the same bytes (docs/protocol.md
is the normative text; the tests hold the two to each other).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache

from verifier.hashing import keccak256
from verifier.hexutil import address_bytes, to_checksum_address, to_hex

EIP712_DOMAIN_NAME = "teebridge"
EIP712_DOMAIN_VERSION = "1"

EIP712_DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
FULFILLMENT_TYPE = (
    "Fulfillment(bytes32 requestId,bytes32 commitment,uint8 status,bytes32 resultHash,bytes32 measurement)"
)
FULFILLMENT_BATCH_TYPE = "FulfillmentBatch(Fulfillment[] fulfillments)" + FULFILLMENT_TYPE
EIP712_DOMAIN_TYPEHASH = keccak256(EIP712_DOMAIN_TYPE.encode())
FULFILLMENT_TYPEHASH = keccak256(FULFILLMENT_TYPE.encode())
FULFILLMENT_BATCH_TYPEHASH = keccak256(FULFILLMENT_BATCH_TYPE.encode())

SAME_REQUESTER = 1
"""Packed item flag: the item omits ``requester``, it is the previous item's (``Router.SAME_REQUESTER``)."""
SAME_JOB = 2
"""Packed item flag: the item omits ``jobId``, it is the previous item's (``Router.SAME_JOB``)."""
PACKED_ITEM_FULL_HEADER = 120
"""Bytes before the result in a packed item that carries every field (no flags set; see :func:`pack_item`)."""
MAX_PACKED_RESULT = 2**16 - 1
"""The longest result a packed item can carry (its length field is two bytes)."""

REQUEST_NUMBER_BITS = 64
"""A request id's low bits: the request's number, counted from 1 by its Router (``Router.nonce``)."""
REQUEST_NUMBER_MASK = 2**REQUEST_NUMBER_BITS - 1

UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1
UINT96_MAX = 2**96 - 1


class Status(IntEnum):
    """The outcome code of a fulfilment. Anything but ``OK`` carries ``abi.encode(string reason)``."""

    OK = 0
    INVALID_INPUT = 1
    """The input could not be decoded for the job (bad envelope or bad ABI)."""
    DECRYPTION_FAILED = 2
    """The HPKE ciphertext did not open under this enclave's key and this request's binding."""
    UNKNOWN_JOB = 3
    """No job with this id is installed in the coprocessor."""
    JOB_FAILED = 4
    """The job ran and failed (for example an upstream API error)."""
    TIMEOUT = 5
    """The job exceeded its time budget."""
    RESULT_TOO_LARGE = 6
    """The job's output is larger than the coprocessor's limit."""
    SECRET_UNAVAILABLE = 7
    """The input names a secret set this request may not use: missing, deleted, expired, or for another
    chain, job or requester."""
    UNKNOWN_KEY = 8
    """The input was sealed to an enclave key this enclave does not hold: retired after a key rotation, or
    another enclave's. Fetch the live keys from the registry and encrypt again."""
    RESULT_OFFCHAIN = 9
    """Success, with a result too large for the chain: ``result`` is ``abi.encode(bytes32 resultHash,
    uint256 length)`` and the relayer serves the full bytes (which must hash to ``resultHash``)."""


SUCCESS_STATUSES = frozenset({Status.OK, Status.RESULT_OFFCHAIN})
"""The statuses of a job that ran and answered."""


def offchain_reference(result: bytes) -> bytes:
    """The on-chain stand-in for a large result: ``abi.encode(bytes32 keccak256(result), uint256 length)``."""
    return keccak256(result) + word(len(result))


def parse_offchain_reference(reference: bytes) -> tuple[bytes, int]:
    """``(resultHash, length)`` from a RESULT_OFFCHAIN result; ``ValueError`` if it is not 64 bytes."""
    if len(reference) != 64:
        raise ValueError(f"an off-chain result reference is 64 bytes, got {len(reference)}")
    return reference[:32], int.from_bytes(reference[32:], "big")


def word(value: int) -> bytes:
    """One ABI word holding an unsigned integer."""
    if value < 0 or value >= 2**256:
        raise ValueError(f"{value} does not fit in uint256")
    return value.to_bytes(32, "big")


def address_word(address: str | bytes) -> bytes:
    """One ABI word holding an address (left-padded)."""
    return b"\x00" * 12 + address_bytes(address)


def job_id(name: str, version: str | int) -> bytes:
    """``jobId = keccak256(utf8("name@version"))``."""
    if not name or "@" in name:
        raise ValueError(f"a job name is non-empty and has no '@': {name!r}")
    return keccak256(f"{name}@{version}".encode())


def request_id_prefix(chain_id: int, router: str | bytes) -> int:
    """The high 192 bits of every request id of ``router`` on ``chain_id``: those of
    ``keccak256(abi.encode(chainId, router))``, low 64 bits zero (``Router.requestIdPrefix``)."""
    digest = int.from_bytes(keccak256(word(chain_id) + address_word(router)), "big")
    return digest & ~REQUEST_NUMBER_MASK


def request_id(chain_id: int, router: str | bytes, number: int) -> bytes:
    """The id of ``router``'s request number ``number`` (counted from 1): ``requestIdPrefix | number``."""
    if not 0 <= number <= REQUEST_NUMBER_MASK:
        raise ValueError(f"a request number is a uint64, not {number}")
    return (request_id_prefix(chain_id, router) | number).to_bytes(32, "big")


def request_number(request_id: bytes) -> int:
    """The request's number: the low 64 bits of its id (what packed items carry instead of the id)."""
    return int.from_bytes(request_id[-8:], "big")


@dataclass(frozen=True, slots=True)
class Request:
    """The fields a request is committed to, as the Router emits them in ``Requested``."""

    request_id: bytes
    requester: str
    job_id: bytes
    input_hash: bytes
    callback_gas_limit: int
    fee: int
    expiry: int

    def __post_init__(self) -> None:
        if len(self.request_id) != 32 or len(self.job_id) != 32 or len(self.input_hash) != 32:
            raise ValueError("request_id, job_id and input_hash are 32 bytes each")
        if not 0 <= self.callback_gas_limit <= UINT32_MAX:
            raise ValueError("callback_gas_limit is a uint32")
        if not 0 <= self.fee <= UINT96_MAX:
            raise ValueError("fee is a uint96")
        if not 0 <= self.expiry <= UINT64_MAX:
            raise ValueError("expiry is a uint64")
        object.__setattr__(self, "requester", to_checksum_address(self.requester))

    @classmethod
    def from_input(
        cls,
        *,
        request_id: bytes,
        requester: str,
        job_id: bytes,
        input: bytes,
        callback_gas_limit: int,
        fee: int,
        expiry: int,
    ) -> Request:
        """Build the committed fields from the raw input bytes (hashing them)."""
        return cls(request_id, requester, job_id, keccak256(input), callback_gas_limit, fee, expiry)

    def commitment(self) -> bytes:
        """``keccak256(abi.encode(requestId, requester, jobId, inputHash, callbackGasLimit, fee, expiry))``."""
        return keccak256(
            self.request_id
            + address_word(self.requester)
            + self.job_id
            + self.input_hash
            + word(self.callback_gas_limit)
            + word(self.fee)
            + word(self.expiry)
        )

    def as_tuple(self) -> tuple[bytes, str, bytes, bytes, int, int, int]:
        """The Solidity ``Router.Request`` struct as an ABI tuple."""
        return (
            self.request_id,
            self.requester,
            self.job_id,
            self.input_hash,
            self.callback_gas_limit,
            self.fee,
            self.expiry,
        )

    def to_json(self) -> dict[str, object]:
        """JSON form used on the coprocessor's HTTP API."""
        return {
            "requestId": to_hex(self.request_id),
            "requester": self.requester,
            "jobId": to_hex(self.job_id),
            "inputHash": to_hex(self.input_hash),
            "callbackGasLimit": self.callback_gas_limit,
            "fee": str(self.fee),
            "expiry": self.expiry,
        }


@dataclass(frozen=True, slots=True)
class Domain:
    """The EIP-712 domain: one Router on one chain."""

    chain_id: int
    router: str

    def separator(self) -> bytes:
        """``keccak256(abi.encode(DOMAIN_TYPEHASH, keccak("teebridge"), keccak("1"), chainId, router))``."""
        return _domain_separator(self.chain_id, self.router)

    def request_id_prefix(self) -> int:
        """The high bits every request id of this Router on this chain has (:func:`request_id_prefix`)."""
        return _request_id_prefix(self.chain_id, self.router)

    def owns_request_id(self, request_id: bytes) -> bool:
        """Whether ``request_id`` can be one of this Router's: its high 192 bits are the prefix."""
        return int.from_bytes(request_id, "big") & ~REQUEST_NUMBER_MASK == self.request_id_prefix()


@lru_cache(maxsize=256)
def _domain_separator(chain_id: int, router: str) -> bytes:
    """:meth:`Domain.separator`, remembered (every digest of every request needs it; it never changes)."""
    return keccak256(
        EIP712_DOMAIN_TYPEHASH
        + keccak256(EIP712_DOMAIN_NAME.encode())
        + keccak256(EIP712_DOMAIN_VERSION.encode())
        + word(chain_id)
        + address_word(router)
    )


@lru_cache(maxsize=256)
def _request_id_prefix(chain_id: int, router: str) -> int:
    """:meth:`Domain.request_id_prefix`, remembered (every packed item decoded needs it)."""
    return request_id_prefix(chain_id, router)


@dataclass(frozen=True, slots=True)
class Fulfillment:
    """What an enclave signs: the answer to one request, bound to the request's commitment."""

    request_id: bytes
    commitment: bytes
    status: int
    result_hash: bytes
    measurement: bytes

    def struct_hash(self) -> bytes:
        """``hashStruct(Fulfillment)`` per EIP-712."""
        if not 0 <= self.status <= 255:
            raise ValueError("status is a uint8")
        return keccak256(
            FULFILLMENT_TYPEHASH
            + self.request_id
            + self.commitment
            + word(self.status)
            + self.result_hash
            + self.measurement
        )

    def digest(self, domain: Domain) -> bytes:
        """The EIP-712 digest ``keccak256(0x1901 || domainSeparator || hashStruct)``."""
        return keccak256(b"\x19\x01" + domain.separator() + self.struct_hash())


def fulfillment_for(request: Request, status: int, result: bytes, measurement: bytes) -> Fulfillment:
    """The Fulfillment an enclave signs for ``request`` with this outcome."""
    return Fulfillment(request.request_id, request.commitment(), int(status), keccak256(result), measurement)


def batch_struct_hash(fulfillments: list[Fulfillment] | tuple[Fulfillment, ...]) -> bytes:
    """``hashStruct(FulfillmentBatch)``: the array member is the hash of the items' concatenated hashStructs."""
    if not fulfillments:
        raise ValueError("a batch has at least one fulfilment")
    items_hash = keccak256(b"".join(f.struct_hash() for f in fulfillments))
    return keccak256(FULFILLMENT_BATCH_TYPEHASH + items_hash)


def batch_digest(fulfillments: list[Fulfillment] | tuple[Fulfillment, ...], domain: Domain) -> bytes:
    """The EIP-712 digest an enclave signs for a batch (``Router.fulfillBatchSigned``), items in order."""
    return keccak256(b"\x19\x01" + domain.separator() + batch_struct_hash(fulfillments))


def pack_item(request: Request, status: int, result: bytes, previous: Request | None = None) -> bytes:
    """One item of ``Router.fulfillBatchSigned``'s packed ``items`` (docs/protocol.md, section 7.1).

    ``flags (1) | request number (8) | requester (20) | jobId (32) | inputHash (32) | callbackGasLimit (4) |
    fee (12) | expiry (8) | status (1) | result length (2) | result``, where the request number is the low 64
    bits of the request id (the Router puts its :func:`request_id_prefix` back), ``requester`` is left out (flag
    :data:`SAME_REQUESTER`) when it equals ``previous``'s, and ``jobId`` likewise (flag :data:`SAME_JOB`).
    ``previous`` is the request of the item packed just before this one (None for the first item).
    """
    if not 0 <= status <= 255:
        raise ValueError("status is a uint8")
    if len(result) > MAX_PACKED_RESULT:
        raise ValueError(f"a packed item carries at most {MAX_PACKED_RESULT} result bytes, not {len(result)}")
    same_requester = previous is not None and address_bytes(previous.requester) == address_bytes(request.requester)
    same_job = previous is not None and previous.job_id == request.job_id
    flags = (SAME_REQUESTER if same_requester else 0) | (SAME_JOB if same_job else 0)
    return (
        bytes([flags])
        + request.request_id[-8:]
        + (b"" if same_requester else address_bytes(request.requester))
        + (b"" if same_job else request.job_id)
        + request.input_hash
        + request.callback_gas_limit.to_bytes(4, "big")
        + request.fee.to_bytes(12, "big")
        + request.expiry.to_bytes(8, "big")
        + bytes([status])
        + len(result).to_bytes(2, "big")
        + result
    )


def pack_fulfillment(request: Request, status: int, result: bytes, measurement: bytes, r: bytes, vs: bytes) -> bytes:
    """``Router.fulfillPacked``'s calldata after its selector (docs/protocol.md, section 7.2): ``measurement (32) |
    r (32) | vs (32) | item``, where ``item`` is :func:`pack_item` with flags 0 and ``(r, vs)`` is the answer's own
    ``Fulfillment`` signature in compact form (:func:`verifier.signing.to_compact`)."""
    if len(measurement) != 32 or len(r) != 32 or len(vs) != 32:
        raise ValueError("measurement, r and vs are 32 bytes each")
    return measurement + r + vs + pack_item(request, status, result)


def pack_items(answers: Iterable[tuple[Request, int, bytes]]) -> bytes:
    """``Router.fulfillBatchSigned``'s ``items`` for ``(request, status, result)`` answers, in order."""
    packed = bytearray()
    previous: Request | None = None
    for request, status, result in answers:
        packed += pack_item(request, status, result, previous)
        previous = request
    return bytes(packed)


@dataclass(frozen=True, slots=True)
class PackedItem:
    """One decoded item of ``Router.fulfillBatchSigned``'s packed ``items``."""

    request: Request
    status: int
    result: bytes


class _ItemReader:
    """Reads the fields of packed items one after the other, refusing to read past the end."""

    def __init__(self, items: bytes) -> None:
        self.items = items
        self.pos = 0
        self.item_start = 0

    def take(self, n: int) -> bytes:
        field = self.items[self.pos : self.pos + n]
        if len(field) != n:
            raise ValueError(f"packed item at byte {self.item_start} is truncated")
        self.pos += n
        return field

    def number(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")


def unpack_items(items: bytes, domain: Domain) -> list[PackedItem]:
    """Decode packed ``items`` sent to ``domain``'s Router (the inverse of :func:`pack_items`): each request id
    is the Router's prefix with the item's request number. Raises ValueError if malformed."""
    prefix = domain.request_id_prefix()
    out: list[PackedItem] = []
    reader = _ItemReader(items)
    previous: Request | None = None
    while reader.pos < len(items):
        reader.item_start = reader.pos
        flags = reader.number(1)
        if flags & ~(SAME_REQUESTER | SAME_JOB) or (flags and previous is None):
            raise ValueError(f"packed item at byte {reader.item_start} has flags {flags:#04x}, which it cannot have")
        request_id = (prefix | reader.number(8)).to_bytes(32, "big")
        requester = previous.requester if previous and flags & SAME_REQUESTER else to_checksum_address(reader.take(20))
        job_id = previous.job_id if previous and flags & SAME_JOB else reader.take(32)
        request = Request(
            request_id=request_id,
            requester=requester,
            job_id=job_id,
            input_hash=reader.take(32),
            callback_gas_limit=reader.number(4),
            fee=reader.number(12),
            expiry=reader.number(8),
        )
        status = reader.number(1)
        result = reader.take(reader.number(2))
        out.append(PackedItem(request, status, result))
        previous = request
    if not out:
        raise ValueError("a batch has at least one item")
    return out
