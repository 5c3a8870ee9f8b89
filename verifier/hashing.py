"""Keccak-256, the only hash the chain speaks."""

from __future__ import annotations

from Crypto.Hash import keccak as _keccak


def keccak256(data: bytes) -> bytes:
    """Return the 32-byte Keccak-256 digest of ``data`` (Ethereum's hash, not SHA3-256)."""
    return _keccak.new(digest_bits=256, data=data).digest()
