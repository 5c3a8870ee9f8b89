"""Request a job from a contract and wait for its answer: the client side used by the CLI and the demo.

Enclave HPKE keys come from the on-chain registry (signers registered, live, and approved for the job),
never from an unauthenticated endpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from web3.contract import Contract
from web3.logs import DISCARD

from relayer.chain import ChainClient
from verifier.envelope import Binding, EnvelopeError, ResultKey, encrypt, parse_input, plain
from verifier.protocol import Status, unpack_items
from verifier.suites import DEFAULT_SUITE, Suite, parse_key_bundle


class RequestTimeoutError(TimeoutError):
    """No fulfilment arrived in time."""


@dataclass(frozen=True)
class EnclaveKey:
    """A live enclave signer approved for a job, and its HPKE key bundle (one public key per suite)."""

    signer: str
    measurement: bytes
    expiry: int
    hpke_keys: bytes

    @property
    def suites(self) -> tuple[Suite, ...]:
        """The HPKE suites this enclave accepts."""
        return tuple(parse_key_bundle(self.hpke_keys))

    def public_key(self, suite: Suite = DEFAULT_SUITE) -> bytes:
        """The enclave's raw public key of ``suite``; ``ValueError`` if it does not accept that suite."""
        keys = parse_key_bundle(self.hpke_keys)
        if suite not in keys:
            accepted = ", ".join(s.label for s in keys)
            raise ValueError(f"enclave {self.signer} does not accept suite {suite.label} (accepts {accepted})")
        return keys[suite]


@dataclass(frozen=True)
class Sent:
    """A request that was mined."""

    request_id: bytes
    tx_hash: str
    block_number: int
    timestamp: int
    encrypted: bool


@dataclass(frozen=True)
class Answer:
    """A fulfilment as recorded on-chain."""

    request_id: bytes
    status: int
    result: bytes
    signer: str
    callback_succeeded: bool
    callback_gas_used: int
    tx_hash: str
    block_number: int
    timestamp: int

    @property
    def ok(self) -> bool:
        """True for status OK."""
        return self.status == Status.OK


def live_enclave_keys(registry: Contract, job_id: bytes, from_block: int = 0) -> list[EnclaveKey]:
    """Signers the registry would accept for ``job_id`` right now, newest registration first."""
    seen: dict[str, EnclaveKey] = {}
    for event in registry.events.SignerRegistered().get_logs(from_block=from_block):
        signer = event["args"]["signer"]
        measurement, expiry, _revoked, _simulated, hpke = registry.functions.signerInfo(signer).call()
        if registry.functions.isAuthorized(signer, job_id, measurement).call():
            seen[signer] = EnclaveKey(signer, bytes(measurement), expiry, bytes(hpke))
    return sorted(seen.values(), key=lambda k: -k.expiry)


def build_input(
    payload: bytes,
    *,
    encrypt_to: EnclaveKey | None,
    chain_id: int,
    router: str,
    requester: str,
    job_id: bytes,
    suite: Suite = DEFAULT_SUITE,
    secret_set_id: bytes | None = None,
    result_key: ResultKey | None = None,
) -> bytes:
    """The input envelope: sealed to ``encrypt_to`` with ``suite`` (bound to this request's context and the
    options) or plain; with a secret set and/or a key to encrypt the result to."""
    if encrypt_to is None:
        return plain(payload, secret_set_id=secret_set_id, result_key=result_key)
    return encrypt(
        payload,
        encrypt_to.public_key(suite),
        Binding(chain_id, router, requester, job_id),
        suite=suite,
        secret_set_id=secret_set_id,
        result_key=result_key,
    )


def send_via_consumer(
    user: ChainClient,
    consumer: Contract,
    router: Contract,
    job_id: bytes,
    envelope: bytes,
    *,
    callback_gas_limit: int = 300_000,
    ttl: int = 3600,
    fee: int = 0,
) -> Sent:
    """Have an ExampleConsumer-style contract (``send(jobId, input, gas, ttl)``) send the request."""
    call = user.contract("ExampleConsumer", consumer.address).functions.send(job_id, envelope, callback_gas_limit, ttl)
    receipt = user.send(call, value=fee)
    (event,) = router.events.Requested().process_receipt(receipt, errors=DISCARD)
    block = user.w3.eth.get_block(receipt["blockNumber"])
    return Sent(
        bytes(event["args"]["requestId"]),
        receipt["transactionHash"].to_0x_hex(),
        receipt["blockNumber"],
        block["timestamp"],
        is_sealed(envelope),
    )


def wait_for_answer(
    router: Contract, request_id: bytes, *, from_block: int, timeout: float = 60.0, poll: float = 0.1
) -> Answer:
    """Wait until the Router records a fulfilment for ``request_id``; decode the result from the transaction."""
    w3 = router.w3
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = router.events.Fulfilled().get_logs(from_block=from_block, argument_filters={"requestId": request_id})
        if logs:
            event = logs[0]
            tx = w3.eth.get_transaction(event["transactionHash"])
            result = _result_from_calldata(router, tx["input"], request_id)
            block = w3.eth.get_block(event["blockNumber"])
            return Answer(
                request_id=request_id,
                status=event["args"]["status"],
                result=result,
                signer=event["args"]["signer"],
                callback_succeeded=event["args"]["callbackSucceeded"],
                callback_gas_used=event["args"]["callbackGasUsed"],
                tx_hash=event["transactionHash"].to_0x_hex(),
                block_number=event["blockNumber"],
                timestamp=block["timestamp"],
            )
        time.sleep(poll)
    raise RequestTimeoutError(
        f"no fulfilment for request 0x{request_id.hex()} within {timeout}s: is a relayer running and the "
        "coprocessor registered? (`teebridge status` shows the pipeline)"
    )


def is_sealed(envelope: bytes) -> bool:
    """Whether an input's body is HPKE-sealed (False for a plain or malformed one)."""
    try:
        return parse_input(envelope).suite is not None
    except EnvelopeError:
        return False  # malformed inputs are sent as they are (and answered with a signed INVALID_INPUT)


def _result_from_calldata(router: Contract, calldata: bytes, request_id: bytes) -> bytes:
    calldata = bytes(calldata)
    if calldata[:4] == bytes.fromhex(router.get_function_by_name("fulfillPacked")().selector[2:]):
        # not ABI-encoded: selector | measurement | r | vs | one packed item (docs/protocol.md, section 7.2)
        for packed in unpack_items(calldata[4 + 96 :]):
            if packed.request.request_id == request_id:
                return packed.result
        raise ValueError("fulfilment transaction does not carry this request")
    func, args = router.decode_function_input(calldata)
    if func.fn_name == "fulfillBatchSigned":
        for packed in unpack_items(bytes(args["items"])):
            if packed.request.request_id == request_id:
                return packed.result
        raise ValueError("fulfilment transaction does not carry this request")
    items = [args["f"]] if func.fn_name == "fulfill" else list(args["items"])
    for item in items:
        # web3 decodes structs as dicts keyed by field name
        if bytes(item["request"]["requestId"]) == request_id:
            return bytes(item["result"])
    raise ValueError("fulfilment transaction does not carry this request")
