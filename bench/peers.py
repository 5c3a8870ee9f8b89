"""The peers' own contracts from npm, measured on the same anvil as teebridge with the same trivial callback.

Nothing of the peers is committed. At run time each package is fetched from the npm registry with
``npm pack <name>@<version>`` into ``.teebridge/peers/`` (git-ignored), the tarball's SHA-512 is checked
against the registry's ``dist.integrity`` (``npm view``) before it is unpacked, and the contracts are
compiled with solcjs of the version their pragma asks for (the project's pinned 0.8.28 where the pragma
allows it; otherwise ``solc@<version>`` from npm into a scratch directory). Versions and integrity hashes go
into ``bench/results/gas.json``. This is for the benchmark only; tests never reach the network.

The consumers (below, as Solidity text compiled beside the peers' sources) do what teebridge's
``TrivialConsumer`` does: one 32-byte store to a fresh slot per answer.

* **API3** (``@api3/airnode-protocol``, ``AirnodeRrpV0``): a ``RrpRequesterV0`` that sponsors itself calls
  ``makeFullRequest`` with 64 bytes of parameters; an EOA (the sponsor wallet) calls ``fulfill`` with a
  32-byte answer signed by the Airnode key (EIP-191 over ``keccak256(requestId, data)``).
* **RedStone** (``@redstone-finance/evm-connector``): a ``RedstoneConsumerNumericBase`` consumer whose
  ``store`` reads one feed value from the RedStone payload appended to its calldata (one data package, one
  data point, signed by an authorised key; unique-signer threshold 1, like teebridge's single enclave
  signature; 3 signers is recorded beside it) and stores it. RedStone has no request step: ``request`` is
  null, ``fulfill`` is the whole ``store`` transaction and ``fulfill_overhead`` is that minus the execution
  of the same store without verification (``storeUnverified``).
* **Chainlink Functions** (``@chainlink/contracts``): see :func:`measure_chainlink`.

Definitions (also written to the JSON): ``fulfill_overhead`` is the fulfilment transaction's ``gasUsed``
minus the gas used inside the consumer's callback frame (callTracer), so the CALL into the consumer counts
as overhead.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import statistics
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import eth_abi
from coincurve import PrivateKey
from eth_account import Account
from eth_account.messages import encode_defunct
from web3 import Web3
from web3.logs import DISCARD

from bench.harness import frame_gas as trace_frame_gas
from relayer.chain import ChainClient
from teebridge.anvil import DEV_KEYS
from teebridge.tools import REPO_ROOT, find_solcjs

CACHE = REPO_ROOT / ".teebridge" / "peers"
PROJECT_SOLC = "0.8.28"
OPTIMIZER = {"enabled": True, "runs": 10_000}
REPEATS = 5
FULFILL_SELECTOR = Web3.keccak(text="fulfill(bytes32,bytes)")[:4]
PARAMETERS_BYTES = 64  # the request's input, as for teebridge

DEFINITIONS: dict[str, str] = {
    "request": "gasUsed of the transaction in which the consumer contract asks for a result (64-byte input)",
    "fulfill": "gasUsed of the transaction that delivers a 32-byte result to the consumer, whose callback stores "
    "it in one fresh slot",
    "fulfill_overhead": "fulfill minus the gas used inside the consumer's callback frame (callTracer); for RedStone,"
    " whose verification runs inside the consumer's own call, fulfill minus the execution gas of the same store "
    "without verification",
    "batchN_per_item": "gasUsed of Router.fulfillBatch with N items divided by N",
    "batchN_overhead_per_item": "(gasUsed - gas inside the consumer's callback frames) / N",
    "medians": f"every figure is the median of {REPEATS} fresh transactions (2 for the 50-item batch)",
}


@dataclass(frozen=True)
class Package:
    """An npm package of a peer."""

    name: str
    version: str

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"


API3 = Package("@api3/airnode-protocol", "0.15.0")
OZ_FOR_API3 = Package("@openzeppelin/contracts", "4.4.2")  # the exact version @api3/airnode-protocol depends on
REDSTONE = Package("@redstone-finance/evm-connector", "0.9.0")
OZ_FOR_REDSTONE = Package("@openzeppelin/contracts", "4.9.6")  # within its "^4.8.1"
CHAINLINK = Package("@chainlink/contracts", "1.5.0")


# ------------------------------------------------------------------ fetching and compiling


def _npm(*args: str, cwd: Path | None = None) -> str:
    out = subprocess.run(
        ["npm", *args, "--loglevel=error"], cwd=cwd, capture_output=True, text=True, check=False, timeout=300
    )
    if out.returncode != 0:
        raise RuntimeError(f"npm {' '.join(args)} failed: {out.stderr.strip()[:500]}")
    return out.stdout


def fetch(package: Package) -> tuple[Path, str]:
    """``npm pack`` the package, check its SHA-512 against the registry's ``dist.integrity``, unpack it.

    Returns (the unpacked ``package/`` directory, the integrity string). A cached, already checked copy is
    reused.
    """
    target = CACHE / package.spec.replace("/", "__")
    marker = target / ".integrity"
    if marker.exists():
        return target / "package", marker.read_text().strip()
    expected = json.loads(_npm("view", package.spec, "dist.integrity", "--json"))
    with tempfile.TemporaryDirectory() as scratch:
        packed = json.loads(_npm("pack", package.spec, "--json", "--pack-destination", scratch, cwd=Path(scratch)))
        tarball = Path(scratch) / packed[0]["filename"]
        actual = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
        if actual != expected:
            raise RuntimeError(f"{package.spec}: tarball {actual} does not match the registry's {expected}")
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        with tarfile.open(tarball) as tar:
            tar.extractall(target, filter="data")
    marker.write_text(expected + "\n")
    return target / "package", expected


def solcjs(version: str) -> str:
    """A solcjs of ``version``: the project's pinned one, or ``solc@<version>`` from npm in a scratch directory."""
    if version == PROJECT_SOLC:
        return find_solcjs()
    prefix = CACHE / f"solc-{version}"
    binary = prefix / "node_modules" / ".bin" / "solcjs"
    if not binary.exists():
        prefix.mkdir(parents=True, exist_ok=True)
        _npm("install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(prefix), f"solc@{version}")
    return str(binary)


IMPORT = re.compile(r'^\s*import\s+(?:[^"\']*from\s+)?["\']([^"\']+)["\']', re.MULTILINE)


def gather(entries: dict[str, str], remappings: dict[str, Path]) -> dict[str, str]:
    """Source units for solc: ``entries`` (name -> text) and every file they import, transitively.

    ``remappings`` maps an import prefix (e.g. ``@openzeppelin/contracts/``) to a directory.
    """
    sources = dict(entries)
    todo = list(entries)
    while todo:
        name = todo.pop()
        for imported in IMPORT.findall(sources[name]):
            if imported.startswith("."):
                resolved = str(Path(name).parent.joinpath(imported)).replace("\\", "/")
                parts: list[str] = []
                for part in resolved.split("/"):
                    if part == "..":
                        parts.pop()
                    elif part != ".":
                        parts.append(part)
                resolved = "/".join(parts)
            else:
                resolved = imported
            if resolved in sources:
                continue
            for prefix, directory in remappings.items():
                if resolved.startswith(prefix):
                    sources[resolved] = (directory / resolved[len(prefix) :]).read_text()
                    todo.append(resolved)
                    break
            else:
                raise RuntimeError(f"cannot resolve import {imported!r} in {name}")
    return sources


def compile_sources(sources: dict[str, str], version: str, evm_version: str | None = None) -> dict[str, Any]:
    """Compile with solcjs ``version`` (standard JSON); return ``{contract name: {"abi", "bytecode"}}``."""
    settings: dict[str, Any] = {
        "optimizer": OPTIMIZER,
        "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
    }
    if evm_version:
        settings["evmVersion"] = evm_version
    std = {"language": "Solidity", "sources": {k: {"content": v} for k, v in sources.items()}, "settings": settings}
    with tempfile.TemporaryFile("w+") as source, tempfile.TemporaryFile("w+") as out:
        source.write(json.dumps(std))
        source.seek(0)
        proc = subprocess.run(
            [solcjs(version), "--standard-json"], stdin=source, stdout=out, stderr=subprocess.PIPE, text=True
        )
        out.seek(0)
        text = out.read()
    start = text.find("{")
    if proc.returncode != 0 or start < 0:
        raise RuntimeError(f"solcjs {version} failed: {proc.stderr[:1000] or text[:1000]}")
    output = json.loads(text[start:])
    errors = [e["formattedMessage"] for e in output.get("errors", []) if e["severity"] == "error"]
    if errors:
        raise RuntimeError(f"solcjs {version}: " + "\n".join(errors)[:3000])
    found: dict[str, Any] = {}
    for contracts in output["contracts"].values():
        for name, data in contracts.items():
            if data["evm"]["bytecode"]["object"]:
                found[name] = {"abi": data["abi"], "bytecode": "0x" + data["evm"]["bytecode"]["object"]}
    return found


def deploy(client: ChainClient, artifact: dict[str, Any], *args: Any) -> Any:
    """Deploy a compiled contract from ``client``'s account; return the web3 contract."""
    factory = client.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = client.send(factory.constructor(*args))
    return client.w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])


