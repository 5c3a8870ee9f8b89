"""relayer.events decodes logs from the artifact ABI exactly as web3 does, and only the events asked for."""

from __future__ import annotations

import eth_abi
import pytest
from hexbytes import HexBytes
from web3 import Web3

from contracts.artifacts import load_artifact
from relayer.events import EventDecoder

ROUTER = "0x" + "11" * 20
OTHER = "0x" + "22" * 20
REQUESTER = Web3.to_checksum_address("0x" + "ab" * 20)


def requested_log(address: str = ROUTER, *, as_strings: bool = False) -> dict:
    """A Requested log built from the ABI (topic from web3, not from the decoder under test)."""
    router = Web3().eth.contract(abi=load_artifact("Router").abi)
    topic = router.events.Requested().topic
    topics = [
        HexBytes(topic),
        HexBytes(b"\x01" * 32),
        HexBytes(b"\x00" * 12 + bytes.fromhex(REQUESTER[2:])),
        HexBytes(b"\x02" * 32),
    ]
    data = eth_abi.encode(["uint32", "uint96", "uint64", "bytes"], [60_000, 10**18 + 7, 1_700_000_000, b"\x00\xffin"])
    log = {
        "address": Web3.to_checksum_address(address),
        "topics": topics,
        "data": HexBytes(data),
        "blockNumber": 5,
        "blockHash": HexBytes(b"\x03" * 32),
        "transactionHash": HexBytes(b"\x04" * 32),
        "transactionIndex": 0,
        "logIndex": 0,
        "removed": False,
    }
    if as_strings:
        log = {**log, "topics": [t.to_0x_hex() for t in topics], "data": "0x" + data.hex()}
    return log


def test_matches_web3_process_log() -> None:
    abi = load_artifact("Router").abi
    log = requested_log()
    expected = dict(Web3().eth.contract(abi=abi).events.Requested().process_log(log)["args"])
    for entry in (log, requested_log(as_strings=True)):
        got = EventDecoder(abi, "Requested").decode(entry)
        assert got == expected
    assert got["requester"] == REQUESTER and got["input"] == b"\x00\xffin" and got["fee"] == 10**18 + 7


def test_topic_comes_from_the_abi() -> None:
    abi = load_artifact("Router").abi
    for name in ("Requested", "Fulfilled", "FulfillmentSkipped", "Cancelled"):
        assert HexBytes(EventDecoder(abi, name).topic) == HexBytes(Web3().eth.contract(abi=abi).events[name]().topic)


def test_refuses_other_events_and_other_emitters() -> None:
    abi = load_artifact("Router").abi
    fulfilled = EventDecoder(abi, "Fulfilled")
    with pytest.raises(ValueError, match="not a Fulfilled log"):
        fulfilled.decode(requested_log())
    requested = EventDecoder(abi, "Requested")
    logs = [requested_log(ROUTER), requested_log(OTHER)]
    assert len(requested.decode_all(logs)) == 2
    assert len(requested.decode_all(logs, ROUTER)) == 1, "a look-alike log from another contract is ignored"
    assert fulfilled.decode_all(logs) == []
    with pytest.raises(ValueError, match="events named"):
        EventDecoder(abi, "NoSuchEvent")


# ---------------------------------------------------------------- the slicing decoder agrees with eth_abi

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from relayer.events import _fast_decoder  # noqa: E402

EVENT_DATA_TYPES = [
    ["uint32", "uint96", "uint64", "bytes"],  # Requested
    ["uint8", "bool", "uint256"],  # Fulfilled
    ["uint8"],  # FulfillmentSkipped
    ["address", "bytes32", "string", "bytes4", "bytes"],  # every kind the fast path reads
]
VALUES = {
    "uint8": st.integers(0, 2**8 - 1),
    "uint32": st.integers(0, 2**32 - 1),
    "uint64": st.integers(0, 2**64 - 1),
    "uint96": st.integers(0, 2**96 - 1),
    "uint256": st.integers(0, 2**256 - 1),
    "bool": st.booleans(),
    "address": st.binary(min_size=20, max_size=20).map(lambda b: Web3.to_checksum_address(b)),
    "bytes32": st.binary(min_size=32, max_size=32),
    "bytes4": st.binary(min_size=4, max_size=4),
    "bytes": st.binary(max_size=100),
    "string": st.text(max_size=40),
}


def eth_abi_or_error(types: list[str], data: bytes) -> tuple | None:
    try:
        return tuple(eth_abi.decode(types, data))
    except Exception:
        return None


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(EVENT_DATA_TYPES).flatmap(lambda ts: st.tuples(st.just(ts), st.tuples(*(VALUES[t] for t in ts))))
)
def test_slicing_decodes_what_eth_abi_encodes(case: tuple[list[str], tuple]) -> None:
    types, values = case
    decode = _fast_decoder(types)
    assert decode is not None
    assert decode(eth_abi.encode(types, list(values))) == eth_abi.decode(types, eth_abi.encode(types, list(values)))


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(EVENT_DATA_TYPES), st.binary(max_size=260), st.data())
def test_slicing_never_disagrees_with_eth_abi_on_odd_input(types: list[str], noise: bytes, data: st.DataObject) -> None:
    """Arbitrary bytes, or a valid encoding with one byte changed: the slicing decoder either returns what eth_abi
    returns or raises ValueError (and the event decoder then asks eth_abi)."""
    valid = eth_abi.encode(types, list(data.draw(st.tuples(*(VALUES[t] for t in types)))))
    flip = data.draw(st.integers(0, len(valid) - 1))
    mutated = valid[:flip] + bytes([valid[flip] ^ data.draw(st.integers(1, 255))]) + valid[flip + 1 :]
    decode = _fast_decoder(types)
    assert decode is not None
    for candidate in (noise, mutated, valid + b"\x00" * 32):
        try:
            fast = decode(candidate)
        except ValueError:
            continue
        assert fast == eth_abi_or_error(types, candidate), candidate.hex()


def test_types_it_cannot_slice_go_to_eth_abi() -> None:
    assert _fast_decoder(["uint256[]"]) is None and _fast_decoder(["(uint8,bool)"]) is None
    assert _fast_decoder(["int8"]) is None  # signed integers: eth_abi
