"""Keccak-256, the only hash the chain speaks."""

from __future__ import annotations

import os

from sha3 import keccak_256 as _keccak_256  # safe-pysha3: CPython's C Keccak, about 1 µs a call

# web3 and eth-utils hash through eth-hash, whose default backend (pycryptodome, through cffi) takes about 10 µs a
# call; point it at the same C Keccak unless the operator chose a backend. eth-hash reads this on its first hash.
os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")


def keccak256(data: bytes) -> bytes:
    """Return the 32-byte Keccak-256 digest of ``data`` (Ethereum's hash, not SHA3-256)."""
    return _keccak_256(data).digest()
