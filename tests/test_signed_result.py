"""What the relayer checks of a coprocessor's answer before it stores or submits it, including large results."""

from __future__ import annotations

from dataclasses import replace

import pytest

from teebridge.testkit import DevEnclave
from verifier.hashing import keccak256
from verifier.protocol import Domain, Request, Status, offchain_reference
from verifier.signed_result import SignedResult, SignedResultError, verify_signed_result

DOMAIN = Domain(31337, "0x" + "11" * 20)
REQUEST = Request(b"\x01" * 32, "0x" + "22" * 20, b"\x03" * 32, keccak256(b"input"), 100_000, 0, 2**40)
FULL = bytes(range(256)) * 30


def offchain_answer(full: bytes | None = FULL) -> SignedResult:
    signed = DevEnclave.fixed(7).sign(REQUEST, offchain_reference(FULL), DOMAIN, status=Status.RESULT_OFFCHAIN)
    return replace(signed, full_result=full)


def test_an_offchain_result_with_its_bytes_verifies_and_round_trips_as_json() -> None:
    answer = offchain_answer()
    verify_signed_result(answer, REQUEST, DOMAIN)
    assert SignedResult.from_json(answer.to_json()) == answer
    assert answer.to_json()["fullResult"] == "0x" + FULL.hex()


@pytest.mark.parametrize(
    ("full", "message"),
    [(None, "without its bytes"), (FULL[:-1], "does not match"), (FULL[:-1] + b"\x01", "does not match")],
    ids=["missing", "truncated", "altered"],
)
def test_an_offchain_result_whose_bytes_do_not_match_is_refused(full: bytes | None, message: str) -> None:
    with pytest.raises(SignedResultError, match=message):
        verify_signed_result(offchain_answer(full), REQUEST, DOMAIN)


def test_a_malformed_reference_is_refused() -> None:
    signed = DevEnclave.fixed(7).sign(REQUEST, b"\x01" * 63, DOMAIN, status=Status.RESULT_OFFCHAIN)
    with pytest.raises(SignedResultError, match="64 bytes"):
        verify_signed_result(replace(signed, full_result=FULL), REQUEST, DOMAIN)