# ------------------------------------------------------------------ gas helpers


def frame_gas(w3: Web3, tx_hash: Any, callee: str) -> int:
    """Gas used inside CALL frames into ``callee`` (callTracer)."""
    response = w3.provider.make_request("debug_traceTransaction", [Web3.to_hex(tx_hash), {"tracer": "callTracer"}])
    return trace_frame_gas(response["result"], callee)


def intrinsic(w3: Web3, tx_hash: Any) -> int:
    """21,000 + EIP-2028 calldata gas of a mined transaction."""
    data = bytes(w3.eth.get_transaction(tx_hash)["input"])
    zeros = data.count(0)
    return 21_000 + 4 * zeros + 16 * (len(data) - zeros)


def med(values: list[int]) -> int:
    return int(statistics.median(values))


def _rand(n: int, seed: int) -> bytes:
    return hashlib.shake_256(b"teebridge peers %d" % seed).digest(n).replace(b"\x00", b"\x01")


# ------------------------------------------------------------------ API3


API3_CONSUMER = """// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.9;

import "@api3/airnode-protocol/contracts/rrp/requesters/RrpRequesterV0.sol";

/// Benchmark requester: makeFullRequest with the caller's parameters; the callback stores one word.
contract BenchApi3Requester is RrpRequesterV0 {
    mapping(bytes32 => bytes32) public results;

    constructor(address rrp) RrpRequesterV0(rrp) {}

    function makeRequest(address airnode, bytes32 endpointId, address sponsorWallet, bytes calldata parameters)
        external
        returns (bytes32)
    {
        return airnodeRrp.makeFullRequest(
            airnode, endpointId, address(this), sponsorWallet, address(this), this.fulfill.selector, parameters
        );
    }

    function fulfill(bytes32 requestId, bytes calldata data) external onlyAirnodeRrp {
        results[requestId] = bytes32(data[:32]);
    }
}
"""


