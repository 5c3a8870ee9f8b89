"""The executor: statuses, envelopes, budgets, signatures, batches."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from coprocessor_testdata import CHAIN_ID, OTHER_REQUESTER, REQUESTER, ROUTER
from eth_abi import decode, encode

from coprocessor.config import CoprocessorConfig
from coprocessor.executor import BadRequest, Executor, OverloadedError, SignedFulfillment
from coprocessor.jobs import BUILTIN_JOBS, Job, JobContext, JobError, JobRegistry
from coprocessor.jobs.credit_score import CREDIT_SCORE_JOB, credit_score
from coprocessor.jobs.echo import ECHO_JOB
from coprocessor.keys import EnclaveKeys
from verifier.envelope import Binding, encrypt, plain
from verifier.hashing import keccak256
from verifier.hexutil import to_checksum_address
from verifier.protocol import Domain, Request, Status, fulfillment_for, parse_offchain_reference
from verifier.signing import recover_signer
from verifier.suites import HpkeKeyPair, Suite

MakeRequest = Callable[..., Request]
MEASUREMENT = keccak256(b"test measurement")
RELEASE = threading.Event()
"""Set at teardown so blocking test handlers end."""


def _block(_context: JobContext, _payload: bytes) -> bytes:
    RELEASE.wait(10)
    return b"late"


def _sleep(_context: JobContext, payload: bytes) -> bytes:
    time.sleep(0.3)
    return payload


def _raise_secret(_context: JobContext, payload: bytes) -> bytes:
    raise ValueError(f"secret payload {payload.hex()}")


def _raise_job_error(_context: JobContext, _payload: bytes) -> bytes:
    raise JobError("upstream said no")


def _raise_timeout_error(_context: JobContext, _payload: bytes) -> bytes:
    raise TimeoutError("socket timed out")


def _bad_output(_context: JobContext, _args: Any) -> tuple[int]:
    return (-1,)


BLOCK_JOB = Job("test.block", 1, None, None, _block, timeout_seconds=0.2)
SLEEP_JOB = Job("test.sleep", 1, None, None, _sleep)
SECRET_JOB = Job("test.raise", 1, None, None, _raise_secret)
JOB_ERROR_JOB = Job("test.job-error", 1, None, None, _raise_job_error)
TIMEOUT_ERROR_JOB = Job("test.timeout-error", 1, None, None, _raise_timeout_error)
BAD_OUTPUT_JOB = Job("test.bad-output", 1, ("uint8",), ("uint8",), _bad_output)
TEST_JOBS = (BLOCK_JOB, SLEEP_JOB, SECRET_JOB, JOB_ERROR_JOB, TIMEOUT_ERROR_JOB, BAD_OUTPUT_JOB)


class SpyKeys:
    """EnclaveKeys that count signatures."""

    def __init__(self, keys: EnclaveKeys) -> None:
        self.keys = keys
        self.signer_address = keys.signer_address
        self.hpke_public_key = keys.public_key(Suite.X25519)
        self.lookup = keys.lookup
        self.signed = 0

    def sign(self, digest: bytes) -> bytes:
        self.signed += 1
        return self.keys.sign(digest)


@pytest.fixture
def spy(keys: EnclaveKeys) -> SpyKeys:
    return SpyKeys(keys)


def make_executor(spy: SpyKeys, config: CoprocessorConfig) -> Executor:
    return Executor(spy, JobRegistry([*BUILTIN_JOBS, *TEST_JOBS]), config, MEASUREMENT)  # type: ignore[arg-type]


@pytest.fixture
def executor(spy: SpyKeys, config: CoprocessorConfig) -> Iterator[Executor]:
    RELEASE.clear()
    with make_executor(spy, config) as ex:
        yield ex
    RELEASE.set()


def credit_input(*values: int) -> bytes:
    return encode(["uint256", "uint256", "uint16", "uint16"], list(values))


def reason(signed: SignedFulfillment) -> str:
    return decode(["string"], signed.result)[0]


def assert_validly_signed(signed: SignedFulfillment, request: Request, keys: EnclaveKeys) -> None:
    expected = fulfillment_for(request, signed.status, signed.result, MEASUREMENT)
    assert signed.fulfillment() == expected
    digest = expected.digest(Domain(CHAIN_ID, ROUTER))
    assert signed.digest() == digest
    assert recover_signer(digest, signed.signature) == keys.signer_address == signed.signer
    assert len(signed.signature) == 65


def test_plain_input_round_trip(executor: Executor, spy: SpyKeys, make_request: MakeRequest) -> None:
    data = plain(credit_input(100_000, 30_000, 1, 60))
    request = make_request(CREDIT_SCORE_JOB.job_id, data)
    signed = executor.execute(CHAIN_ID, ROUTER, request, data)
    assert signed.status == Status.OK
    assert decode(["uint16"], signed.result) == (credit_score(100_000, 30_000, 1, 60),)
    assert_validly_signed(signed, request, spy.keys)
    assert spy.signed == 1


def test_encrypted_input_round_trip(executor: Executor, spy: SpyKeys, make_request: MakeRequest) -> None:
    binding = Binding(CHAIN_ID, ROUTER, REQUESTER, CREDIT_SCORE_JOB.job_id)
    data = encrypt(credit_input(80_000, 8_000, 0, 120), spy.hpke_public_key, binding)
    request = make_request(CREDIT_SCORE_JOB.job_id, data)
    signed = executor.execute(CHAIN_ID, ROUTER, request, data)
    assert signed.status == Status.OK
    assert decode(["uint16"], signed.result) == (credit_score(80_000, 8_000, 0, 120),)
    assert_validly_signed(signed, request, spy.keys)


def test_signature_does_not_verify_for_another_domain(executor: Executor, make_request: MakeRequest) -> None:
    data = plain(b"x")
    signed = executor.execute(CHAIN_ID, ROUTER, make_request(ECHO_JOB.job_id, data), data)
    other = signed.fulfillment().digest(Domain(CHAIN_ID + 1, ROUTER))
    assert recover_signer(other, signed.signature) != signed.signer


def test_to_json_shape(executor: Executor, make_request: MakeRequest) -> None:
    data = plain(b"\xab\xcd")
    request = make_request(ECHO_JOB.job_id, data)
    doc = executor.execute(CHAIN_ID, ROUTER, request, data).to_json()
    assert doc == {
        "requestId": "0x" + request.request_id.hex(),
        "commitment": "0x" + request.commitment().hex(),
        "status": 0,
        "result": "0xabcd",
        "resultHash": "0x" + keccak256(b"\xab\xcd").hex(),
        "measurement": "0x" + MEASUREMENT.hex(),
        "signer": to_checksum_address(doc["signer"]),
        "signature": doc["signature"],
        "fullResult": None,
    }
    assert len(bytes.fromhex(doc["signature"][2:])) == 65 and doc["signature"] == doc["signature"].lower()


@pytest.mark.parametrize(
    "binding_change",
    [
        {"requester": OTHER_REQUESTER},
        {"chain_id": CHAIN_ID + 1},
        {"router": OTHER_REQUESTER},
        {"job_id": ECHO_JOB.job_id},
    ],
)
def test_ciphertext_bound_elsewhere_is_decryption_failed_and_signed(
    executor: Executor, spy: SpyKeys, make_request: MakeRequest, binding_change: dict[str, Any]
) -> None:
    binding = replace(Binding(CHAIN_ID, ROUTER, REQUESTER, CREDIT_SCORE_JOB.job_id), **binding_change)
    secret = credit_input(123_456, 7, 0, 1)
    data = encrypt(secret, spy.hpke_public_key, binding)
    request = make_request(CREDIT_SCORE_JOB.job_id, data)
    signed = executor.execute(CHAIN_ID, ROUTER, request, data)
    assert signed.status == Status.DECRYPTION_FAILED
    assert "does not open" in reason(signed)
    assert_validly_signed(signed, request, spy.keys)


def test_ciphertext_for_another_enclave_is_unknown_key(
    executor: Executor, spy: SpyKeys, make_request: MakeRequest
) -> None:
    other_key = HpkeKeyPair.generate(Suite.X25519).public_key
    data = encrypt(b"x", other_key, Binding(CHAIN_ID, ROUTER, REQUESTER, ECHO_JOB.job_id))
    signed = executor.execute(CHAIN_ID, ROUTER, make_request(ECHO_JOB.job_id, data), data)
    assert signed.status == Status.UNKNOWN_KEY and "does not hold" in reason(signed)


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "empty input"),
        (b"\x07garbage", "unknown envelope kind 0x07"),
        (b"\x01short", "too short"),
        (plain(b"\x01\x02"), "does not decode as (uint256,uint256,uint16,uint16)"),
        (plain(credit_input(1, 2, 3, 4) + b"\x00" * 32), "not the canonical ABI encoding"),
        (plain(b"\x00" * 64 + b"\x01" + b"\x00" * 63), "does not decode"),  # uint16 with non-zero padding
    ],
)
def test_malformed_input_is_invalid_input_and_signed(
    executor: Executor, spy: SpyKeys, make_request: MakeRequest, data: bytes, message: str
) -> None:
    request = make_request(CREDIT_SCORE_JOB.job_id, data)
    signed = executor.execute(CHAIN_ID, ROUTER, request, data)
    assert signed.status == Status.INVALID_INPUT
    assert message in reason(signed)
    assert_validly_signed(signed, request, spy.keys)


def test_unknown_job(executor: Executor, spy: SpyKeys, make_request: MakeRequest) -> None:
    request = make_request(b"\x42" * 32, plain(b""))
    signed = executor.execute(CHAIN_ID, ROUTER, request, plain(b""))
    assert signed.status == Status.UNKNOWN_JOB and "0x" + "42" * 32 in reason(signed)
    assert_validly_signed(signed, request, spy.keys)


def test_timeout_is_signed_and_thread_is_tracked(executor: Executor, spy: SpyKeys, make_request: MakeRequest) -> None:
    request = make_request(BLOCK_JOB.job_id, plain(b""))
    started = time.monotonic()
    signed = executor.execute(CHAIN_ID, ROUTER, request, plain(b""))
    assert time.monotonic() - started < 1.5
    assert signed.status == Status.TIMEOUT and "0.2 s" in reason(signed)
    assert_validly_signed(signed, request, spy.keys)
    assert executor.stuck_handlers == 1
    RELEASE.set()
    deadline = time.monotonic() + 2
    while executor.stuck_handlers and time.monotonic() < deadline:
        time.sleep(0.01)
    assert executor.stuck_handlers == 0


def test_handler_timeout_error_is_job_failed_not_timeout(executor: Executor, make_request: MakeRequest) -> None:
    signed = executor.execute(CHAIN_ID, ROUTER, make_request(TIMEOUT_ERROR_JOB.job_id, plain(b"")), plain(b""))
    assert signed.status == Status.JOB_FAILED and reason(signed) == "job raised TimeoutError"


def test_handler_exception_reason_never_quotes_the_input(executor: Executor, make_request: MakeRequest) -> None:
    data = plain(b"TOPSECRET")
    signed = executor.execute(CHAIN_ID, ROUTER, make_request(SECRET_JOB.job_id, data), data)
    assert signed.status == Status.JOB_FAILED
    assert reason(signed) == "job raised ValueError"
    assert b"TOPSECRET".hex() not in reason(signed)


def test_job_error_reason_is_published(executor: Executor, make_request: MakeRequest) -> None:
    signed = executor.execute(CHAIN_ID, ROUTER, make_request(JOB_ERROR_JOB.job_id, plain(b"")), plain(b""))
    assert signed.status == Status.JOB_FAILED and reason(signed) == "upstream said no"


def test_output_not_matching_types_is_job_failed(executor: Executor, make_request: MakeRequest) -> None:
    data = plain(encode(["uint8"], [1]))
    signed = executor.execute(CHAIN_ID, ROUTER, make_request(BAD_OUTPUT_JOB.job_id, data), data)
    assert signed.status == Status.JOB_FAILED and "ABI output types" in reason(signed)


def test_result_size_limits(
    executor: Executor, spy: SpyKeys, config: CoprocessorConfig, make_request: MakeRequest
) -> None:
    at_limit = plain(b"\x01" * config.max_result_bytes)
    ok = executor.execute(CHAIN_ID, ROUTER, make_request(ECHO_JOB.job_id, at_limit), at_limit)
    assert ok.status == Status.OK and len(ok.result) == config.max_result_bytes and ok.full_result is None
    # longer: only the hash and length are signed for the chain, the bytes ride along for the relayer
    output = bytes(range(256)) * 3 + b"\x07"
    over = plain(output)
    large = executor.execute(CHAIN_ID, ROUTER, make_request(ECHO_JOB.job_id, over), over)
    assert large.status == Status.RESULT_OFFCHAIN and large.full_result == output
    assert parse_offchain_reference(large.result) == (keccak256(output), len(output))
    assert large.to_json()["fullResult"] == "0x" + output.hex()
    assert_validly_signed(large, large.request, spy.keys)
    # past the off-chain limit: refused
    huge = plain(b"\x01" * (config.max_offchain_result_bytes + 1))
    big = executor.execute(CHAIN_ID, ROUTER, make_request(ECHO_JOB.job_id, huge), huge)
    assert big.status == Status.RESULT_TOO_LARGE and str(config.max_offchain_result_bytes) in reason(big)
    assert big.full_result is None


def test_large_results_stay_on_chain_sized_when_off_chain_is_off(
    spy: SpyKeys, config: CoprocessorConfig, make_request: MakeRequest
) -> None:
    with make_executor(spy, replace(config, max_offchain_result_bytes=0)) as executor:
        over = plain(b"\x01" * (config.max_result_bytes + 1))
        big = executor.execute(CHAIN_ID, ROUTER, make_request(ECHO_JOB.job_id, over), over)
        assert big.status == Status.RESULT_TOO_LARGE and str(config.max_result_bytes) in reason(big)


def test_input_hash_mismatch_signs_nothing(executor: Executor, spy: SpyKeys, make_request: MakeRequest) -> None:
    good = plain(b"good")
    request = make_request(ECHO_JOB.job_id, good)
    with pytest.raises(BadRequest, match="inputHash"):
        executor.execute(CHAIN_ID, ROUTER, request, plain(b"evil"))
    other = make_request(ECHO_JOB.job_id, good)
    with pytest.raises(BadRequest, match=r"requests\[1\]"):
        executor.execute_batch(CHAIN_ID, ROUTER, [(other, good), (request, plain(b"evil"))])
    assert spy.signed == 0


@pytest.mark.parametrize("chain_id,router", [(0, ROUTER), (-1, ROUTER), (True, ROUTER), (CHAIN_ID, "0x1234")])
def test_bad_domain_signs_nothing(
    executor: Executor, spy: SpyKeys, make_request: MakeRequest, chain_id: Any, router: str
) -> None:
    data = plain(b"")
    with pytest.raises(BadRequest):
        executor.execute(chain_id, router, make_request(ECHO_JOB.job_id, data), data)
    assert spy.signed == 0


def test_batch_keeps_order_mixes_statuses_and_runs_concurrently(
    executor: Executor, spy: SpyKeys, make_request: MakeRequest
) -> None:
    sleepy = [(make_request(SLEEP_JOB.job_id, plain(bytes([i]))), plain(bytes([i]))) for i in range(4)]
    unknown = (make_request(b"\x01" * 32, plain(b"")), plain(b""))
    items = [sleepy[0], unknown, *sleepy[1:]]
    started = time.monotonic()
    signed = executor.execute_batch(CHAIN_ID, ROUTER, items)
    assert time.monotonic() - started < 0.3 * 4 * 0.75  # 4 workers: well under serial time
    assert [s.request for s in signed] == [r for r, _ in items]
    assert [s.status for s in signed] == [Status.OK, Status.UNKNOWN_JOB, Status.OK, Status.OK, Status.OK]
    assert [s.result for s in signed if s.status == Status.OK] == [bytes([i]) for i in range(4)]
    for s, (request, _) in zip(signed, items, strict=True):
        assert_validly_signed(s, request, spy.keys)


def test_busy_pool_is_refused_without_signing(
    spy: SpyKeys, config: CoprocessorConfig, make_request: MakeRequest
) -> None:
    RELEASE.clear()
    tight = replace(config, workers=1, queue_timeout_seconds=0.2)
    try:
        with make_executor(spy, tight) as ex:
            first = (make_request(BLOCK_JOB.job_id, plain(b"")), plain(b""))
            assert ex.execute_batch(CHAIN_ID, ROUTER, [first])[0].status == Status.TIMEOUT  # worker now stuck
            signed_before = spy.signed
            second = (make_request(ECHO_JOB.job_id, plain(b"")), plain(b""))
            with pytest.raises(OverloadedError, match="retry later"):
                ex.execute_batch(CHAIN_ID, ROUTER, [second])
            assert spy.signed == signed_before
    finally:
        RELEASE.set()


def test_log_lines_per_batch_and_per_request_without_inputs_or_results(
    executor: Executor, make_request: MakeRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """INFO: one line per executed batch (statuses counted); DEBUG: one more per request, naming it and its job."""
    data = plain(b"PLAINTEXT-MARKER")
    caplog.set_level("INFO", logger="coprocessor.executor")
    executor.execute_batch(CHAIN_ID, ROUTER, [(make_request(ECHO_JOB.job_id, data), data) for _ in range(3)])
    lines = [r.getMessage() for r in caplog.records if r.name == "coprocessor.executor"]
    assert len(lines) == 1 and lines[0].startswith("executed 3 request(s) in ") and lines[0].endswith("ms: OK 3")
    caplog.clear()
    caplog.set_level("DEBUG", logger="coprocessor.executor")
    request = make_request(ECHO_JOB.job_id, data)
    executor.execute(CHAIN_ID, ROUTER, request, data)
    lines = [r.getMessage() for r in caplog.records if r.name == "coprocessor.executor"]
    assert len(lines) == 2 and lines[1].startswith("executed 1 request(s)")
    assert request.request_id.hex() in lines[0] and "echo@1" in lines[0] and "OK" in lines[0]
    assert "PLAINTEXT-MARKER" not in caplog.text and b"PLAINTEXT-MARKER".hex() not in caplog.text
