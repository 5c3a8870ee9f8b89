"""Turn a contract's custom-error revert data into ``Name(arg, ...)`` for logs and stored errors."""

from __future__ import annotations

from functools import cache

import eth_abi

from contracts.artifacts import load_artifact
from verifier.hashing import keccak256


@cache
def _errors(contract: str) -> dict[bytes, tuple[str, list[str]]]:
    table = {}
    for item in load_artifact(contract).abi:
        if item["type"] == "error":
            types = [i["type"] for i in item["inputs"]]
            table[keccak256(f"{item['name']}({','.join(types)})".encode())[:4]] = (item["name"], types)
    return table


def describe_revert(exc: Exception, contract: str = "Router") -> str:
    """A readable reason for a failed call or estimate: the custom error's name and arguments if known."""
    data = getattr(exc, "data", None)
    if isinstance(data, tuple | list) and data:
        data = data[0]
    if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
        raw = bytes.fromhex(data[2:])
        known = _errors(contract).get(raw[:4])
        if known:
            name, types = known
            try:
                args = eth_abi.decode(types, raw[4:])
            except Exception:
                return f"{name}(<undecodable arguments>)"
            shown = ", ".join("0x" + a.hex() if isinstance(a, bytes) else str(a) for a in args)
            return f"{name}({shown})"
    return str(exc)