def measure_api3(rpc_url: str, say: Callable[[str], None]) -> tuple[dict[str, int], dict[str, Any]]:
    """``makeFullRequest`` through a self-sponsored requester and ``fulfill`` from the sponsor wallet."""
    api3_dir, api3_integrity = fetch(API3)
    oz_dir, oz_integrity = fetch(OZ_FOR_API3)
    pragma = re.search(r"pragma solidity\s+([0-9.]+);", (api3_dir / "contracts/rrp/AirnodeRrpV0.sol").read_text())
    version = pragma.group(1) if pragma else PROJECT_SOLC
    say(f"API3: compiling AirnodeRrpV0 with solcjs {version}")
    sources = gather(
        {
            "@api3/airnode-protocol/contracts/rrp/AirnodeRrpV0.sol": (
                api3_dir / "contracts/rrp/AirnodeRrpV0.sol"
            ).read_text(),
            "BenchApi3Requester.sol": API3_CONSUMER,
        },
        {"@api3/airnode-protocol/": api3_dir, "@openzeppelin/contracts/": oz_dir / ""},
    )
    built = compile_sources(sources, version)
    owner = ChainClient(rpc_url, DEV_KEYS[0])
    wallet = ChainClient(rpc_url, DEV_KEYS[2])  # the sponsor wallet: Airnode sends fulfil from it
    airnode_key = PrivateKey(hashlib.sha256(b"bench api3 airnode").digest())
    airnode = Account.from_key(airnode_key.secret)
    rrp = deploy(owner, built["AirnodeRrpV0"])
    requester = deploy(owner, built["BenchApi3Requester"], rrp.address)
    endpoint = Web3.keccak(text="bench endpoint")
    w3 = owner.w3
    requests, fulfils, callbacks = [], [], []
    for i in range(REPEATS + 1):
        receipt = owner.send(
            requester.functions.makeRequest(airnode.address, endpoint, wallet.address, _rand(PARAMETERS_BYTES, i))
        )
        (event,) = rrp.events.MadeFullRequest().process_receipt(receipt)
        request_id = event["args"]["requestId"]
        data = eth_abi.encode(["bytes32"], [_rand(32, 1000 + i)])
        message = encode_defunct(Web3.keccak(request_id + data))
        signature = Account.sign_message(message, airnode.key).signature
        call = rrp.functions.fulfill(request_id, airnode.address, requester.address, FULFILL_SELECTOR, data, signature)
        done = wallet.send(call)
        if not rrp.events.FulfilledRequest().process_receipt(done):
            raise RuntimeError("API3 fulfil did not reach the requester")
        if requester.functions.results(request_id).call() != data[:32]:
            raise RuntimeError("API3 requester did not store the answer")
        if i == 0:
            continue  # the first request makes the requester's request count non-zero: not steady state
        requests.append(receipt["gasUsed"])
        fulfils.append(done["gasUsed"])
        callbacks.append(frame_gas(w3, done["transactionHash"], requester.address))
    figures = {
        "request": med(requests),
        "fulfill": med(fulfils),
        "fulfill_overhead": med([f - c for f, c in zip(fulfils, callbacks, strict=True)]),
    }
    detail = {
        "packages": {API3.spec: api3_integrity, OZ_FOR_API3.spec: oz_integrity},
        "solc": version,
        "contract": "AirnodeRrpV0 (contracts/rrp/AirnodeRrpV0.sol)",
        "consumerCallbackGas": med(callbacks),
        "samples": {"request": requests, "fulfill": fulfils},
        "method": "self-sponsored RrpRequesterV0 calls makeFullRequest (64-byte parameters); the sponsor wallet "
        "(an EOA) calls fulfill with a 32-byte answer signed by the Airnode key (1 signature)",
    }
    return figures, detail


