"""Follow the Router's ``Requested`` logs from a persisted cursor into the store, safely across reorgs.

The watcher remembers the hash of each block it scanned within a bounded window (``reorg_window``, in the
store's ``scanned_blocks`` table, written in the same SQL transaction as the cursor). Every poll first checks
that the remembered hash of the cursor block is still the chain's; since a block hash commits to all its
ancestors, one matching hash proves nothing below it changed. On a mismatch it walks back to the newest
remembered block that still matches, rewinds the cursor there and marks every request logged after it
``orphaned`` (:meth:`Store.rewind`); the normal scan then re-reads whatever the new chain holds, and a
request that reappears is revived as ``pending`` (:meth:`Store.record_scan`). A divergence deeper than the
window stops the watcher with :class:`ReorgTooDeepError` rather than guessing.
"""

from __future__ import annotations

import logging
from typing import Any

from web3 import Web3
from web3.contract import Contract

from relayer.chain import raw_request
from relayer.events import EventDecoder
from relayer.store import SqlStore, StoredRequest

log = logging.getLogger("teebridge.relayer.watcher")

#: How many scanned block hashes are remembered by default: the deepest reorganisation that can be undone.
DEFAULT_REORG_WINDOW = 128


class ReorgTooDeepError(RuntimeError):
    """The chain diverged below every block hash the watcher remembers: it cannot tell what to undo."""


