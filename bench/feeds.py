"""Price feed figures: gas of push updates (single and batched) and of same-transaction verification, and
the time from a price move at the (replayed) exchanges to the new on-chain round.

``python -m bench.feeds`` (about 20 s) prints Markdown tables and writes ``bench/results/feeds.json``.
``tests/test_price_feed.py`` asserts upper bounds on :func:`measure_feed_gas`, the same code.
"""

from __future__ import annotations

import statistics
import sys
import time
from decimal import Decimal
from typing import Any

from bench.harness import Chain, environment, register, write_json
from bench.latency import nearest_rank
from relayer.chain import ChainClient
from teebridge.anvil import Anvil
from teebridge.stack import USER_KEY, LocalStack
from teebridge.testkit import DevEnclave
from verifier.price_report import PRICE_JOB_ID, PriceReport, feed_id, sign_price_report

DECIMALS = 8
#: RedStone's published gas for verifying one feed with one signer in the consumer's own call.
REDSTONE_ONE_FEED_ONE_SIGNER = 55_353


def measure_feed_gas(rpc_url: str) -> dict[str, int | float]:
    """Deploy five feeds, a batcher and a pull consumer on a fresh deployment; return gas figures."""
    chain = Chain.deploy(rpc_url)
    enclave = DevEnclave.fixed(7)
    register(chain, enclave, (PRICE_JOB_ID,), simulated=False)
    registry = chain.deployment.registry
    now = chain.w3.eth.get_block("latest")["timestamp"]

    def signed(pair: str, answer: int, observed_at: int):
        report = PriceReport(feed_id(pair), answer, DECIMALS, observed_at, 5, enclave.measurement)
        return sign_price_report(report, enclave.key, enclave.address, chain.deployment.chain_id, registry)

    pairs = [f"T{i}/USD" for i in range(5)]
    feeds = [chain.owner.deploy("PriceFeed", registry, feed_id(p), DECIMALS, 3, 3600, p)[0] for p in pairs]
    relayer = chain.relayer
    first = [
        relayer.send(
            relayer.contract("PriceFeed", f.address).functions.update(*signed(p, 1000 * 10**8, now - 50).call_args())
        )
        for p, f in zip(pairs, feeds, strict=True)
    ]
    later = relayer.send(
        relayer.contract("PriceFeed", feeds[0].address).functions.update(
            *signed(pairs[0], 1001 * 10**8, now - 49).call_args()
        )
    )
    batcher, _ = chain.owner.deploy("PriceFeedBatcher")

    def per_feed(n: int, when: int) -> float:
        items = [
            (f.address, *signed(p, 1002 * 10**8, when).call_args()) for p, f in zip(pairs[:n], feeds[:n], strict=True)
        ]
        receipt = relayer.send(relayer.contract("PriceFeedBatcher", batcher.address).functions.updateMany(items))
        return receipt["gasUsed"] / n

    batch2, batch5 = per_feed(2, now - 48), per_feed(5, now - 47)
    consumer, _ = chain.owner.deploy("PullPriceConsumer", registry, feed_id("ETH/USD"), DECIMALS, 60)
    pull = chain.user.contract("PullPriceConsumer", consumer.address)
    chain.user.send(pull.functions.swap(*signed("ETH/USD", 1, now).call_args()))  # warm: the price slot exists
    unverified = chain.user.send(pull.functions.swapUnverified(*signed("ETH/USD", 2, now).call_args()))
    verified = chain.user.send(pull.functions.swap(*signed("ETH/USD", 3, now).call_args()))
    return {
        "update_first_round": first[-1]["gasUsed"],
        "update": later["gasUsed"],
        "batch2_per_feed": round(batch2),
        "batch5_per_feed": round(batch5),
        "pull_swap_total": verified["gasUsed"],
        "pull_swap_unverified": unverified["gasUsed"],
        "pull_verification": verified["gasUsed"] - unverified["gasUsed"],
    }


def measure_price_move_latency(moves: int = 12, interval: float = 1.0) -> dict[str, Any]:
    """Seconds from moving ETH/USD at the replay server (by 3 %, alternating) to the feed's new round."""
    samples: list[float] = []
    with LocalStack(with_feeds=True, with_relayer=False, feed_interval=interval) as stack:
        assert stack.price_replay is not None
        feed = ChainClient(stack.anvil.rpc_url, USER_KEY).contract("PriceFeed", stack.deployment.feeds["ETH/USD"])
        while feed.functions.latestRound().call() == 0:
            time.sleep(0.05)
        for i in range(moves):
            target = Decimal(3000) * (Decimal("1.03") if i % 2 == 0 else Decimal(1))
            stack.price_replay.set_price("ETH/USD", target)
            t0 = time.monotonic()
            while feed.functions.latestRoundData().call()[1] != int(target * 10**DECIMALS):
                if time.monotonic() - t0 > 30:
                    raise RuntimeError("the feed did not follow the price within 30 s")
                time.sleep(0.02)
            samples.append(time.monotonic() - t0)
    return {
        "moves": moves,
        "pusher_interval_s": interval,
        "p50_s": round(statistics.median(samples), 3),
        "p90_s": round(nearest_rank(samples, 0.9), 3),
        "max_s": round(max(samples), 3),
        "samples_s": [round(s, 3) for s in samples],
    }


def main() -> int:
    """Run both measurements, print them and write the JSON."""
    with Anvil() as node:
        gas = measure_feed_gas(node.rpc_url)
        env = environment(node.rpc_url)
    latency = measure_price_move_latency()
    print("| feed operation | gas |\n|---|---:|")
    for key, value in gas.items():
        print(f"| {key} | {value:,} |")
    print(f"\nRedStone, one feed, one signer (published): {REDSTONE_ONE_FEED_ONE_SIGNER:,}")
    print(
        f"\nprice move -> on-chain round ({latency['moves']} moves, pusher every {latency['pusher_interval_s']} s): "
        f"p50 {latency['p50_s']} s, p90 {latency['p90_s']} s, max {latency['max_s']} s"
    )
    path = write_json(
        "feeds.json",
        {
            "environment": env,
            "gas": gas,
            "redstone_published": REDSTONE_ONE_FEED_ONE_SIGNER,
            "price_move_latency": latency,
        },
    )
    print(f"  - wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