# ------------------------------------------------------------------ RedStone


REDSTONE_CONSUMER = """// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.17;

import "@redstone-finance/evm-connector/contracts/core/RedstoneConsumerNumericBase.sol";
import "@redstone-finance/evm-connector/contracts/mocks/AuthorisedMockSignersBase.sol";

/// Benchmark consumer: verify one feed value from the appended RedStone payload and store it.
contract BenchRedstoneConsumer is RedstoneConsumerNumericBase, AuthorisedMockSignersBase {
    uint8 private immutable threshold;
    mapping(bytes32 => bytes32) public results;

    constructor(uint8 threshold_) {
        threshold = threshold_;
    }

    function getUniqueSignersThreshold() public view override returns (uint8) {
        return threshold;
    }

    function getAuthorisedSignerIndex(address signer) public view override returns (uint8) {
        return getAllMockAuthorised(signer);
    }

    function store(bytes32 key, bytes32 feedId) external {
        results[key] = bytes32(getOracleNumericValueFromTxMsg(feedId));
    }

    function storeUnverified(bytes32 key, bytes32 value) external {
        results[key] = value;
    }
}
"""
REDSTONE_MARKER = bytes.fromhex("000002ed57011e0000")


def redstone_payload(feed_id: bytes, value: int, timestamp_ms: int, keys: list[str]) -> bytes:
    """A RedStone payload: one data package per key, each with one 32-byte data point, then the trailer."""
    packages = b""
    for key in keys:
        signable = feed_id + value.to_bytes(32, "big") + timestamp_ms.to_bytes(6, "big")
        signable += (32).to_bytes(4, "big") + (1).to_bytes(3, "big")
        rec = PrivateKey(bytes.fromhex(key.removeprefix("0x"))).sign_recoverable(Web3.keccak(signable), hasher=None)
        packages += signable + rec[:64] + bytes([rec[64] + 27])
    return packages + len(keys).to_bytes(2, "big") + (0).to_bytes(3, "big") + REDSTONE_MARKER


