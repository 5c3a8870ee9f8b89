"""Helpers for testing contracts against teebridge without running an enclave.

The Router does not care where a signing key lives, only that the registry lists it. :class:`DevEnclave`
is a Python-held key you register yourself on a local chain, so a consumer contract's tests (and
teebridge's own tests and benchmarks) can produce fulfilments exactly as an enclave would.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

from relayer.chain import ChainClient
from verifier.hashing import keccak256
from verifier.protocol import Domain, Request, Status, batch_digest, fulfillment_for, pack_items
from verifier.signed_result import SignedResult
from verifier.signing import address_of_private_key, sign_digest, to_compact

DEV_MEASUREMENT = keccak256(b"teebridge dev enclave measurement")


@dataclass(frozen=True)
class DevEnclave:
    """A secp256k1 key standing in for an enclave signer (local chains and tests only)."""

    key: bytes
    measurement: bytes = DEV_MEASUREMENT

    @classmethod
    def random(cls, measurement: bytes = DEV_MEASUREMENT) -> DevEnclave:
        """A fresh random key."""
        return cls(os.urandom(32), measurement)

    @classmethod
    def fixed(cls, seed: int = 1, measurement: bytes = DEV_MEASUREMENT) -> DevEnclave:
        """A reproducible key derived from ``seed``."""
        return cls(keccak256(b"teebridge dev enclave %d" % seed), measurement)

    @property
    def address(self) -> str:
        """The signer address."""
        return address_of_private_key(self.key)

    def sign(self, request: Request, result: bytes, domain: Domain, status: int = Status.OK) -> SignedResult:
        """Sign a fulfilment of ``request`` as an enclave would."""
        f = fulfillment_for(request, status, result, self.measurement)
        digest = f.digest(domain)
        return SignedResult(
            f.request_id, f.commitment, f.status, result, f.measurement, self.address, sign_digest(self.key, digest)
        )

    def sign_batch(
        self, answers: Sequence[tuple[Request, bytes, int]], domain: Domain
    ) -> tuple[bytes, bytes, bytes, bytes]:
        """``Router.fulfillBatchSigned``'s arguments ``(items, measurement, r, vs)`` for ``(request, result,
        status)`` answers, signed as one ``FulfillmentBatch``."""
        fulfillments = [fulfillment_for(r, status, result, self.measurement) for r, result, status in answers]
        r, vs = to_compact(sign_digest(self.key, batch_digest(fulfillments, domain)))
        items = pack_items((request, status, result) for request, result, status in answers)
        return items, self.measurement, r, vs


def register_dev_enclave(
    owner: ChainClient,
    gatekeeper: ChainClient,
    registry_address: str,
    enclave: DevEnclave,
    jobs: tuple[bytes, ...],
    *,
    simulated: bool = True,
    ttl: int = 3600,
    hpke_keys: bytes = b"\x01" + b"\x01" * 32,
) -> None:
    """Approve ``enclave``'s measurement for ``jobs`` (as the owner) and register it (as the gatekeeper).

    Needs a registry deployed with no governance delay (as on a local chain).
    """
    from teebridge.registration import approve_jobs

    waiting = approve_jobs(owner, registry_address, enclave.measurement, jobs)
    if waiting:
        raise RuntimeError("this registry has a governance delay: approvals cannot be activated at once")
    registry = gatekeeper.contract("EnclaveRegistry", registry_address)
    now = gatekeeper.w3.eth.get_block("latest")["timestamp"]
    gatekeeper.send(
        registry.functions.registerSigner(enclave.address, enclave.measurement, now + ttl, simulated, hpke_keys)
    )


def requested_in(router: Contract, receipt: TxReceipt) -> tuple[Request, bytes]:
    """The committed fields and the raw input of the one request a transaction made."""
    (event,) = router.events.Requested().process_receipt(receipt, errors=DISCARD)
    args = event["args"]
    raw_input = bytes(args["input"])
    request = Request.from_input(
        request_id=bytes(args["requestId"]),
        requester=args["requester"],
        job_id=bytes(args["jobId"]),
        input=raw_input,
        callback_gas_limit=args["callbackGasLimit"],
        fee=args["fee"],
        expiry=args["expiry"],
    )
    return request, raw_input


class RawCall:
    """A contract call given as raw calldata (``Router.fulfillPacked``, which is not ABI-encoded), usable where a
    web3 ``ContractFunction`` is: ``ChainClient.send``, :func:`assert_reverts_with`."""

    def __init__(self, w3: Web3, to: str, data: bytes) -> None:
        self.w3, self.to, self.data = w3, to, data

    def build_transaction(self, tx: dict[str, Any]) -> dict[str, Any]:
        """``tx`` with this call's target and data, and the node's gas estimate unless ``tx`` sets gas."""
        built = {**tx, "to": self.to, "data": "0x" + self.data.hex()}
        if "gas" not in built:
            built["gas"] = self.w3.eth.estimate_gas(built)
        built.setdefault("maxFeePerGas", self.w3.eth.gas_price * 2)
        built.setdefault("maxPriorityFeePerGas", 0)
        return built

    def call(self, tx: dict[str, Any]) -> bytes:
        """``eth_call`` of this call (raises web3's contract errors on a revert)."""
        return bytes(self.w3.eth.call({**tx, "to": self.to, "data": "0x" + self.data.hex()}))


def fulfill_packed_call(w3: Web3, router: str, body: bytes) -> RawCall:
    """``Router.fulfillPacked`` with ``body`` (:func:`verifier.protocol.pack_fulfillment`) after its selector."""
    return RawCall(w3, router, keccak256(b"fulfillPacked()")[:4] + body)
