"""Turn a contract's custom-error revert data into ``Name(arg, ...)`` for logs and stored errors."""

from __future__ import annotations

from functools import cache
from typing import Any

import eth_abi

from contracts.artifacts import load_artifact
from relayer.events import canonical_type
from verifier.hashing import keccak256


@cache
def _errors(contract: str) -> dict[bytes, tuple[str, list[str]]]:
    table = {}
    for item in load_artifact(contract).abi:
        if item["type"] == "error":
            types = [canonical_type(i) for i in item["inputs"]]
            table[keccak256(f"{item['name']}({','.join(types)})".encode())[:4]] = (item["name"], types)
    return table


def decode_revert(exc: Exception, contract: str = "Router") -> tuple[str, tuple[Any, ...]] | None:
    """The custom error a failed call or estimate reverted with, as ``(name, arguments)``; None if it is not one
    of ``contract``'s errors (or its arguments do not decode)."""
    data = getattr(exc, "data", None)
    if isinstance(data, tuple | list) and data:
        data = data[0]
    if not (isinstance(data, str) and data.startswith("0x") and len(data) >= 10):
        return None
    raw = bytes.fromhex(data[2:])
    known = _errors(contract).get(raw[:4])
    if not known:
        return None
    name, types = known
    try:
        return name, tuple(eth_abi.decode(types, raw[4:]))
    except Exception:
        return None


def describe_revert(exc: Exception, contract: str = "Router") -> str:
    """A readable reason for a failed call or estimate: the custom error's name and arguments if known."""
    decoded = decode_revert(exc, contract)
    if decoded is None:
        data = getattr(exc, "data", None)
        if isinstance(data, tuple | list) and data:
            data = data[0]
        if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
            known = _errors(contract).get(bytes.fromhex(data[2:10]))
            if known:
                return f"{known[0]}(<undecodable arguments>)"
        return str(exc)
    name, args = decoded
    shown = ", ".join("0x" + a.hex() if isinstance(a, bytes) else str(a) for a in args)
    return f"{name}({shown})"
