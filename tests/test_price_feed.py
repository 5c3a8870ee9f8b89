"""Price feeds: the push feed (PriceFeed), the batcher, and same-transaction verification (TeeBridgePrice).

Reports are signed in Python with ``verifier.price_report`` (the normative encoder), so these tests also prove
the Solidity digest matches it byte for byte. Gas figures are recorded in docs/price-feeds.md.
"""

from __future__ import annotations

import dataclasses

import pytest
from web3.contract import Contract
from web3.logs import DISCARD

from bench.feeds import measure_feed_gas
from relayer.chain import ChainClient
from teebridge.anvil import Anvil
from tests.helpers import DevEnclave, Stack, assert_reverts_with, register
from verifier.hashing import keccak256
from verifier.price_report import PRICE_JOB_ID, PriceReport, SignedPriceReport, feed_id, sign_price_report

ETH_USD = feed_id("ETH/USD")
BTC_USD = feed_id("BTC/USD")
DECIMALS = 8
HEARTBEAT = 3600
MIN_SOURCES = 3
MAX_AGE = 60

#: PriceFeed.update, gasUsed, steady state (a later round), one non-simulated signer (measured 71,130).
MAX_UPDATE = 74_700
#: PriceFeedBatcher.updateMany, gasUsed per feed, steady state (measured 2 feeds: 60,616; 5 feeds: 51,523).
MAX_BATCH_2_PER_FEED = 63_600
MAX_BATCH_5_PER_FEED = 54_100
#: PullPriceConsumer.swap, gasUsed of a transaction that verifies one report and stores the price (measured 51,081).
MAX_PULL_SWAP_TOTAL = 53_600
#: swap minus swapUnverified (the same call path without TeeBridgePrice.verify) (measured 15,322).
MAX_PULL_VERIFICATION = 16_100


def _now(stack: Stack) -> int:
    return stack.w3.eth.get_block("latest")["timestamp"]


def _advance(stack: Stack, seconds: int) -> None:
    stack.w3.provider.make_request("evm_increaseTime", [seconds])
    stack.w3.provider.make_request("evm_mine", [])


def _enclave(stack: Stack, *, simulated: bool = True) -> DevEnclave:
    enclave = DevEnclave.random()
    register(stack, enclave, jobs=(PRICE_JOB_ID,), simulated=simulated)
    return enclave


def _report(
    stack: Stack, *, feed: bytes = ETH_USD, answer: int = 3_000 * 10**8, observed_at: int | None = None, **kw: int
) -> PriceReport:
    """An ETH/USD report observed now; ``_sign`` fills in the signer's measurement."""
    fields = {"decimals": DECIMALS, "sources": 5, **kw}
    when = _now(stack) if observed_at is None else observed_at
    return PriceReport(feed, answer, fields["decimals"], when, fields["sources"], bytes(32))


def _sign(
    stack: Stack, enclave: DevEnclave, report: PriceReport, *, chain_id: int | None = None, registry: str | None = None
) -> SignedPriceReport:
    report = dataclasses.replace(report, measurement=enclave.measurement)
    return sign_price_report(
        report,
        enclave.key,
        enclave.address,
        stack.deployment.chain_id if chain_id is None else chain_id,
        registry or stack.registry.address,
    )


def _feed(stack: Stack, feed: bytes = ETH_USD, description: str = "ETH / USD") -> Contract:
    contract, _ = stack.owner.deploy(
        "PriceFeed", stack.registry.address, feed, DECIMALS, MIN_SOURCES, HEARTBEAT, description
    )
    return contract


def _as(client: ChainClient, contract: Contract, name: str) -> Contract:
    return client.contract(name, contract.address)


def _update(stack: Stack, feed: Contract, signed: SignedPriceReport):
    return stack.relayer.send(_as(stack.relayer, feed, "PriceFeed").functions.update(*signed.call_args()))


def _pull_consumer(stack: Stack) -> Contract:
    contract, _ = stack.owner.deploy("PullPriceConsumer", stack.registry.address, ETH_USD, DECIMALS, MAX_AGE)
    return contract


# ---------------------------------------------------------------------------------------------- push feed


