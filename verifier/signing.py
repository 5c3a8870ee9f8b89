"""secp256k1 signatures over 32-byte digests, in the forms the chain uses.

Signing uses coincurve (libsecp256k1): deterministic RFC 6979 nonces and low-s signatures.
"""

from __future__ import annotations

from coincurve import PrivateKey, PublicKey

from verifier.hashing import keccak256
from verifier.hexutil import to_checksum_address

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
HALF_N = SECP256K1_N // 2


class SignatureError(ValueError):
    """A signature that is malformed or does not recover to a key."""


def address_of_public_key(public_key: PublicKey) -> str:
    """The checksummed Ethereum address of a secp256k1 public key."""
    return to_checksum_address(keccak256(public_key.format(compressed=False)[1:])[12:])


def address_of_private_key(private_key: bytes) -> str:
    """The checksummed Ethereum address of a 32-byte private key."""
    return address_of_public_key(PrivateKey(private_key).public_key)


def sign_digest(private_key: bytes, digest: bytes) -> bytes:
    """A 65-byte ``r || s || v`` signature (``v`` in {27, 28}) over a 32-byte digest."""
    if len(digest) != 32:
        raise ValueError("a digest is 32 bytes")
    rec = PrivateKey(private_key).sign_recoverable(digest, hasher=None)
    return rec[:64] + bytes([rec[64] + 27])


def recover_signer(digest: bytes, signature: bytes) -> str:
    """The checksummed address that made ``signature`` over ``digest``; rejects high-s signatures."""
    if len(signature) != 65:
        raise SignatureError(f"a signature is 65 bytes, got {len(signature)}")
    v = signature[64]
    if v >= 27:
        v -= 27
    if v not in (0, 1):
        raise SignatureError("signature v must be 27 or 28")
    s = int.from_bytes(signature[32:64], "big")
    if s == 0 or s > HALF_N:
        raise SignatureError("signature s is zero or in the upper half of the curve order")
    try:
        public_key = PublicKey.from_signature_and_message(signature[:64] + bytes([v]), digest, hasher=None)
    except Exception as exc:  # coincurve raises plain Exception for unrecoverable signatures
        raise SignatureError(f"signature does not recover: {exc}") from exc
    return address_of_public_key(public_key)


def from_compact(r: bytes, vs: bytes) -> bytes:
    """The 65-byte ``r | s | v`` signature of an EIP-2098 compact ``(r, vs)`` (the inverse of :func:`to_compact`)."""
    if len(r) != 32 or len(vs) != 32:
        raise SignatureError("r and vs are 32 bytes each")
    packed = int.from_bytes(vs, "big")
    return r + (packed & ((1 << 255) - 1)).to_bytes(32, "big") + bytes([27 + (packed >> 255)])


def to_compact(signature: bytes) -> tuple[bytes, bytes]:
    """EIP-2098 compact form ``(r, vs)`` of a 65-byte low-s signature, as the Router takes it."""
    if len(signature) != 65:
        raise SignatureError("a signature is 65 bytes")
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    parity = (v - 27) if v >= 27 else v
    if parity not in (0, 1) or s > HALF_N:
        raise SignatureError("cannot compact a signature with bad v or high s")
    return r, (s | (parity << 255)).to_bytes(32, "big")
