"""Submit verified fulfilments: simulate, sign, persist, broadcast; and reconcile what was sent.

Exactly-once rests on :meth:`Store.record_transaction`: the signed bytes are durable before they are
broadcast, and after a restart :meth:`Submitter.reconcile` either reads their receipt or re-broadcasts the
very same bytes. A second transaction for the same requests is signed only once the first one is known to
be dead (its nonce was used by another transaction), never on a guess.

Fees are EIP-1559 (type 2): ``maxFeePerGas = 2 x next base fee + priority fee``, never above the ceiling
(``SubmitPolicy.max_fee_wei``). A transaction not mined ``replace_after`` seconds after its newest version was
signed is *replaced*: the same nonce, gas and calldata, both fees bumped by at least 12.5 % (what nodes require of a
replacement), up to the ceiling. The replacement is persisted before its broadcast like any transaction, and the
versions of one nonce stay open together: whichever gets mined (the original may still win the race) settles the
requests, and the others are closed as ``replaced``. Only one of them can ever be mined, so replacing never
delivers twice.

A result whose signer the Router refuses as not authorized (``UnauthorizedSigner`` in a simulation, skip reason 5
in a mined batch) is looked up in the registry (``relayer.signer_liveness``): if the signer is no longer live
(revoked, expired) or the job no longer approves its measurement, the result is stale, so it is discarded and the
request goes back to ``pending`` for another enclave (:meth:`SqlStore.requeue_for_reexecution`, bounded by
``MAX_REEXECUTIONS``); a result already known to be stale is discarded before any gas is spent on it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import eth_abi
from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError

from relayer.accounts import AccountPool, SubmitterAccount
from relayer.calls import CallEncoder, EncodedCall
from relayer.chain import ChainClient, raw_receipt, raw_request
from relayer.events import EventDecoder
from relayer.revert_reasons import decode_revert, describe_revert
from relayer.signer_liveness import UNAPPROVED, SignerLiveness
from relayer.store import (
    DELIVERED,
    EXECUTED,
    EXPIRED,
    FAILED,
    PENDING,
    SETTLED,
    SUBMITTED,
    TX_DROPPED,
    TX_MINED,
    TX_REPLACED,
    LeaseLostError,
    SqlStore,
    StoredRequest,
    StoredTransaction,
)
from verifier.protocol import MAX_PACKED_RESULT, Domain, batch_digest, pack_fulfillment, pack_items
from verifier.signed_result import SignedResult, SignedResultError, verify_signature
from verifier.signing import SignatureError, recover_signer, to_compact

log = logging.getLogger("teebridge.relayer.submitter")


def router_has_fulfill_packed(w3: Web3, router: str, calls: CallEncoder) -> bool | None:
    """Whether the contract at ``router`` has ``fulfillPacked``: an empty call must revert with ``MalformedItem()``
    (a Router without the function reverts with no data). None when the node gave no answer (a timeout, a node
    error): ask again later."""
    call = {"to": router, "data": calls.encode_unencoded("fulfillPacked", b"").data_hex}
    try:
        w3.eth.call(call)  # type: ignore[arg-type]
    except ContractLogicError as exc:
        decoded = decode_revert(exc)
        return decoded is not None and decoded[0] == "MalformedItem"
    except Exception:  # not an answer about the contract
        return None
    return False  # it did not revert: not our function


SKIP_NOT_PENDING = 1
SKIP_UNAUTHORIZED_SIGNER = 5
SKIP_REASONS = {1: "not pending", 2: "commitment mismatch", 3: "expired", 4: "bad signature", 5: "unauthorized signer"}
#: Fault injection for crash tests: "crash-before-broadcast" exits right after a transaction is persisted.
FAULT_ENV = "TEEBRIDGE_RELAYER_FAULT"
FAULT_EXIT_CODE = 86
GWEI = 10**9
#: Batches of at least this many items are simulated with one ``eth_call`` at a predicted gas limit (see
#: :meth:`Submitter._simulate`); smaller ones are estimated.
PREDICT_MIN_ITEMS = 16
#: Every this many large batches, one is estimated anyway, so the per-item figure follows the callbacks' cost.
REESTIMATE_EVERY = 16
#: The priority fee when none is configured and recent blocks paid none (e.g. an idle local chain).
MIN_PRIORITY_FEE_WEI = 10**7


def bumped(fee: int) -> int:
    """``fee`` raised by at least 12.5 % (and at least 1 wei): the least a node accepts for a replacement."""
    return fee + (fee + 7) // 8 + 1 if fee else 1


BatchSigner = Callable[[list[SignedResult]], bytes | None]
"""Returns the enclave's ``FulfillmentBatch`` signature over the results (in order), or None if it cannot."""


