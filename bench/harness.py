"""Shared benchmark plumbing: a deployed teebridge on anvil, a Python-held enclave key, gas accounting.

The enclave here is a plain secp256k1 key registered in the EnclaveRegistry (simulated attestation is
allowed on the benchmark deployment); the Router does not care where the key lives, so the gas figures
are those of a real enclave's fulfilment.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

from relayer.chain import ChainClient
from teebridge.anvil import DEV_KEYS
from teebridge.deploy import Deployment, deploy_all
from teebridge.testkit import DevEnclave, register_dev_enclave, requested_in
from teebridge.tools import REPO_ROOT, find_anvil
from verifier.protocol import Domain, Request, job_id
from verifier.suites import HpkeKeyPair, Suite, encode_key_bundle

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BUILD_INFO = REPO_ROOT / "contracts" / "artifacts" / "_build-info.json"

ECHO_JOB = job_id("echo", 1)
CREDIT_SCORE_JOB = job_id("confidential.credit-score", 1)

TX_BASE_GAS = 21_000
#: EIP-2028 calldata prices, and the EIP-7623 (Prague+) floor price per calldata token.
CALLDATA_ZERO_GAS, CALLDATA_NONZERO_GAS, CALLDATA_FLOOR_PER_TOKEN = 4, 16, 10


def pseudo_random_bytes(n: int, seed: int) -> bytes:
    """Reproducible bytes that look like ciphertext (almost no zero bytes, like most real inputs' worst case)."""
    return random.Random(seed).randbytes(n)


# ------------------------------------------------------------------ the deployment and its accounts


@dataclass
class Chain:
    """A fresh deployment on one anvil and the accounts the benchmarks use."""

    rpc_url: str
    owner: ChainClient
    gatekeeper: ChainClient
    relayer: ChainClient
    user: ChainClient
    deployment: Deployment

    @classmethod
    def deploy(cls, rpc_url: str) -> Chain:
        owner = ChainClient(rpc_url, DEV_KEYS[0])
        gatekeeper = ChainClient(rpc_url, DEV_KEYS[1])
        deployment = deploy_all(owner, gatekeeper.address, allow_simulated=True)
        return cls(
            rpc_url, owner, gatekeeper, ChainClient(rpc_url, DEV_KEYS[2]), ChainClient(rpc_url, DEV_KEYS[3]), deployment
        )

    @property
    def w3(self) -> Web3:
        return self.owner.w3

    @property
    def domain(self) -> Domain:
        return Domain(self.deployment.chain_id, self.deployment.router)

    def router(self, client: ChainClient | None = None) -> Contract:
        return (client or self.owner).contract("Router", self.deployment.router)

    def consumer(self, client: ChainClient | None = None) -> Contract:
        return (client or self.owner).contract("ExampleConsumer", self.deployment.consumer)


def register(
    chain: Chain, enclave: DevEnclave, jobs: tuple[bytes, ...], *, simulated: bool = False, ttl: int = 86_400
) -> bytes:
    """Register the enclave's signer and approve its measurement for ``jobs``; return its HPKE public key.

    ``simulated=False`` is the production path (the gatekeeper verified a hardware attestation); a simulated
    signer makes the registry read one more storage slot on every fulfilment.
    """
    hpke_public = HpkeKeyPair.generate(Suite.X25519).public_key
    register_dev_enclave(
        chain.owner,
        chain.gatekeeper,
        chain.deployment.registry,
        enclave,
        jobs,
        simulated=simulated,
        ttl=ttl,
        hpke_keys=encode_key_bundle({Suite.X25519: hpke_public}),
    )
    return hpke_public


def requested(chain: Chain, receipt: TxReceipt) -> Request:
    """The committed fields of the one request a receipt made."""
    return requested_in(chain.router(), receipt)[0]


def fulfilled_events(chain: Chain, receipt: TxReceipt) -> list[Any]:
    """The Router's ``Fulfilled`` events in ``receipt``."""
    router = chain.router()
    return [
        e for e in router.events.Fulfilled().process_receipt(receipt, errors=DISCARD) if e["address"] == router.address
    ]


# ------------------------------------------------------------------ gas accounting


@dataclass(frozen=True)
class GasBreakdown:
    """One mined transaction's gas, split into the part every EVM transaction pays and the rest."""

    gas_used: int
    calldata_bytes: int
    calldata_zero_bytes: int
    intrinsic: int
    """21,000 + calldata at 4 gas per zero byte and 16 per non-zero byte (EIP-2028)."""
    calldata_floor: int
    """EIP-7623 floor, 21,000 + 10 gas per calldata token; the receipt never shows less than this."""
    traced_execution: int | None = None
    """Gas the top-level frame executed before refunds, from a step trace (needs anvil --steps-tracing)."""
    callee_gas: int | None = None
    """Gas used inside the CALL frames to ``callee`` (callTracer), i.e. the consumer's own callback code."""

    @property
    def execution(self) -> int:
        """EVM execution net of refunds: gas used minus the intrinsic part (overstated when the floor binds)."""
        return self.gas_used - self.intrinsic

    @property
    def floor_binding(self) -> bool:
        return self.gas_used == self.calldata_floor

    def to_json(self) -> dict[str, Any]:
        doc = {
            "gasUsed": self.gas_used,
            "calldataBytes": self.calldata_bytes,
            "calldataZeroBytes": self.calldata_zero_bytes,
            "intrinsic": self.intrinsic,
            "execution": self.execution,
            "calldataFloor": self.calldata_floor,
            "floorBinding": self.floor_binding,
        }
        if self.traced_execution is not None:
            doc["tracedExecution"] = self.traced_execution
        if self.callee_gas is not None:
            doc["calleeGasUsed"] = self.callee_gas
        return doc


def _trace(chain: Chain, tx_hash: str, options: dict[str, Any]) -> Any:
    response = chain.w3.provider.make_request("debug_traceTransaction", [tx_hash, options])
    if "error" in response:
        raise RuntimeError(f"debug_traceTransaction failed: {response['error']}")
    return response["result"]


def traced_execution(chain: Chain, tx_hash: str) -> int | None:
    """Top-level execution gas before refunds, from the step trace; None if anvil runs without --steps-tracing."""
    options = {"disableStorage": True, "disableMemory": True, "disableStack": True}
    steps = [s for s in _trace(chain, tx_hash, options).get("structLogs", []) if s["depth"] == 1]
    if not steps:
        return None
    return steps[0]["gas"] - steps[-1]["gas"] + steps[-1]["gasCost"]


def callee_gas(chain: Chain, tx_hash: str, callee: str) -> int:
    """Sum of gasUsed of the CALL frames into ``callee`` (callTracer): the callee's own code, no CALL cost."""
    return frame_gas(_trace(chain, tx_hash, {"tracer": "callTracer"}), callee)


def frame_gas(trace: dict[str, Any], callee: str) -> int:
    """Sum of gasUsed of the CALL frames into ``callee`` in a callTracer ``trace``."""
    total, todo = 0, [trace]
    while todo:
        frame = todo.pop()
        for sub in frame.get("calls", []):
            if sub["type"] == "CALL" and sub["to"].lower() == callee.lower():
                total += int(sub["gasUsed"], 16)
            else:
                todo.append(sub)
    return total


def breakdown(chain: Chain, receipt: TxReceipt, *, steps: bool = False, callee: str | None = None) -> GasBreakdown:
    """Gas of a mined transaction with its intrinsic (base + calldata) part computed from its input.

    ``steps`` adds the traced execution (anvil must run with --steps-tracing); ``callee`` adds the gas used
    inside calls to that address.
    """
    tx_hash = receipt["transactionHash"].to_0x_hex()
    data = bytes(chain.w3.eth.get_transaction(tx_hash)["input"])
    zeros = data.count(0)
    nonzeros = len(data) - zeros
    tokens = zeros + 4 * nonzeros
    return GasBreakdown(
        gas_used=receipt["gasUsed"],
        calldata_bytes=len(data),
        calldata_zero_bytes=zeros,
        intrinsic=TX_BASE_GAS + CALLDATA_ZERO_GAS * zeros + CALLDATA_NONZERO_GAS * nonzeros,
        calldata_floor=TX_BASE_GAS + CALLDATA_FLOOR_PER_TOKEN * tokens,
        traced_execution=traced_execution(chain, tx_hash) if steps else None,
        callee_gas=callee_gas(chain, tx_hash, callee) if callee else None,
    )


# ------------------------------------------------------------------ environment record


def _rpc(chain_url: str, method: str) -> Any:
    import httpx

    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": []}
    return httpx.post(chain_url, json=body, timeout=10).json().get("result")


def environment(rpc_url: str | None = None) -> dict[str, Any]:
    """What produced the figures: tools, compiler settings, machine, date."""
    anvil_version = subprocess.run([find_anvil(), "--version"], capture_output=True, text=True, check=False)
    build = json.loads(BUILD_INFO.read_text())
    env: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "anvil": anvil_version.stdout.strip().splitlines()[0] if anvil_version.stdout else "unknown",
        "anvilVersionOutput": anvil_version.stdout.strip(),
        "solc": build.get("solcVersion"),
        "solcSettings": {k: build["settings"][k] for k in ("evmVersion", "optimizer") if k in build["settings"]},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": len(os.sched_getaffinity(0)),
        "command": " ".join([Path(sys.executable).name, *sys.orig_argv[1:]]),
    }
    if rpc_url:
        info = _rpc(rpc_url, "anvil_nodeInfo") or {}
        env["hardfork"] = info.get("hardFork")
        env["blockGasLimit"] = int(info.get("environment", {}).get("gasLimit", "0x0"), 16)
    return env


def write_json(name: str, doc: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / name
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path
