"""Decode contract event logs straight from the ABI with eth_abi: the relayer's hot path.

web3's ``process_log`` / ``process_receipt`` build attribute dictionaries and run formatters over every field of
every log; at hundreds of requests a second that was a large share of the relayer's CPU. :class:`EventDecoder`
computes the event's topic from its ABI entry (never a hard-coded hash, so a changed event in the artifact is
picked up on rebuild) and decodes indexed topics and the data section with one ``eth_abi.decode`` each.

Logs may come from web3 (``HexBytes`` topics and data) or from a raw JSON-RPC answer (``0x`` strings): both work.
Addresses come out checksummed, ``bytesN`` as ``bytes``, integers as ``int``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import eth_abi
from eth_utils import keccak, to_checksum_address

#: Checksumming hashes the address: the same few requesters and signers recur in every log, so remember them.
_checksum = lru_cache(maxsize=4096)(to_checksum_address)


def _bytes(value: Any) -> bytes:
    """``value`` (a ``0x`` hex string, ``bytes`` or ``HexBytes``) as bytes."""
    if isinstance(value, str):
        return bytes.fromhex(value[2:] if value.startswith(("0x", "0X")) else value)
    return bytes(value)


def _canonical(param: Mapping[str, Any]) -> str:
    """The canonical type of one ABI parameter (tuples spelt out)."""
    kind = param["type"]
    if kind.startswith("tuple"):
        return "(" + ",".join(_canonical(c) for c in param["components"]) + ")" + kind[len("tuple") :]
    return kind


class EventDecoder:
    """Decoder of one event of an ABI."""

    def __init__(self, abi: Iterable[Mapping[str, Any]], name: str) -> None:
        entries = [e for e in abi if e.get("type") == "event" and e.get("name") == name]
        if len(entries) != 1:
            raise ValueError(f"the ABI has {len(entries)} events named {name!r}; expected one")
        entry = entries[0]
        inputs = entry["inputs"]
        self.name = name
        self.signature = f"{name}({','.join(_canonical(i) for i in inputs)})"
        self.topic: bytes = keccak(text=self.signature)
        """The event's topic 0, from its ABI signature."""
        self.topic_hex = "0x" + self.topic.hex()
        self._indexed = [(i["name"], _canonical(i)) for i in inputs if i.get("indexed")]
        self._data = [(i["name"], _canonical(i)) for i in inputs if not i.get("indexed")]
        self._data_types = [t for _, t in self._data]

    def matches(self, log: Mapping[str, Any]) -> bool:
        """Whether ``log`` is this event (its topic 0)."""
        topics = log.get("topics") or []
        return bool(topics) and _bytes(topics[0]) == self.topic

    def decode(self, log: Mapping[str, Any]) -> dict[str, Any]:
        """The event's arguments by name (raises ``ValueError`` if ``log`` is another event)."""
        topics = log["topics"]
        if not topics or _bytes(topics[0]) != self.topic:
            raise ValueError(f"not a {self.name} log")
        if len(topics) != len(self._indexed) + 1:
            raise ValueError(f"{self.name} log with {len(topics) - 1} indexed topics, expected {len(self._indexed)}")
        args: dict[str, Any] = {}
        for (name, kind), topic in zip(self._indexed, topics[1:], strict=True):
            raw = _bytes(topic)
            if kind in ("string", "bytes") or kind.endswith("]") or kind.startswith("("):
                args[name] = raw  # dynamic types are indexed as their hash
            else:
                args[name] = eth_abi.decode([kind], raw)[0]
        values = eth_abi.decode(self._data_types, _bytes(log["data"])) if self._data_types else ()
        for (name, _), value in zip(self._data, values, strict=True):
            args[name] = value
        for name, kind in (*self._indexed, *self._data):
            if kind == "address" and isinstance(args.get(name), str):
                args[name] = _checksum(args[name])
        return args

    def decode_all(self, logs: Iterable[Mapping[str, Any]], address: str | None = None) -> list[dict[str, Any]]:
        """The arguments of every log of this event in ``logs`` (emitted by ``address`` if given), in order."""
        wanted = address.lower() if address else None
        out = []
        for log in logs:
            if not self.matches(log):
                continue
            if wanted is not None and str(log.get("address", "")).lower() != wanted:
                continue
            out.append(self.decode(log))
        return out
