"""The Python encoders against independent implementations (eth-abi, eth-account) and fixed vectors.

tests/test_router.py holds the same encoders to the Solidity; together they tie docs/protocol.md to both.
"""

from __future__ import annotations

import eth_abi
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from verifier.attestation import report_data
from verifier.envelope import Binding
from verifier.hashing import keccak256
from verifier.protocol import Domain, Fulfillment, Request, batch_digest, job_id, request_id, request_number
from verifier.signing import address_of_private_key, recover_signer, sign_digest, to_compact

b32 = st.binary(min_size=32, max_size=32)
EIP712_DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
FULFILLMENT_FIELDS = [
    {"name": "requestId", "type": "bytes32"},
    {"name": "commitment", "type": "bytes32"},
    {"name": "status", "type": "uint8"},
    {"name": "resultHash", "type": "bytes32"},
    {"name": "measurement", "type": "bytes32"},
]
addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())


def test_job_id_vector() -> None:
    assert job_id("echo", 1).hex() == keccak256(b"echo@1").hex()
    assert job_id("confidential.credit-score", 1) == keccak256(b"confidential.credit-score@1")


@settings(max_examples=50, deadline=None)
@given(chain=st.integers(1, 2**64), router=addresses, number=st.integers(0, 2**64 - 1))
def test_request_id_is_the_prefix_of_chain_and_router_with_the_number(chain: int, router: str, number: int) -> None:
    digest = keccak256(eth_abi.encode(["uint256", "address"], [chain, router]))
    assert request_id(chain, router, number) == digest[:24] + number.to_bytes(8, "big")
    assert request_number(request_id(chain, router, number)) == number
    assert Domain(chain, router).owns_request_id(request_id(chain, router, number))
    assert not Domain(chain + 1, router).owns_request_id(request_id(chain, router, number))


def test_a_request_number_is_a_uint64() -> None:
    router = "0x" + "11" * 20
    for number in (-1, 2**64):
        with pytest.raises(ValueError, match="uint64"):
            request_id(1, router, number)


@settings(max_examples=50, deadline=None)
@given(
    rid=b32,
    requester=addresses,
    job=b32,
    input_hash=b32,
    gas=st.integers(0, 2**32 - 1),
    fee=st.integers(0, 2**96 - 1),
    expiry=st.integers(0, 2**64 - 1),
)
def test_commitment_is_abi_encode_of_the_request(rid, requester, job, input_hash, gas, fee, expiry) -> None:
    request = Request(rid, requester, job, input_hash, gas, fee, expiry)
    types = ["bytes32", "address", "bytes32", "bytes32", "uint32", "uint96", "uint64"]
    assert request.commitment() == keccak256(eth_abi.encode(types, [rid, requester, job, input_hash, gas, fee, expiry]))


@settings(max_examples=30, deadline=None)
@given(
    chain=st.integers(1, 2**32),
    router=addresses,
    rid=b32,
    commitment=b32,
    status=st.integers(0, 255),
    result=st.binary(max_size=200),
    measurement=b32,
    key=st.binary(min_size=32, max_size=32),
)
def test_fulfillment_digest_matches_eth_account(
    chain, router, rid, commitment, status, result, measurement, key
) -> None:
    if not 0 < int.from_bytes(key, "big") < 2**256 - 2**32:
        return
    f = Fulfillment(rid, commitment, status, keccak256(result), measurement)
    domain = Domain(chain, router)
    message = {
        "types": {
            "EIP712Domain": EIP712_DOMAIN_FIELDS,
            "Fulfillment": FULFILLMENT_FIELDS,
        },
        "primaryType": "Fulfillment",
        "domain": {"name": "teebridge", "version": "1", "chainId": chain, "verifyingContract": router},
        "message": {
            "requestId": rid,
            "commitment": commitment,
            "status": status,
            "resultHash": keccak256(result),
            "measurement": measurement,
        },
    }
    theirs = Account.sign_message(encode_typed_data(full_message=message), key)
    ours = sign_digest(key, f.digest(domain))
    assert ours == bytes(theirs.signature)
    assert recover_signer(f.digest(domain), ours) == address_of_private_key(key)
    r, vs = to_compact(ours)
    assert r == ours[:32] and int.from_bytes(vs, "big") >> 255 == ours[64] - 27


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 2**64), addresses, st.lists(st.tuples(b32, b32, st.integers(0, 255), b32), min_size=1, max_size=6)
)
def test_batch_digest_matches_eth_account(chain, router, items) -> None:
    """``FulfillmentBatch`` (docs/protocol.md 6.1) is plain EIP-712 with an array of structs."""
    measurement = keccak256(b"m")
    fulfillments = [Fulfillment(rid, c, status, rh, measurement) for rid, c, status, rh in items]
    message = {
        "types": {
            "EIP712Domain": EIP712_DOMAIN_FIELDS,
            "FulfillmentBatch": [{"name": "fulfillments", "type": "Fulfillment[]"}],
            "Fulfillment": FULFILLMENT_FIELDS,
        },
        "primaryType": "FulfillmentBatch",
        "domain": {"name": "teebridge", "version": "1", "chainId": chain, "verifyingContract": router},
        "message": {
            "fulfillments": [
                {
                    "requestId": f.request_id,
                    "commitment": f.commitment,
                    "status": f.status,
                    "resultHash": f.result_hash,
                    "measurement": f.measurement,
                }
                for f in fulfillments
            ]
        },
    }
    typed = encode_typed_data(full_message=message)
    theirs = keccak256(b"\x19" + typed.version + typed.header + typed.body)
    assert theirs == batch_digest(fulfillments, Domain(chain, router))


