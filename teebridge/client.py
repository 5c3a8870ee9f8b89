"""Request a job from a contract and wait for its answer: the client side used by the CLI and the demo.

Enclave HPKE keys come from the on-chain registry (signers registered, live, and approved for the job),
never from an unauthenticated endpoint.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from web3.contract import Contract
from web3.logs import DISCARD

from relayer.chain import ChainClient
from verifier.envelope import Binding, EnvelopeError, ResultKey, encrypt, parse_input, plain
from verifier.protocol import Domain, Request, Status, batch_digest, fulfillment_for, unpack_items
from verifier.signing import SignatureError, from_compact, recover_signer
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
    """False when the Router recorded ``CallbackFailed``: the callback reverted or ran out of gas, or the
    requester has no code."""
    failed_callback_gas_used: int | None
    """The gas the failed callback used (``CallbackFailed.gasUsed``); None when it succeeded."""
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
            domain = Domain(w3.eth.chain_id, router.address)
            result = _result_from_transaction(router, tx, request_id, event["args"]["signer"], domain)
            receipt = w3.eth.get_transaction_receipt(event["transactionHash"])
            failed = failed_callbacks(router, receipt).get(request_id)
            block = w3.eth.get_block(event["blockNumber"])
            return Answer(
                request_id=request_id,
                status=event["args"]["status"],
                result=result,
                signer=event["args"]["signer"],
                callback_succeeded=failed is None,
                failed_callback_gas_used=failed,
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


class UnreadableResultError(ValueError):
    """The fulfilment happened, but its result cannot be read back from the transaction that made it."""


def failed_callbacks(router: Contract, receipt: Mapping[str, Any]) -> dict[bytes, int]:
    """Request id -> gas used, for each ``CallbackFailed`` the Router emitted in ``receipt`` (a callback that
    reverted or ran out of gas, or a requester without code). A request delivered in ``receipt`` and absent here
    had a callback that succeeded. Logs of other contracts (a consumer's look-alike event) are ignored."""
    events = router.events.CallbackFailed().process_receipt(receipt, errors=DISCARD)
    return {
        bytes(e["args"]["requestId"]): int(e["args"]["gasUsed"])
        for e in events
        if e["address"].lower() == router.address.lower()
    }


def _result_from_transaction(
    router: Contract, tx: Mapping[str, Any], request_id: bytes, signer: str, domain: Domain
) -> bytes:
    """The result the Router delivered for ``request_id`` in ``tx``, read from its calldata, and only from an item
    whose signature recovers to ``signer`` (the ``Fulfilled`` event's): a relayer cannot show the SDK another
    result than the consumer got, neither by calling the Router through a contract of its own nor by adding an
    unsigned copy of the request to a batch."""
    hint = "read the answer from your consumer contract instead"
    if (tx.get("to") or "").lower() != router.address.lower():
        raise UnreadableResultError(
            f"request 0x{request_id.hex()} was fulfilled through {tx.get('to')}, not a call to the Router: {hint}"
        )
    for candidate, recovered in _signed_items(router, bytes(tx["input"]), request_id, domain):
        if recovered is not None and recovered.lower() == signer.lower():
            return candidate
    raise UnreadableResultError(
        f"the fulfilment of request 0x{request_id.hex()} carries no item signed by {signer}: {hint}"
    )


def _signed_items(
    router: Contract, calldata: bytes, request_id: bytes, domain: Domain
) -> Iterator[tuple[bytes, str | None]]:
    """Each item of ``calldata`` (any fulfil call) answering ``request_id``: its result and the address its
    signature (the item's own, or the batch's) recovers to, None when it does not recover."""
    if calldata[:4] == bytes.fromhex(router.get_function_by_name("fulfillPacked")().selector[2:]):
        # not ABI-encoded: selector | measurement | r | vs | one packed item (docs/protocol.md, section 7.2)
        measurement, r, vs = calldata[4:36], calldata[36:68], calldata[68:100]
        for packed in unpack_items(calldata[100:], domain):
            if packed.request.request_id == request_id:
                digest = fulfillment_for(packed.request, packed.status, packed.result, measurement).digest(domain)
                yield packed.result, _recovered(digest, r, vs)
        return
    func, args = router.decode_function_input(calldata)
    if func.fn_name == "fulfillBatchSigned":
        items = unpack_items(bytes(args["items"]), domain)
        measurement = bytes(args["measurement"])
        fulfillments = [fulfillment_for(p.request, p.status, p.result, measurement) for p in items]
        recovered = _recovered(batch_digest(fulfillments, domain), bytes(args["r"]), bytes(args["vs"]))
        for packed in items:
            if packed.request.request_id == request_id:
                yield packed.result, recovered
        return
    structs = [args["f"]] if func.fn_name == "fulfill" else list(args["items"])
    for item in structs:
        # web3 decodes structs as dicts keyed by field name
        fields = item["request"]
        if bytes(fields["requestId"]) != request_id:
            continue
        request = Request(
            bytes(fields["requestId"]),
            fields["requester"],
            bytes(fields["jobId"]),
            bytes(fields["inputHash"]),
            fields["callbackGasLimit"],
            fields["fee"],
            fields["expiry"],
        )
        result = bytes(item["result"])
        digest = fulfillment_for(request, item["status"], result, bytes(item["measurement"])).digest(domain)
        yield result, _recovered(digest, bytes(item["r"]), bytes(item["vs"]))


def _recovered(digest: bytes, r: bytes, vs: bytes) -> str | None:
    try:
        return recover_signer(digest, from_compact(r, vs))
    except SignatureError:
        return None
