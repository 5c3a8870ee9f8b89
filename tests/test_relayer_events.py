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
