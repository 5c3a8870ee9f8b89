"""``teebridge.client`` reads a result back from the fulfilling transaction only from an item signed by the
``Fulfilled`` event's signer, in a call to the Router: a relayer cannot show the SDK another result than the
consumer got. Encoded with the Router's real ABI; no chain needed."""

from __future__ import annotations

import pytest
from hexbytes import HexBytes
from web3 import Web3

from contracts.artifacts import load_artifact
from teebridge.client import UnreadableResultError, _result_from_transaction, failed_callbacks
from teebridge.testkit import DevEnclave
from verifier.hashing import keccak256
from verifier.protocol import Domain, Request, pack_fulfillment, request_id

ROUTER = Web3().eth.contract(address=Web3.to_checksum_address("0x" + "12" * 20), abi=load_artifact("Router").abi)
DOMAIN = Domain(31337, ROUTER.address)
REQUEST = Request(
    request_id(31337, ROUTER.address, 7),
    "0x" + "ab" * 20,
    keccak256(b"job"),
    keccak256(b"in"),
    100_000,
    0,
    2_000_000_000,
)
HONEST, FORGER = DevEnclave.fixed(1), DevEnclave.fixed(2)


def tx(data: bytes, to: str = ROUTER.address) -> dict:
    return {"to": to, "input": data}


def packed(enclave: DevEnclave, result: bytes) -> bytes:
    signed = enclave.sign(REQUEST, result, DOMAIN)
    body = pack_fulfillment(REQUEST, signed.status, signed.result, signed.measurement, *signed.compact_signature())
    return keccak256(b"fulfillPacked()")[:4] + body


def abi_call(fn_name: str, *args: object) -> bytes:
    return bytes.fromhex(ROUTER.encode_abi(fn_name, list(args))[2:])


@pytest.mark.parametrize("form", ["fulfillPacked", "fulfill", "fulfillBatch", "fulfillBatchSigned"])
def test_the_signed_result_is_read_back(form: str) -> None:
    signed = HONEST.sign(REQUEST, b"REAL", DOMAIN)
    data = {
        "fulfillPacked": lambda: packed(HONEST, b"REAL"),
        "fulfill": lambda: abi_call("fulfill", signed.call_args(REQUEST)),
        "fulfillBatch": lambda: abi_call("fulfillBatch", [signed.call_args(REQUEST)]),
        "fulfillBatchSigned": lambda: abi_call(
            "fulfillBatchSigned", *HONEST.sign_batch([(REQUEST, b"REAL", 0)], DOMAIN)
        ),
    }[form]()
    assert _result_from_transaction(ROUTER, tx(data), REQUEST.request_id, HONEST.address, DOMAIN) == b"REAL"


def test_a_call_that_did_not_go_to_the_router_is_not_read() -> None:
    """A relayer's own contract can carry any bytes in its calldata and call the Router with others."""
    spoof = tx(packed(FORGER, b"FAKE"), to=Web3.to_checksum_address("0x" + "66" * 20))
    with pytest.raises(UnreadableResultError, match="not a call to the Router"):
        _result_from_transaction(ROUTER, spoof, REQUEST.request_id, HONEST.address, DOMAIN)


def test_an_item_the_event_signer_did_not_sign_is_not_read() -> None:
    """A batch with a forged copy of the request (the Router skips it; the real one may be delivered by a
    callback's reentrant call, which is not in this transaction's calldata)."""
    forged = FORGER.sign(REQUEST, b"FAKE", DOMAIN)
    for data in (packed(FORGER, b"FAKE"), abi_call("fulfillBatch", [forged.call_args(REQUEST)])):
        with pytest.raises(UnreadableResultError, match="no item signed by"):
            _result_from_transaction(ROUTER, tx(data), REQUEST.request_id, HONEST.address, DOMAIN)
    tampered = bytearray(packed(HONEST, b"REAL"))
    tampered[-4:] = b"FAKE"  # the honest signature over another result recovers to someone else
    with pytest.raises(UnreadableResultError):
        _result_from_transaction(ROUTER, tx(bytes(tampered)), REQUEST.request_id, HONEST.address, DOMAIN)


def test_failed_callbacks_reads_only_the_routers_callback_failed() -> None:
    """A consumer's look-alike ``CallbackFailed`` cannot make the SDK report a failed callback."""
    topic = keccak256(b"CallbackFailed(bytes32,uint256)")
    other_id = request_id(31337, ROUTER.address, 8)

    def log(address: str, rid: bytes, gas: int, index: int) -> dict:
        return {
            "address": address,
            "topics": [HexBytes(topic), HexBytes(rid)],
            "data": HexBytes(gas.to_bytes(32, "big")),
            "blockNumber": 1,
            "blockHash": HexBytes(b"\x01" * 32),
            "transactionHash": HexBytes(b"\x02" * 32),
            "transactionIndex": 0,
            "logIndex": index,
            "removed": False,
        }

    impostor = Web3.to_checksum_address("0x" + "66" * 20)
    receipt = {"logs": [log(ROUTER.address, REQUEST.request_id, 120_000, 0), log(impostor, other_id, 5, 1)]}
    assert failed_callbacks(ROUTER, receipt) == {REQUEST.request_id: 120_000}
    assert failed_callbacks(ROUTER, {"logs": []}) == {}