def test_update_stores_rounds_and_reads_like_chainlink(stack: Stack) -> None:
    enclave = _enclave(stack)
    feed = _feed(stack)
    assert feed.functions.decimals().call() == DECIMALS
    assert feed.functions.description().call() == "ETH / USD"
    assert feed.functions.version().call() == 1
    assert feed.functions.latestRound().call() == 0
    assert_reverts_with(feed.functions.latestRoundData(), stack.user.address, "NoDataPresent(uint80)")
    assert_reverts_with(feed.functions.latestRoundDataChecked(), stack.user.address, "NoDataPresent(uint80)")

    t0 = _now(stack) - 100
    answers = [3_000 * 10**8, 3_010 * 10**8, -5]  # int192 answers may be negative
    for i, answer in enumerate(answers):
        receipt = _update(stack, feed, _sign(stack, enclave, _report(stack, answer=answer, observed_at=t0 + i)))
        (event,) = feed.events.AnswerUpdated().process_receipt(receipt, errors=DISCARD)
        assert event["args"] == {"current": answer, "roundId": i + 1, "updatedAt": t0 + i}
        (new_round,) = feed.events.NewRound().process_receipt(receipt, errors=DISCARD)
        assert new_round["args"]["startedBy"] == enclave.address

    assert feed.functions.latestRound().call() == 3
    assert feed.functions.latestRoundData().call() == [3, -5, t0 + 2, t0 + 2, 3]
    assert feed.functions.latestRoundDataChecked().call() == [3, -5, t0 + 2, t0 + 2, 3]
    for i, answer in enumerate(answers):
        assert feed.functions.getRoundData(i + 1).call() == [i + 1, answer, t0 + i, t0 + i, i + 1]
    for missing in (0, 4, 2**80 - 1):
        assert_reverts_with(feed.functions.getRoundData(missing), stack.user.address, "NoDataPresent(uint80)")


def test_update_rejects_bad_reports(stack: Stack) -> None:
    enclave = _enclave(stack)
    feed = _feed(stack)
    who = stack.relayer.address
    t = _now(stack) - 10
    first = _sign(stack, enclave, _report(stack, observed_at=t))
    _update(stack, feed, first)

    def rejects(signed: SignedPriceReport, error: str) -> None:
        assert_reverts_with(feed.functions.update(*signed.call_args()), who, error)

    rejects(first, "NotNewer(uint64,uint64)")  # replayed
    rejects(_sign(stack, enclave, _report(stack, observed_at=t - 1)), "NotNewer(uint64,uint64)")  # older
    rejects(_sign(stack, enclave, _report(stack, observed_at=t)), "NotNewer(uint64,uint64)")  # same time
    rejects(_sign(stack, enclave, _report(stack, feed=BTC_USD)), "WrongFeed(bytes32,bytes32)")
    rejects(_sign(stack, enclave, _report(stack, decimals=18)), "DecimalsMismatch(uint8,uint8)")
    rejects(_sign(stack, enclave, _report(stack, sources=MIN_SOURCES - 1)), "TooFewSources(uint16,uint16)")
    rejects(_sign(stack, enclave, _report(stack, observed_at=_now(stack) + 3600)), "FutureReport(uint64,uint256)")
    rejects(_sign(stack, enclave, _report(stack, answer=2**191)), "AnswerOutOfRange(int256)")
    other_chain = _sign(stack, enclave, _report(stack), chain_id=stack.deployment.chain_id + 1)
    rejects(other_chain, "UnauthorizedSigner(address)")
    other_registry = _sign(stack, enclave, _report(stack), registry=stack.router.address)
    rejects(other_registry, "UnauthorizedSigner(address)")
    stranger = DevEnclave.random()  # never registered
    rejects(_sign(stack, stranger, _report(stack)), "UnauthorizedSigner(address)")
    (args, r, vs) = _sign(stack, enclave, _report(stack)).call_args()
    high_s = bytes([vs[0] | 0x7F]) + b"\xff" * 31
    assert_reverts_with(feed.functions.update(args, r, high_s), who, "InvalidSignature()")

    fresh = _sign(stack, enclave, _report(stack))
    feed.functions.update(*fresh.call_args()).call({"from": who})  # passes before the revocation
    stack.owner.send(stack.registry.functions.revokeSigner(enclave.address))
    rejects(fresh, "UnauthorizedSigner(address)")
    assert feed.functions.latestRound().call() == 1


def test_staleness_guard_after_heartbeat(stack: Stack) -> None:
    enclave = _enclave(stack, simulated=True)
    feed = _feed(stack)
    _update(stack, feed, _sign(stack, enclave, _report(stack)))
    updated_at = feed.functions.latestRoundData().call()[3]
    feed.functions.latestRoundDataChecked().call()
    _advance(stack, HEARTBEAT + 1)
    assert_reverts_with(feed.functions.latestRoundDataChecked(), stack.user.address, "StalePrice(uint256,uint256)")
    assert feed.functions.latestRoundData().call()[3] == updated_at  # the unchecked read still answers


def test_chainlink_interface_consumer_reads_the_feed_unchanged(stack: Stack) -> None:
    enclave = _enclave(stack)
    feed = _feed(stack)
    consumer, _ = stack.owner.deploy("ChainlinkStyleConsumer", feed.address, 600)
    # no data yet: the feed's revert (Chainlink's "No data present") reaches the consumer's caller
    assert_reverts_with(consumer.functions.price(), stack.user.address, "NoDataPresent(uint80)")
    _update(stack, feed, _sign(stack, enclave, _report(stack, answer=2_500 * 10**8)))
    assert consumer.functions.price().call() == [2_500 * 10**8, DECIMALS]
    _advance(stack, 601)
    assert_reverts_with(consumer.functions.price(), stack.user.address, "StaleRound()")


