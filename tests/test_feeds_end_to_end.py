"""Push feeds on real processes: replayed exchanges -> enclave price reports -> feed pusher -> PriceFeed."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
from web3.contract import Contract

from relayer.chain import ChainClient
from relayer.coprocessor_client import CoprocessorClient
from relayer.feed_pusher import FeedPusher
from teebridge.stack import FEEDER_KEY, USER_KEY, LocalStack


@pytest.fixture(scope="module")
def local() -> Iterator[LocalStack]:
    with LocalStack(with_feeds=True, with_relayer=False, feed_interval=0.5) as stack:
        yield stack


def feeds(stack: LocalStack) -> dict[str, Contract]:
    client = ChainClient(stack.anvil.rpc_url, USER_KEY)
    return {pair: client.contract("PriceFeed", address) for pair, address in stack.deployment.feeds.items()}


def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def answer(feed: Contract) -> int:
    return feed.functions.latestRoundData().call()[1]


def test_first_rounds_then_moves_past_the_threshold_are_pushed(local: LocalStack) -> None:
    eth = feeds(local)["ETH/USD"]
    until(lambda: eth.functions.latestRound().call() >= 1)
    assert answer(eth) == 3000 * 10**8
    local.price_replay.set_price("ETH/USD", Decimal("3100"))
    until(lambda: answer(eth) == 3100 * 10**8)
    rounds = eth.functions.latestRound().call()
    local.price_replay.set_price("ETH/USD", Decimal("3101"))  # 3.2 bps: below the 50 bps threshold
    time.sleep(2.5)
    assert eth.functions.latestRound().call() == rounds and answer(eth) == 3100 * 10**8


def test_a_quorum_failure_means_no_update_rather_than_a_bad_one(local: LocalStack) -> None:
    eth = feeds(local)["ETH/USD"]
    until(lambda: eth.functions.latestRound().call() >= 1)
    before = answer(eth)
    for source in ("coinbase", "kraken", "bitstamp"):  # 3 of 5 sources broken: 2 left, quorum is 3
        local.price_replay.set_mode(source, "garbage")
    try:
        local.price_replay.set_price("ETH/USD", Decimal("5000"))
        time.sleep(2.5)
        assert answer(eth) == before
    finally:
        for source in ("coinbase", "kraken", "bitstamp"):
            local.price_replay.set_mode(source, "ok")
    until(lambda: answer(eth) == 5000 * 10**8)


def test_feeds_due_together_go_in_one_transaction(local: LocalStack) -> None:
    """Both feeds moved before one pass: that pass pushes them in a single updateMany. The background pusher is
    paused (SIGSTOP) so the pass is ours and the two moves are certainly seen together."""
    eth, btc = feeds(local)["ETH/USD"], feeds(local)["BTC/USD"]
    until(lambda: btc.functions.latestRound().call() >= 1 and eth.functions.latestRound().call() >= 1)
    assert local.feeder is not None
    os.kill(local.feeder.pid, signal.SIGSTOP)
    time.sleep(1.1)  # observation times have 1 s resolution: the next reports must be strictly newer
    try:
        pusher = FeedPusher(
            ChainClient(local.anvil.rpc_url, FEEDER_KEY),
            CoprocessorClient(local.coprocessor_url),
            local.deployment.registry,
            [],
            record=local.record,
        )
        local.price_replay.set_price("ETH/USD", Decimal("2000"))
        local.price_replay.set_price("BTC/USD", Decimal("80000"))
        start = eth.w3.eth.block_number + 1
        outcomes = pusher.tick()
    finally:
        os.kill(local.feeder.pid, signal.SIGCONT)
    assert [o.pushed for o in outcomes] == [True, True], outcomes
    assert (answer(eth), answer(btc)) == (2000 * 10**8, 80000 * 10**8)
    eth_blocks = {e["blockNumber"] for e in eth.events.AnswerUpdated().get_logs(from_block=start)}
    btc_blocks = {e["blockNumber"] for e in btc.events.AnswerUpdated().get_logs(from_block=start)}
    assert eth_blocks == btc_blocks and len(eth_blocks) == 1, "both updates landed in one batched transaction"


def test_changing_the_deviation_threshold_reaches_the_running_pusher(local: LocalStack) -> None:
    from teebridge.cli import main as teebridge

    eth = feeds(local)["ETH/USD"]
    until(lambda: eth.functions.latestRound().call() >= 1)
    local.price_replay.set_price("ETH/USD", Decimal("3000"))
    until(lambda: answer(eth) == 3000 * 10**8)
    record = str(local.record)
    assert teebridge(["feeds", "set", "ETH/USD", "--deviation-bps", "1000", "--deployment", record]) == 0
    time.sleep(1.0)  # let the pusher re-read the record
    local.price_replay.set_price("ETH/USD", Decimal("3090"))  # +3 %: under the new 10 % threshold
    time.sleep(2.5)
    assert answer(eth) == 3000 * 10**8
    assert teebridge(["feeds", "set", "ETH/USD", "--deviation-bps", "50", "--deployment", record]) == 0
    until(lambda: answer(eth) == 3090 * 10**8)


def test_heartbeat_pushes_an_unchanged_price_before_it_goes_stale(local: LocalStack) -> None:
    # Keep this test last: it moves the chain's clock 3300 s ahead of the wall clock for the module.
    btc = feeds(local)["BTC/USD"]
    until(lambda: btc.functions.latestRound().call() >= 1)
    rounds = btc.functions.latestRound().call()
    btc.w3.provider.make_request("evm_increaseTime", [3300])  # 3300 s of a 3600 s heartbeat: inside the margin
    btc.w3.provider.make_request("evm_mine", [])
    until(lambda: btc.functions.latestRound().call() > rounds)
    btc.functions.latestRoundDataChecked().call()  # fresh again: the guard does not revert
