"""The whole path on real processes: anvil, a coprocessor (simulated attestation) and a relayer."""

from __future__ import annotations

import time
from collections.abc import Iterator

import eth_abi
import pytest

from relayer.chain import ChainClient
from relayer.store import Store
from relayer.submitter import FAULT_ENV, FAULT_EXIT_CODE
from teebridge.client import build_input, live_enclave_keys, send_via_consumer, wait_for_answer
from teebridge.stack import USER_KEY, LocalStack
from tests.helpers import QuietJsonHandler, serve_http
from verifier.envelope import Binding, encrypt, plain
from verifier.protocol import Status, job_id

CREDIT = job_id("confidential.credit-score", 1)
ECHO = job_id("echo", 1)
HTTP_JSON = job_id("http.json", 1)
APPLICANT = eth_abi.encode(["uint256", "uint256", "uint16", "uint16"], [85_000, 22_000, 1, 52])


@pytest.fixture(scope="module")
def local() -> Iterator[LocalStack]:
    with LocalStack() as stack:
        yield stack


class User:
    def __init__(self, stack: LocalStack) -> None:
        d = stack.deployment
        self.d = d
        self.client = ChainClient(stack.anvil.rpc_url, USER_KEY)
        self.router = self.client.contract("Router", d.router)
        self.registry = self.client.contract("EnclaveRegistry", d.registry)
        self.consumer = self.client.contract("ExampleConsumer", d.consumer)

    def key(self, job: bytes):
        return live_enclave_keys(self.registry, job, self.d.deploy_block)[0]

    def ask(self, job: bytes, envelope: bytes, **kwargs):
        sent = send_via_consumer(self.client, self.consumer, self.router, job, envelope, **kwargs)
        return sent, wait_for_answer(self.router, sent.request_id, from_block=sent.block_number, timeout=30)


def test_confidential_request_is_answered(local: LocalStack) -> None:
    user = User(local)
    envelope = build_input(
        APPLICANT,
        encrypt_to=user.key(CREDIT),
        chain_id=user.d.chain_id,
        router=user.d.router,
        requester=user.d.consumer,
        job_id=CREDIT,
    )
    assert APPLICANT not in envelope
    sent, answer = user.ask(CREDIT, envelope)
    assert answer.status == Status.OK and answer.callback_succeeded
    (score,) = eth_abi.decode(["uint16"], answer.result)
    assert 300 <= score <= 850
    assert answer.signer == local.registration.signer
    assert user.consumer.functions.answerOf(sent.request_id).call() == [True, 0, answer.result]


def test_plain_request_is_answered(local: LocalStack) -> None:
    user = User(local)
    _, answer = user.ask(ECHO, plain(b"ping"))
    assert (answer.status, answer.result) == (Status.OK, b"ping")


def test_ciphertext_copied_into_another_requesters_request_does_not_open(local: LocalStack) -> None:
    user = User(local)
    # Sealed for another requester (say, a victim's consumer), then replayed through ours.
    victim = "0x000000000000000000000000000000000000dEaD"
    stolen = encrypt(APPLICANT, user.key(CREDIT).public_key(), Binding(user.d.chain_id, user.d.router, victim, CREDIT))
    _, answer = user.ask(CREDIT, stolen)
    assert answer.status == Status.DECRYPTION_FAILED
    assert "does not open" in eth_abi.decode(["string"], answer.result)[0]


def test_ciphertext_for_another_chain_does_not_open(local: LocalStack) -> None:
    user = User(local)
    elsewhere = encrypt(APPLICANT, user.key(CREDIT).public_key(), Binding(1, user.d.router, user.d.consumer, CREDIT))
    _, answer = user.ask(CREDIT, elsewhere)
    assert answer.status == Status.DECRYPTION_FAILED


def test_tampered_ciphertext_ends_as_signed_error(local: LocalStack) -> None:
    user = User(local)
    envelope = bytearray(
        build_input(
            APPLICANT,
            encrypt_to=user.key(CREDIT),
            chain_id=user.d.chain_id,
            router=user.d.router,
            requester=user.d.consumer,
            job_id=CREDIT,
        )
    )
    envelope[-5] ^= 0x01
    _, answer = user.ask(CREDIT, bytes(envelope))
    assert answer.status == Status.DECRYPTION_FAILED