def test_batch_updates_each_feed_independently(stack: Stack) -> None:
    enclave = _enclave(stack)
    eth, btc = _feed(stack), _feed(stack, BTC_USD, "BTC / USD")
    batcher, _ = stack.owner.deploy("PriceFeedBatcher")
    good_eth = _sign(stack, enclave, _report(stack))
    good_btc = _sign(stack, enclave, _report(stack, feed=BTC_USD, answer=90_000 * 10**8))
    bad = _sign(stack, DevEnclave.random(), _report(stack, feed=BTC_USD))  # unregistered signer
    items = [
        (eth.address, *good_eth.call_args()),
        (btc.address, *bad.call_args()),
        (btc.address, *good_btc.call_args()),
    ]
    call = _as(stack.relayer, batcher, "PriceFeedBatcher").functions.updateMany(items)
    assert call.call({"from": stack.relayer.address}) == 2
    receipt = stack.relayer.send(call)
    (failed,) = batcher.events.UpdateFailed().process_receipt(receipt, errors=DISCARD)
    assert failed["args"]["feed"] == btc.address and failed["args"]["index"] == 1
    assert failed["args"]["reason"][:4].hex() == _selector("UnauthorizedSigner(address)")
    assert eth.functions.latestRoundData().call()[1] == 3_000 * 10**8
    assert btc.functions.latestRoundData().call()[1] == 90_000 * 10**8


def _selector(signature: str) -> str:
    return keccak256(signature.encode())[:4].hex()


# ---------------------------------------------------------------------------------------------- same transaction


def test_library_verifies_in_the_same_transaction(stack: Stack) -> None:
    enclave = _enclave(stack)
    consumer = _pull_consumer(stack)
    user = _as(stack.user, consumer, "PullPriceConsumer")
    t = _now(stack)
    stack.user.send(user.functions.swap(*_sign(stack, enclave, _report(stack, answer=1234, observed_at=t)).call_args()))
    assert consumer.functions.lastPrice().call() == 1234
    assert consumer.functions.lastObservedAt().call() == t

    who = stack.user.address
    stale = _sign(stack, enclave, _report(stack, observed_at=_now(stack) - MAX_AGE - 5))
    assert_reverts_with(user.functions.swap(*stale.call_args()), who, "StaleReport(uint64,uint256)")
    wrong_feed = _sign(stack, enclave, _report(stack, feed=BTC_USD))
    assert_reverts_with(user.functions.swap(*wrong_feed.call_args()), who, "WrongFeed(bytes32,bytes32)")
    future = _sign(stack, enclave, _report(stack, observed_at=_now(stack) + 600))
    assert_reverts_with(user.functions.swap(*future.call_args()), who, "FutureReport(uint64,uint256)")
    stranger = _sign(stack, DevEnclave.random(), _report(stack))
    assert_reverts_with(user.functions.swap(*stranger.call_args()), who, "UnauthorizedSigner(address)")
    other_chain = _sign(stack, enclave, _report(stack), chain_id=1)
    assert_reverts_with(user.functions.swap(*other_chain.call_args()), who, "UnauthorizedSigner(address)")


# ---------------------------------------------------------------------------------------------- gas


def test_gas_figures(anvil: Anvil, capsys: pytest.CaptureFixture[str]) -> None:
    """Gas is deterministic: bounds ~5 % above the figures in BENCHMARKS.md (same code: bench.feeds)."""
    gas = measure_feed_gas(anvil.rpc_url)
    with capsys.disabled():
        print(f"\nfeed gas: {gas}")
    assert gas["update"] <= MAX_UPDATE
    assert gas["batch2_per_feed"] <= MAX_BATCH_2_PER_FEED
    assert gas["batch5_per_feed"] <= MAX_BATCH_5_PER_FEED
    assert gas["pull_swap_total"] <= MAX_PULL_SWAP_TOTAL
    assert gas["pull_verification"] <= MAX_PULL_VERIFICATION


def test_a_push_feed_never_records_a_time_after_its_block(stack: Stack) -> None:
    """A report a few seconds ahead of the block is accepted (clocks differ), but the round's updatedAt is the
    block's time, so a Chainlink consumer's block.timestamp - updatedAt never underflows; order still holds."""
    enclave = _enclave(stack)
    feed = _feed(stack)
    ahead = _now(stack) + 10
    receipt = _update(stack, feed, _sign(stack, enclave, _report(stack, observed_at=ahead)))
    block_time = stack.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    assert block_time < ahead
    _round_id, _answer, started_at, updated_at, _ = feed.functions.latestRoundData().call()
    assert started_at == updated_at == block_time
    # A later report observed before `ahead` is still refused: ordering uses the signed observation time.
    stale = _sign(stack, enclave, _report(stack, observed_at=ahead - 1))
    assert_reverts_with(feed.functions.update(*stale.call_args()), stack.relayer.address, "NotNewer(uint64,uint64)")
