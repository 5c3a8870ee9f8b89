"""Test helpers: a deployed teebridge on anvil, and fulfilments signed by a Python-held enclave key."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError

from bench.harness import frame_gas
from relayer.chain import ChainClient
from teebridge.anvil import DEV_KEYS
from teebridge.client import failed_callbacks as client_failed_callbacks
from teebridge.deploy import Deployment, deploy_all
from teebridge.gatekeeper_service import Outcome
from teebridge.processes import Child, python_module
from teebridge.stack import USER_KEY, LocalStack
from teebridge.testkit import (
    DEV_MEASUREMENT,
    DevEnclave,
    RawCall,
    fulfill_packed_call,
    register_dev_enclave,
    requested_in,
)
from verifier.envelope import plain
from verifier.hashing import keccak256
from verifier.protocol import Domain, Request, job_id

ECHO_JOB = job_id("echo", 1)
MEASUREMENT = DEV_MEASUREMENT


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


def register(
    stack: Stack,
    enclave: DevEnclave,
    *,
    jobs: tuple[bytes, ...] = (ECHO_JOB,),
    ttl: int = 3600,
    simulated: bool = True,
    hpke_keys: bytes | None = None,
) -> None:
    """Register ``enclave`` and approve its measurement for ``jobs``."""
    extra = {} if hpke_keys is None else {"hpke_keys": hpke_keys}
    register_dev_enclave(
        stack.owner, stack.gatekeeper, stack.registry.address, enclave, jobs, simulated=simulated, ttl=ttl, **extra
    )


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
    return requested_in(stack.router, receipt)


def advance_time(stack: Stack, seconds: int) -> None:
    """Move anvil's clock ``seconds`` ahead and mine a block on it."""
    stack.w3.provider.make_request("evm_increaseTime", [seconds])
    stack.w3.provider.make_request("evm_mine", [])


def router_as(stack: Stack, client: ChainClient) -> Contract:
    return client.contract("Router", stack.router.address)


def failed_callbacks(stack: Stack, receipt) -> dict[bytes, int]:
    """Request id -> gas used, for each of the Router's ``CallbackFailed`` events in ``receipt``."""
    return client_failed_callbacks(stack.router, receipt)


def consumer_gas(stack: Stack, receipt, consumer: str) -> int:
    """The gas used inside ``receipt``'s calls into ``consumer`` (callTracer): its own code, not the CALL."""
    tx_hash = receipt["transactionHash"].to_0x_hex()
    trace = stack.w3.provider.make_request("debug_traceTransaction", [tx_hash, {"tracer": "callTracer"}])["result"]
    return frame_gas(trace, consumer)


def packed_call(stack: Stack, body: bytes) -> RawCall:
    """``Router.fulfillPacked`` with ``body`` (:func:`verifier.protocol.pack_fulfillment`) after its selector."""
    return fulfill_packed_call(stack.w3, stack.router.address, body)


def assert_reverts_with(call, sender: str, signature: str, *, gas: int | None = None, arguments: bytes = b"") -> None:
    """``call`` reverts with the custom error ``signature``, e.g. ``UnauthorizedSigner(bytes32,address)``, whose
    ABI-encoded arguments start with ``arguments``; ``gas`` is the call's gas limit (default: the node's)."""
    selector = "0x" + (keccak256(signature.encode())[:4] + arguments).hex()
    with pytest.raises((ContractCustomError, ContractLogicError)) as info:
        call.call({"from": sender, **({"gas": gas} if gas is not None else {})})
    data = getattr(info.value, "data", None) or str(info.value)
    assert str(data).startswith(selector), f"expected {signature} ({selector}), got {data!r}"


class QuietJsonHandler(BaseHTTPRequestHandler):
    """A base for test servers' handlers: :meth:`send_json` answers, and nothing is logged."""

    def send_json(self, body: bytes, status: int = 200, content_type: str | None = "application/json") -> None:
        """Answer ``status`` with ``body`` (already encoded) and its length."""
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def send_echo_requests(local: LocalStack, count: int) -> list[bytes]:
    """Send ``count`` echo requests through the local stack's ExampleConsumer (ttl 600 s); their request ids."""
    user = ChainClient(local.anvil.rpc_url, USER_KEY)
    router = user.contract("Router", local.deployment.router)
    consumer = user.contract("ExampleConsumer", local.deployment.consumer)
    ids = []
    for i in range(count):
        receipt = user.send(consumer.functions.send(ECHO_JOB, plain(i.to_bytes(4, "big")), 100_000, 600))
        ids.append(requested_in(router, receipt)[0].request_id)
    return ids


@contextmanager
def extra_coprocessor(local: LocalStack, name: str) -> Iterator[str]:
    """Another real coprocessor beside the stack's (its own data dir ``name``, so its own keys), not registered;
    yields its URL and stops it on exit."""
    assert local.workdir is not None
    child = Child(
        name,
        python_module("coprocessor", "--data-dir", str(local.workdir / name), "--port", "0"),
        local.workdir / f"{name}.log",
    ).start()
    try:
        yield child.wait_for_url()
    finally:
        child.stop()


@contextmanager
def registered_enclave(local: LocalStack, name: str) -> Iterator[tuple[str, str]]:
    """:func:`extra_coprocessor`, registered by the stack's gatekeeper; yields (URL, signer)."""
    assert local.gatekeeper is not None
    with extra_coprocessor(local, name) as url:
        registered = local.gatekeeper.check(url)
        assert registered.outcome is Outcome.REGISTERED and registered.signer != local.registration.signer
        yield url, str(registered.signer)


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


@contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``handler`` on ``host`` (a loopback address; a free port, in a thread) and yield its base URL,
    ``http://127.0.0.1:<port>`` (``http://[::1]:<port>`` for an IPv6 host)."""
    server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
    server = server_class((host, 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        yield f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
