"""Test helpers: a deployed teebridge on anvil, and fulfilments signed by a Python-held enclave key."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD

from relayer.chain import ChainClient
from teebridge.anvil import DEV_KEYS
from teebridge.deploy import Deployment, deploy_all
from verifier.hashing import keccak256
from verifier.protocol import Domain, Request, Status, fulfillment_for, job_id
from verifier.signed_result import SignedResult
from verifier.signing import address_of_private_key, sign_digest

ECHO_JOB = job_id("echo", 1)
MEASUREMENT = keccak256(b"test measurement")


@dataclass
class Stack:
    """A fresh deployment and the accounts that use it."""

    rpc_url: str
    owner: ChainClient
    gatekeeper: ChainClient
    relayer: ChainClient
    user: ChainClient
    deployment: Deployment
    registry: Contract
    router: Contract
    consumer: Contract

    @property
    def w3(self):
        return self.owner.w3

    @property
    def domain(self) -> Domain:
        return Domain(self.deployment.chain_id, self.router.address)


def deploy_stack(rpc_url: str, *, allow_simulated: bool = True) -> Stack:
    owner = ChainClient(rpc_url, DEV_KEYS[0])
    gatekeeper = ChainClient(rpc_url, DEV_KEYS[1])
    relayer = ChainClient(rpc_url, DEV_KEYS[2])
    user = ChainClient(rpc_url, DEV_KEYS[3])
    deployment = deploy_all(owner, gatekeeper.address, allow_simulated=allow_simulated)
    return Stack(
        rpc_url,
        owner,
        gatekeeper,
        relayer,
        user,
        deployment,
        owner.contract("EnclaveRegistry", deployment.registry),
        owner.contract("Router", deployment.router),
        owner.contract("ExampleConsumer", deployment.consumer),
    )


@dataclass(frozen=True)
class Enclave:
    """A signing key standing in for an enclave (the contract does not care where the key lives)."""

    key: bytes
    measurement: bytes = MEASUREMENT

    @classmethod
    def random(cls, measurement: bytes = MEASUREMENT) -> Enclave:
        return cls(os.urandom(32), measurement)

    @property
    def address(self) -> str:
        return address_of_private_key(self.key)

    def sign(self, request: Request, result: bytes, domain: Domain, status: int = Status.OK) -> SignedResult:
        f = fulfillment_for(request, status, result, self.measurement)
        return SignedResult(
            f.request_id,
            f.commitment,
            f.status,
            result,
            f.measurement,
            self.address,
            sign_digest(self.key, f.digest(domain)),
        )


def register(
    stack: Stack, enclave: Enclave, *, jobs: tuple[bytes, ...] = (ECHO_JOB,), ttl: int = 3600, simulated: bool = True
) -> None:
    """Register ``enclave`` and approve its measurement for ``jobs``."""
    registry_gk = stack.gatekeeper.contract("EnclaveRegistry", stack.registry.address)
    now = stack.w3.eth.get_block("latest")["timestamp"]
    stack.gatekeeper.send(
        registry_gk.functions.registerSigner(enclave.address, enclave.measurement, now + ttl, simulated, b"\x01" * 32)
    )
    for job in jobs:
        stack.owner.send(stack.registry.functions.setJobMeasurement(job, enclave.measurement, True))


def send_request(
    stack: Stack,
    payload: bytes,
    *,
    job: bytes = ECHO_JOB,
    gas: int = 100_000,
    ttl: int = 600,
    fee: int = 0,
    consumer: Contract | None = None,
) -> tuple[Request, bytes]:
    """Have the consumer send a request; return its committed fields and the raw input envelope."""
    target = consumer or stack.consumer
    client_consumer = stack.user.w3.eth.contract(address=target.address, abi=target.abi)
    receipt = stack.user.send(client_consumer.functions.send(job, payload, gas, ttl), value=fee)
    (event,) = stack.router.events.Requested().process_receipt(receipt, errors=DISCARD)
    args = event["args"]
    request = Request.from_input(
        request_id=bytes(args["requestId"]),
        requester=args["requester"],
        job_id=bytes(args["jobId"]),
        input=bytes(args["input"]),
        callback_gas_limit=args["callbackGasLimit"],
        fee=args["fee"],
        expiry=args["expiry"],
    )
    return request, bytes(args["input"])


def router_as(stack: Stack, client: ChainClient) -> Contract:
    return client.contract("Router", stack.router.address)


def assert_reverts_with(call, sender: str, signature: str) -> None:
    """``call`` reverts with the custom error ``signature``, e.g. ``UnauthorizedSigner(bytes32,address)``."""
    selector = "0x" + keccak256(signature.encode())[:4].hex()
    with pytest.raises((ContractCustomError, ContractLogicError)) as info:
        call.call({"from": sender})
    data = getattr(info.value, "data", None) or str(info.value)
    assert str(data).startswith(selector), f"expected {signature} ({selector}), got {data!r}"