def measure_redstone(rpc_url: str, say: Callable[[str], None]) -> tuple[dict[str, int | None], dict[str, Any]]:
    """One feed value verified from the payload and stored, with 1 signer (and with 3 for the record)."""
    rs_dir, rs_integrity = fetch(REDSTONE)
    oz_dir, oz_integrity = fetch(OZ_FOR_REDSTONE)
    say(f"RedStone: compiling RedstoneConsumerNumericBase with solcjs {PROJECT_SOLC}")
    sources = gather(
        {"BenchRedstoneConsumer.sol": REDSTONE_CONSUMER},
        {"@redstone-finance/evm-connector/": rs_dir, "@openzeppelin/contracts/": oz_dir},
    )
    built = compile_sources(sources, PROJECT_SOLC, "cancun")
    owner = ChainClient(rpc_url, DEV_KEYS[0])
    w3 = owner.w3
    feed = Web3.to_bytes(text="ETH").ljust(32, b"\x00")
    by_signers: dict[int, dict[str, int]] = {}
    for signers in (1, 3):
        consumer = deploy(owner, built["BenchRedstoneConsumer"], signers)
        verified, plain_exec = [], []
        for i in range(REPEATS + 1):
            timestamp_ms = w3.eth.get_block("latest")["timestamp"] * 1000
            key = _rand(32, 2000 + i)
            call = consumer.functions.store(key, feed).build_transaction(
                {"from": owner.address, "gas": 500_000, "chainId": owner.chain_id}
            )
            value = 2_000 * 10**8 + i
            call["data"] = Web3.to_hex(
                bytes.fromhex(call["data"][2:]) + redstone_payload(feed, value, timestamp_ms, list(DEV_KEYS[:signers]))
            )
            call["nonce"] = w3.eth.get_transaction_count(owner.address, "pending")
            raw = owner.account.sign_transaction(call).raw_transaction
            receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(raw))
            if receipt["status"] != 1 or int.from_bytes(consumer.functions.results(key).call(), "big") != value:
                raise RuntimeError("RedStone consumer did not store the verified value")
            bare = owner.send(consumer.functions.storeUnverified(_rand(32, 3000 + i), value.to_bytes(32, "big")))
            if i == 0:
                continue
            verified.append(receipt["gasUsed"])
            plain_exec.append(bare["gasUsed"] - intrinsic(w3, bare["transactionHash"]))
        by_signers[signers] = {
            "fulfill": med(verified),
            "storeExecution": med(plain_exec),
            "fulfill_overhead": med([v - p for v, p in zip(verified, plain_exec, strict=True)]),
        }
    figures: dict[str, int | None] = {
        "request": None,
        "fulfill": by_signers[1]["fulfill"],
        "fulfill_overhead": by_signers[1]["fulfill_overhead"],
    }
    detail = {
        "packages": {REDSTONE.spec: rs_integrity, OZ_FOR_REDSTONE.spec: oz_integrity},
        "solc": PROJECT_SOLC,
        "contract": "RedstoneConsumerNumericBase.getOracleNumericValueFromTxMsg",
        "bySigners": {str(k): v for k, v in by_signers.items()},
        "method": "pull model, no request transaction: the consumer's store(key, feedId) verifies one data point "
        "(1 data package, 32-byte value, unique-signer threshold 1) from the payload appended to its calldata "
        "and stores it; overhead = fulfill - execution of storeUnverified (the same store without verification)",
    }
    return figures, detail


