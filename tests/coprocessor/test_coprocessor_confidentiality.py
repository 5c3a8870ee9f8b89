"""Confidentiality in the enclave: encrypted results, sealed secrets, key rotation, the post-quantum suite.

Every trust check here is shown rejecting: another requester's key, another chain, swapped options, another
job's or requester's secret set, an expired or deleted set, a replayed upload, a foreign signature, a
ciphertext bound to another owner, a key retired past its time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from coprocessor_testdata import CHAIN_ID, OTHER_REQUESTER, REQUESTER, ROUTER
from eth_abi import decode

from coprocessor.config import CoprocessorConfig
from coprocessor.executor import Executor, SignedFulfillment
from coprocessor.jobs import Job, JobContext, JobError, JobRegistry
from coprocessor.jobs.echo import ECHO_JOB
from coprocessor.keys import EnclaveKeys, RotationError, load_or_create_keys
from coprocessor.sealing import SimulatedSealer
from coprocessor.secrets import SecretStore, SecretUnavailableError
from verifier.envelope import Binding, ResultKey, decrypt_result, encrypt, plain
from verifier.hashing import keccak256
from verifier.protocol import Request, Status
from verifier.secrets import (
    SecretSetDeletion,
    SecretSetError,
    SecretSetUpload,
    secret_set_id,
    secrets_info,
    sign_deletion,
    sign_upload,
)
from verifier.signing import address_of_private_key, recover_signer
from verifier.suites import DecryptionError, HpkeKeyPair, Suite, key_id, seal

MEASUREMENT = keccak256(b"test measurement")
OWNER_KEY = keccak256(b"job owner")
OWNER = address_of_private_key(OWNER_KEY)
API_KEY = "sk-live-THIS-IS-THE-SEALED-API-KEY-0123456789"


def _use_secret(context: JobContext, _payload: bytes) -> tuple[bytes]:
    """Proves it holds the secret without returning it: the hash of the value."""
    return (keccak256(context.secrets["apiKey"].encode()),)


def _leak_secret(context: JobContext, _payload: bytes) -> tuple[str]:
    return (f"the key is {context.secrets['apiKey']}",)


def _leak_in_error(context: JobContext, _payload: bytes) -> tuple[str]:
    raise JobError(f"upstream refused key {context.secrets['apiKey']}")


USE_JOB = Job("test.use-secret", 1, None, ("bytes32",), _use_secret)
LEAK_JOB = Job("test.leak-secret", 1, None, ("string",), _leak_secret)
LEAK_ERROR_JOB = Job("test.leak-in-error", 1, None, ("string",), _leak_in_error)


@pytest.fixture
def clock() -> list[float]:
    return [1_800_000_000.0]


@pytest.fixture
def keys(config: CoprocessorConfig, clock: list[float]) -> EnclaveKeys:
    keys = load_or_create_keys(config.data_dir)
    keys._clock = lambda: clock[0]  # the tests move time
    return keys


@pytest.fixture
def store(config: CoprocessorConfig, keys: EnclaveKeys, clock: list[float]) -> SecretStore:
    return SecretStore(config.data_dir, SimulatedSealer.open(config.data_dir), keys, clock=lambda: clock[0])


@pytest.fixture
def executor(keys: EnclaveKeys, config: CoprocessorConfig, store: SecretStore) -> Iterator[Executor]:
    jobs = JobRegistry([ECHO_JOB, USE_JOB, LEAK_JOB, LEAK_ERROR_JOB])
    with Executor(keys, jobs, config, MEASUREMENT, store) as ex:
        yield ex


def upload(
    keys: EnclaveKeys,
    *,
    job: Job = USE_JOB,
    name: str = "api",
    version: int = 1,
    expires_at: int = 0,
    requesters: tuple[str, ...] = (REQUESTER,),
    values: dict[str, str] | None = None,
    owner_key: bytes = OWNER_KEY,
    bound_owner: str | None = None,
    suite: Suite = Suite.X25519,
) -> SecretSetUpload:
    owner = address_of_private_key(owner_key)
    plaintext = json.dumps(values or {"apiKey": API_KEY}).encode()
    info = secrets_info(CHAIN_ID, bound_owner or owner, job.job_id, name)
    public_key = keys.public_key(suite)
    ciphertext = bytes([suite]) + key_id(public_key) + seal(suite, public_key, plaintext, info)
    unsigned = SecretSetUpload(owner, CHAIN_ID, job.job_id, name, version, expires_at, requesters, ciphertext, b"")
    return sign_upload(owner_key, unsigned)


def run(
    executor: Executor,
    make_request: Callable[..., Request],
    job: Job,
    data: bytes,
    *,
    requester: str = REQUESTER,
) -> SignedFulfillment:
    return executor.execute(CHAIN_ID, ROUTER, make_request(job.job_id, data, requester=requester), data)


def reason(signed: SignedFulfillment) -> str:
    return decode(["string"], signed.result)[0]


# ---------------------------------------------------------------- encrypted results


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.label)
def test_result_is_encrypted_to_the_requesters_key_and_only_it_opens_it(
    executor: Executor, keys: EnclaveKeys, make_request: Callable[..., Request], suite: Suite
) -> None:
    alice, bob = HpkeKeyPair.generate(suite), HpkeKeyPair.generate(suite)
    binding = Binding(CHAIN_ID, ROUTER, REQUESTER, ECHO_JOB.job_id)
    data = encrypt(
        b"private answer", keys.public_key(suite), binding, suite=suite, result_key=ResultKey(suite, alice.public_key)
    )
    signed = run(executor, make_request, ECHO_JOB, data)
    assert signed.status == Status.OK
    assert b"private answer" not in signed.result  # only ciphertext goes on-chain
    assert signed.fulfillment().result_hash == keccak256(signed.result)  # the signature covers the ciphertext
    request_id = signed.request.request_id
    assert decrypt_result(signed.result, alice, CHAIN_ID, ROUTER, request_id) == b"private answer"
    with pytest.raises(DecryptionError):
        decrypt_result(signed.result, bob, CHAIN_ID, ROUTER, request_id)
    with pytest.raises(DecryptionError):
        decrypt_result(signed.result, alice, 1, ROUTER, request_id)  # bound to the chain
    with pytest.raises(DecryptionError):
        decrypt_result(signed.result, alice, CHAIN_ID, ROUTER, b"\x01" * 32)  # and to the request


def test_error_results_are_encrypted_too(executor: Executor, make_request: Callable[..., Request]) -> None:
    alice = HpkeKeyPair.generate(Suite.X25519)
    data = plain(b"", result_key=ResultKey(Suite.X25519, alice.public_key))
    signed = run(executor, make_request, USE_JOB, data)  # names no secret set: the handler fails
    assert signed.status == Status.JOB_FAILED
    opened = decrypt_result(signed.result, alice, CHAIN_ID, ROUTER, signed.request.request_id)
    assert "KeyError" in decode(["string"], opened)[0]


def test_a_swapped_result_key_does_not_open_the_input(
    executor: Executor, keys: EnclaveKeys, make_request: Callable[..., Request]
) -> None:
    """Someone who copies a sealed input next to their own result key gets no plaintext out of it."""
    alice, mallory = HpkeKeyPair.generate(Suite.X25519), HpkeKeyPair.generate(Suite.X25519)
    binding = Binding(CHAIN_ID, ROUTER, REQUESTER, ECHO_JOB.job_id)
    honest = encrypt(b"secret input", keys.public_key(), binding, result_key=ResultKey(Suite.X25519, alice.public_key))
    swapped = ResultKey(Suite.X25519, mallory.public_key).encode() + honest[34:]
    signed = run(executor, make_request, ECHO_JOB, swapped)
    assert signed.status == Status.DECRYPTION_FAILED
    opened = decrypt_result(signed.result, mallory, CHAIN_ID, ROUTER, signed.request.request_id)
    assert b"secret input" not in opened


@pytest.mark.parametrize(
    "data,message",
    [
        (b"\x10" + b"\x01" * 5, "secret set option (0x10) is truncated"),
        (b"\x11\x07" + b"\x00" * 40, "unknown suite 0x07"),
        (b"\x11\x01" + b"\x01" * 10, "truncated"),
        (b"\x11\x01" + b"\x01" * 32 + b"\x10" + b"\x02" * 32 + b"\x00", "out of order"),
        (b"\x10" + b"\x01" * 32, "empty input body"),
    ],
)
def test_malformed_options_are_signed_invalid_input(
    executor: Executor, make_request: Callable[..., Request], data: bytes, message: str
) -> None:
    signed = run(executor, make_request, ECHO_JOB, data)
    assert signed.status == Status.INVALID_INPUT and message in reason(signed)


def test_post_quantum_suite_input_round_trip(
    executor: Executor, keys: EnclaveKeys, make_request: Callable[..., Request]
) -> None:
    binding = Binding(CHAIN_ID, ROUTER, REQUESTER, ECHO_JOB.job_id)
    data = encrypt(b"pq input", keys.public_key(Suite.MLKEM768_X25519), binding, suite=Suite.MLKEM768_X25519)
    assert data[0] == Suite.MLKEM768_X25519 and len(data) == 1 + 8 + 1120 + len(b"pq input") + 16
    signed = run(executor, make_request, ECHO_JOB, data)
    assert (signed.status, signed.result) == (Status.OK, b"pq input")
    other_chain = encrypt(
        b"pq input", keys.public_key(Suite.MLKEM768_X25519), replace(binding, chain_id=1), suite=Suite.MLKEM768_X25519
    )
    assert run(executor, make_request, ECHO_JOB, other_chain).status == Status.DECRYPTION_FAILED


# ---------------------------------------------------------------- sealed secrets


def test_a_secret_set_is_injected_into_its_job_only(
    executor: Executor, keys: EnclaveKeys, store: SecretStore, make_request: Callable[..., Request]
) -> None:
    info = store.put(upload(keys))
    set_id = secret_set_id(CHAIN_ID, OWNER, USE_JOB.job_id, "api")
    assert info.secret_set_id == set_id and info.version == 1
    signed = run(executor, make_request, USE_JOB, plain(b"", secret_set_id=set_id))
    assert signed.status == Status.OK
    assert decode(["bytes32"], signed.result)[0] == keccak256(API_KEY.encode())
    # another job naming the same set gets nothing
    other = run(executor, make_request, LEAK_JOB, plain(b"", secret_set_id=set_id))
    assert other.status == Status.SECRET_UNAVAILABLE and "another job" in reason(other)
    # nor does a requester the owner did not list
    stranger = run(executor, make_request, USE_JOB, plain(b"", secret_set_id=set_id), requester=OTHER_REQUESTER)
    assert stranger.status == Status.SECRET_UNAVAILABLE and "does not allow requester" in reason(stranger)
    unknown = run(executor, make_request, USE_JOB, plain(b"", secret_set_id=b"\x05" * 32))
    assert unknown.status == Status.SECRET_UNAVAILABLE and "not stored" in reason(unknown)


def test_a_result_or_error_that_contains_a_secret_is_withheld(
    executor: Executor, keys: EnclaveKeys, store: SecretStore, make_request: Callable[..., Request]
) -> None:
    for job in (LEAK_JOB, LEAK_ERROR_JOB):
        store.put(upload(keys, job=job, name="leaky"))
        set_id = secret_set_id(CHAIN_ID, OWNER, job.job_id, "leaky")
        signed = run(executor, make_request, job, plain(b"", secret_set_id=set_id))
        assert signed.status == Status.JOB_FAILED and "result withheld" in reason(signed)
        assert API_KEY.encode() not in signed.result


def test_expired_deleted_and_replayed_secret_sets(
    executor: Executor,
    keys: EnclaveKeys,
    store: SecretStore,
    clock: list[float],
    make_request: Callable[..., Request],
) -> None:
    set_id = secret_set_id(CHAIN_ID, OWNER, USE_JOB.job_id, "api")
    use = plain(b"", secret_set_id=set_id)
    store.put(upload(keys, expires_at=int(clock[0]) + 60))
    assert run(executor, make_request, USE_JOB, use).status == Status.OK
    clock[0] += 61
    expired = run(executor, make_request, USE_JOB, use)
    assert expired.status == Status.SECRET_UNAVAILABLE and "expired" in reason(expired)
    # rotation: a new version with a new value
    store.put(upload(keys, version=2, values={"apiKey": "sk-rotated-value-987654321"}))
    rotated = run(executor, make_request, USE_JOB, use)
    assert decode(["bytes32"], rotated.result)[0] == keccak256(b"sk-rotated-value-987654321")
    with pytest.raises(SecretSetError, match="not above the stored version 2"):
        store.put(upload(keys, version=2))  # a replayed upload
    deletion = sign_deletion(OWNER_KEY, SecretSetDeletion(OWNER, CHAIN_ID, USE_JOB.job_id, "api", 3, b""))
    assert store.delete(deletion).deleted
    deleted = run(executor, make_request, USE_JOB, use)
    assert deleted.status == Status.SECRET_UNAVAILABLE and "deleted" in reason(deleted)
    with pytest.raises(SecretSetError, match="not above"):
        store.put(upload(keys, version=3))  # the tombstone keeps the version
    with pytest.raises(SecretSetError, match="not above"):
        store.delete(deletion)  # nor can a deletion be replayed


def test_uploads_that_are_not_the_owners_are_refused(keys: EnclaveKeys, store: SecretStore) -> None:
    good = upload(keys)
    with pytest.raises(SecretSetError, match="not by the owner"):
        store.put(replace(good, owner=OTHER_REQUESTER))  # claims another owner
    with pytest.raises(SecretSetError, match="not by the owner"):
        store.put(replace(good, requesters=(*good.requesters, OTHER_REQUESTER)))  # widened after signing
    # a ciphertext sealed for another owner (say, seen on its way through a relayer) does not open as ours
    with pytest.raises(SecretSetError, match="does not open"):
        store.put(upload(keys, bound_owner=OTHER_REQUESTER))
    with pytest.raises(SecretSetError, match="shorter than 8"):
        store.put(upload(keys, values={"apiKey": "short"}))
    stranger = HpkeKeyPair.generate(Suite.X25519)
    foreign = bytes([Suite.X25519]) + key_id(stranger.public_key) + seal(Suite.X25519, stranger.public_key, b"{}", b"")
    with pytest.raises(SecretSetError, match="does not hold"):
        store.put(sign_upload(OWNER_KEY, replace(good, ciphertext=foreign)))


def test_secrets_survive_a_restart_sealed_and_never_in_the_clear(
    config: CoprocessorConfig, keys: EnclaveKeys, store: SecretStore, clock: list[float]
) -> None:
    store.put(upload(keys, suite=Suite.MLKEM768_X25519))
    files = list((config.data_dir / "secrets").iterdir())
    assert len(files) == 1 and files[0].stat().st_mode & 0o077 == 0
    assert API_KEY.encode() not in files[0].read_bytes()
    again = SecretStore(
        config.data_dir, SimulatedSealer.open(config.data_dir), load_or_create_keys(config.data_dir), lambda: clock[0]
    )
    values = again.resolve(secret_set_id(CHAIN_ID, OWNER, USE_JOB.job_id, "api"), CHAIN_ID, USE_JOB.job_id, REQUESTER)
    assert values["apiKey"] == API_KEY
    with pytest.raises(SecretUnavailableError, match="not 1"):
        again.resolve(secret_set_id(CHAIN_ID, OWNER, USE_JOB.job_id, "api"), 1, USE_JOB.job_id, REQUESTER)


def test_no_secret_value_in_logs(
    executor: Executor,
    keys: EnclaveKeys,
    store: SecretStore,
    make_request: Callable[..., Request],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    store.put(upload(keys))
    set_id = secret_set_id(CHAIN_ID, OWNER, USE_JOB.job_id, "api")
    for job in (USE_JOB, LEAK_JOB, LEAK_ERROR_JOB):
        run(executor, make_request, job, plain(b"", secret_set_id=set_id))
    assert caplog.records and API_KEY not in caplog.text


# ---------------------------------------------------------------- key rotation


def test_rotation_keeps_old_hpke_keys_until_retirement_then_unknown_key(
    executor: Executor, keys: EnclaveKeys, config: CoprocessorConfig, clock: list[float], make_request
) -> None:
    old_signer, old_bundle = keys.signer_address, keys.hpke_keys
    binding = Binding(CHAIN_ID, ROUTER, REQUESTER, ECHO_JOB.job_id)
    to_old = {suite: encrypt(b"to the old key", keys.public_key(suite), binding, suite=suite) for suite in Suite}
    with pytest.raises(RotationError, match="no rotation in progress"):
        keys.complete_rotation(old_signer, 0)
    pending = keys.begin_rotation()
    assert keys.begin_rotation() is pending and keys.signer_address == old_signer  # idempotent, nothing switched
    with pytest.raises(RotationError, match="pending signer"):
        keys.complete_rotation(old_signer, int(clock[0]) + 100)
    keys.complete_rotation(pending.signer_address, int(clock[0]) + 100)
    assert keys.signer_address == pending.signer_address != old_signer and keys.hpke_keys != old_bundle
    # during the overlap: old ciphertexts open, and the new key signs
    for data in to_old.values():
        signed = run(executor, make_request, ECHO_JOB, data)
        assert (signed.status, signed.result) == (Status.OK, b"to the old key")
        assert recover_signer(signed.digest(), signed.signature) == pending.signer_address
    # the rotation is sealed to disk: a restart keeps the retired keys
    reloaded = load_or_create_keys(config.data_dir)
    assert reloaded.signer_address == pending.signer_address and len(reloaded.retired) == len(Suite)
    # after the old registration's expiry: destroyed, and a clear status
    clock[0] += 101
    for data in to_old.values():
        signed = run(executor, make_request, ECHO_JOB, data)
        assert signed.status == Status.UNKNOWN_KEY and "retired" in reason(signed)
    assert keys.retired == () and len(load_or_create_keys(config.data_dir).retired) == 0
    fresh = encrypt(b"to the new key", keys.public_key(), binding)
    assert run(executor, make_request, ECHO_JOB, fresh).status == Status.OK


def test_retire_at_in_the_past_destroys_the_old_keys_at_once(keys: EnclaveKeys, clock: list[float]) -> None:
    old = keys.public_key()
    pending = keys.begin_rotation()
    keys.complete_rotation(pending.signer_address, int(clock[0]) - 1)
    assert keys.lookup(Suite.X25519, key_id(old)) is None and keys.retired == ()


def test_upload_encoding_round_trips() -> None:
    unsigned = SecretSetUpload(OWNER, CHAIN_ID, USE_JOB.job_id, "api", 1, 0, (REQUESTER,), b"\x01" * 60, b"")
    signed = sign_upload(OWNER_KEY, unsigned)
    assert SecretSetUpload.from_json(json.loads(json.dumps(signed.to_json()))) == signed
    signed.verify()
    for bad, message in [
        ({**signed.to_json(), "version": 0}, "version"),
        ({**signed.to_json(), "owner": "0x12"}, "owner"),
        ({**signed.to_json(), "name": ""}, "name"),
        ({k: v for k, v in signed.to_json().items() if k != "jobId"}, "missing jobId"),
    ]:
        with pytest.raises(SecretSetError, match=message):
            SecretSetUpload.from_json(bad)
