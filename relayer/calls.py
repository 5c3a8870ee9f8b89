"""Contract calls ABI-encoded once, with eth_abi, from the artifact's ABI: the submitter's hot path.

web3's ``ContractFunction`` re-validates and re-encodes its arguments through its formatters every time the call
is estimated, simulated or built into a transaction; for a 256-item batch that cost more relayer CPU than the
rest of the batch's handling. :class:`CallEncoder` derives each function's selector and argument types from the
ABI (never a hard-coded selector), and :class:`EncodedCall` carries the calldata from the simulation to the
signed transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import eth_abi

from relayer.events import canonical_type
from verifier.hashing import keccak256


@dataclass(frozen=True, slots=True)
class EncodedCall:
    """One call of a contract function: its name (for logs and tests) and its complete calldata."""

    fn_name: str
    data: bytes

    @property
    def data_hex(self) -> str:
        """The calldata as a ``0x`` string (JSON-RPC's form)."""
        return "0x" + self.data.hex()


class CallEncoder:
    """Encodes calls of the functions of one ABI (each name must be unique: no overloads)."""

    def __init__(self, abi: Iterable[Mapping[str, Any]]) -> None:
        self._functions: dict[str, tuple[bytes, list[str]]] = {}
        overloaded: set[str] = set()
        for entry in abi:
            if entry.get("type") != "function":
                continue
            name = entry["name"]
            types = [canonical_type(i) for i in entry["inputs"]]
            if name in self._functions:
                overloaded.add(name)
            self._functions[name] = (keccak256(f"{name}({','.join(types)})".encode())[:4], types)
        for name in overloaded:
            del self._functions[name]

    def selector(self, fn_name: str) -> bytes:
        """The 4-byte selector of ``fn_name`` (``KeyError`` for an unknown or overloaded name)."""
        return self._functions[fn_name][0]

    def encode(self, fn_name: str, args: Sequence[Any]) -> EncodedCall:
        """The call of ``fn_name`` with ``args`` (structs as tuples); ``KeyError`` for an unknown or overloaded
        name, eth_abi's encoding errors for arguments that do not fit the types."""
        selector, types = self._functions[fn_name]
        if len(args) != len(types):
            raise ValueError(f"{fn_name} takes {len(types)} arguments, got {len(args)}")
        return EncodedCall(fn_name, selector + eth_abi.encode(types, list(args)))

    def encode_unencoded(self, fn_name: str, body: bytes) -> EncodedCall:
        """The call of ``fn_name``, a function declared without parameters that reads ``body`` from its calldata
        as it is, not ABI-encoded (``Router.fulfillPacked``); ``KeyError`` for an unknown name, ``ValueError`` for
        a function that declares parameters."""
        selector, types = self._functions[fn_name]
        if types:
            raise ValueError(f"{fn_name} declares parameters: use encode()")
        return EncodedCall(fn_name, selector + body)