# ------------------------------------------------------------------ Chainlink Functions


CHAINLINK_CONSUMER = """// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.19;

import {FunctionsClient} from "@chainlink/contracts/src/v0.8/functions/v1_0_0/FunctionsClient.sol";

/// Benchmark Functions client: sends the caller's request bytes; the callback stores one word.
contract BenchFunctionsConsumer is FunctionsClient {
    mapping(bytes32 => bytes32) public results;

    constructor(address router) FunctionsClient(router) {}

    function send(bytes calldata data, uint64 subscriptionId, uint32 gasLimit, bytes32 donId)
        external
        returns (bytes32)
    {
        return _sendRequest(data, subscriptionId, gasLimit, donId);
    }

    function fulfillRequest(bytes32 requestId, bytes memory response, bytes memory) internal override {
        results[requestId] = bytes32(response);
    }
}
"""
CL_FUNCTIONS = "@chainlink/contracts/src/v0.8/functions/"
CL_ENTRIES = (
    CL_FUNCTIONS + "v1_0_0/FunctionsRouter.sol",
    CL_FUNCTIONS + "v1_3_0/FunctionsCoordinator.sol",
    "@chainlink/contracts/src/v0.8/shared/token/ERC677/LinkToken.sol",
    "@chainlink/contracts/src/v0.8/shared/mocks/MockV3Aggregator.sol",
)
OZ_FOR_CHAINLINK = Package("@openzeppelin/contracts", "4.8.3")  # imported as @openzeppelin/contracts@4.8.3/
COMMITMENT_TYPES = "(bytes32,address,uint96,address,uint64,uint32,uint72,uint72,uint40,uint40,uint32)"
OCR_ORACLES, OCR_F = 5, 1  # OCR2Base wants (n + f) / 2 + 1 = 4 signatures on a report


