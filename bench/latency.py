"""End-to-end latency on the local stack: request transaction sent -> ``Fulfilled`` event seen.

Run ``python -m bench.latency``. Starts one :class:`teebridge.stack.LocalStack` (anvil with automine, the
coprocessor with simulated attestation, one relayer, each in its own process), then sends ``--n`` sequential
confidential credit-score requests (HPKE-encrypted to the registered enclave key, as ``teebridge demo``
does) and ``--n`` plain echo requests through the ExampleConsumer. For each it records:

* ``seconds``: wall clock from just before the request transaction is signed and sent to the first poll
  that sees the Router's ``Fulfilled`` event for it (the client polls ``eth_getLogs`` every 10 ms);
* ``minedSeconds``: the part of that until the request's receipt came back;
* ``blocks``: the fulfilment's block number minus the request's.

The relayer polls the chain every ``relayer_poll_interval`` seconds (LocalStack's default unless
``--poll-interval`` is given), which dominates the figure. A request sent the moment the previous answer
arrives lands just after a relayer poll and waits almost a full interval, so each request is preceded by
a random pause in [0, poll interval) to sample the relayer's phase uniformly (``--no-jitter`` turns it off).
One warm-up request of each kind is sent first and not counted. Writes ``bench/results/latency.json``.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import eth_abi

from bench.harness import CREDIT_SCORE_JOB, ECHO_JOB, environment, pseudo_random_bytes, write_json
from coprocessor.ai.builtin import BUILTIN_MODEL_HASH
from relayer.chain import ChainClient
from teebridge.client import build_input, failed_callbacks, live_enclave_keys, send_via_consumer
from teebridge.stack import USER_KEY, LocalStack
from verifier.envelope import plain
from verifier.protocol import Status, job_id

CREDIT_SCORE_INPUT_TYPES = ["uint256", "uint256", "uint16", "uint16"]
AI_CLASSIFY_TYPES = ["bytes32", "string", "string[]"]
AI_EMBED_TYPES = ["bytes32", "string", "uint8"]
APPLICANT = [85_000, 22_000, 1, 52]
FEE = 10**15
CLIENT_POLL = 0.01
TIMEOUT = 30.0
DEFAULT_POLL_INTERVAL = next(f.default for f in fields(LocalStack) if f.name == "relayer_poll_interval")


def nearest_rank(values: list[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..1): a value that was actually observed."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [s["seconds"] for s in samples]
    mined = [s["minedSeconds"] for s in samples]
    blocks = [s["blocks"] for s in samples]
    return {
        "n": len(samples),
        "seconds": {
            "p50": round(nearest_rank(seconds, 0.5), 3),
            "p90": round(nearest_rank(seconds, 0.9), 3),
            "max": round(max(seconds), 3),
            "min": round(min(seconds), 3),
            "mean": round(statistics.fmean(seconds), 3),
        },
        "minedSeconds": {"p50": round(nearest_rank(mined, 0.5), 3), "max": round(max(mined), 3)},
        "blocks": {"p50": nearest_rank(blocks, 0.5), "p90": nearest_rank(blocks, 0.9), "max": max(blocks)},
    }


class LatencyBench:
    def __init__(self, stack: LocalStack) -> None:
        d = stack.deployment
        self.deployment = d
        self.user = ChainClient(stack.anvil.rpc_url, USER_KEY)
        self.router = self.user.contract("Router", d.router)
        self.consumer = self.user.contract("ExampleConsumer", d.consumer)
        registry = self.user.contract("EnclaveRegistry", d.registry)
        (self.enclave_key, *_) = live_enclave_keys(registry, CREDIT_SCORE_JOB, from_block=d.deploy_block)
        ai_keys = live_enclave_keys(registry, job_id("ai.embed", 1), from_block=d.deploy_block)
        self.ai_key = ai_keys[0] if ai_keys else None
        self._seed = 0

    def credit_score_envelope(self) -> bytes:
        d = self.deployment
        payload = eth_abi.encode(CREDIT_SCORE_INPUT_TYPES, APPLICANT)
        return build_input(
            payload,
            encrypt_to=self.enclave_key,
            chain_id=d.chain_id,
            router=d.router,
            requester=d.consumer,
            job_id=CREDIT_SCORE_JOB,
        )

    def classify_envelope(self) -> bytes:
        """ai.classify@1 with the built-in MiniLM and two labels, plain."""
        self._seed += 1
        text = f"I love this product, order {self._seed} arrived early"
        return plain(eth_abi.encode(AI_CLASSIFY_TYPES, [BUILTIN_MODEL_HASH, text, ["positive", "negative"]]))

    def embed_envelope(self) -> bytes:
        """ai.embed@1 with the built-in MiniLM, int8 vector, the text HPKE-encrypted to the enclave."""
        self._seed += 1
        d = self.deployment
        payload = eth_abi.encode(AI_EMBED_TYPES, [BUILTIN_MODEL_HASH, f"confidential note number {self._seed}", 0])
        job = job_id("ai.embed", 1)
        ai_key = self.ai_key or self.enclave_key
        return build_input(
            payload, encrypt_to=ai_key, chain_id=d.chain_id, router=d.router, requester=d.consumer, job_id=job
        )

    def echo_envelope(self) -> bytes:
        self._seed += 1
        return plain(pseudo_random_bytes(31, self._seed))

    def one(self, job: bytes, envelope: bytes, gas: int = 300_000) -> dict[str, Any]:
        """Send one request and wait for its Fulfilled event."""
        t0 = time.perf_counter()
        sent = send_via_consumer(self.user, self.consumer, self.router, job, envelope, fee=FEE, callback_gas_limit=gas)
        mined = time.perf_counter() - t0
        deadline = t0 + TIMEOUT
        event_filter = {"requestId": sent.request_id}
        while True:
            logs = self.router.events.Fulfilled().get_logs(from_block=sent.block_number, argument_filters=event_filter)
            if logs:
                seconds = time.perf_counter() - t0
                break
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no fulfilment for 0x{sent.request_id.hex()} within {TIMEOUT}s")
            time.sleep(CLIENT_POLL)
        args = logs[0]["args"]
        receipt = self.router.w3.eth.get_transaction_receipt(logs[0]["transactionHash"])
        failed = failed_callbacks(self.router, receipt).get(sent.request_id)
        if args["status"] != Status.OK or failed is not None:
            raise RuntimeError(
                f"request 0x{sent.request_id.hex()} answered with {dict(args)}; failed callback used {failed} gas"
            )
        return {
            "seconds": round(seconds, 4),
            "minedSeconds": round(mined, 4),
            "blocks": logs[0]["blockNumber"] - sent.block_number,
            "requestBlock": sent.block_number,
            "fulfilBlock": logs[0]["blockNumber"],
        }

    def run(self, n: int, say: Callable[[str], None], jitter: float) -> dict[str, list[dict[str, Any]]]:
        """``n`` requests of each kind, one at a time, each after a random pause in [0, jitter) seconds."""
        rng = random.Random(20240601)
        kinds = {
            "confidential_credit_score": (CREDIT_SCORE_JOB, self.credit_score_envelope, 300_000),
            "plain_echo": (ECHO_JOB, self.echo_envelope, 300_000),
            "ai_classify": (job_id("ai.classify", 1), self.classify_envelope, 300_000),
            # ExampleConsumer stores the 576-byte result: about 0.45 M gas
            "confidential_ai_embed": (job_id("ai.embed", 1), self.embed_envelope, 1_000_000),
        }
        results: dict[str, list[dict[str, Any]]] = {}
        for name, (job, make, gas) in kinds.items():
            self.one(job, make(), gas)  # warm-up, not counted (the first ai.* request loads the model)
            samples = []
            for _ in range(n):
                time.sleep(rng.uniform(0, jitter))
                samples.append(self.one(job, make(), gas))
            results[name] = samples
            say(f"{name}: {n} requests")
        return results


def markdown(summary: dict[str, dict[str, Any]], poll_interval: float, jitter: float) -> str:
    lines = [
        f"Relayer poll interval: {poll_interval} s (LocalStack `relayer_poll_interval`); anvil automine "
        f"(one block per transaction); random pause in [0, {jitter}) s before each request.",
        "",
        "| request kind | n | p50 (s) | p90 (s) | max (s) | send -> receipt p50 (s) | blocks p50 | blocks max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    labels = {
        "confidential_credit_score": "confidential credit score (HPKE, 185 bytes)",
        "plain_echo": "plain echo",
        "ai_classify": "ai.classify, built-in MiniLM, 2 labels (plain)",
        "confidential_ai_embed": "ai.embed, built-in MiniLM, int8 vector (HPKE input)",
    }
    for name, s in summary.items():
        sec, blocks = s["seconds"], s["blocks"]
        lines.append(
            f"| {labels[name]} | {s['n']} | {sec['p50']:.3f} | {sec['p90']:.3f} | {sec['max']:.3f} | "
            f"{s['minedSeconds']['p50']:.3f} | {blocks['p50']} | {blocks['max']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="requests of each kind (default 20)")
    parser.add_argument("--poll-interval", type=float, default=DEFAULT_POLL_INTERVAL, help="relayer poll interval")
    parser.add_argument(
        "--no-jitter", action="store_true", help="send each request as soon as the previous one is answered"
    )
    parser.add_argument("--no-write", action="store_true", help="print only; do not write bench/results/latency.json")
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        print(f"  - {message}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    with LocalStack(relayer_poll_interval=args.poll_interval, progress=say) as stack:
        say(f"stack up in {time.perf_counter() - started:.1f}s")
        env = environment(stack.anvil.rpc_url)
        jitter = 0.0 if args.no_jitter else args.poll_interval
        results = LatencyBench(stack).run(args.n, say, jitter)
    summary = {name: summarize(samples) for name, samples in results.items()}
    table = markdown(summary, args.poll_interval, jitter)
    print(table)
    if not args.no_write:
        doc = {
            "environment": env,
            "settings": {
                "n": args.n,
                "relayerPollInterval": args.poll_interval,
                "clientPollInterval": CLIENT_POLL,
                "pauseBeforeEachRequest": f"uniform random in [0, {jitter}) s",
                "fee": FEE,
                "anvil": "automine (LocalStack default)",
                "percentiles": "nearest rank",
            },
            "summary": summary,
            "samples": results,
            "markdown": table,
        }
        say(f"wrote {write_json('latency.json', doc)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