@dataclass(frozen=True)
class SignedTx:
    """A signed transaction: its nonce, hash and raw bytes."""

    nonce: int
    tx_hash: str
    raw: bytes


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
    priority_fee_wei: int | None = None
    """``maxPriorityFeePerGas`` of new transactions; None: the median tip of the last ``fee_history_blocks`` blocks
    (``eth_feeHistory``, 50th percentile), at least :data:`MIN_PRIORITY_FEE_WEI`."""
    max_fee_wei: int | None = 500 * GWEI
    """The fee ceiling: no transaction (original or replacement) offers a ``maxFeePerGas`` above this. None: none."""
    replace_after: float = 30.0
    """Seconds after which a transaction still unmined is replaced with bumped fees (0 = never replace)."""
    fee_history_blocks: int = 10
    skip_warning_interval: float = 300.0
    """Seconds between two warnings that one account cannot pay for a transaction and is skipped."""


class Submitter:
    """Turns ``executed`` requests into Router transactions."""

    def __init__(
        self,
        chain: ChainClient,
        router: Contract,
        store: SqlStore,
        policy: SubmitPolicy | None = None,
        accounts: AccountPool | None = None,
        batch_signer: BatchSigner | None = None,
        liveness: SignerLiveness | None = None,
    ) -> None:
        self.chain = chain
        self.accounts = accounts or AccountPool([chain.account])
        """The accounts transactions are signed with (each its own nonces); by default the chain client's."""
        self.batch_signer = batch_signer
        """Asks the enclave for one signature over a batch (``fulfillBatchSigned``); None: per-item signatures."""
        self.liveness = liveness
        """Tells a stale result (its signer no longer live: re-execute) from a job refusing a live signer; None:
        every refusal is kept as before (retried until expiry, or failed in a batch)."""
        self.on_reexecute: Callable[[str], None] | None = None
        """Called with why the signer is not live each time a request is sent back to be executed again."""
        self.w3 = chain.w3
        self.router = router
        self.calls = CallEncoder(router.abi)
        """The Router's calls, encoded once each (web3's encoder cost more CPU than the batch it encoded)."""
        self.store = store
        self.policy = policy or SubmitPolicy()
        self.chain_id = chain.chain_id
        self.domain = Domain(self.chain_id, router.address)
        self._looks_dropped: dict[tuple[str, int], float] = {}
        """(sender, nonce) -> when it was first seen used with no receipt for any version (monotonic seconds)."""
        self._not_replaceable: set[str] = set()
        """Hashes of transactions that cannot be replaced: at the fee ceiling, or their requests moved on (a reorg
        orphaned them). They are re-broadcast as they are; the warning is logged once."""
        self.replacements = 0
        """How many fee-bumped replacements this submitter signed (for tests and metrics)."""
        self._skip_warned: dict[str, float] = {}
        """Account -> when it was last warned about as unable to pay (monotonic seconds)."""
        self._gas_per_item = 0.0
        (commitments_of,) = [f for f in router.abi if f.get("type") == "function" and f["name"] == "commitmentsOf"]
        self._commitments_outputs = [o["type"] for o in commitments_of["outputs"]]
        self._predictions = 0
        self._packed_supported: bool | None = None
        """The last ``eth_estimateGas`` of a submission divided by its items (0: none yet); see :meth:`_simulate`."""
        self.on_mined: Callable[[str, Any], None] | None = None
        """Called with (hash, receipt) of each mined transaction before its requests are settled (metrics)."""
        self._fulfilled = EventDecoder(router.abi, "Fulfilled")
        self._callback_failed = EventDecoder(router.abi, "CallbackFailed")
        self._skipped_event = EventDecoder(router.abi, "FulfillmentSkipped")
        self._begin_pass()

    # ---------------------------------------------------------------- accounts

    def _begin_pass(self) -> None:
        """Forget what the previous pass learnt of the accounts (open transactions, balances, skips)."""
        self._open: dict[str, tuple[int, float]] = self.store.open_by_sender() if len(self.accounts) > 1 else {}
        self._used: list[str] = []
        self._skipped: set[str] = set()
        self._balances: dict[str, int] = {}
        self._blocked = False

    def _choose(self) -> SubmitterAccount | None:
        """The best account for the next transaction of this pass, or None if every one was skipped."""
        stuck_after = self.policy.replace_after or 60.0
        ranked = self.accounts.ranked(self._open, used=self._used, skipped=self._skipped, stuck_after=stuck_after)
        return ranked[0] if ranked else None

    def _balance(self, account: SubmitterAccount) -> int:
        if account.key not in self._balances:
            self._balances[account.key] = int(self.w3.eth.get_balance(account.address))
            account.balance = self._balances[account.key]
        return self._balances[account.key]

    def account_for(
        self, gas_limit: int, max_fee: int, first: SubmitterAccount | None = None
    ) -> SubmitterAccount | None:
        """An account that can pay ``gas_limit x max_fee`` wei, ``first`` (default: the best ranked) if it can.

        Accounts that cannot are skipped for the rest of the pass, with a WARNING; None if none can.
        """
        cost = gas_limit * max_fee
        account = first if first is not None and first.key not in self._skipped else self._choose()
        while account is not None:
            balance = self._balance(account)
            if balance >= cost:
                self._skip_warned.pop(account.key, None)
                return account
            self._skipped.add(account.key)
            last = self._skip_warned.get(account.key)
            if last is None or time.monotonic() - last >= self.policy.skip_warning_interval:
                self._skip_warned[account.key] = time.monotonic()
                others = "the other accounts go on" if len(self.accounts) > 1 else "nothing is submitted"
                log.warning(
                    "account %s holds %d wei, under the %d wei a transaction may cost (gas %d x max fee %d):"
                    " skipped, %s; fund it",
                    account.address,
                    balance,
                    cost,
                    gas_limit,
                    max_fee,
                    others,
                )
            account = self._choose()
        return None

    def note_sent(self, account: SubmitterAccount, cost: int) -> None:
        """Record that ``account`` signed a transaction costing up to ``cost`` wei in this pass."""
        self._used.append(account.key)
        count, oldest = self._open.get(account.key, (0, time.time()))
        self._open[account.key] = (count + 1, oldest)
        if account.key in self._balances:
            self._balances[account.key] -= cost
        self.accounts.rotate(account)

    def next_nonce(self, account: SubmitterAccount) -> int:
        """The nonce of ``account``'s next transaction: one past the highest it signed (persisted), or the node's
        pending count, whichever is higher; so a restart or a lost broadcast answer never reuses one nor leaves
        a gap."""
        pending = self.w3.eth.get_transaction_count(account.address, "pending")
        return max(self.store.next_nonce(account.address) or 0, pending)

    # ---------------------------------------------------------------- fees

    def fees(self) -> tuple[int, int]:
        """``(maxFeePerGas, maxPriorityFeePerGas)`` for a new transaction from ``eth_feeHistory``, under the ceiling."""
        history = self.w3.eth.fee_history(self.policy.fee_history_blocks, "latest", [50])
        next_base = int(history["baseFeePerGas"][-1])
        priority = self.policy.priority_fee_wei
        if priority is None:
            tips = sorted(int(r[0]) for r in history.get("reward") or [] if r)
            priority = max(MIN_PRIORITY_FEE_WEI, tips[len(tips) // 2] if tips else 0)
        max_fee = 2 * next_base + priority
        ceiling = self.policy.max_fee_wei
        if ceiling is not None and max_fee > ceiling:
            if ceiling < next_base + priority:
                log.warning(
                    "fee ceiling %d wei is under the next base fee %d + priority %d: transactions wait until the"
                    " base fee falls; raise --max-fee-gwei to deliver now",
                    ceiling,
                    next_base,
                    priority,
                )
            max_fee = ceiling
        return max_fee, min(priority, max_fee)

    def replacement_fees(self, max_fee: int, priority: int) -> tuple[int, int] | None:
        """Fees for a replacement of a transaction offering ``(max_fee, priority)``: both at least 12.5 % higher,
        and at least what a new transaction would offer now; None if the ceiling does not allow that."""
        now_max, now_priority = self.fees()
        new_priority = max(bumped(priority), now_priority)
        new_max = max(bumped(max_fee), now_max, new_priority)
        ceiling = self.policy.max_fee_wei
        if ceiling is not None and new_max > ceiling:
            new_max = ceiling
        new_priority = min(new_priority, new_max)
        if new_max < bumped(max_fee) or new_priority < bumped(priority):
            return None
        return new_max, new_priority

    # ---------------------------------------------------------------- submit

    def submit(self) -> int:
        """Submit the ready fulfilments, up to ``max_batch`` a transaction and one transaction per account in this
        pass, spread over the accounts (:meth:`relayer.accounts.AccountPool.ranked`); return how many were sent."""
        self._begin_pass()
        sent = 0
        for _ in range(len(self.accounts)):
            count = self._submit_next()
            if count is None or self._blocked:
                break
            sent += count
        return sent

    def _submit_next(self) -> int | None:
        """Submit up to ``max_batch`` ready fulfilments in one transaction; how many were sent (None: none ready)."""
        now = int(raw_request(self.w3, "eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
        batch: list[tuple[StoredRequest, SignedResult]] = []
        claimed = self.store.claim(EXECUTED, self.policy.max_batch)
        if not claimed:
            return None
        # one call for the whole batch (one RPC per request made the relayer the throughput bottleneck)
        stored_commitments = self._commitments([s.request_id for s in claimed])
        closed: list[tuple[bytes, str, str]] = []
        for stored, commitment in zip(claimed, stored_commitments, strict=True):
            if int.from_bytes(commitment, "big") == 0:
                closed.append((stored.request_id, SETTLED, "no longer pending on-chain (fulfilled or cancelled)"))
                continue
            if now > stored.expiry:
                closed.append((stored.request_id, EXPIRED, "expired before delivery; cancel() refunds the fee"))
                continue
            assert stored.fulfillment is not None
            signed = SignedResult.from_json(stored.fulfillment)
            why = (
                self.liveness.known_stale(signed.signer, stored.job_id, signed.measurement)
                if self.liveness is not None
                else None
            )
            if why is not None:  # stale: the Router would refuse it, so spend no gas on it
                self._reexecute(stored.request_id, signed.signer, why, EXECUTED)
                continue
            batch.append((stored, signed))
        self.store.mark_final_many(closed, only_from=[EXECUTED])
        if not batch:
            return 0
        account = self._choose()
        if account is None:
            return self._no_account(batch)
        call, batch = self._call_for(batch)
        if call is None:
            return 0
        try:
            gas_limit = self._simulate(call, len(batch), account)
        except (ContractLogicError, ValueError) as exc:
            if len(batch) > 1:
                # Find the culprit: submit the items one by one.
                return sum(self._submit([item]) for item in batch)
            self._simulation_failed(batch[0][0], exc)
            return 0
        return self._send(batch, call, gas_limit, account)

    def _submit(self, batch: list[tuple[StoredRequest, SignedResult]]) -> int:
        account = self._choose()
        if account is None:
            return self._no_account(batch)
        call, batch = self._call_for(batch)
        if call is None:
            return 0
        try:
            gas_limit = self._simulate(call, len(batch), account)
        except (ContractLogicError, ValueError) as exc:
            self._simulation_failed(batch[0][0], exc)
            return 0
        return self._send(batch, call, gas_limit, account)

    def _commitments(self, request_ids: list[bytes]) -> list[bytes]:
        """``Router.commitmentsOf(request_ids)`` on the latest state: one raw ``eth_call``, ABI from the artifact."""
        data = self.calls.encode("commitmentsOf", [request_ids]).data_hex
        answer = raw_request(self.w3, "eth_call", [{"to": self.router.address, "data": data}, "latest"])
        return list(eth_abi.decode(self._commitments_outputs, bytes.fromhex(str(answer)[2:]))[0])

    def _simulate(self, call: EncodedCall, items: int, account: SubmitterAccount) -> int:
        """Simulate ``call`` (``items`` fulfilments) from ``account`` on the latest state; return the gas limit to
        send it with. Raises what web3 raises for a revert (``ContractLogicError``, ``ValueError``).

        The gas limit is ``gas_margin x estimate + gas_extra``. ``eth_estimateGas`` runs the whole batch several
        times (a search; ~70 ms for 256 items on anvil, against ~10 ms for one ``eth_call``), so once an estimate
        is known per item, the next batch of at least :data:`PREDICT_MIN_ITEMS` items (all but every
        :data:`REESTIMATE_EVERY`-th) is predicted from it and simulated with one ``eth_call`` at exactly the
        gas limit it will be sent with: if that succeeds the transaction does the same on the same state (the
        Router reverts rather than give a callback less than its gas limit, so too little gas cannot pass
        unnoticed). If the call fails, a real estimate decides: it fails too (the batch reverts: the caller looks
        for the culprit) or gives the new per-item figure.
        """
        sender = {"from": account.address, "to": self.router.address, "data": call.data_hex}
        large = items >= PREDICT_MIN_ITEMS  # a small batch's fixed cost would skew the per-item figure
        self._predictions += 1 if large else 0
        if large and self._gas_per_item and self._predictions % REESTIMATE_EVERY:
            predicted = int(self._gas_per_item * items * self.policy.gas_margin) + self.policy.gas_extra
            try:
                raw_request(self.w3, "eth_call", [{**sender, "gas": hex(predicted)}, "latest"])
                return predicted
            except Exception:  # a revert, "intrinsic gas too high", a flaky node: the estimate decides
                pass
        gas = self.w3.eth.estimate_gas(sender)  # type: ignore[arg-type]  # raises ContractLogicError on a revert
        if large:
            self._gas_per_item = gas / items
        return int(gas * self.policy.gas_margin) + self.policy.gas_extra

    def _no_account(self, batch: list[tuple[StoredRequest, SignedResult]]) -> int:
        """No account can pay now: give the batch back (another relayer sharing the store may take it)."""
        self._blocked = True
        self.store.release([stored.request_id for stored, _ in batch])
        return 0

    def _call_for(
        self, batch: list[tuple[StoredRequest, SignedResult]]
    ) -> tuple[EncodedCall | None, list[tuple[StoredRequest, SignedResult]]]:
        """The call for ``batch`` and the items it carries: ``fulfillBatchSigned`` (one enclave signature, the cheap
        path) for several when their enclave signs the batch; else, each with its own signature, ``fulfillPacked``
        for one item (``fulfill`` for a result too long to pack) or ``fulfillBatch``, for the items whose signature
        checks out (the others are executed again). None when no item is left. Packed items carry only the request
        number (the Router adds its id prefix), so a request whose id is not of this Router's prefix on this chain (made
        before a fork that changed the chain id) goes out with its full id: ``fulfill`` or ``fulfillBatch``."""
        if len(batch) > 1 and self._packable(batch):
            results = [signed for _, signed in batch]
            signature = self._batch_signature(results)
            if signature is not None:
                items = pack_items((stored.request(), signed.status, signed.result) for stored, signed in batch)
                r, vs = to_compact(signature)
                return self.calls.encode("fulfillBatchSigned", [items, results[0].measurement, r, vs]), batch
        batch = self._own_signatures_valid(batch)
        if not batch:
            return None, batch
        if len(batch) == 1:
            stored, signed = batch[0]
            if len(signed.result) <= MAX_PACKED_RESULT and self._packable(batch) and self.packed_supported():
                r, vs = signed.compact_signature()
                body = pack_fulfillment(stored.request(), signed.status, signed.result, signed.measurement, r, vs)
                return self.calls.encode_unencoded("fulfillPacked", body), batch
            return self.calls.encode("fulfill", [signed.call_args(stored.request())]), batch
        args = [signed.call_args(stored.request()) for stored, signed in batch]
        return self.calls.encode("fulfillBatch", [args]), batch

    def _packable(self, batch: list[tuple[StoredRequest, SignedResult]]) -> bool:
        """Whether every request of ``batch`` has this Router's id prefix on this chain (packed items can carry it)."""
        return all(self.domain.owns_request_id(stored.request_id) for stored, _ in batch)

    def packed_supported(self) -> bool:
        """Whether the Router has ``fulfillPacked`` (Routers deployed before it came have not: their single
        results go out with ``fulfill``). Asked once (:func:`router_has_fulfill_packed`); until the node answers,
        ``fulfill``."""
        if self._packed_supported is None:
            self._packed_supported = router_has_fulfill_packed(self.w3, self.router.address, self.calls)
            if self._packed_supported is False:
                log.warning(
                    "the Router at %s has no fulfillPacked: single results go out with fulfill", self.router.address
                )
        return bool(self._packed_supported)

    def _own_signatures_valid(
        self, batch: list[tuple[StoredRequest, SignedResult]]
    ) -> list[tuple[StoredRequest, SignedResult]]:
        """The items whose own signature recovers to their claimed signer (checked only now, when they go out with
        it). An item that fails had a faulty answer stored: it is discarded and the request executed again."""
        valid = []
        for stored, signed in batch:
            try:
                verify_signature(signed, self.domain)
            except SignedResultError as exc:
                self._reexecute_bad_signature(stored.request_id, str(exc))
                continue
            valid.append((stored, signed))
        return valid

    def _reexecute_bad_signature(self, request_id: bytes, why: str) -> None:
        """Discard a stored result whose own signature does not check out, and have the request executed again."""
        reason = f"coprocessor returned a bad signature: {why}"
        hint = "check the coprocessors: one answers with signatures that do not recover to the signer it names"
        self._discard_result(request_id, reason, EXECUTED, "bad signature", hint)

    def _batch_signature(self, results: list[SignedResult]) -> bytes | None:
        """The enclave's signature over ``results`` as one batch, checked here; None when there is none to use."""
        first = results[0]
        if self.batch_signer is None or any(
            r.signer != first.signer or r.measurement != first.measurement or len(r.result) > MAX_PACKED_RESULT
            for r in results
        ):
            return None
        try:
            signature = self.batch_signer(results)
        except Exception as exc:  # an optimisation only: the items' own signatures still deliver them
            log.warning("no batch signature (%s); submitting %d items with their own signatures", exc, len(results))
            return None
        if signature is None:
            return None
        digest = batch_digest([r.fulfillment() for r in results], self.domain)
        try:
            recovered = recover_signer(digest, signature)
        except SignatureError:
            recovered = None
        if recovered != first.signer:
            log.warning("the batch signature does not recover to %s; using the items' own signatures", first.signer)
            return None
        return signature

    def _simulation_failed(self, stored: StoredRequest, exc: Exception) -> None:
        decoded = decode_revert(exc)
        if decoded is not None and decoded[0] == "UnauthorizedSigner" and self.liveness is not None:
            signer = str(decoded[1][1])
            measurement = bytes.fromhex(str((stored.fulfillment or {}).get("measurement", "0x"))[2:])
            why = self.liveness.stale_reason(signer, stored.job_id, measurement)
            if why is not None:  # the result is stale: another enclave executes the request again
                self._reexecute(stored.request_id, signer, why, EXECUTED)
                return
        # Keep trying until the request expires: the cause may pass (the registry holds the signer live and the job
        # approves its measurement, yet the Router refused it: a registration or approval changing right now); the
        # expire stage closes it when its time is up.
        reason = f"simulation reverted: {describe_revert(exc)}"
        delay = min(self.policy.max_retry_delay, self.policy.retry_delay * (2 ** min(stored.attempts, 10)))
        try:
            self.store.mark_retry(stored.request_id, reason, delay)
        except LeaseLostError as exc:
            log.warning("request %s: %s", stored.request_id.hex(), exc)
            return
        log.warning("request %s: %s (retry in %.0fs)", stored.request_id.hex(), reason, delay)

    def _stale_in(self, tx: StoredTransaction, request_id: bytes) -> bool:
        """Whether the request's result, refused in ``tx`` for its signer, is stale (the signer is no longer live, or
        the job no longer approves its measurement); if so it was sent back to be executed again."""
        stored = self.store.get(request_id)
        if self.liveness is None or stored is None or stored.fulfillment is None:
            return False
        signer = str(stored.fulfillment.get("signer", ""))
        measurement = bytes.fromhex(str(stored.fulfillment.get("measurement", "0x"))[2:])
        why = self.liveness.stale_reason(signer, stored.job_id, measurement)
        if why is None:
            return False
        self._reexecute(request_id, signer, why, SUBMITTED, f"in {tx.tx_hash}")
        return True

    def _reexecute(self, request_id: bytes, signer: str, why: str, state: str, where: str = "") -> None:
        """Discard the request's result signed by ``signer`` (stale: ``why``) and have it executed again."""
        cause = why if why == UNAPPROVED else f"signer {why}"
        refused = f"router refused the result of signer {signer}{' ' + where if where else ''}: {cause}"
        hint = "check that the coprocessors hold keys the registry accepts (the gatekeeper registers them)"
        self._discard_result(request_id, refused, state, why, hint)

    def _discard_result(self, request_id: bytes, reason: str, state: str, metric_reason: str, hint: str) -> None:
        """Discard the stored result of a request in ``state`` (why: ``reason``) and send the request back to be
        executed again, or close it as failed once it was re-executed the most times allowed (then ``hint`` says
        what to look at)."""
        try:
            outcome = self.store.requeue_for_reexecution(request_id, reason, only_from=[state])
        except LeaseLostError as exc:
            log.warning("request %s: %s", request_id.hex(), exc)
            return
        if outcome == PENDING:
            if self.on_reexecute is not None:
                self.on_reexecute(metric_reason)
            log.warning(
                "request %s: %s; its result is discarded and another enclave executes it again",
                request_id.hex(),
                reason,
            )
        elif outcome == FAILED:
            log.warning(
                "request %s failed: %s, and it was already re-executed the most times allowed; %s",
                request_id.hex(),
                reason,
                hint,
            )

    def _send(
        self,
        batch: list[tuple[StoredRequest, SignedResult]],
        call: EncodedCall,
        gas_limit: int,
        preferred: SubmitterAccount,
    ) -> int:
        max_fee, priority = self.fees()
        account = self.account_for(gas_limit, max_fee, preferred)
        if account is None:
            return self._no_account(batch)
        tx = self.sign(account, call, gas_limit, max_fee, priority)
        ids = [stored.request_id for stored, _ in batch]
        try:
            self.store.record_transaction(tx.tx_hash, tx.nonce, tx.raw, ids, sender=account.address)
        except LeaseLostError as exc:  # another relayer took these over while we stalled: never broadcast
            log.warning("not sending %s: %s", tx.tx_hash, exc)
            return 0
        self.note_sent(account, gas_limit * max_fee)
        if os.environ.get(FAULT_ENV) == "crash-before-broadcast":
            os._exit(FAULT_EXIT_CODE)  # fault injection for the crash tests: persisted, never broadcast
        self.broadcast(tx.raw, tx.tx_hash)
        log.info("submitted %d fulfilment(s) in %s (%s nonce %d)", len(ids), tx.tx_hash, account.address, tx.nonce)
        return len(ids)

    def sign(
        self, account: SubmitterAccount, call: EncodedCall, gas_limit: int, max_fee: int, priority: int
    ) -> SignedTx:
        """Sign ``call`` (to the Router) as a type-2 transaction from ``account`` at its next nonce; nothing is
        persisted or sent."""
        nonce = self.next_nonce(account)
        tx = {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": nonce,
            "to": self.router.address,
            "value": 0,
            "data": call.data,
            "gas": gas_limit,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": priority,
        }
        signed = account.account.sign_transaction(tx)
        return SignedTx(nonce, signed.hash.to_0x_hex(), bytes(signed.raw_transaction))

    def broadcast(self, raw: bytes, tx_hash: str) -> None:
        """Send signed bytes; a failure is only logged (the node may know them already, or be down): the
        caller's follow-up (reconcile, or the cancel follow-up) reads the receipt or sends them again."""
        try:
            self.w3.eth.send_raw_transaction(raw)
        except Exception as exc:
            log.warning("broadcast of %s failed (%s); will follow up", tx_hash, exc)

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
        own = self.accounts.primary.key  # the sender of rows older than per-transaction senders
        mined_nonces = {
            sender: int(raw_request(self.w3, "eth_getTransactionCount", [sender, "latest"]), 16)
            for sender in {tx.sender or own for tx in open_txs}
        }
        for tx in open_txs:
            if (tx.sender or own) not in self.accounts:
                log.info(
                    "adopting transaction %s (nonce %d) of relayer %s, whose lease lapsed",
                    tx.tx_hash,
                    tx.nonce,
                    tx.sender,
                )
        head = self.w3.eth.block_number if self.policy.confirmations else 0
        versions: dict[tuple[str, int], list[StoredTransaction]] = {}
        for tx in open_txs:
            versions.setdefault((tx.sender or own, tx.nonce), []).append(tx)
        for (sender, nonce), group in versions.items():
            group.sort(key=lambda t: t.created_at)
            self._reconcile_nonce(sender, nonce, group, mined_nonces[sender], head)

    def _reconcile_nonce(
        self, sender: str, nonce: int, group: list[StoredTransaction], mined_nonce: int, head: int
    ) -> None:
        """Settle the open versions of one nonce: a mined one settles the requests (the others are closed as
        replaced); none mined and the nonce used: dropped; else re-broadcast the newest, or replace it if stuck."""
        key = (sender, nonce)
        for tx in group:
            receipt = self.receipt(tx.tx_hash)
            if receipt is None:
                continue
            self._looks_dropped.pop(key, None)
            depth_needed = self.policy.confirmations
            if depth_needed and head - receipt["blockNumber"] < depth_needed:
                return  # mined but not deep enough yet: it may still be reorged away
            self._apply_receipt(tx, receipt)
            for other in group:
                if other is not tx:
                    self.store.close_transaction(other.tx_hash, TX_REPLACED)
            if len(group) > 1:
                which = "the newest" if tx is group[-1] else "an earlier"
                log.info("nonce %d: %s version %s of %d was mined", nonce, which, tx.tx_hash, len(group))
            return
        if mined_nonce > nonce:
            # Its nonce was consumed, and no receipt: another transaction took it, so this one can never
            # be mined; unless the node is only slow to serve the receipt. Conclude after a grace period.
            first = self._looks_dropped.setdefault(key, time.monotonic())
            if time.monotonic() - first < self.policy.drop_grace:
                return
            self._looks_dropped.pop(key, None)
            for tx in group:
                self.store.close_transaction(tx.tx_hash, TX_DROPPED, requeue=tx.request_ids)
                log.warning("transaction %s was dropped; its requests go back to the queue", tx.tx_hash)
            return
        newest = group[-1]
        account = self.accounts.get(sender)  # another relayer's adopted transaction cannot be re-signed
        stuck_for = time.time() - newest.created_at
        if account is not None and 0 < self.policy.replace_after <= stuck_for and self._replace(newest, account):
            return
        if raw_request(self.w3, "eth_getTransactionByHash", [newest.tx_hash]) is None:  # the node does not know it
            log.info("re-broadcasting %s (nonce %d)", newest.tx_hash, newest.nonce)
            self.broadcast(newest.raw, newest.tx_hash)

    def _replace(self, tx: StoredTransaction, account: SubmitterAccount) -> bool:
        """Sign, persist and broadcast a fee-bumped version of ``tx``; False if the fee ceiling forbids it."""
        if tx.raw[:1] != b"\x02" or tx.tx_hash in self._not_replaceable:
            return False  # a legacy transaction (older database), or one already found not replaceable
        old: dict[str, Any] = TypedTransaction.from_bytes(HexBytes(tx.raw)).as_dict()
        fees = self.replacement_fees(int(old["maxFeePerGas"]), int(old["maxPriorityFeePerGas"]))
        if fees is None:
            if tx.tx_hash not in self._not_replaceable:
                self._not_replaceable.add(tx.tx_hash)
                log.warning(
                    "transaction %s (nonce %d) is not mined and its max fee %d wei cannot be bumped under the fee"
                    " ceiling %s wei: it waits; raise --max-fee-gwei to replace it",
                    tx.tx_hash,
                    tx.nonce,
                    old["maxFeePerGas"],
                    self.policy.max_fee_wei,
                )
            return False
        max_fee, priority = fees
        replacement = {
            "type": 2,
            "chainId": old["chainId"],
            "nonce": old["nonce"],
            "gas": old["gas"],
            "to": Web3.to_checksum_address(old["to"]),
            "value": old["value"],
            "data": bytes(old["data"]),
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": priority,
        }
        signed = account.account.sign_transaction(replacement)
        tx_hash = signed.hash.to_0x_hex()
        raw = bytes(signed.raw_transaction)
        try:
            self.store.record_replacement(tx_hash, tx, raw, sender=account.address)
        except LeaseLostError as exc:
            self._not_replaceable.add(tx.tx_hash)
            log.warning("not replacing %s: %s", tx.tx_hash, exc)
            return False
        self.replacements += 1
        self.broadcast(raw, tx_hash)
        log.info(
            "replaced %s by %s (nonce %d, not mined for %.0fs): max fee %d -> %d wei, priority %d -> %d wei",
            tx.tx_hash,
            tx_hash,
            tx.nonce,
            time.time() - tx.created_at,
            old["maxFeePerGas"],
            max_fee,
            old["maxPriorityFeePerGas"],
            priority,
        )
        return True

    def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        """The receipt of ``tx_hash`` (raw logs, see :func:`relayer.chain.raw_receipt`), or None if not mined."""
        return raw_receipt(self.w3, tx_hash)

    def _apply_receipt(self, tx: StoredTransaction, receipt) -> None:
        if self.on_mined is not None:
            self.on_mined(tx.tx_hash, receipt)
        if receipt["status"] != 1:
            log.warning("transaction %s reverted; its requests go back to the queue", tx.tx_hash)
            self.store.close_transaction(tx.tx_hash, TX_MINED, requeue=tx.request_ids)
            return
        # Only the Router's own logs count (a consumer's callback could emit a look-alike event), decoded with
        # eth_abi from the artifact's ABI: web3's process_receipt was a large share of the relayer's CPU.
        logs, router = receipt["logs"], self.router.address
        fulfilled = {bytes(a["requestId"]): a for a in self._fulfilled.decode_all(logs, router)}
        failed_callbacks = {bytes(a["requestId"]): a["gasUsed"] for a in self._callback_failed.decode_all(logs, router)}
        skipped = {bytes(a["requestId"]): a["reason"] for a in self._skipped_event.decode_all(logs, router)}
        finals: list[tuple[bytes, str, str]] = []
        for request_id in tx.request_ids:
            if request_id in fulfilled:
                args = fulfilled[request_id]
                outcome = {
                    "tx": tx.tx_hash,
                    "block": receipt["blockNumber"],
                    "status": args["status"],
                    "callbackSucceeded": request_id not in failed_callbacks,
                }
                if request_id in failed_callbacks:
                    outcome["failedCallbackGasUsed"] = failed_callbacks[request_id]
                finals.append((request_id, DELIVERED, json.dumps(outcome)))
            elif skipped.get(request_id) == SKIP_NOT_PENDING:
                finals.append((request_id, SETTLED, f"already settled when {tx.tx_hash} was mined"))
            elif skipped.get(request_id) == SKIP_UNAUTHORIZED_SIGNER and self._stale_in(tx, request_id):
                continue  # sent back to be executed again by another enclave
            else:
                reason = SKIP_REASONS.get(skipped.get(request_id, 0), "no event for it in the receipt")
                finals.append((request_id, FAILED, f"router refused in {tx.tx_hash}: {reason}"))
        self.store.mark_final_many(finals)
        self.store.close_transaction(tx.tx_hash, TX_MINED)
