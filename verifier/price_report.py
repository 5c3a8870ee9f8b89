"""The signed price report: what an enclave attests about a price, for push feeds and same-transaction use.

EIP-712, domain ``{name: "teebridge", version: "1", chainId, verifyingContract: EnclaveRegistry}`` (the
registry, not a feed: one report can update a push feed *and* be verified inside a consumer's own call on
the same chain)::

    PriceReport(bytes32 feedId,int256 answer,uint8 decimals,uint64 observedAt,uint16 sources,bytes32 measurement)

``feedId = keccak256(utf8(pair))``, e.g. ``keccak256("ETH/USD")``. ``answer`` is the median price scaled by
``10**decimals``; ``observedAt`` the Unix time the enclave observed it; ``sources`` how many exchange quotes
made the median; ``measurement`` the signer's measurement (checked against the registry for the ``price@1``
job).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from verifier.hashing import keccak256
from verifier.hexutil import from_hex, to_checksum_address, to_hex
from verifier.protocol import Domain, job_id, word
from verifier.signing import recover_signer, sign_digest, to_compact

PRICE_REPORT_TYPE = (
    "PriceReport(bytes32 feedId,int256 answer,uint8 decimals,uint64 observedAt,uint16 sources,bytes32 measurement)"
)
PRICE_REPORT_TYPEHASH = keccak256(PRICE_REPORT_TYPE.encode())
PRICE_JOB_ID = job_id("price", 1)


def feed_id(pair: str) -> bytes:
    """``keccak256(utf8(pair))``, e.g. ``feed_id("ETH/USD")``."""
    if not pair or "/" not in pair:
        raise ValueError(f"a pair looks like 'ETH/USD', got {pair!r}")
    return keccak256(pair.encode())


def int256_word(value: int) -> bytes:
    """One ABI word holding a signed integer (two's complement)."""
    if not -(2**255) <= value < 2**255:
        raise ValueError(f"{value} does not fit in int256")
    return (value % 2**256).to_bytes(32, "big")


@dataclass(frozen=True, slots=True)
class PriceReport:
    """One observed price."""

    feed_id: bytes
    answer: int
    decimals: int
    observed_at: int
    sources: int
    measurement: bytes

    def struct_hash(self) -> bytes:
        """``hashStruct(PriceReport)``."""
        if not 0 <= self.decimals <= 255 or not 0 <= self.sources <= 65535 or not 0 <= self.observed_at < 2**64:
            raise ValueError("decimals is a uint8, sources a uint16 and observedAt a uint64")
        return keccak256(
            PRICE_REPORT_TYPEHASH
            + self.feed_id
            + int256_word(self.answer)
            + word(self.decimals)
            + word(self.observed_at)
            + word(self.sources)
            + self.measurement
        )

    def digest(self, chain_id: int, registry: str) -> bytes:
        """The EIP-712 digest for this chain's registry."""
        return keccak256(b"\x19\x01" + Domain(chain_id, registry).separator() + self.struct_hash())

    def as_tuple(self) -> tuple[bytes, int, int, int, int, bytes]:
        """The Solidity ``PriceReport`` struct as an ABI tuple."""
        return (self.feed_id, self.answer, self.decimals, self.observed_at, self.sources, self.measurement)


@dataclass(frozen=True, slots=True)
class SignedPriceReport:
    """A report and the enclave's signature over it."""

    report: PriceReport
    signer: str
    signature: bytes

    def call_args(self) -> tuple[tuple[bytes, int, int, int, int, bytes], bytes, bytes]:
        """``(report, r, vs)`` as the contracts take them."""
        r, vs = to_compact(self.signature)
        return (self.report.as_tuple(), r, vs)

    def to_json(self) -> dict[str, Any]:
        """JSON form (the coprocessor's ``/v1/price-report`` answer)."""
        rep = self.report
        return {
            "feedId": to_hex(rep.feed_id),
            "answer": str(rep.answer),
            "decimals": rep.decimals,
            "observedAt": rep.observed_at,
            "sources": rep.sources,
            "measurement": to_hex(rep.measurement),
            "signer": self.signer,
            "signature": to_hex(self.signature),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SignedPriceReport:
        """Parse the JSON form."""
        report = PriceReport(
            from_hex(doc["feedId"], 32),
            int(doc["answer"]),
            int(doc["decimals"]),
            int(doc["observedAt"]),
            int(doc["sources"]),
            from_hex(doc["measurement"], 32),
        )
        return cls(report, to_checksum_address(doc["signer"]), from_hex(doc["signature"], 65))


def sign_price_report(report: PriceReport, key: bytes, signer: str, chain_id: int, registry: str) -> SignedPriceReport:
    """Sign ``report`` for this chain's registry."""
    return SignedPriceReport(report, signer, sign_digest(key, report.digest(chain_id, registry)))


def verify_price_report(signed: SignedPriceReport, chain_id: int, registry: str) -> None:
    """Check the signature recovers to the claimed signer (the registry check is on-chain)."""
    recovered = recover_signer(signed.report.digest(chain_id, registry), signed.signature)
    if recovered != signed.signer:
        raise ValueError(f"price report signed by {recovered}, not the claimed {signed.signer}")
