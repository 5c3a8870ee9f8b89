"""Sustained throughput and end-to-end latency of the whole local stack, and the signing rate per core.

Run ``python -m bench.e2e`` (``make bench`` runs it). One :class:`teebridge.stack.LocalStack` (anvil, the
coprocessor with simulated attestation, one relayer, each its own process) on this machine; the relayer is
started with ``--max-batch`` (default 256) so it fulfils in ``fulfillBatch`` transactions. After deployment
anvil switches from automine to interval mining (``--block-time``, default 1 s), so that many transactions
share a block as on a real chain and "latency in blocks" means something.

Load: ``--senders`` dev accounts (not the stack's own) send plain ``echo@1`` requests with a 32-byte payload
through a :file:`contracts/test/TrivialConsumer.sol` (its callback stores one 32-byte word). All request
transactions are signed before the clock starts (the load generator's signing is not the stack's work),
then broadcast at ``--rate`` requests per second (default 100; 0: as fast as one thread per sender can) for
``--duration`` seconds (at least 60). The bench then waits until every request is settled or
``--drain`` seconds pass.

Options for high rates (see BENCHMARKS.md, "The pipelined relayer"): ``--per-tx N`` makes each load transaction
carry N real requests (:file:`contracts/test/LoadConsumer.sol`, ``sendMany``: each request goes through
``Router.request`` on its own), so the Python load generator is not the limit; ``--gas-limit`` sets anvil's block gas
limit (the default 30,000,000 holds about 320 requests and their fulfilments a second, and the base fee climbs
above half of it); ``--relayer-accounts`` gives the relayer several submitter accounts.

Every figure comes from the chain: the ``Requested`` logs of the consumer's requests, and the Router's
``Fulfilled`` and ``FulfillmentSkipped`` logs. A watcher thread polls ``eth_blockNumber`` every 10 ms and
records the wall clock at which each block was first seen, which gives inclusion times in seconds.

* ``requests``: requests included on chain; ``lost``: those with no ``Fulfilled`` event by the end;
  ``duplicated``: ``Fulfilled`` events beyond the first for one request id (the Router makes a second delivery
  impossible, so any non-zero figure is a bug); ``FulfillmentSkipped`` events are counted apart.
* ``throughput_rps``: fulfilled requests divided by ``duration_s``, the time from the first request's block to
  the last fulfilment's block (so the drain is included: a stack that falls behind is not flattered).
* ``p50_latency_blocks``: median of fulfilment block minus request block; ``p99_latency_s``: 99th percentile
  (nearest rank) of the time between the two blocks being first seen.
* ``sign_rate_per_core``: :func:`bench.sign.measure` (one pinned core, the real signing path), run before the
  stack starts.

Writes ``bench/results/e2e.json`` (schema in :mod:`bench.schema`).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import eth_abi
import httpx
from eth_account import Account
from web3 import Web3

from bench import sign
from bench.harness import ECHO_JOB, environment, write_json
from bench.schema import e2e_document
from contracts.artifacts import load_artifact
from relayer.chain import ChainClient
from relayer.events import EventDecoder
from teebridge.processes import RELAYER_READY
from teebridge.stack import OWNER_KEY, RELAYER_KEY, LocalStack
from verifier.envelope import plain

DEFAULT_DURATION = 60.0
DEFAULT_BLOCK_TIME = 1
DEFAULT_MAX_BATCH = 256
DEFAULT_SENDERS = 4
DEFAULT_RATE = 100.0
HEADLINE_ARGS = (
    *("--rate", "1100", "--per-tx", "10", "--duration", "100", "--gas-limit", "300000000"),
    *("--relayer-accounts", "4", "--poll-interval", "0.1", "--drain", "180", "--max-batch", "1024"),
)
"""The settings of the figure in ``e2e.json`` and BENCHMARKS.md (issue 6's load test: 110,000 requests, 100 s),
which ``python -m bench`` (``make bench``) uses; ``python -m bench.e2e`` alone uses the defaults."""
CALLBACK_GAS = 60_000
TTL = 3600
REQUEST_GAS = 200_000
SEND_SELECTOR = Web3.keccak(text="send(bytes32,bytes,uint32,uint64)")[:4]
SEND_MANY_SELECTOR = Web3.keccak(text="sendMany(bytes32,bytes[],uint32,uint64)")[:4]
#: Gas of one transaction carrying ``n`` requests (``LoadConsumer.sendMany``): generous, the unused part is refunded.
REQUEST_GAS_PER_ITEM = 90_000
#: The Router's events, decoded from the committed artifact's ABI (never hard-coded topics or layouts).
ROUTER_ABI = load_artifact("Router").abi
REQUESTED = EventDecoder(ROUTER_ABI, "Requested")
FULFILLED = EventDecoder(ROUTER_ABI, "Fulfilled")
SKIPPED = EventDecoder(ROUTER_ABI, "FulfillmentSkipped")
CALLBACK_FAILED = EventDecoder(ROUTER_ABI, "CallbackFailed")
MAX_SENDERS = 16
MAX_RELAYER_ACCOUNTS = 16
#: The load comes from accounts of its own (funded with ``anvil_setBalance``), not the stack's dev accounts.
SENDER_KEYS = tuple(
    "0x" + Web3.keccak(text=f"teebridge bench e2e sender {i}").hex().removeprefix("0x") for i in range(MAX_SENDERS)
)
#: Extra submitter accounts of the relayer (``--relayer-accounts``), after the stack's own relayer key.
RELAYER_EXTRA_KEYS = tuple(
    "0x" + Web3.keccak(text=f"teebridge bench e2e relayer {i}").hex().removeprefix("0x")
    for i in range(MAX_RELAYER_ACCOUNTS - 1)
)


def nearest_rank(values: list[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class BlockClock(threading.Thread):
    """Record the wall clock (``time.monotonic``) at which each block number is first seen."""

    def __init__(self, rpc_url: str, interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.rpc_url = rpc_url
        self.interval = interval
        self.seen: dict[int, float] = {}
        self._halt = threading.Event()
        self._last = -1

    def run(self) -> None:
        with httpx.Client(timeout=5) as http:
            while not self._halt.is_set():
                try:
                    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
                    number = int(http.post(self.rpc_url, json=body).json()["result"], 16)
                except (httpx.HTTPError, KeyError, ValueError):
                    number = self._last
                now = time.monotonic()
                for n in range(self._last + 1, number + 1):
                    self.seen[n] = now
                self._last = max(self._last, number)
                self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def _rpc(http: httpx.Client, url: str, method: str, params: list[Any]) -> Any:
    response = http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).json()
    if "error" in response:
        raise RuntimeError(f"{method}: {response['error']}")
    return response["result"]


def presign(
    rpc_url: str, consumer: str, keys: tuple[str, ...], per_sender: int, chain_id: int, per_tx: int = 1
) -> list[list[str]]:
    """``per_sender`` signed transactions per key, as raw hex, in nonce order: ``TrivialConsumer.send`` (one
    request each) when ``per_tx`` is 1, else ``LoadConsumer.sendMany`` with ``per_tx`` requests each."""
    w3 = Web3(Web3.HTTPProvider(rpc_url))
    base_fee = w3.eth.get_block("latest")["baseFeePerGas"]
    out: list[list[str]] = []
    for k, key in enumerate(keys):
        account = Account.from_key(key)
        nonce = w3.eth.get_transaction_count(account.address, "pending")
        raws = []
        for i in range(per_sender):
            payloads = [(k * 10**9 + i * per_tx + j).to_bytes(32, "big") for j in range(per_tx)]
            if per_tx == 1:
                data = SEND_SELECTOR + eth_abi.encode(
                    ["bytes32", "bytes", "uint32", "uint64"], [ECHO_JOB, plain(payloads[0]), CALLBACK_GAS, TTL]
                )
            else:
                data = SEND_MANY_SELECTOR + eth_abi.encode(
                    ["bytes32", "bytes[]", "uint32", "uint64"],
                    [ECHO_JOB, [plain(p) for p in payloads], CALLBACK_GAS, TTL],
                )
            tx = {
                "to": consumer,
                "data": data,
                "value": 0,
                "gas": REQUEST_GAS if per_tx == 1 else REQUEST_GAS_PER_ITEM * per_tx + 100_000,
                "maxFeePerGas": base_fee * 4 + 10**9,
                "maxPriorityFeePerGas": 10**9,
                "nonce": nonce + i,
                "chainId": chain_id,
                "type": 2,
            }
            raws.append("0x" + account.sign_transaction(tx).raw_transaction.hex().removeprefix("0x"))
        out.append(raws)
    return out


def broadcast(rpc_url: str, raws: list[list[str]], rate: float, duration: float) -> tuple[int, float]:
    """Send the transactions, one thread per sender, paced to ``rate`` in total (0: unpaced), for ``duration`` s.

    Returns (transactions sent, seconds spent sending).
    """
    sent = [0] * len(raws)
    start = time.monotonic()
    per_thread = rate / len(raws) if rate > 0 else 0.0

    def worker(index: int) -> None:
        with httpx.Client(timeout=30) as http:
            for i, raw in enumerate(raws[index]):
                now = time.monotonic()
                if now - start >= duration:
                    break
                if per_thread:
                    due = start + i / per_thread
                    if due > now:
                        time.sleep(due - now)
                _rpc(http, rpc_url, "eth_sendRawTransaction", [raw])
                sent[index] += 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(raws))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(sent), time.monotonic() - start


class E2EBench:
    """The load run on one LocalStack."""

    def __init__(self, stack: LocalStack, say: Callable[[str], None], per_tx: int = 1) -> None:
        self.stack = stack
        self.say = say
        self.per_tx = per_tx
        self.rpc_url = stack.anvil.rpc_url
        owner = ChainClient(self.rpc_url, OWNER_KEY)
        consumer, _ = owner.deploy("TrivialConsumer" if per_tx == 1 else "LoadConsumer", stack.deployment.router)
        self.consumer = consumer.address
        self.router = owner.contract("Router", stack.deployment.router)
        self.chain_id = owner.chain_id
        self._next_block = owner.w3.eth.block_number + 1
        self._requested: dict[bytes, int] = {}
        self._fulfilled: dict[bytes, list[int]] = {}
        self._skipped: list[bytes] = []
        self._failed_callbacks: set[bytes] = set()
        """Requests fulfilled with a non-zero status or a failed callback (a set: a request can have both)."""

    def run(
        self, *, senders: int, rate: float, duration: float, drain: float, block_time: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Load, wait, count; return (the E2E_KEYS figures except the sign rate, detail)."""
        capacity = rate * duration if rate > 0 else 1_000 * duration  # upper bound on what can be sent
        per_sender = math.ceil(capacity / senders / self.per_tx)
        self.say(
            f"pre-signing {per_sender} transactions ({self.per_tx} request(s) each) for each of {senders} senders ..."
        )
        keys = SENDER_KEYS[:senders]
        with httpx.Client(timeout=10) as http:
            for key in keys:
                _rpc(http, self.rpc_url, "anvil_setBalance", [Account.from_key(key).address, hex(10**24)])
        raws = presign(self.rpc_url, self.consumer, keys, per_sender, self.chain_id, self.per_tx)
        with httpx.Client(timeout=10) as http:
            _rpc(http, self.rpc_url, "evm_setAutomine", [False])
            _rpc(http, self.rpc_url, "evm_setIntervalMining", [int(block_time)])
        clock = BlockClock(self.rpc_url)
        clock.start()
        self.say(f"sending for {duration:.0f} s at {'max' if rate <= 0 else rate} requests/s ...")
        n_tx, send_s = broadcast(self.rpc_url, raws, rate / self.per_tx, duration)
        n_sent = n_tx * self.per_tx
        self.say(
            f"sent {n_sent} requests in {n_tx} transactions in {send_s:.1f} s;"
            f" waiting for the stack to settle them (at most {drain:.0f} s)"
        )
        deadline = time.monotonic() + drain
        while time.monotonic() < deadline:
            time.sleep(2.0)
            requested, fulfilled, _ = self._collect()
            pending = len(set(requested) - set(fulfilled))
            self.say(f"  requested {len(requested)}, fulfilled {len(fulfilled)}, pending {pending}")
            if len(requested) >= n_sent and not pending:
                break
        time.sleep(2 * block_time + 0.1)
        requested, fulfilled, skipped = self._collect()
        clock.stop()
        return self._figures(requested, fulfilled, skipped, clock.seen, n_sent, send_s)

    def _collect(self) -> tuple[dict[bytes, int], dict[bytes, list[int]], list[bytes]]:
        """Request id -> request block; request id -> fulfilment blocks; skipped request ids (all from logs).

        Incremental and undecoded (raw ``eth_getLogs`` topics), so watching the chain costs the stack little CPU.
        """
        with httpx.Client(timeout=60) as http:
            head = int(_rpc(http, self.rpc_url, "eth_blockNumber", []), 16)
            if head >= self._next_block:
                logs = _rpc(
                    http,
                    self.rpc_url,
                    "eth_getLogs",
                    [
                        {
                            "address": self.router.address,
                            "fromBlock": hex(self._next_block),
                            "toBlock": hex(head),
                            "topics": [
                                [REQUESTED.topic_hex, FULFILLED.topic_hex, SKIPPED.topic_hex, CALLBACK_FAILED.topic_hex]
                            ],
                        }
                    ],
                )
                for log in logs:
                    block = int(log["blockNumber"], 16)
                    if REQUESTED.matches(log):
                        args = REQUESTED.decode(log)
                        if args["requester"].lower() == self.consumer.lower():
                            self._requested[bytes(args["requestId"])] = block
                    elif FULFILLED.matches(log):
                        args = FULFILLED.decode(log)
                        self._fulfilled.setdefault(bytes(args["requestId"]), []).append(block)
                        if args["status"] != 0:
                            self._failed_callbacks.add(bytes(args["requestId"]))
                    elif CALLBACK_FAILED.matches(log):
                        self._failed_callbacks.add(bytes(CALLBACK_FAILED.decode(log)["requestId"]))
                    else:
                        self._skipped.append(bytes(SKIPPED.decode(log)["requestId"]))
                self._next_block = head + 1
        return self._requested, self._fulfilled, self._skipped

    def _figures(
        self,
        requested: dict[bytes, int],
        fulfilled: dict[bytes, list[int]],
        skipped: list[bytes],
        seen: dict[int, float],
        n_sent: int,
        send_s: float,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        done = {rid: blocks[0] for rid, blocks in fulfilled.items() if rid in requested}
        block_lat = [done[rid] - requested[rid] for rid in done]
        sec_lat = [
            seen[done[rid]] - seen[requested[rid]] for rid in done if done[rid] in seen and requested[rid] in seen
        ]
        first = min(seen[b] for b in requested.values() if b in seen)
        last = max(seen[b] for b in done.values() if b in seen)
        duration = last - first
        blocks = sorted(set(requested.values()) | set(done.values()))
        figures = {
            "p50_latency_blocks": int(nearest_rank(block_lat, 0.5)),
            "p99_latency_s": round(nearest_rank(sec_lat, 0.99), 3),
            "throughput_rps": round(len(done) / duration, 1),
            "duration_s": round(duration, 1),
            "requests": len(requested),
            "lost": len(set(requested) - set(done)),
            "duplicated": sum(len(b) - 1 for rid, b in fulfilled.items() if rid in requested),
        }
        detail = {
            "fulfilled": len(done),
            "fulfillmentSkipped": len(skipped),
            "fulfilledWithFailedCallbackOrStatus": len(self._failed_callbacks),
            "transactionsBroadcast": n_sent,
            "sendSeconds": round(send_s, 1),
            "offeredRps": round(n_sent / send_s, 1) if send_s else None,
            "latencyBlocks": {
                "p50": nearest_rank(block_lat, 0.5),
                "p90": nearest_rank(block_lat, 0.9),
                "p99": nearest_rank(block_lat, 0.99),
                "max": max(block_lat),
            },
            "latencySeconds": {
                "p50": round(nearest_rank(sec_lat, 0.5), 3),
                "p90": round(nearest_rank(sec_lat, 0.9), 3),
                "p99": round(nearest_rank(sec_lat, 0.99), 3),
                "max": round(max(sec_lat), 3),
                "mean": round(statistics.fmean(sec_lat), 3),
            },
            "blocksSpanned": blocks[-1] - blocks[0] + 1 if blocks else 0,
        }
        return figures, detail


def markdown(doc: dict[str, Any]) -> str:
    d = doc["detail"]
    return "\n".join(
        [
            "| figure | value |",
            "|---|---:|",
            f"| requests included | {doc['requests']:,} |",
            f"| fulfilled | {d['fulfilled']:,} |",
            f"| lost / duplicated / skipped | {doc['lost']} / {doc['duplicated']} / {d['fulfillmentSkipped']} |",
            f"| duration (first request block -> last fulfilment block) | {doc['duration_s']} s |",
            f"| throughput | {doc['throughput_rps']} requests/s |",
            f"| offered load | {d['offeredRps']} requests/s |",
            f"| latency p50 / p99 (blocks) | {d['latencyBlocks']['p50']} / {d['latencyBlocks']['p99']} |",
            f"| latency p50 / p99 (s) | {d['latencySeconds']['p50']} / {d['latencySeconds']['p99']} |",
            f"| signing rate, one core | {doc['sign_rate_per_core']:,.0f} signatures/s |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION, help="seconds of load (default 60)")
    parser.add_argument(
        "--rate", type=float, default=DEFAULT_RATE, help="offered requests/s in total (0: as fast as possible)"
    )
    parser.add_argument("--senders", type=int, default=DEFAULT_SENDERS, help=f"accounts (at most {len(SENDER_KEYS)})")
    parser.add_argument("--block-time", type=int, default=DEFAULT_BLOCK_TIME, help="anvil interval mining, whole s")
    parser.add_argument(
        "--max-batch",
        type=int,
        default=DEFAULT_MAX_BATCH,
        help="relayer --max-batch; the coprocessor's max_batch is raised to match when larger than its default",
    )
    parser.add_argument("--poll-interval", type=float, default=0.2, help="relayer poll interval, s")
    parser.add_argument("--drain", type=float, default=120.0, help="most seconds to wait for the backlog")
    parser.add_argument(
        "--per-tx",
        type=int,
        default=1,
        help="requests per load transaction (1: TrivialConsumer.send; more: LoadConsumer.sendMany, default 1)",
    )
    parser.add_argument(
        "--gas-limit", type=int, default=None, help="anvil's block gas limit (default: anvil's own, 30,000,000)"
    )
    parser.add_argument(
        "--relayer-accounts",
        type=int,
        default=1,
        help=f"submitter accounts of the relayer (at most {MAX_RELAYER_ACCOUNTS}, default 1)",
    )
    parser.add_argument("--sign-seconds", type=float, default=sign.DEFAULT_SECONDS)
    parser.add_argument("--no-write", action="store_true", help="print only; do not write bench/results/e2e.json")
    args = parser.parse_args(argv)
    if not 1 <= args.senders <= len(SENDER_KEYS):
        parser.error(f"--senders must be 1..{len(SENDER_KEYS)}")
    if not 1 <= args.relayer_accounts <= MAX_RELAYER_ACCOUNTS:
        parser.error(f"--relayer-accounts must be 1..{MAX_RELAYER_ACCOUNTS}")
    if args.per_tx < 1:
        parser.error("--per-tx must be at least 1")

    def say(message: str) -> None:
        print(f"  - {message}", file=sys.stderr, flush=True)

    say("signing rate on one core ...")
    signing = sign.measure(args.sign_seconds)
    say(f"{signing['signaturesPerSecond']:,.0f} signed fulfilments/s on one core")
    anvil_args = ("--gas-limit", str(args.gas_limit)) if args.gas_limit else ()
    coprocessor_max_batch = max(args.max_batch, DEFAULT_MAX_BATCH)
    os.environ["TEEBRIDGE_COPROCESSOR_MAX_BATCH"] = str(coprocessor_max_batch)  # the stack's processes inherit it
    relayer_keys = (RELAYER_KEY, *RELAYER_EXTRA_KEYS[: args.relayer_accounts - 1])
    with LocalStack(
        relayer_poll_interval=args.poll_interval, with_relayer=False, progress=say, anvil_args=anvil_args
    ) as stack:
        with httpx.Client(timeout=10) as http:
            for key in relayer_keys[1:]:
                _rpc(http, stack.anvil.rpc_url, "anvil_setBalance", [Account.from_key(key).address, hex(10**24)])
        stack.relayer = stack.start_relayer(
            extra_args=("--max-batch", str(args.max_batch)), keys=relayer_keys if len(relayer_keys) > 1 else ()
        )
        stack.relayer.wait_for_line(RELAYER_READY, after=stack.relayer.log_offset)
        env = environment(stack.anvil.rpc_url)
        figures, detail = E2EBench(stack, say, per_tx=args.per_tx).run(
            senders=args.senders,
            rate=args.rate,
            duration=args.duration,
            drain=args.drain,
            block_time=args.block_time,
        )
    figures["sign_rate_per_core"] = float(signing["signaturesPerSecond"])
    doc = e2e_document(
        figures,
        versions={"anvil": env["anvil"], "python": env["python"], "solc": env["solc"]},
        extra={
            "settings": {
                "durationOfLoad": args.duration,
                "offeredRate": args.rate or "as fast as possible",
                "senders": args.senders,
                "blockTime": args.block_time,
                "relayerMaxBatch": args.max_batch,
                "coprocessorMaxBatch": coprocessor_max_batch,
                "relayerPollInterval": args.poll_interval,
                "relayerAccounts": args.relayer_accounts,
                "requestsPerTransaction": args.per_tx,
                "loadContract": "TrivialConsumer.send" if args.per_tx == 1 else "LoadConsumer.sendMany",
                "blockGasLimit": args.gas_limit or "anvil default (30,000,000)",
                "job": "echo@1, 32-byte plain payload, TrivialConsumer callback",
                "callbackGasLimit": CALLBACK_GAS,
                "percentiles": "nearest rank",
            },
            "detail": detail,
            "signing": signing,
            "environment": env,
        },
    )
    table = markdown(doc)
    print(table)
    if not args.no_write:
        say(f"wrote {write_json('e2e.json', doc)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