def measure_chainlink(rpc_url: str, say: Callable[[str], None]) -> tuple[dict[str, int | None], dict[str, Any]]:
    """Chainlink Functions v1.3.0: FunctionsRouter (v1_0_0) + FunctionsCoordinator (v1_3_0, OCR2) on anvil.

    LINK is ``LinkToken`` and the LINK/ETH and LINK/USD feeds are ``MockV3Aggregator`` from the same package; a
    funded subscription; the DON is 5 oracles with f = 1, so ``transmit`` carries a report signed by 4 of
    them (OCR2Base checks exactly ``(n + f) / 2 + 1`` signatures). ``request`` is the client's
    ``_sendRequest`` (64 bytes of request data: the router does not parse the CBOR) through the router to the
    coordinator; ``fulfill`` is ``transmit`` from a transmitter with one 32-byte result.
    """
    cl_dir, cl_integrity = fetch(CHAINLINK)
    oz_dir, oz_integrity = fetch(OZ_FOR_CHAINLINK)
    say(f"Chainlink Functions: compiling FunctionsRouter, FunctionsCoordinator with solcjs {PROJECT_SOLC}")
    entries = {name: (cl_dir / name.removeprefix("@chainlink/contracts/")).read_text() for name in CL_ENTRIES}
    entries["BenchFunctionsConsumer.sol"] = CHAINLINK_CONSUMER
    sources = gather(entries, {"@chainlink/contracts/": cl_dir, "@openzeppelin/contracts@4.8.3/": oz_dir})
    built = compile_sources(sources, PROJECT_SOLC, "cancun")
    owner = ChainClient(rpc_url, DEV_KEYS[0])
    transmitter = ChainClient(rpc_url, DEV_KEYS[2])
    w3 = owner.w3
    link = deploy(owner, built["LinkToken"])
    owner.send(link.functions.grantMintRole(owner.address))
    owner.send(link.functions.mint(owner.address, 10**24))
    link_native = deploy(owner, built["MockV3Aggregator"], 18, 4 * 10**15)
    link_usd = deploy(owner, built["MockV3Aggregator"], 8, 15 * 10**8)
    handle = Web3.keccak(text="handleOracleFulfillment(bytes32,bytes,bytes)")[:4]
    router = deploy(owner, built["FunctionsRouter"], link.address, (100, 0, handle, 5000, [300_000, 500_000], 0, 0))
    billing = (0, 86_400, 44_615, 44_615, 10**9, 1, 15 * 10**8, 8, 4 * 10**15, 300, 0, 0)
    coordinator = deploy(
        owner, built["FunctionsCoordinator"], router.address, billing, link_native.address, link_usd.address
    )
    don = Web3.keccak(text="teebridge-bench-don")
    owner.send(router.functions.proposeContractsUpdate([don], [coordinator.address]))
    owner.send(router.functions.updateContracts())
    signer_keys = [hashlib.sha256(b"bench ocr signer %d" % i).digest() for i in range(OCR_ORACLES)]
    signers = [Account.from_key(k).address for k in signer_keys]
    transmitters = [transmitter.address] + [
        Account.from_key(hashlib.sha256(b"tx %d" % i).digest()).address for i in range(1, OCR_ORACLES)
    ]
    owner.send(coordinator.functions.setConfig(signers, transmitters, OCR_F, b"", 1, b""))
    config_digest = coordinator.functions.latestConfigDetails().call()[2]
    consumer = deploy(owner, built["BenchFunctionsConsumer"], router.address)
    owner.send(router.functions.createSubscription())
    sub_id = 1
    owner.send(router.functions.addConsumer(sub_id, consumer.address))
    owner.send(link.functions.transferAndCall(router.address, 1_000 * 10**18, eth_abi.encode(["uint64"], [sub_id])))
    n_signatures = (OCR_ORACLES + OCR_F) // 2 + 1
    requests, fulfils, callbacks = [], [], []
    for i in range(REPEATS + 1):
        receipt = owner.send(consumer.functions.send(_rand(PARAMETERS_BYTES, 4000 + i), sub_id, 300_000, don))
        (event,) = coordinator.events.OracleRequest().process_receipt(receipt)
        request_id, c = event["args"]["requestId"], event["args"]["commitment"]
        commitment = (
            c["requestId"],
            c["coordinator"],
            c["estimatedTotalCostJuels"],
            c["client"],
            c["subscriptionId"],
            c["callbackGasLimit"],
            c["adminFee"],
            c["donFee"],
            c["gasOverheadBeforeCallback"],
            c["gasOverheadAfterCallback"],
            c["timeoutTimestamp"],
        )
        answer = _rand(32, 5000 + i)
        report = eth_abi.encode(
            ["bytes32[]", "bytes[]", "bytes[]", "bytes[]", "bytes[]"],
            [[request_id], [answer], [b""], [eth_abi.encode([COMMITMENT_TYPES], [commitment])], [b""]],
        )
        context = [config_digest, (i + 1).to_bytes(32, "big"), bytes(32)]
        digest = Web3.keccak(Web3.keccak(report) + b"".join(context))
        rs, ss, vs = [], [], bytearray(32)
        for j, key in enumerate(signer_keys[:n_signatures]):
            rec = PrivateKey(key).sign_recoverable(digest, hasher=None)
            rs.append(rec[:32])
            ss.append(rec[32:64])
            vs[j] = rec[64]
        # an explicit limit, as a DON sets one: eth_estimateGas finds the least gas that does not revert, and
        # with too little the router records INSUFFICIENT_GAS_PROVIDED instead of reverting
        done = transmitter.send(coordinator.functions.transmit(context, report, rs, ss, bytes(vs)), gas=1_500_000)
        if consumer.functions.results(request_id).call() != answer:
            processed = router.events.RequestProcessed().process_receipt(done, errors=DISCARD)
            outcome = [dict(e["args"]) for e in processed] or f"no RequestProcessed event; logs {done['logs']}"
            raise RuntimeError(f"Chainlink Functions consumer did not store the answer: {outcome}")
        if i == 0:
            continue  # first request and report on fresh contracts: not steady state
        requests.append(receipt["gasUsed"])
        fulfils.append(done["gasUsed"])
        callbacks.append(frame_gas(w3, done["transactionHash"], consumer.address))
    figures: dict[str, int | None] = {
        "request": med(requests),
        "fulfill": med(fulfils),
        "fulfill_overhead": med([f - c for f, c in zip(fulfils, callbacks, strict=True)]),
    }
    detail = {
        "packages": {CHAINLINK.spec: cl_integrity, OZ_FOR_CHAINLINK.spec: oz_integrity},
        "solc": PROJECT_SOLC,
        "contract": "functions/v1_0_0/FunctionsRouter + functions/v1_3_0/FunctionsCoordinator (OCR2Base.transmit)",
        "ocr": {"oracles": OCR_ORACLES, "f": OCR_F, "signaturesPerReport": n_signatures},
        "consumerCallbackGas": med(callbacks),
        "samples": {"request": requests, "fulfill": fulfils},
        "method": f"FunctionsClient._sendRequest with 64 bytes of request data through FunctionsRouter to "
        f"FunctionsCoordinator (funded subscription, mock LINK feeds); transmit of a one-result OCR2 report signed "
        f"by {n_signatures} of {OCR_ORACLES} oracles (f = {OCR_F}) from a transmitter",
    }
    return figures, detail


