"""The job input envelope: plain, or HPKE-encrypted to an enclave's key and bound to one request's context.

Layout (docs/protocol.md, "Input envelope")::

    0x00 || payload                                  plain
    0x01 || keyId(8) || enc(32) || ciphertext        HPKE base mode, DHKEM(X25519, HKDF-SHA256),
                                                     HKDF-SHA256, ChaCha20-Poly1305

``keyId = keccak256(recipientPublicKey)[0:8]`` names the enclave key the input was sealed to, and the
HPKE ``info`` binds chain id, router, requester and job id, so a ciphertext copied into another request,
on another chain or for another job does not open.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from verifier.hashing import keccak256
from verifier.hexutil import address_bytes
from verifier.protocol import word

ENVELOPE_PLAIN = 0x00
ENVELOPE_HPKE_X25519_CHACHA20 = 0x01

INFO_TAG = b"teebridge/v1/input"
KEY_ID_LENGTH = 8
X25519_ENC_LENGTH = 32

SUITE_X25519_CHACHA20 = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


class EnvelopeError(ValueError):
    """An input envelope that is malformed or cannot be opened. ``decryption`` tells which."""

    def __init__(self, message: str, *, decryption: bool = False) -> None:
        super().__init__(message)
        self.decryption = decryption


@dataclass(frozen=True, slots=True)
class Binding:
    """The request context an encrypted input is bound to."""

    chain_id: int
    router: str
    requester: str
    job_id: bytes

    def info(self) -> bytes:
        """HPKE ``info``: ``"teebridge/v1/input" || uint256 chainId || router || requester || jobId``."""
        return INFO_TAG + word(self.chain_id) + address_bytes(self.router) + address_bytes(self.requester) + self.job_id


def key_id(public_key: bytes) -> bytes:
    """The 8-byte id of an enclave HPKE public key: ``keccak256(publicKey)[0:8]``."""
    return keccak256(public_key)[:KEY_ID_LENGTH]


def plain(payload: bytes) -> bytes:
    """Wrap a plain (unencrypted) job input."""
    return bytes([ENVELOPE_PLAIN]) + payload


def encrypt(payload: bytes, recipient_public_key: bytes, binding: Binding) -> bytes:
    """Encrypt a job input to an enclave's 32-byte X25519 public key, bound to ``binding``."""
    if len(recipient_public_key) != 32:
        raise ValueError("an X25519 public key is 32 bytes")
    public_key = X25519PublicKey.from_public_bytes(recipient_public_key)
    sealed = SUITE_X25519_CHACHA20.encrypt(payload, public_key, info=binding.info())
    return bytes([ENVELOPE_HPKE_X25519_CHACHA20]) + key_id(recipient_public_key) + sealed


def open_envelope(envelope: bytes, binding: Binding, private_key: X25519PrivateKey | None) -> bytes:
    """Return the job payload of an envelope, decrypting it with ``private_key`` if it is encrypted."""
    if not envelope:
        raise EnvelopeError("empty input: the first byte must name the envelope kind (0x00 plain, 0x01 HPKE)")
    kind = envelope[0]
    if kind == ENVELOPE_PLAIN:
        return envelope[1:]
    if kind != ENVELOPE_HPKE_X25519_CHACHA20:
        raise EnvelopeError(f"unknown envelope kind 0x{kind:02x}: expected 0x00 (plain) or 0x01 (HPKE)")
    if len(envelope) < 1 + KEY_ID_LENGTH + X25519_ENC_LENGTH + 16:
        raise EnvelopeError("encrypted envelope too short to hold key id, encapsulated key and tag")
    if private_key is None:
        raise EnvelopeError("encrypted input but no HPKE key available", decryption=True)
    own_id = key_id(private_key.public_key().public_bytes_raw())
    if envelope[1 : 1 + KEY_ID_LENGTH] != own_id:
        raise EnvelopeError(
            "input was encrypted to another enclave key (key id "
            f"{envelope[1 : 1 + KEY_ID_LENGTH].hex()}, this enclave holds {own_id.hex()})",
            decryption=True,
        )
    try:
        return SUITE_X25519_CHACHA20.decrypt(envelope[1 + KEY_ID_LENGTH :], private_key, info=binding.info())
    except InvalidTag as exc:
        raise EnvelopeError(
            "ciphertext does not open: it was tampered with, or sealed for another chain, router, requester or job",
            decryption=True,
        ) from exc


def generate_key() -> X25519PrivateKey:
    """A fresh X25519 key pair for an enclave."""
    return X25519PrivateKey.generate()
