"""Follow the Router's ``Requested`` logs from a persisted cursor into the store."""

from __future__ import annotations

import logging

from web3 import Web3
from web3.contract import Contract

from relayer.store import Store, StoredRequest

log = logging.getLogger("teebridge.relayer.watcher")


class Watcher:
    """Reads new request logs in bounded block ranges, ``confirmations`` blocks behind the head."""

    def __init__(
        self, w3: Web3, router: Contract, store: Store, *, start_block: int, confirmations: int = 0, chunk: int = 2000
    ) -> None:
        self.w3 = w3
        self.router = router
        self.store = store
        self.start_block = start_block
        self.confirmations = confirmations
        self.chunk = chunk
        self._topic = router.events.Requested().topic

    def poll(self) -> int:
        """Store every request logged since the cursor; return how many were new."""
        head = self.w3.eth.block_number - self.confirmations
        cursor = self.store.cursor()
        start = self.start_block if cursor is None else cursor + 1
        added = 0
        while start <= head:
            end = min(head, start + self.chunk - 1)
            logs = self.w3.eth.get_logs(
                {"address": self.router.address, "fromBlock": start, "toBlock": end, "topics": [self._topic]}
            )
            found = []
            for entry in logs:
                event = self.router.events.Requested().process_log(entry)
                args = event["args"]
                found.append(
                    StoredRequest(
                        request_id=bytes(args["requestId"]),
                        requester=args["requester"],
                        job_id=bytes(args["jobId"]),
                        input=bytes(args["input"]),
                        callback_gas_limit=args["callbackGasLimit"],
                        fee=args["fee"],
                        expiry=args["expiry"],
                        block_number=entry["blockNumber"],
                        tx_hash=entry["transactionHash"].to_0x_hex(),
                    )
                )
            added += self.store.add_requests(found, end)
            if end - start > 1000:
                log.info("backfill: blocks %d..%d of %d, %d requests", start, end, head, len(found))
            start = end + 1
        return added
