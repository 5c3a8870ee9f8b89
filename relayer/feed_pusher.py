"""Keep push feeds current: ask the enclave for signed prices, push the ones that are due, batched.

One pass (:meth:`FeedPusher.tick`): for every feed, fetch a fresh signed report from the coprocessor
(``POST /v1/price-report``), check its signature locally, read the feed's latest round, and decide with
:func:`relayer.feed_policy.push_reason`. Due feeds go on-chain together: one ``PriceFeed.update`` when one
is due, one ``PriceFeedBatcher.updateMany`` when several are. A quorum failure in the enclave means no
report, so no update rather than a bad one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD
from web3.types import TxReceipt

from relayer.chain import ChainClient
from relayer.coprocessor_client import CoprocessorClient, CoprocessorError
from relayer.feed_policy import FeedConfig, OnChainRound, push_reason
from relayer.schedule import run_every
from verifier.price_report import SignedPriceReport, verify_price_report

log = logging.getLogger("teebridge.relayer.feeds")

#: Gas budget of one PriceFeed.update inside a batch (a first round costs ~88k; later rounds ~71k).
GAS_PER_FEED_UPDATE = 120_000
BATCH_BASE_GAS = 40_000


@dataclass(frozen=True)
class FeedOutcome:
    """What one pass did for one feed."""

    pair: str
    pushed: bool
    reason: str
    answer: int | None = None
    round_id: int | None = None


@dataclass
class FeedPusher:
    """Pushes enclave-signed prices to ``feeds`` on one chain."""

    chain: ChainClient
    coprocessor: CoprocessorClient
    registry: str
    feeds: list[FeedConfig]
    batcher: str | None = None
    interval: float = 5.0
    record: Path | None = None
    """A deployment record to re-read every pass: its feeds and their ``feed_settings`` replace ``feeds``."""
    _chain_id: int = field(init=False)

    def __post_init__(self) -> None:
        self._chain_id = self.chain.chain_id

    def latest_round(self, feed: FeedConfig) -> OnChainRound | None:
        """The feed's latest round, or None before the first one."""
        contract = self.chain.contract("PriceFeed", feed.address)
        try:
            round_id, answer, _started, updated_at, _answered = contract.functions.latestRoundData().call()
        except (ContractCustomError, ContractLogicError):
            return None  # NoDataPresent
        return OnChainRound(round_id, answer, updated_at)

    def reload(self) -> None:
        """Take the feed list and push settings from ``record`` (heartbeat and decimals come from the feeds)."""
        if self.record is None:
            return
        doc = json.loads(self.record.read_text())
        known = {f.pair: f for f in self.feeds}
        feeds = []
        for pair, address in sorted((doc.get("feeds") or {}).items()):
            settings = (doc.get("feed_settings") or {}).get(pair, {})
            base = known.get(pair)
            if base is None or base.address != address:
                contract = self.chain.contract("PriceFeed", address)
                base = FeedConfig(
                    pair, address, contract.functions.decimals().call(), heartbeat=contract.functions.heartbeat().call()
                )
            feeds.append(replace(base, deviation_bps=int(settings.get("deviation_bps", base.deviation_bps))))
        self.feeds = feeds
        self.batcher = doc.get("batcher") or self.batcher

    def tick(self) -> list[FeedOutcome]:
        """One pass over every feed; returns what happened to each."""
        self.reload()
        now = self.chain.w3.eth.get_block("latest")["timestamp"]
        outcomes: dict[str, FeedOutcome] = {}
        due: list[tuple[FeedConfig, SignedPriceReport]] = []
        for feed in self.feeds:
            try:
                signed = self.coprocessor.price_report(feed.pair, feed.decimals, self._chain_id, self.registry)
                verify_price_report(signed, self._chain_id, self.registry)
            except (CoprocessorError, ValueError) as exc:
                outcomes[feed.pair] = FeedOutcome(feed.pair, False, f"no report: {exc}")
                log.warning("%s: no report (%s); the feed keeps its last answer", feed.pair, exc)
                continue
            reason = push_reason(feed, self.latest_round(feed), signed.report, now)
            if reason is None:
                outcomes[feed.pair] = FeedOutcome(feed.pair, False, "current", signed.report.answer)
                continue
            due.append((feed, signed))
            outcomes[feed.pair] = FeedOutcome(feed.pair, True, reason, signed.report.answer)
        if due:
            self._push(due, outcomes)
        return [outcomes[f.pair] for f in self.feeds]

    def _push(self, due: list[tuple[FeedConfig, SignedPriceReport]], outcomes: dict[str, FeedOutcome]) -> None:
        try:
            if len(due) == 1 or self.batcher is None:
                for feed, signed in due:
                    contract = self.chain.contract("PriceFeed", feed.address)
                    receipt = self.chain.send(contract.functions.update(*signed.call_args()))
                    self._record(feed, receipt, outcomes)
            else:
                batcher = self.chain.contract("PriceFeedBatcher", self.batcher)
                updates = [(feed.address, *signed.call_args()) for feed, signed in due]
                # eth_estimateGas is wrong for try/catch batches: it converges on a limit at which an inner
                # update runs out of gas *and is caught*. Budget each update explicitly instead.
                gas = BATCH_BASE_GAS + GAS_PER_FEED_UPDATE * len(updates)
                receipt = self.chain.send(batcher.functions.updateMany(updates), gas=gas)
                for feed, _ in due:
                    self._record(feed, receipt, outcomes)
        except Exception as exc:  # an RPC hiccup or a race with another pusher: try again next pass
            for feed, _ in due:
                outcomes[feed.pair] = FeedOutcome(feed.pair, False, f"push failed: {exc}")
            log.warning("push of %d feed(s) failed: %s", len(due), exc)

    def _record(self, feed: FeedConfig, receipt: TxReceipt, outcomes: dict[str, FeedOutcome]) -> None:
        contract = self.chain.contract("PriceFeed", feed.address)
        events = [
            e
            for e in contract.events.AnswerUpdated().process_receipt(receipt, errors=DISCARD)
            if e["address"] == contract.address
        ]
        previous = outcomes[feed.pair]
        if events:
            round_id = events[0]["args"]["roundId"]
            outcomes[feed.pair] = FeedOutcome(feed.pair, True, previous.reason, previous.answer, round_id)
            log.info("%s: round %d = %d (%s)", feed.pair, round_id, previous.answer or 0, previous.reason)
        else:
            outcomes[feed.pair] = FeedOutcome(feed.pair, False, "refused on-chain (see UpdateFailed)", previous.answer)

    def run_forever(self) -> None:
        """Run :meth:`tick` every ``interval`` seconds until SIGTERM/SIGINT."""
        self.reload()
        log.info("pushing %s every %.1fs", ", ".join(f.pair for f in self.feeds), self.interval)
        run_every(self.interval, self.tick)


