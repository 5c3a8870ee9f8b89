"""A signed fulfilment as it travels off-chain (coprocessor -> relayer -> chain), and its local check.

The relayer checks a result against its request (:func:`check_answers_request`) when it stores it, and its
signature (:func:`verify_signature`) before the result goes out with that signature; a result that goes out
under a batch signature is covered by the batch's. The Router would refuse anything that fails these, so a
faulty or lying coprocessor costs the relayer no gas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from verifier.hashing import keccak256
from verifier.hexutil import from_hex, to_checksum_address, to_hex
from verifier.protocol import Domain, Fulfillment, Request, Status, parse_offchain_reference
from verifier.signing import SignatureError, recover_signer, to_compact


class SignedResultError(ValueError):
    """A signed result that does not match its request or its signature."""


@dataclass(frozen=True, slots=True)
class SignedResult:
    """The enclave's answer to one request and its EIP-712 signature."""

    request_id: bytes
    commitment: bytes
    status: int
    result: bytes
    measurement: bytes
    signer: str
    signature: bytes
    full_result: bytes | None = None
    """With status RESULT_OFFCHAIN: the full result, kept off-chain; ``result`` holds its hash and length."""

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SignedResult:
        """Parse the coprocessor's JSON form; raises SignedResultError when malformed."""
        try:
            return cls(
                request_id=from_hex(doc["requestId"], 32),
                commitment=from_hex(doc["commitment"], 32),
                status=int(doc["status"]),
                result=from_hex(doc["result"]),
                measurement=from_hex(doc["measurement"], 32),
                signer=to_checksum_address(doc["signer"]),
                signature=from_hex(doc["signature"], 65),
                full_result=from_hex(doc["fullResult"]) if doc.get("fullResult") is not None else None,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise SignedResultError(f"malformed signed result: {exc}") from exc

    def to_json(self) -> dict[str, Any]:
        """The JSON form (same as the coprocessor's)."""
        return {
            "requestId": to_hex(self.request_id),
            "commitment": to_hex(self.commitment),
            "status": self.status,
            "result": to_hex(self.result),
            "resultHash": to_hex(keccak256(self.result)),
            "measurement": to_hex(self.measurement),
            "signer": self.signer,
            "signature": to_hex(self.signature),
            "fullResult": to_hex(self.full_result) if self.full_result is not None else None,
        }

    def fulfillment(self) -> Fulfillment:
        """The signed EIP-712 structure."""
        return Fulfillment(self.request_id, self.commitment, self.status, keccak256(self.result), self.measurement)

    def compact_signature(self) -> tuple[bytes, bytes]:
        """``(r, vs)`` as the Router takes it."""
        return to_compact(self.signature)

    def call_args(self, request: Request) -> tuple[Any, ...]:
        """The Router's ``SignedFulfillment`` struct as an ABI tuple."""
        r, vs = self.compact_signature()
        return (request.as_tuple(), self.status, self.result, self.measurement, r, vs)


def verify_signed_result(signed: SignedResult, request: Request, domain: Domain) -> None:
    """Check that ``signed`` answers ``request`` (:func:`check_answers_request`) and that its signature recovers to
    its claimed signer (:func:`verify_signature`)."""
    check_answers_request(signed, request)
    verify_signature(signed, domain)


def check_answers_request(signed: SignedResult, request: Request) -> None:
    """Everything :func:`verify_signed_result` checks but the signature: the request id, the commitment to the
    request's fields, the status range, and an off-chain result's bytes against its signed hash and length."""
    if signed.request_id != request.request_id:
        raise SignedResultError("signed result is for another request")
    if signed.commitment != request.commitment():
        raise SignedResultError("signed commitment does not match the request's fields")
    if not 0 <= signed.status <= 255:
        raise SignedResultError(f"status {signed.status} is not a uint8")
    if signed.status == Status.RESULT_OFFCHAIN:
        if signed.full_result is None:
            raise SignedResultError("an off-chain result came without its bytes (fullResult)")
        try:
            reference = parse_offchain_reference(signed.result)
        except ValueError as exc:
            raise SignedResultError(str(exc)) from exc
        if reference != (keccak256(signed.full_result), len(signed.full_result)):
            raise SignedResultError("fullResult does not match the signed hash and length")


def verify_signature(signed: SignedResult, domain: Domain) -> None:
    """Check that ``signed``'s EIP-712 signature over its ``Fulfillment`` recovers to its claimed signer (one ECDSA
    recovery, about 100 µs)."""
    try:
        recovered = recover_signer(signed.fulfillment().digest(domain), signed.signature)
    except SignatureError as exc:
        raise SignedResultError(str(exc)) from exc
    if recovered != signed.signer:
        raise SignedResultError(f"signature recovers to {recovered}, not the claimed signer {signed.signer}")
