"""``make demo`` / ``teebridge demo``: a confidential request, end to end, on a fresh local stack."""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

import eth_abi

from relayer.chain import ChainClient
from teebridge.client import Answer, Sent, build_input, live_enclave_keys, send_via_consumer, wait_for_answer
from teebridge.deploy import DEPLOYMENTS_DIR
from teebridge.stack import USER_KEY, LocalStack
from verifier.protocol import Status, job_id

CREDIT_SCORE_JOB = ("confidential.credit-score", 1)
CREDIT_SCORE_INPUT_TYPES = ["uint256", "uint256", "uint16", "uint16"]
#: annual income, total debt, missed payments, account age in months: private figures of one applicant.
APPLICANT = [85_000, 22_000, 1, 52]


@dataclass(frozen=True)
class DemoResult:
    """What the demo observed."""

    sent: Sent
    answer: Answer
    score: int
    seconds: float
    input_bytes: bytes
    feed_seconds: float


def run_demo(say=print) -> DemoResult:
    """Start a local stack, send one encrypted credit-score request, print and return what happened."""
    started = time.monotonic()
    stack = LocalStack(
        write_deployment=DEPLOYMENTS_DIR / "localhost.json", progress=lambda m: say(f"  - {m}"), with_feeds=True
    )
    with stack:
        d = stack.deployment
        say(
            f"stack up in {time.monotonic() - started:.1f}s: anvil {stack.anvil.rpc_url}, router {d.router}, "
            f"coprocessor {stack.coprocessor_url}"
        )
        user = ChainClient(stack.anvil.rpc_url, USER_KEY)
        router = user.contract("Router", d.router)
        registry = user.contract("EnclaveRegistry", d.registry)
        consumer = user.contract("ExampleConsumer", d.consumer)
        job = job_id(*CREDIT_SCORE_JOB)

        (key, *_) = live_enclave_keys(registry, job, from_block=d.deploy_block)
        say(f"enclave key from the registry: signer {key.signer}, HPKE key 0x{key.public_key().hex()[:16]}...")
        payload = eth_abi.encode(CREDIT_SCORE_INPUT_TYPES, APPLICANT)
        envelope = build_input(
            payload, encrypt_to=key, chain_id=d.chain_id, router=d.router, requester=d.consumer, job_id=job
        )
        say(f"applicant's figures (income, debt, missed payments, account months): {APPLICANT}")
        say(
            f"encrypted to the enclave (HPKE X25519/ChaCha20-Poly1305): {len(envelope)} bytes, "
            f"0x{envelope.hex()[:24]}..."
        )

        t0 = time.monotonic()
        sent = send_via_consumer(user, consumer, router, job, envelope, fee=10**15)
        say(f"request 0x{sent.request_id.hex()} sent in tx {sent.tx_hash} (block {sent.block_number})")
        answer = wait_for_answer(router, sent.request_id, from_block=sent.block_number, timeout=60)
        seconds = time.monotonic() - t0
        if answer.status != Status.OK:
            reason = eth_abi.decode(["string"], answer.result)[0]
            raise RuntimeError(f"the enclave answered with status {Status(answer.status).name}: {reason}")
        (score,) = eth_abi.decode(["uint16"], answer.result)
        stored = consumer.functions.answerOf(sent.request_id).call()
        say(f"fulfilled in tx {answer.tx_hash} (block {answer.block_number}) by enclave signer {answer.signer}")
        say(
            f"callback succeeded: {answer.callback_succeeded}; "
            f"consumer stored status {stored[1]}, result 0x{bytes(stored[2]).hex()}"
        )
        say(f"ANSWER: credit score {score}")
        say(f"request -> fulfilment: {seconds:.2f}s wall clock, {answer.block_number - sent.block_number} block(s)")
        feed_seconds = _show_price_feed(stack, user, say)
        say("stopping the feed pusher, relayer, coprocessor, price replay and anvil")
        return DemoResult(sent, answer, score, seconds, envelope, feed_seconds)


def _show_price_feed(stack: LocalStack, user: ChainClient, say) -> float:
    """Move ETH/USD at the (replayed) exchanges and time the on-chain feed catching up."""
    feed = user.contract("PriceFeed", stack.deployment.feeds["ETH/USD"])
    deadline = time.monotonic() + 30
    while feed.functions.latestRound().call() == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the ETH/USD feed got no first round; see the feeder log")
        time.sleep(0.1)
    before = feed.functions.latestRoundData().call()
    say(f"ETH/USD feed {feed.address}: round {before[0]} = {before[1] / 1e8:,.2f} (AggregatorV3Interface)")
    assert stack.price_replay is not None
    stack.price_replay.set_price("ETH/USD", Decimal("3090"))
    say("the exchanges now quote ETH/USD at 3,090.00 (+3 %): waiting for the feed...")
    t0 = time.monotonic()
    while feed.functions.latestRoundData().call()[1] != 3090 * 10**8:
        if time.monotonic() - t0 > 30:
            raise RuntimeError("the ETH/USD feed did not follow the price; see the feeder log")
        time.sleep(0.05)
    seconds = time.monotonic() - t0
    after = feed.functions.latestRoundData().call()
    say(f"ETH/USD feed: round {after[0]} = {after[1] / 1e8:,.2f}, {seconds:.2f}s after the price moved")
    return seconds
