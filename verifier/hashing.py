"""Keccak-256, the only hash the chain speaks."""

from __future__ import annotations

from sha3 import keccak_256 as _keccak_256  # safe-pysha3: CPython's C Keccak, about 1 µs a call


def keccak256(data: bytes) -> bytes:
    """Return the 32-byte Keccak-256 digest of ``data`` (Ethereum's hash, not SHA3-256)."""
    return _keccak_256(data).digest()
