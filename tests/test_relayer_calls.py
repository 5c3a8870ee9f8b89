"""``CallEncoder`` gives the same calldata as web3's encoder, for every Router call the relayer sends."""

from __future__ import annotations

import pytest
from eth_abi.exceptions import EncodingError
from web3 import Web3

from contracts.artifacts import load_artifact
from relayer.calls import CallEncoder
from verifier.protocol import Request, pack_items

REQUEST = Request(b"\x01" * 32, "0x" + "ab" * 20, b"\x02" * 32, b"\x03" * 32, 250_000, 10**15, 1_800_000_000)
SIGNED = (REQUEST.as_tuple(), 0, b"answer", b"\x04" * 32, b"\x05" * 32, b"\x06" * 32)

CALLS = {
    "fulfill": [SIGNED],
    "fulfillBatch": [[SIGNED, SIGNED]],
    "fulfillBatchSigned": [pack_items([(REQUEST, 0, b"answer")]), b"\x04" * 32, b"\x05" * 32, b"\x06" * 32],
    "commitmentsOf": [[b"\x01" * 32, b"\x07" * 32]],
    "cancel": [REQUEST.as_tuple()],
}


@pytest.mark.parametrize("fn_name", sorted(CALLS))
def test_same_calldata_as_web3(fn_name: str) -> None:
    abi = load_artifact("Router").abi
    router = Web3().eth.contract(address="0x" + "11" * 20, abi=abi)
    expected = bytes.fromhex(router.encode_abi(fn_name, CALLS[fn_name])[2:])
    call = CallEncoder(abi).encode(fn_name, CALLS[fn_name])
    assert call.fn_name == fn_name and call.data == expected
    assert call.data_hex == "0x" + expected.hex() and CallEncoder(abi).selector(fn_name) == expected[:4]


def test_wrong_arguments_are_refused() -> None:
    encoder = CallEncoder(load_artifact("Router").abi)
    with pytest.raises(ValueError, match="takes 1 arguments, got 2"):
        encoder.encode("cancel", [REQUEST.as_tuple(), 1])
    with pytest.raises(KeyError):
        encoder.encode("noSuchFunction", [])
    with pytest.raises(EncodingError, match="32 bits"):  # 2**40 does not fit the gas limit's uint32
        encoder.encode("cancel", [(*REQUEST.as_tuple()[:4], 2**40, 0, 0)])


def test_overloaded_names_are_left_out() -> None:
    abi = [
        {"type": "function", "name": "f", "inputs": [{"name": "a", "type": "uint256"}]},
        {"type": "function", "name": "f", "inputs": [{"name": "a", "type": "bytes"}]},
        {"type": "function", "name": "g", "inputs": []},
    ]
    encoder = CallEncoder(abi)
    assert encoder.encode("g", []).data == Web3.keccak(text="g()")[:4]
    with pytest.raises(KeyError):
        encoder.encode("f", [1])


def test_web3_hashes_with_the_c_keccak_in_a_relayer_process() -> None:
    """Importing relayer.chain points eth-hash (web3's Keccak) at safe-pysha3 unless ETH_HASH_BACKEND is set."""
    import os
    import subprocess
    import sys

    probe = (
        "import relayer.chain, eth_utils, eth_hash.auto as a; eth_utils.keccak(b'');"
        " print(type(a.keccak.hasher.__self__).__name__)"
    )
    env = {k: v for k, v in os.environ.items() if k != "ETH_HASH_BACKEND"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PySha3Backend", out.stdout + out.stderr


def test_a_router_with_fulfill_packed_is_told_from_one_without(anvil) -> None:
    """The relayer sends single results with fulfillPacked only where the Router has it (older Routers: fulfill)."""
    from relayer.submitter import router_has_fulfill_packed
    from tests.helpers import deploy_stack

    stack = deploy_stack(anvil.rpc_url)
    encoder = CallEncoder(load_artifact("Router").abi)
    assert router_has_fulfill_packed(stack.w3, stack.router.address, encoder) is True
    # the registry stands in for a Router deployed before fulfillPacked: no such function, no fallback
    assert router_has_fulfill_packed(stack.w3, stack.registry.address, encoder) is False
    # no answer is not a "no": the relayer asks again later (fulfill meanwhile)
    unreachable = Web3(Web3.HTTPProvider("http://127.0.0.1:9", request_kwargs={"timeout": 2}))
    assert router_has_fulfill_packed(unreachable, stack.router.address, encoder) is None