class Watcher:
    """Reads new request logs in bounded block ranges, ``confirmations`` blocks behind the head.

    ``confirmations`` = 0 (the default, and the relayer CLI's) suits only the local anvil chain, which never
    reorganises on its own. On a public chain use a depth the chain's reorgs stay well within (e.g. a few
    blocks behind an L2 sequencer, ~64 blocks (2 epochs, finalized) on Ethereum mainnet), and keep
    ``reorg_window`` larger than any reorg you expect above that depth.
    """

    def __init__(
        self,
        w3: Web3,
        router: Contract,
        store: SqlStore,
        *,
        start_block: int,
        confirmations: int = 0,
        chunk: int = 2000,
        reorg_window: int = DEFAULT_REORG_WINDOW,
    ) -> None:
        if reorg_window < 1:
            raise ValueError("reorg_window must be at least 1")
        self.w3 = w3
        self.router = router
        self.store = store
        self.start_block = start_block
        self.confirmations = confirmations
        self.chunk = chunk
        self.reorg_window = reorg_window
        self.rewinds = 0
        """How many times this watcher rewound its cursor (for tests and metrics)."""
        self._requested = EventDecoder(router.abi, "Requested")
        self._topic = self._requested.topic_hex

    def poll(self) -> int:
        """Undo any reorganised blocks, then store every request logged since the cursor; return how many.

        With a store shared by several relayers only the holder of the leader lease follows the chain; the
        others return 0 at once (and take over the lease when its holder stops renewing it).
        """
        if not self.store.try_lead():
            return 0
        head = self.w3.eth.block_number - self.confirmations
        cursor = self.store.cursor()
        if cursor is not None:
            cursor = self._check_chain(cursor)
        start = self.start_block if cursor is None else cursor + 1
        parent = self._remembered(cursor)
        anchor: dict[int, str] = {}
        if cursor is None and self.start_block > 0 and self.start_block <= head:
            # Remember the block below the first one scanned, so a reorg of the very first block has a
            # matching block to rewind to.
            parent = self._hash_of(self.start_block - 1)
            if parent is not None:
                anchor[self.start_block - 1] = parent
        added = 0
        while start <= head:
            if added and not self.store.try_lead():  # a long backfill keeps its lease fresh, or stops
                break
            end = min(head, start + self.chunk - 1)
            # Only blocks within the window of the head can still be reorganised: a backfill skips the rest.
            first = max(start, end - self.reorg_window + 1, head - self.reorg_window + 1)
            hashes = self._block_hashes(first, end, parent if first == start else None)
            if hashes is None:
                break
            logs = self.get_logs(start, end)
            if not self._consistent(logs, hashes, end):
                log.info("the chain changed during the scan of blocks %d..%d; rescanning next poll", start, end)
                break
            found = [self._request(entry) for entry in logs]
            added += self.store.record_scan(found, end, {**anchor, **hashes}, self.reorg_window)
            anchor = {}
            if end - start > 1000:
                log.info("backfill: blocks %d..%d of %d, %d requests", start, end, head, len(found))
            parent = hashes.get(end)
            start = end + 1
        return added

    def get_logs(self, start: int, end: int) -> list[dict[str, Any]]:
        """The Router's ``Requested`` logs of blocks ``start..end``, as the node sent them (one ``eth_getLogs``,
        no web3 formatting: ``blockNumber`` made an int, hashes and data left ``0x`` strings)."""
        logs = raw_request(
            self.w3,
            "eth_getLogs",
            [{"address": self.router.address, "fromBlock": hex(start), "toBlock": hex(end), "topics": [self._topic]}],
        )
        return [{**entry, "blockNumber": int(entry["blockNumber"], 16)} for entry in logs]

    # ---------------------------------------------------------------- reorg handling

    def _check_chain(self, cursor: int) -> int:
        """Return the cursor to scan from: ``cursor`` itself, or the last remembered block still on the chain."""
        remembered = self.store.scanned_hashes(cursor, self.reorg_window)
        if not remembered:
            return cursor  # nothing remembered yet (a database from before hashes were kept): start now
        for number, expected in remembered:
            actual = self._hash_of(number)
            if actual == expected:
                if number == remembered[0][0]:
                    return cursor
                depth = cursor - number
                orphaned = self.store.rewind(number, f"orphaned by a {depth}-block reorg below block {cursor}")
                self.rewinds += 1
                log.warning(
                    "chain reorganisation of depth %d: cursor %d -> %d, %d request(s) orphaned%s",
                    depth,
                    cursor,
                    number,
                    len(orphaned),
                    "".join(f"\n  orphaned {r.hex()}" for r in orphaned),
                )
                return number
        oldest = remembered[-1][0]
        raise ReorgTooDeepError(
            f"chain reorganisation deeper than the {len(remembered)} remembered block(s) {oldest}..{cursor}: "
            f"no remembered block hash matches the chain. Raise reorg_window (now {self.reorg_window}) or resync "
            "the relayer from a block below the fork (a new --db with --start-block)"
        )

    def _remembered(self, number: int | None) -> str | None:
        if number is None:
            return None
        rows = self.store.scanned_hashes(number, 1)
        return rows[0][1] if rows and rows[0][0] == number else None

    def block(self, number: int) -> dict[str, Any] | None:
        """Block ``number`` as the node sent it (no transactions; ``hash`` and ``parentHash`` as ``0x`` strings),
        or None if the chain has no such block (yet, or any more)."""
        return raw_request(self.w3, "eth_getBlockByNumber", [hex(number), False])

    def _hash_of(self, number: int) -> str | None:
        block = self.block(number)
        if block is None:
            return None  # the new chain is shorter than the old one
        return str(block["hash"]).lower()

    def _block_hashes(self, first: int, last: int, parent: str | None) -> dict[int, str] | None:
        """Hashes of blocks ``first..last``, checked to link to each other and to ``parent`` (block first-1).

        Returns None if they do not: the chain moved between the reorg check and now; the next poll's check
        sees it.
        """
        hashes: dict[int, str] = {}
        expected_parent = parent
        for number in range(first, last + 1):
            block = self.block(number)
            if block is None:
                log.info("block %d is gone; rechecking next poll", number)
                return None
            if expected_parent is not None and str(block["parentHash"]).lower() != expected_parent.lower():
                log.info("block %d does not link to the block scanned before it; rechecking next poll", number)
                return None
            expected_parent = hashes[number] = str(block["hash"]).lower()
        return hashes

    def _consistent(self, logs: list[Any], hashes: dict[int, str], end: int) -> bool:
        """The logs come from the blocks whose hashes we are about to remember, and ``end`` has not moved."""
        for entry in logs:
            expected = hashes.get(entry["blockNumber"])
            if expected is not None and str(entry["blockHash"]).lower() != expected.lower():
                return False
        return end not in hashes or self._hash_of(end) == hashes[end]

    def _request(self, entry: Any) -> StoredRequest:
        args = self._requested.decode(entry)  # eth_abi directly: web3's process_log cost more than the rest
        return StoredRequest(
            request_id=bytes(args["requestId"]),
            requester=args["requester"],
            job_id=bytes(args["jobId"]),
            input=bytes(args["input"]),
            callback_gas_limit=args["callbackGasLimit"],
            fee=args["fee"],
            expiry=args["expiry"],
            block_number=entry["blockNumber"],
            tx_hash=str(entry["transactionHash"]),
        )
