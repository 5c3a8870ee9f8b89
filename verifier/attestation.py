"""Attestation evidence shared by the enclave (which produces it) and the gatekeeper (which checks it).

``report_data`` (64 bytes, the field every TEE quote carries for the enclave's own use) binds the
enclave's keys to one chain and one registry::

    report_data = keccak256("teebridge/v1/attest" || uint256 chainId || registry || signer
                            || keccak256(hpkeKeys)) || 32 zero bytes

The simulated quote stands in for a TDX/SGX quote where there is no TEE. It is signed by a quoting key
whose private half is published below: anyone can make one, so it proves nothing. The registry accepts
signers registered from it only on the local chain (31337), and every simulated document says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from verifier.hashing import keccak256
from verifier.hexutil import address_bytes, from_hex, to_hex
from verifier.protocol import word
from verifier.signing import SignatureError, address_of_private_key, recover_signer, sign_digest

REPORT_DATA_TAG = b"teebridge/v1/attest"
SIMULATED_QUOTE_TAG = b"teebridge/v1/simulated-quote"
SIMULATED_KIND = "simulated"
SIMULATED_WARNING = (
    "SIMULATED ATTESTATION - NOT A TEE. This quote is signed by a publicly known key and proves nothing; "
    "use it only on a local development chain."
)
#: The publicly known private key of the simulated quoting "hardware". Insecure by design.
SIMULATED_QUOTING_KEY = keccak256(b"teebridge simulated quoting key: INSECURE, PUBLICLY KNOWN, LOCAL USE ONLY")
SIMULATED_QUOTING_ADDRESS = address_of_private_key(SIMULATED_QUOTING_KEY)


class AttestationError(ValueError):
    """Evidence that does not verify; the message says which check failed.

    ``revoke`` says what a gatekeeper should do about an enclave already registered: True when the
    evidence shows it is not (or no longer) trustworthy (bad signature, measurement or TCB status below
    policy, wrong binding); False when it merely cannot be verified right now (enclave unreachable,
    collateral stale): then it is not renewed, and lapses at its expiry unless verification recovers.
    """

    def __init__(self, message: str, *, revoke: bool = True) -> None:
        super().__init__(message)
        self.revoke = revoke


def report_data(chain_id: int, registry: str | bytes, signer: str | bytes, hpke_keys: bytes) -> bytes:
    """The 64-byte report data an enclave must put in its quote for these keys on this chain.

    ``hpke_keys`` is the enclave's HPKE key bundle (``verifier.suites.encode_key_bundle``).
    """
    digest = keccak256(
        REPORT_DATA_TAG + word(chain_id) + address_bytes(registry) + address_bytes(signer) + keccak256(hpke_keys)
    )
    return digest + b"\x00" * 32


@dataclass(frozen=True, slots=True)
class SimulatedQuote:
    """A quote-shaped document: measurement and report data, signed by the simulated quoting key."""

    measurement: bytes
    report_data: bytes
    signature: bytes

    def signed_digest(self) -> bytes:
        """What the quoting key signs."""
        return simulated_quote_digest(self.measurement, self.report_data)

    def to_json(self) -> dict[str, Any]:
        """The JSON form served by the coprocessor."""
        return {
            "kind": SIMULATED_KIND,
            "insecure": True,
            "warning": SIMULATED_WARNING,
            "measurement": to_hex(self.measurement),
            "reportData": to_hex(self.report_data),
            "signature": to_hex(self.signature),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SimulatedQuote:
        """Parse the JSON form; raises AttestationError on any malformed field."""
        try:
            if doc.get("kind") != SIMULATED_KIND:
                raise AttestationError(f"not a simulated quote (kind={doc.get('kind')!r})")
            return cls(
                from_hex(doc["measurement"], 32), from_hex(doc["reportData"], 64), from_hex(doc["signature"], 65)
            )
        except (KeyError, ValueError, TypeError) as exc:
            if isinstance(exc, AttestationError):
                raise
            raise AttestationError(f"malformed simulated quote: {exc}") from exc


def simulated_quote_digest(measurement: bytes, data: bytes) -> bytes:
    """``keccak256("teebridge/v1/simulated-quote" || measurement || reportData)``."""
    return keccak256(SIMULATED_QUOTE_TAG + measurement + data)


def make_simulated_quote(measurement: bytes, data: bytes) -> SimulatedQuote:
    """Produce a simulated quote (the enclave side)."""
    if len(measurement) != 32 or len(data) != 64:
        raise ValueError("measurement is 32 bytes and report data 64")
    return SimulatedQuote(
        measurement, data, sign_digest(SIMULATED_QUOTING_KEY, simulated_quote_digest(measurement, data))
    )


def verify_simulated_quote(quote: SimulatedQuote) -> None:
    """Check the simulated quoting key signed this quote (which, again, proves nothing about a TEE)."""
    try:
        signer = recover_signer(quote.signed_digest(), quote.signature)
    except SignatureError as exc:
        raise AttestationError(f"simulated quote signature invalid: {exc}") from exc
    if signer != SIMULATED_QUOTING_ADDRESS:
        raise AttestationError(f"simulated quote signed by {signer}, not the simulated quoting key")
