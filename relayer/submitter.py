"""Submit verified fulfilments: simulate, sign, persist, broadcast; and reconcile what was sent.

Exactly-once rests on :meth:`Store.record_transaction`: the signed bytes are durable before they are
broadcast, and after a restart :meth:`Submitter.reconcile` either reads their receipt or re-broadcasts the
very same bytes. A second transaction for the same requests is signed only once the first one is known to
be dead (its nonce was used by another transaction), never on a guess.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass

from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError, TransactionNotFound
from web3.logs import DISCARD

from relayer.chain import ChainClient
from relayer.revert_reasons import describe_revert
from relayer.store import (
    DELIVERED,
    EXECUTED,
    EXPIRED,
    FAILED,
    SETTLED,
    TX_DROPPED,
    TX_MINED,
    LeaseLostError,
    SqlStore,
    StoredRequest,
    StoredTransaction,
)
from verifier.signed_result import SignedResult

log = logging.getLogger("teebridge.relayer.submitter")

SKIP_NOT_PENDING = 1
SKIP_REASONS = {1: "not pending", 2: "commitment mismatch", 3: "expired", 4: "bad signature", 5: "unauthorized signer"}
#: Fault injection for crash tests: "crash-before-broadcast" exits right after a transaction is persisted.
FAULT_ENV = "TEEBRIDGE_RELAYER_FAULT"
FAULT_EXIT_CODE = 86


@dataclass(frozen=True)
class SubmitPolicy:
    """How the submitter sizes and retries transactions."""

    max_batch: int = 32
    gas_margin: float = 1.2
    gas_extra: int = 20_000
    retry_delay: float = 2.0
    max_retry_delay: float = 60.0
    drop_grace: float = 10.0
    """Seconds a transaction must keep looking dropped (its sender's nonce is past it, yet no receipt) before its
    requests are requeued. A node can report the nonce a moment before it serves the receipt (anvil under load
    does; so can load-balanced RPC endpoints that disagree), and requeueing a mined transaction would sign a
    second fulfilment of requests already delivered."""
    confirmations: int = 0
    """A receipt counts once its block is this many blocks below the head; until then the transaction stays
    open, so a fulfilment whose block is reorged away is re-broadcast rather than recorded as delivered."""


class Submitter:
    """Turns ``executed`` requests into Router transactions."""

    def __init__(
        self, chain: ChainClient, router: Contract, store: SqlStore, policy: SubmitPolicy | None = None
    ) -> None:
        self.chain = chain
        self.w3 = chain.w3
        self.router = router
        self.store = store
        self.policy = policy or SubmitPolicy()
        self._looks_dropped: dict[str, float] = {}
        """Transaction hash -> when it was first seen with its nonce used and no receipt (monotonic seconds)."""

    # ---------------------------------------------------------------- submit

    def submit(self) -> int:
        """Submit up to ``max_batch`` ready fulfilments in one transaction; return how many were sent."""
        now = self.w3.eth.get_block("latest")["timestamp"]
        batch: list[tuple[StoredRequest, SignedResult]] = []
        for stored in self.store.claim(EXECUTED, self.policy.max_batch):
            if int.from_bytes(self.router.functions.commitments(stored.request_id).call(), "big") == 0:
                self.store.mark_final(
                    stored.request_id,
                    SETTLED,
                    "no longer pending on-chain (fulfilled or cancelled)",
                    only_from=[EXECUTED],
                )
                continue
            if now > stored.expiry:
                self.store.mark_final(
                    stored.request_id,
                    EXPIRED,
                    "expired before delivery; cancel() refunds the fee",
                    only_from=[EXECUTED],
                )
                continue
            assert stored.fulfillment is not None
            batch.append((stored, SignedResult.from_json(stored.fulfillment)))
        if not batch:
            return 0
        call = self._call_for(batch)
        try:
            gas = call.estimate_gas({"from": self.chain.address})
        except (ContractLogicError, ValueError) as exc:
            if len(batch) > 1:
                # Find the culprit: submit the items one by one.
                return sum(self._submit([item]) for item in batch)
            self._simulation_failed(batch[0][0], exc)
            return 0
        return self._send(batch, call, gas)

    def _submit(self, batch: list[tuple[StoredRequest, SignedResult]]) -> int:
        call = self._call_for(batch)
        try:
            gas = call.estimate_gas({"from": self.chain.address})
        except (ContractLogicError, ValueError) as exc:
            self._simulation_failed(batch[0][0], exc)
            return 0
        return self._send(batch, call, gas)

    def _call_for(self, batch: list[tuple[StoredRequest, SignedResult]]):
        args = [signed.call_args(stored.request()) for stored, signed in batch]
        if len(args) == 1:
            return self.router.functions.fulfill(args[0])
        return self.router.functions.fulfillBatch(args)

    def _simulation_failed(self, stored: StoredRequest, exc: Exception) -> None:
        # Keep trying until the request expires: the cause may pass (a signer being renewed, an approval
        # being activated); the expire stage closes it when its time is up.
        reason = f"simulation reverted: {describe_revert(exc)}"
        delay = min(self.policy.max_retry_delay, self.policy.retry_delay * (2 ** min(stored.attempts, 10)))
        try:
            self.store.mark_retry(stored.request_id, reason, delay)
        except LeaseLostError as exc:
            log.warning("request %s: %s", stored.request_id.hex(), exc)
            return
        log.warning("request %s: %s (retry in %.0fs)", stored.request_id.hex(), reason, delay)

    def _send(self, batch: list[tuple[StoredRequest, SignedResult]], call, gas: int) -> int:
        nonce = max(self.store.next_nonce() or 0, self.w3.eth.get_transaction_count(self.chain.address, "pending"))
        tx = call.build_transaction(
            {
                "from": self.chain.address,
                "nonce": nonce,
                "gas": int(gas * self.policy.gas_margin) + self.policy.gas_extra,
                "chainId": self.chain.chain_id,
            }
        )
        signed_tx = self.chain.account.sign_transaction(tx)
        tx_hash = signed_tx.hash.to_0x_hex()
        ids = [stored.request_id for stored, _ in batch]
        try:
            self.store.record_transaction(
                tx_hash, nonce, bytes(signed_tx.raw_transaction), ids, sender=self.chain.address
            )
        except LeaseLostError as exc:  # another relayer took these over while we stalled: never broadcast
            log.warning("not sending %s: %s", tx_hash, exc)
            return 0
        if os.environ.get(FAULT_ENV) == "crash-before-broadcast":
            os._exit(FAULT_EXIT_CODE)  # fault injection for the crash tests: persisted, never broadcast
        self._broadcast(bytes(signed_tx.raw_transaction), tx_hash)
        log.info("submitted %d fulfilment(s) in %s (nonce %d)", len(ids), tx_hash, nonce)
        return len(ids)

    def _broadcast(self, raw: bytes, tx_hash: str) -> None:
        try:
            self.w3.eth.send_raw_transaction(raw)
        except Exception as exc:  # the node may already know it, or be down: reconcile() decides
            log.warning("broadcast of %s failed (%s); will reconcile", tx_hash, exc)

    # ---------------------------------------------------------------- reconcile

    def reconcile(self) -> None:
        """Settle every open transaction this relayer holds the lease of: its own, and adopted ones.

        A transaction is adopted when the relayer that signed it lost its lease (it died): its receipt is read,
        or the very same signed bytes are re-broadcast. Nobody signs a second transaction for its requests
        unless it is known to be dead (its nonce was used by another transaction of its sender).
        """
        open_txs = self.store.claim_transactions()
        if not open_txs:
            return
        # Read each sender's nonce *before* the receipts: a transaction mined in between then shows up as a
        # receipt, never as "nonce used but no receipt", which is what a dropped transaction looks like.
        own = self.chain.address.lower()
        mined_nonces = {
            sender: self.w3.eth.get_transaction_count(Web3.to_checksum_address(sender), "latest")
            for sender in {tx.sender or own for tx in open_txs}
        }
        for tx in open_txs:
            if (tx.sender or own) != own:
                log.info(
                    "adopting transaction %s (nonce %d) of relayer %s, whose lease lapsed",
                    tx.tx_hash,
                    tx.nonce,
                    tx.sender,
                )
        depth_needed = self.policy.confirmations
        head = self.w3.eth.block_number if depth_needed else 0
        for tx in open_txs:
            mined_nonce = mined_nonces[tx.sender or own]
            try:
                receipt = self.w3.eth.get_transaction_receipt(tx.tx_hash)
            except TransactionNotFound:
                receipt = None
            if receipt is not None:
                self._looks_dropped.pop(tx.tx_hash, None)
                if not depth_needed or head - receipt["blockNumber"] >= depth_needed:
                    self._apply_receipt(tx, receipt)
                continue  # mined but not deep enough yet: it may still be reorged away
            if mined_nonce > tx.nonce:
                # Its nonce was consumed, and no receipt: another transaction took it, so this one can never
                # be mined; unless the node is only slow to serve the receipt. Conclude after a grace period.
                first = self._looks_dropped.setdefault(tx.tx_hash, time.monotonic())
                if time.monotonic() - first < self.policy.drop_grace:
                    continue
                self._looks_dropped.pop(tx.tx_hash, None)
                self.store.close_transaction(tx.tx_hash, TX_DROPPED, requeue=tx.request_ids)
                log.warning("transaction %s was dropped; its requests go back to the queue", tx.tx_hash)
                continue
            try:
                self.w3.eth.get_transaction(tx.tx_hash)
            except TransactionNotFound:
                log.info("re-broadcasting %s (nonce %d)", tx.tx_hash, tx.nonce)
                self._broadcast(tx.raw, tx.tx_hash)

    def _apply_receipt(self, tx: StoredTransaction, receipt) -> None:
        if receipt["status"] != 1:
            log.warning("transaction %s reverted; its requests go back to the queue", tx.tx_hash)
            self.store.close_transaction(tx.tx_hash, TX_MINED, requeue=tx.request_ids)
            return
        fulfilled = {
            bytes(ev["args"]["requestId"]): ev["args"]
            for ev in self.router.events.Fulfilled().process_receipt(receipt, errors=DISCARD)
        }
        skipped = {
            bytes(ev["args"]["requestId"]): ev["args"]["reason"]
            for ev in self.router.events.FulfillmentSkipped().process_receipt(receipt, errors=DISCARD)
        }
        for request_id in tx.request_ids:
            if request_id in fulfilled:
                args = fulfilled[request_id]
                outcome = {
                    "tx": tx.tx_hash,
                    "block": receipt["blockNumber"],
                    "status": args["status"],
                    "callbackSucceeded": args["callbackSucceeded"],
                    "callbackGasUsed": args["callbackGasUsed"],
                }
                self.store.mark_final(request_id, DELIVERED, json.dumps(outcome))
            elif skipped.get(request_id) == SKIP_NOT_PENDING:
                self.store.mark_final(request_id, SETTLED, f"already settled when {tx.tx_hash} was mined")
            else:
                reason = SKIP_REASONS.get(skipped.get(request_id, 0), "no event for it in the receipt")
                self.store.mark_final(request_id, FAILED, f"router refused in {tx.tx_hash}: {reason}")
        self.store.close_transaction(tx.tx_hash, TX_MINED)