@pytest.mark.parametrize(
    ("envelope", "status"),
    [
        (b"", Status.INVALID_INPUT),
        (b"\x07whatever", Status.INVALID_INPUT),
        (plain(b"\x01\x02\x03"), Status.INVALID_INPUT),  # not ABI for the credit-score job
    ],
)
def test_malformed_input_ends_as_signed_error_on_chain(local: LocalStack, envelope: bytes, status: Status) -> None:
    user = User(local)
    sent, answer = user.ask(CREDIT, envelope)
    assert answer.status == status
    assert answer.signer == local.registration.signer
    reason = eth_abi.decode(["string"], answer.result)[0]
    assert reason
    assert user.consumer.functions.answerOf(sent.request_id).call()[:2] == [True, status]


def test_unknown_job_ends_as_signed_error(local: LocalStack) -> None:
    user = User(local)
    job = job_id("no.such.job", 1)
    local_owner = ChainClient(local.anvil.rpc_url, "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
    registry = local_owner.contract("EnclaveRegistry", user.d.registry)
    local_owner.send(registry.functions.proposeJobMeasurement(job, local.registration.measurement, 1))
    local_owner.send(registry.functions.activateJobMeasurement(job, local.registration.measurement))
    _, answer = user.ask(job, plain(b""))
    assert answer.status == Status.UNKNOWN_JOB


class _InternalService(QuietJsonHandler):
    """Stands for a service on the enclave's network (cloud metadata, an admin API): answers anyone who asks."""

    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        body = b'{"secret": "internal-only"}'
        self.send_json(body)


def test_http_json_to_a_non_public_address_is_a_signed_failure_on_chain(local: LocalStack) -> None:
    """The stack allows 127.0.0.1 only (local setting); a service on 127.0.0.2 is as private as 10.0.0.5."""
    user = User(local)
    with serve_http(_InternalService, host="127.0.0.2") as internal:
        payload = eth_abi.encode(["string", "string", "string", "uint8"], [f"{internal}/meta", "secret", "string", 0])
        sent, answer = user.ask(HTTP_JSON, plain(payload))
    assert answer.status == Status.JOB_FAILED and answer.signer == local.registration.signer
    (reason,) = eth_abi.decode(["string"], answer.result)
    assert reason.startswith("destination is a loopback address; the enclave does not fetch private networks")
    assert _InternalService.hits == []  # never contacted: nothing to publish
    assert user.consumer.functions.answerOf(sent.request_id).call() == [True, Status.JOB_FAILED, answer.result]


def _fulfilled_ids(user: User, from_block: int) -> list[bytes]:
    return [bytes(e["args"]["requestId"]) for e in user.router.events.Fulfilled().get_logs(from_block=from_block)]


def _wait_until(predicate, timeout: float, why=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"condition not met in {timeout}s {why()}")


def test_relayer_killed_mid_way_delivers_everything_exactly_once(tmp_path) -> None:
    with LocalStack(workdir=tmp_path) as stack:
        user = User(stack)
        start = user.client.w3.eth.block_number
        sent = []
        # Round 1: requests flow while the relayer is SIGKILLed at arbitrary moments, three times.
        for round_ in range(3):
            for i in range(8):
                sent.append(
                    send_via_consumer(
                        user.client, user.consumer, user.router, ECHO, plain(f"{round_}-{i}".encode())
                    ).request_id
                )
            time.sleep(0.15 * (round_ + 1))
            stack.relayer.kill()
            stack.relayer = stack.start_relayer()
        # Round 2: the relayer dies in the worst place: the transaction is signed and persisted, never sent.
        stack.relayer.kill()
        for i in range(4):
            sent.append(send_via_consumer(user.client, user.consumer, user.router, ECHO, plain(b"w%d" % i)).request_id)
        crashing = stack.start_relayer(extra_env={FAULT_ENV: "crash-before-broadcast"})
        assert crashing.process is not None
        assert crashing.process.wait(timeout=30) == FAULT_EXIT_CODE
        stack.relayer = stack.start_relayer()

        _wait_until(lambda: set(_fulfilled_ids(user, start)) >= set(sent), timeout=60)
        fulfilled = _fulfilled_ids(user, start)
        assert sorted(fulfilled) == sorted(sent), "every request delivered exactly once"
        assert not user.router.events.FulfillmentSkipped().get_logs(from_block=start), "nothing submitted twice"
        store = Store(tmp_path / "relayer.sqlite")
        _wait_until(lambda: store.counts() == {"delivered": len(sent)}, timeout=30, why=store.counts)
        stack.relayer.stop()
        assert all(store.transactions_for(r) == 1 for r in sent), "one signed transaction per request, ever"