def parse_feed(spec: str) -> FeedConfig:
    """``PAIR=ADDRESS[,deviation_bps=N][,heartbeat=S][,decimals=D]`` -> FeedConfig."""
    head, *options = spec.split(",")
    pair, sep, address = head.partition("=")
    if not sep or "/" not in pair:
        raise ValueError(f"a feed is PAIR=ADDRESS[,deviation_bps=N][,heartbeat=S][,decimals=D], got {spec!r}")
    values: dict[str, int] = {}
    for option in options:
        key, _, value = option.partition("=")
        if key not in ("deviation_bps", "heartbeat", "decimals"):
            raise ValueError(f"unknown feed option {key!r} in {spec!r}")
        values[key] = int(value)
    return FeedConfig(pair, address, **values)


def main(argv: list[str] | None = None) -> None:
    """``python -m relayer.feed_pusher``: push feeds until SIGTERM. Key in TEEBRIDGE_FEEDER_KEY."""
    import argparse
    import os

    parser = argparse.ArgumentParser(prog="python -m relayer.feed_pusher", description="Push enclave-signed prices.")
    parser.add_argument("--rpc-url", required=True)
    parser.add_argument("--registry", required=True, help="EnclaveRegistry address (the reports' EIP-712 domain)")
    parser.add_argument("--coprocessor", required=True, help="coprocessor base URL")
    parser.add_argument("--batcher", help="PriceFeedBatcher address, to update several feeds in one transaction")
    parser.add_argument("--feed", action="append", default=[], type=parse_feed, help="PAIR=ADDRESS[,opt=v]")
    parser.add_argument(
        "--deployment", type=Path, help="deployment record to follow: its feeds and feed_settings, re-read every pass"
    )
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between passes")
    args = parser.parse_args(argv)
    if not args.feed and not args.deployment:
        parser.error("give --feed PAIR=ADDRESS (repeatable) or --deployment FILE")
    key = os.environ.get("TEEBRIDGE_FEEDER_KEY")
    if not key:
        parser.error("set TEEBRIDGE_FEEDER_KEY to the pushing account's private key")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s feeds %(levelname)s %(message)s")
    FeedPusher(
        ChainClient(args.rpc_url, key),
        CoprocessorClient(args.coprocessor),
        args.registry,
        args.feed,
        batcher=args.batcher,
        interval=args.interval,
        record=args.deployment,
    ).run_forever()


if __name__ == "__main__":
    main()