# ------------------------------------------------------------------ all of them


MEASURES: dict[str, Callable[[str, Callable[[str], None]], tuple[dict[str, Any], dict[str, Any]]]] = {
    "api3-airnode-rrp": measure_api3,
    "chainlink-functions": measure_chainlink,
    "redstone": measure_redstone,
}


def measure_all(
    rpc_url: str, say: Callable[[str], None]
) -> tuple[dict[str, dict[str, Any] | None], dict[str, str], dict[str, Any]]:
    """Measure every peer on the anvil at ``rpc_url``; return (figures or None, notes, versions and details).

    A peer that fails is recorded as None with the reason in its note; the others still run.
    """
    figures: dict[str, dict[str, Any] | None] = {}
    notes: dict[str, str] = {}
    versions: dict[str, Any] = {}
    for system, measure in MEASURES.items():
        try:
            result, detail = measure(rpc_url, say)
        except Exception as exc:  # a peer that cannot be built or run is recorded, not fatal
            say(f"{system}: not measured: {exc}")
            figures[system] = None
            notes[system] = f"null: {exc}"
            continue
        figures[system] = result
        notes[system] = detail["method"]
        versions[system] = {k: v for k, v in detail.items() if k != "method"}
    return figures, notes, versions


def markdown(teebridge: dict[str, int], figures: dict[str, Any], notes: dict[str, str]) -> str:
    """The side-by-side table."""

    def cell(value: Any) -> str:
        return "n/a" if value is None else f"{value:,}"

    lines = [
        "| system | request | fulfill | fulfill overhead |",
        "|---|---:|---:|---:|",
        f"| teebridge | {cell(teebridge['request'])} | {cell(teebridge['fulfill'])} | "
        f"{cell(teebridge['fulfill_overhead'])} |",
    ]
    for system in MEASURES:
        entry = figures.get(system) or {}
        lines.append(
            f"| {system} | {cell(entry.get('request'))} | {cell(entry.get('fulfill'))} | "
            f"{cell(entry.get('fulfill_overhead'))} |"
        )
    for system, note in notes.items():
        if figures.get(system) is None:
            lines.append(f"\n{system}: {note}")
    return "\n".join(lines)
