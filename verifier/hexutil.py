"""Small, strict conversions between bytes, hex strings and checksummed addresses."""

from __future__ import annotations

from functools import lru_cache

from verifier.hashing import keccak256


def to_hex(data: bytes) -> str:
    """``0x``-prefixed lower-case hex."""
    return "0x" + data.hex()


def from_hex(value: str, length: int | None = None) -> bytes:
    """Parse ``0x``-prefixed (or bare) hex; check the length in bytes when given."""
    if not isinstance(value, str):
        raise ValueError(f"expected a hex string, got {type(value).__name__}")
    text = value[2:] if value.startswith(("0x", "0X")) else value
    try:
        data = bytes.fromhex(text)
    except ValueError as exc:
        raise ValueError(f"not valid hex: {value[:20]!r}...") from exc
    if length is not None and len(data) != length:
        raise ValueError(f"expected {length} bytes of hex, got {len(data)}")
    return data


def to_checksum_address(address: bytes | str) -> str:
    """EIP-55 checksummed form of a 20-byte address."""
    return _checksummed(address)


@lru_cache(maxsize=4096)
def _checksummed(address: bytes | str) -> str:
    """:func:`to_checksum_address`, remembered: the same few requesters, routers and signers recur in every
    request, and the checksum costs a Keccak hash."""
    raw = address if isinstance(address, bytes) else from_hex(address, 20)
    if len(raw) != 20:
        raise ValueError("an address is 20 bytes")
    lower = raw.hex()
    digest = keccak256(lower.encode()).hex()
    return "0x" + "".join(c.upper() if int(digest[i], 16) >= 8 else c for i, c in enumerate(lower))


def address_bytes(address: str | bytes) -> bytes:
    """The 20 bytes of an address given as hex or bytes."""
    return address if isinstance(address, bytes) else from_hex(address, 20)