def test_hpke_info_layout() -> None:
    router, requester = "0x" + "11" * 20, "0x" + "22" * 20
    info = Binding(31337, router, requester, b"\x33" * 32).info()
    assert len(info) == 154
    context = b"teebridge/v1/input" + (31337).to_bytes(32, "big") + b"\x11" * 20 + b"\x22" * 20 + b"\x33" * 32
    assert info == context + keccak256(b"")
    options = b"\x10" + b"\x44" * 32
    assert Binding(31337, router, requester, b"\x33" * 32).info(options) == context + keccak256(options)


def test_report_data_vector() -> None:
    registry, signer, hpke = "0x" + "aa" * 20, "0x" + "bb" * 20, b"\xcc" * 32
    expected = keccak256(
        b"teebridge/v1/attest" + (31337).to_bytes(32, "big") + b"\xaa" * 20 + b"\xbb" * 20 + keccak256(hpke)
    )
    assert report_data(31337, registry, signer, hpke) == expected + b"\x00" * 32
    assert report_data(1, registry, signer, hpke) != report_data(31337, registry, signer, hpke)


@settings(max_examples=30, deadline=None)
@given(
    pair=st.sampled_from(["ETH/USD", "BTC/USD"]),
    answer=st.integers(-(2**255), 2**255 - 1),
    decimals=st.integers(0, 255),
    observed=st.integers(0, 2**64 - 1),
    sources=st.integers(0, 65535),
    measurement=b32,
    chain=st.integers(1, 2**32),
    registry=addresses,
)
def test_price_report_digest_matches_eth_account(
    pair, answer, decimals, observed, sources, measurement, chain, registry
) -> None:
    from verifier.price_report import PriceReport, feed_id, sign_price_report

    report = PriceReport(feed_id(pair), answer, decimals, observed, sources, measurement)
    key = keccak256(b"price report test key")
    message = {
        "types": {
            "EIP712Domain": EIP712_DOMAIN_FIELDS,
            "PriceReport": [
                {"name": "feedId", "type": "bytes32"},
                {"name": "answer", "type": "int256"},
                {"name": "decimals", "type": "uint8"},
                {"name": "observedAt", "type": "uint64"},
                {"name": "sources", "type": "uint16"},
                {"name": "measurement", "type": "bytes32"},
            ],
        },
        "primaryType": "PriceReport",
        "domain": {"name": "teebridge", "version": "1", "chainId": chain, "verifyingContract": registry},
        "message": {
            "feedId": feed_id(pair),
            "answer": answer,
            "decimals": decimals,
            "observedAt": observed,
            "sources": sources,
            "measurement": measurement,
        },
    }
    theirs = Account.sign_message(encode_typed_data(full_message=message), key)
    ours = sign_price_report(report, key, address_of_private_key(key), chain, registry)
    assert ours.signature == bytes(theirs.signature)
