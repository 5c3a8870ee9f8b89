"""The relayer loop: reconcile, watch, execute, submit, expire. One pass is :meth:`Relayer.tick`."""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from web3.exceptions import ContractLogicError, TransactionNotFound
from web3.logs import DISCARD

from relayer.accounts import AccountPool, SubmitterAccount, parse_keys
from relayer.chain import ChainClient
from relayer.coprocessor_client import CoprocessorError
from relayer.coprocessor_pool import CoprocessorPool, NoLiveSignerError
from relayer.discovery import DiscoveryReport, RegistryDiscovery
from relayer.health import HealthServer
from relayer.metrics import RelayerMetrics
from relayer.process_identity import ProcessIdentity, holder_is_gone
from relayer.revert_reasons import describe_revert
from relayer.rpc import FailoverProvider, split_urls
from relayer.schedule import run_every
from relayer.signer_liveness import SignerLiveness
from relayer.store import (
    DEFAULT_LEASE_SECONDS,
    DELIVERED,
    EXECUTED,
    EXPIRED,
    FAILED,
    PENDING,
    TX_DROPPED,
    TX_REPLACED,
    LeaseLostError,
    StoredRequest,
    open_store,
)
from relayer.submitter import GWEI, SubmitPolicy, Submitter
from relayer.watcher import DEFAULT_REORG_WINDOW, Watcher
from verifier.signed_result import SignedResultError, check_answers_request

log = logging.getLogger("teebridge.relayer")


LOCAL_CHAIN_IDS = frozenset({31337, 1337})
"""Development chains (anvil, hardhat, ganache): a block there is final, so no confirmations by default."""
DEFAULT_CONFIRMATIONS = 3


def default_confirmations(chain_id: int) -> int:
    """The confirmations a relayer waits for when not told: 0 on a local chain, 3 elsewhere."""
    return 0 if chain_id in LOCAL_CHAIN_IDS else DEFAULT_CONFIRMATIONS


@dataclass(frozen=True)
class RelayerConfig:
    """Everything a relayer needs to run."""

    rpc_url: str | Sequence[str]
    """The chain's JSON-RPC URL, or several of the same chain (tried in order, with failover; see relayer.rpc).
    A string may list several, comma-separated."""
    private_key: str | Sequence[str]
    """The key of the account that pays, or several (a sequence, or one string separated by commas): each signs its
    own transactions with its own nonces, side by side (see relayer.accounts). The first is the relayer's identity."""
    router: str
    coprocessor_url: str
    """One coprocessor base URL, or several separated by commas: a pool (``relayer.coprocessor_pool``).
    May be empty with ``discover``."""
    db_path: Path | str
    """The state: a SQLite file (one relayer) or a ``postgresql://`` URL (several relayers sharing it)."""
    start_block: int = 0
    confirmations: int | None = None
    """Blocks to stay behind the head; None: :func:`default_confirmations` for the chain."""
    reorg_window: int = DEFAULT_REORG_WINDOW
    poll_interval: float = 0.5
    max_batch: int = 32
    retry_delay: float = 1.0
    metrics_port: int = 0
    """Serve ``/metrics`` and ``/health`` on 127.0.0.1 at this port from :meth:`Relayer.run_forever`; 0 = off."""
    min_balance_wei: int = 0
    """Log a WARNING when the relayer account's balance is below this; 0 = never."""
    balance_alert_interval: float = 1800.0
    """Seconds between two low-balance warnings while the balance stays low."""
    auto_cancel: bool = False
    """Call ``Router.cancel`` for this relayer's expired requests (refunds the requester; the relayer pays gas)."""
    stale_after: float | None = None
    """``/health`` is degraded when no pass succeeded for this long; default ``max(10, 10 * poll_interval)``."""
    probe_interval: float = 10.0
    """Seconds between two coprocessor health probes."""
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    """How long a claim on work (and the chain-following leadership) lasts unless renewed; renewed every pass.
    Another relayer sharing the store takes over this one's work this long after it died."""
    rpc_timeout: float = 10.0
    """Seconds to wait for one RPC answer before trying the next URL."""
    priority_fee_wei: int | None = None
    """``maxPriorityFeePerGas``; None: the median tip of recent blocks (``eth_feeHistory``)."""
    max_fee_wei: int | None = 500 * GWEI
    """Fee ceiling: no transaction offers a ``maxFeePerGas`` above this (None: no ceiling)."""
    replace_after: float = 30.0
    """Seconds before an unmined transaction is replaced with fees bumped by 12.5 % (0: never)."""
    discover: bool = False
    """Also use the coprocessors whose endpoints the registry lists for live signers (``relayer.discovery``)."""
    discover_interval: float = 30.0
    """Seconds between two reads of the registry's endpoints."""
    pipeline: bool = True
    """:meth:`Relayer.run_forever` runs watch, execute and submit as concurrent loops (:data:`PIPELINE`), so a
    slow coprocessor answer or RPC round trip of one stage does not hold up the others; False: one pass of every
    stage after the other (:meth:`Relayer.tick`)."""

    @property
    def rpc_urls(self) -> tuple[str, ...]:
        """The RPC URLs, in priority order."""
        return split_urls(self.rpc_url)

    @property
    def private_keys(self) -> tuple[str, ...]:
        """The account keys, the relayer's identity first."""
        items = [self.private_key] if isinstance(self.private_key, str) else list(self.private_key)
        return tuple(k for item in items for k in parse_keys(item, "the relayer keys"))


#: Seconds between two warnings that no coprocessor holds a live key.
NO_LIVE_SIGNER_WARNING_INTERVAL = 300.0

#: The concurrent loops of :meth:`Relayer.run_forever` and the stages each runs, in order. The chain loop follows
#: the chain (and keeps the leases), the execute loop asks the coprocessors, the submit loop signs and settles.
#: ``sys.setswitchinterval`` while the loops run (Python's default is 0.005 s).
PIPELINE_SWITCH_INTERVAL = 0.001
PIPELINE: dict[str, tuple[str, ...]] = {
    "chain": ("lease", "discover", "watch", "expire", "observe"),
    "execute": ("execute",),
    "submit": ("reconcile", "submit", "cancel", "settle"),
}

#: Seconds between two INFO lines of each pipelined loop saying where its time went (when it moved requests).
STAGE_REPORT_INTERVAL = 30.0
#: How many execute batches are sent to the coprocessors at once (each at most ``max_batch`` requests).
EXECUTE_CONCURRENCY = 2
#: Seconds between two runs of the observe stage in the pipelined loops (balances, nonces and gauges: one
#: RPC per account each, not worth doing on every pass of the chain loop).
OBSERVE_INTERVAL = 2.0

#: Seconds between two runs of the expire stage in the pipelined loops (expiries are minutes apart; the query
#: reads every open row of a backlog).
EXPIRE_INTERVAL = 1.0

#: A request's ``outcome`` holds this key (as JSON) once auto-cancel has acted on it.
AUTO_CANCEL_KEY = "autoCancel"
#: How many expired requests the auto-cancel stage looks at per pass.
AUTO_CANCEL_SCAN = 100_000


@dataclass
class TickReport:
    """What one pass did."""

    seen: int = 0
    executed: int = 0
    submitted: int = 0
    expired: int = 0
    cancelled: int = 0
    errors: list[str] = field(default_factory=list)


def failure_reason(outcome: str) -> str:
    """A short, low-cardinality label for why a request ended ``failed`` (for the metrics)."""
    if outcome.startswith("coprocessor refused"):
        return "coprocessor_refused"
    if outcome.startswith("re-executed"):
        return "reexecutions_exhausted"
    if outcome.startswith("router refused"):
        return "router_" + outcome.rsplit(": ", 1)[-1].strip().replace(" ", "_")
    return "other"


def auto_cancel_record(outcome: str | None) -> dict[str, Any] | None:
    """The auto-cancel record stored in an expired request's ``outcome``, or None if it has none."""
    if not outcome or not outcome.startswith("{"):
        return None
    try:
        record = json.loads(outcome)
    except ValueError:
        return None
    return record if isinstance(record, dict) and AUTO_CANCEL_KEY in record else None


class Relayer:
    """Watches one Router and relays its requests to one coprocessor."""

    def __init__(self, config: RelayerConfig) -> None:
        self.config = config
        self.rpc = FailoverProvider(config.rpc_urls, timeout=config.rpc_timeout)
        self.rpc.check_chain_ids()
        keys = config.private_keys
        self.accounts = AccountPool.from_keys(keys)
        self.chain = ChainClient(config.rpc_urls[0], keys[0], timeout=config.rpc_timeout, provider=self.rpc)
        self.router = self.chain.contract("Router", config.router)
        self.chain_id = self.chain.chain_id
        self.metrics = RelayerMetrics()
        self._seen_at: dict[bytes, float] = {}
        self._health_lock = threading.Lock()
        self._last_tick_ok: float | None = None
        self._last_errors: list[str] = []
        self._loop_ok: dict[str, float] = {}
        self._last_renewal = float("-inf")
        self._stage_seconds: dict[str, float] = {}
        self._execute_pool: ThreadPoolExecutor | None = None
        self._loop_errors: dict[str, list[str]] = {}
        self._counts: dict[str, int] = {}
        self._accounts_report: list[dict[str, Any]] = []
        self._coprocessor_up: bool | None = None
        self._next_probe = 0.0
        self._health_server: HealthServer | None = None
        self.store = open_store(config.db_path, owner=self.chain.address, lease_seconds=config.lease_seconds)
        self.identity = ProcessIdentity.current()
        """This process, as it holds its accounts' leases (one account, one relayer process)."""
        self._holds_lock = threading.Lock()
        self._holds_checked = -math.inf
        self._held_elsewhere: dict[str, str] = {}
        self._held_elsewhere_logged: dict[str, str] = {}
        self.store.observer = self._observe
        self.store.bind(self.chain_id, self.router.address)
        self.confirmations = (
            default_confirmations(self.chain_id) if config.confirmations is None else config.confirmations
        )
        registry = self.chain.contract("EnclaveRegistry", self.router.functions.registry().call())
        self.liveness = SignerLiveness(registry)
        """Signers the Router refused that the registry no longer holds live: their results are re-executed."""
        self._no_live_signer_warned = -math.inf
        self.coprocessor = CoprocessorPool(
            [u.strip() for u in config.coprocessor_url.split(",") if u.strip()],
            discovery=config.discover,
            liveness=self.liveness,
        )
        self.discovery: RegistryDiscovery | None = None
        self._last_discovery: DiscoveryReport | None = None
        self._next_discovery = 0.0
        if config.discover:
            self.discovery = RegistryDiscovery(registry, start_block=config.start_block)
        self._count_members()
        self.watcher = Watcher(
            self.chain.w3,
            self.router,
            self.store,
            start_block=config.start_block,
            confirmations=self.confirmations,
            reorg_window=config.reorg_window,
        )
        self.submitter = Submitter(
            self.chain,
            self.router,
            self.store,
            SubmitPolicy(
                max_batch=config.max_batch,
                retry_delay=config.retry_delay,
                confirmations=self.confirmations,
                priority_fee_wei=config.priority_fee_wei,
                max_fee_wei=config.max_fee_wei,
                replace_after=config.replace_after,
            ),
            self.accounts,
            batch_signer=lambda results: self.coprocessor.sign_batch(self.chain_id, self.router.address, results),
            liveness=self.liveness,
        )
        self.submitter.on_reexecute = lambda why: self.metrics.reexecutions.inc(reason=why.replace(" ", "_"))
        self.submitter.on_mined = self._on_mined

    def close(self) -> None:
        """Stop the health server; release the database and HTTP connections."""
        if self._health_server is not None:
            self._health_server.stop()
            self._health_server = None
        if self._execute_pool is not None:
            self._execute_pool.shutdown(wait=True)
        self.coprocessor.close()
        for account in self.accounts:
            try:
                self.store.let_go(_account_lease(account.address), str(self.identity))
            except Exception as exc:  # closing must go on; the lease runs out by itself
                log.warning("could not release the lease on account %s: %s", account.address, exc)
        self.store.close()

    def serve_health(self, port: int | None = None) -> HealthServer:
        """Start the ``/metrics`` and ``/health`` server on 127.0.0.1 (``config.metrics_port`` by default)."""
        if self._health_server is None:
            chosen = self.config.metrics_port if port is None else port
            self._health_server = HealthServer(
                chosen, self.metrics.render, self.health_report, self.coprocessor.forward, self.full_result
            ).start()
        return self._health_server

    def full_result(self, request_id: bytes) -> bytes | None:
        """The full bytes of an off-chain result (status RESULT_OFFCHAIN) this relayer holds, or None."""
        return self.store.full_result(request_id)

    def _stages(self) -> dict[str, Callable[[TickReport], None]]:
        """Every stage of a pass, in the order :meth:`tick` runs them."""
        stages: dict[str, Callable[[TickReport], None]] = {
            "lease": self._renew_leases,
            "discover": self._discover,
            "reconcile": self._reconcile,
            "watch": self._watch,
            "execute": self._execute,
            "submit": self._submit,
            "settle": self._reconcile,
            "expire": self._expire,
        }
        if self.config.auto_cancel:
            stages["cancel"] = self._cancel
        stages["observe"] = self._observe_chain
        return stages

    def tick(self) -> TickReport:
        """One full pass of every stage, one after the other. Each stage runs even if an earlier one failed;
        errors are logged and reported. (:meth:`run_forever` runs the stages in concurrent loops instead.)"""
        return self._run_stages(self._stages(), "all")

    def _run_stages(self, stages: dict[str, Callable[[TickReport], None]], loop: str) -> TickReport:
        """Run ``stages`` in order as one pass of ``loop``; record its errors and success for /health."""
        report = TickReport()
        if not self._hold_accounts(report):
            stages = {}  # another process signs with our accounts: do nothing rather than reuse its nonces
        for name, stage in stages.items():
            started = time.monotonic()
            try:
                stage(report)
            except Exception as exc:  # a flaky RPC or coprocessor must not kill the loop
                log.warning("%s failed: %s", name, exc)
                report.errors.append(f"{name}: {exc}")
                self.metrics.tick_errors.inc(stage=name)
            spent = time.monotonic() - started
            self.metrics.stage_seconds.inc(spent, stage=name)
            with self._health_lock:
                self._stage_seconds[name] = self._stage_seconds.get(name, 0.0) + spent
        now = time.time()
        self.metrics.ticks.inc()
        self.metrics.last_tick.set(now)
        with self._health_lock:
            self._loop_errors[loop] = list(report.errors)
            if not report.errors:
                self._loop_ok[loop] = now
            self._last_errors = [e for errors in self._loop_errors.values() for e in errors]
            if loop == "all":
                if not report.errors:
                    self._last_tick_ok = now
            elif all(k in self._loop_ok for k in PIPELINE):
                self._last_tick_ok = min(self._loop_ok[k] for k in PIPELINE)  # the loop most behind
        if not report.errors:
            self.metrics.last_success.set(now)
        return report

    def _hold_accounts(self, report: TickReport) -> bool:
        """Take or renew this process's lease on each of its accounts (every quarter of a lease); False, with an
        error in ``report``, while another live relayer process holds one of them."""
        with self._holds_lock:
            now = time.monotonic()
            if now - self._holds_checked >= self.config.lease_seconds / 4:
                elsewhere = {}
                try:
                    for account in self.accounts:
                        holder = self.store.hold(_account_lease(account.address), str(self.identity), holder_is_gone)
                        if holder is not None:
                            elsewhere[account.address] = holder
                except Exception as exc:  # the store is unreachable: no pass can run; try again next time
                    log.warning("could not renew the accounts' leases: %s", exc)
                    report.errors.append(f"accounts: could not renew their leases: {exc}")
                    return False
                self._held_elsewhere, self._holds_checked = elsewhere, now
                if elsewhere != self._held_elsewhere_logged:
                    for address, holder in elsewhere.items():
                        log.error(
                            "account %s is in use by another relayer process (%s): this relayer does nothing "
                            "until that one stops. Give each relayer process its own accounts (--key/--keys); "
                            "a stopped one's lease runs out within %.0fs",
                            address,
                            holder,
                            self.config.lease_seconds,
                        )
                    if not elsewhere and self._held_elsewhere_logged:
                        log.info("this relayer now holds all its accounts; resuming")
                    self._held_elsewhere_logged = dict(elsewhere)
            elsewhere = dict(self._held_elsewhere)
        if elsewhere:
            held = ", ".join(f"{a} by {h}" for a, h in elsewhere.items())
            report.errors.append(f"accounts: in use by another relayer process ({held})")
        return not elsewhere

    def _renew_leases(self, report: TickReport) -> None:
        # Every quarter of the lease is plenty (the claims themselves extend what they take); renewing on every
        # pass rewrote every open row several times a second under a backlog.
        now = time.monotonic()
        if now - self._last_renewal < self.config.lease_seconds / 4:
            return
        self.store.renew_leases()
        self._last_renewal = now

    def _reconcile(self, report: TickReport) -> None:
        self.submitter.reconcile()

    def _discover(self, report: TickReport) -> None:
        """Every ``discover_interval`` seconds: make the pool's discovered members the registry's live endpoints."""
        if self.discovery is None or time.monotonic() < self._next_discovery:
            return
        self._next_discovery = time.monotonic() + self.config.discover_interval
        found = self.discovery.refresh()
        added, removed = self.coprocessor.set_discovered(found.endpoints)
        for url in added:
            log.info("discovered coprocessor %s (signer %s) added to the pool", url, found.endpoints[url])
        for url in removed:
            why = "now signer " + found.endpoints[url] if url in found.endpoints else "no live signer lists it now"
            log.info("discovered coprocessor %s removed from the pool (%s)", url, why)
        self.metrics.discovery_changes.inc(len(added), change="added")
        self.metrics.discovery_changes.inc(len(removed), change="removed")
        self.metrics.discovery_refused.set(len(found.refused))
        self._count_members()
        with self._health_lock:
            self._last_discovery = found

    def _count_members(self) -> None:
        for origin, count in self.coprocessor.counts().items():
            self.metrics.pool_members.set(count, origin=origin)

    def _watch(self, report: TickReport) -> None:
        report.seen = self.watcher.poll()

    def _execute(self, report: TickReport) -> None:
        # enough for one full transaction per account, asked in batches of max_batch (the pool halves a batch
        # the coprocessor still finds too large)
        for lifted in self.liveness.refresh():
            log.info("the registry accepts such results again: %s", lifted)
        batch = self.config.max_batch
        pending = self.store.claim(PENDING, batch * len(self.accounts))
        # A job found not to approve some enclave's measurement is executed on its own, so that its requests
        # waiting for an approved enclave hold up no other job's.
        apart = self.liveness.jobs_with_unapproved()
        groups = [[p for p in pending if p.job_id not in apart]] + [
            [p for p in pending if p.job_id == j] for j in apart
        ]
        chunks = [group[first : first + batch] for group in groups for first in range(0, len(group), batch)]
        if len(chunks) > 1:  # side by side: one batch is verified while the coprocessor works on the next
            report.executed += sum(self._executor().map(self._execute_batch, chunks))
        elif chunks:
            report.executed += self._execute_batch(chunks[0])

    def _executor(self) -> ThreadPoolExecutor:
        """The threads that send execute batches side by side (created on first use)."""
        if self._execute_pool is None:
            self._execute_pool = ThreadPoolExecutor(max_workers=EXECUTE_CONCURRENCY, thread_name_prefix="execute")
        return self._execute_pool

    def _execute_batch(self, pending: list[StoredRequest]) -> int:
        try:
            results = self.coprocessor.execute(self.chain_id, self.router.address, pending)
        except CoprocessorError as exc:
            if not exc.retryable and len(pending) > 1:
                # refused as a whole (too large, or one bad request): halve until the culprit stands alone
                half = len(pending) // 2
                return self._execute_batch(pending[:half]) + self._execute_batch(pending[half:])
            for stored in pending:
                if exc.retryable:
                    self._retry(stored, str(exc))
                else:
                    self.store.mark_final(stored.request_id, FAILED, f"coprocessor refused the request: {exc}")
            if isinstance(exc, NoLiveSignerError):
                self._warn_no_live_signer(len(pending), exc)
            else:
                log.warning("execute failed for %d request(s): %s", len(pending), exc)
            return 0
        verified = []
        for stored, signed in zip(pending, results, strict=True):
            # The signature is checked when the result goes out with it (Submitter._own_signatures_valid); under a
            # batch signature the enclave and the submitter check the batch's instead: one ECDSA recovery a batch,
            # not one a request (about 100 µs each, a tenth of a core at 1,000 requests a second).
            try:
                check_answers_request(signed, stored.request())
            except SignedResultError as exc:
                self._retry(stored, f"coprocessor returned a result that does not answer the request: {exc}")
                continue
            verified.append((stored.request_id, signed.to_json()))
        # one SQL transaction for the whole batch; a request another relayer took over (we stalled past the
        # lease) is left to it
        lost = self.store.mark_executed_many(verified)
        for request_id, reason in lost.items():
            log.warning("request %s: result dropped: %s", request_id.hex(), reason)
        return len(verified) - len(lost)

    def _warn_no_live_signer(self, waiting: int, exc: NoLiveSignerError) -> None:
        """Say (at most every :data:`NO_LIVE_SIGNER_WARNING_INTERVAL` seconds) that nothing can execute, and what
        to do about it."""
        now = time.monotonic()
        if now - self._no_live_signer_warned < NO_LIVE_SIGNER_WARNING_INTERVAL:
            return
        self._no_live_signer_warned = now
        then = "refunded by auto-cancel" if self.config.auto_cancel else "refundable with Router.cancel"
        log.warning(
            "%d request(s) wait: %s. Start a coprocessor with a live key (and an image the job approves) and have"
            " the gatekeeper register it (or --coprocessor/--discover one); requests still waiting at their expiry"
            " are closed as expired (%s)",
            waiting,
            exc,
            then,
        )

    def _retry(self, stored: StoredRequest, error: str) -> None:
        try:
            self.store.mark_retry(stored.request_id, error, self._backoff(stored))
        except LeaseLostError as exc:
            log.warning("request %s: %s", stored.request_id.hex(), exc)

    def _backoff(self, stored: StoredRequest) -> float:
        return min(60.0, self.config.retry_delay * (2 ** min(stored.attempts, 6)))

    def _submit(self, report: TickReport) -> None:
        report.submitted = self.submitter.submit()

    def _expire(self, report: TickReport) -> None:
        now = self.chain.w3.eth.get_block("latest")["timestamp"]
        for state in (PENDING, EXECUTED):
            # only the expired rows (reading every open row each pass cost much under a backlog)
            expired = self.store.in_state(state, expired_before=now)
            report.expired += len(
                self.store.mark_final_many(
                    [(s.request_id, EXPIRED, "expired before delivery; cancel() refunds") for s in expired],
                    only_from=(state,),
                )
            )

    # ---------------------------------------------------------------- auto-cancel

    def _cancel(self, report: TickReport) -> None:
        """Refund expired requests with ``Router.cancel``, and follow up on cancels sent earlier.

        With a shared store only the leader (the relayer that follows the chain) does it, so no two relayers
        pay for the same cancel.
        """
        if not self.store.try_lead():
            return
        expired = self.store.in_state(EXPIRED, limit=AUTO_CANCEL_SCAN)
        if not expired:
            return
        now = self.chain.w3.eth.get_block("latest")["timestamp"]
        for stored in expired:
            record = auto_cancel_record(stored.outcome)
            if record is None:
                report.cancelled += self._send_cancel(stored, now)
            elif record[AUTO_CANCEL_KEY] == "sent":
                self._follow_cancel(stored, record)

    def _record_cancel(self, stored: StoredRequest, status: str, **details: Any) -> None:
        """Write the auto-cancel record into the request's outcome (it stays ``expired``)."""
        previous = auto_cancel_record(stored.outcome)
        expired = previous["expired"] if previous else stored.outcome
        record = {AUTO_CANCEL_KEY: status, **details, "expired": expired}
        self.store.mark_final(stored.request_id, EXPIRED, json.dumps(record))
        if status != "sent":
            self.metrics.cancels.inc(outcome=status)
            log.info("request %s: auto-cancel %s", stored.request_id.hex(), status)

    def _send_cancel(self, stored: StoredRequest, now: int) -> int:
        """Sign, persist and broadcast a cancel for one expired request; 1 if a transaction was sent."""
        if now <= stored.expiry:
            return 0  # not expired on-chain (cannot happen for a request the relayer closed as expired)
        if int.from_bytes(self.router.functions.commitments(stored.request_id).call(), "big") == 0:
            self._record_cancel(stored, "not_pending")
            return 0
        call = self.submitter.calls.encode("cancel", [stored.request().as_tuple()])
        try:
            gas = self.chain.w3.eth.estimate_gas(
                {"from": self.accounts.primary.address, "to": self.router.address, "data": call.data_hex}
            )
        except ContractLogicError as exc:
            self._record_cancel(stored, "failed", error=describe_revert(exc))
            return 0
        max_fee, priority = self.submitter.fees()
        gas_limit = int(gas * self.submitter.policy.gas_margin) + self.submitter.policy.gas_extra
        account = self.submitter.account_for(gas_limit, max_fee)
        if account is None:  # warned; the next pass tries again
            return 0
        tx = self.submitter.sign(account, call, gas_limit, max_fee, priority)
        # Durable before broadcast, like the submitter: a restart follows this transaction, never signs a twin.
        # In the transactions table too (with no requests), so the next fulfilment never reuses its nonce.
        self.store.record_transaction(tx.tx_hash, tx.nonce, tx.raw, [], sender=account.address)
        self.submitter.note_sent(account, gas_limit * max_fee)
        self._record_cancel(stored, "sent", tx=tx.tx_hash, nonce=tx.nonce, raw=tx.raw.hex(), sender=account.address)
        self.submitter.broadcast(tx.raw, tx.tx_hash)
        log.info("request %s expired: sent cancel %s (nonce %d)", stored.request_id.hex(), tx.tx_hash, tx.nonce)
        return 1

    def _follow_cancel(self, stored: StoredRequest, record: dict[str, Any]) -> None:
        """Read the receipt of a cancel sent earlier and record how it ended."""
        w3 = self.chain.w3
        sender = record.get("sender") or self.chain.address  # the leader may have changed since it was sent
        mined_nonce = w3.eth.get_transaction_count(sender, "latest")  # before the receipt: see submitter
        try:
            receipt = w3.eth.get_transaction_receipt(record["tx"])
        except TransactionNotFound:
            receipt = None
        if receipt is None:
            if mined_nonce > record["nonce"]:
                # Dropped (its nonce went to another transaction): forget it; the next pass decides afresh.
                self.store.mark_final(stored.request_id, EXPIRED, record.get("expired") or "expired")
                return
            try:
                w3.eth.get_transaction(record["tx"])
            except TransactionNotFound:
                self.submitter.broadcast(bytes.fromhex(record["raw"]), record["tx"])
            return
        self._count_gas("cancel", receipt)
        result: dict[str, Any] = {"tx": record["tx"], "block": receipt["blockNumber"], "gasUsed": receipt["gasUsed"]}
        if receipt["status"] == 1:
            events = self.router.events.Cancelled().process_receipt(receipt, errors=DISCARD)
            for ev in events:
                if bytes(ev["args"]["requestId"]) == stored.request_id:
                    result |= {"refund": ev["args"]["fee"], "to": ev["args"]["requester"]}
            self._record_cancel(stored, "cancelled", **result)
        else:  # someone settled it between the simulation and the block
            self._record_cancel(stored, "reverted", **result)

    # ---------------------------------------------------------------- observation

    def _observe(self, kind: str, *args: Any) -> None:
        """The store's observer hook (state changes, for the metrics); never raises."""
        try:
            if kind == "seen":
                items, added = args
                self.metrics.requests_seen.inc(added)
                now = time.time()
                for item in items:
                    self._seen_at.setdefault(item.request_id, now)
            elif kind == "final":
                self._on_final(*args)
            elif kind == "tx":
                self._on_transaction(*args)
        except Exception as exc:  # metrics are best effort
            log.warning("metrics hook %s failed: %s", kind, exc)

    def _on_final(self, before: StoredRequest, state: str, outcome: str) -> None:
        self.metrics.requests_finished.inc(state=state)
        if state == DELIVERED:
            self.metrics.delivered.inc()
            seen = before.seen_at or self._stored_seen_at(before.request_id) or self._seen_at.get(before.request_id)
            if seen is not None:
                self.metrics.latency.observe(max(0.0, time.time() - seen))
        elif state == FAILED:
            self.metrics.failed.inc(reason=failure_reason(outcome))
        self._seen_at.pop(before.request_id, None)

    def _stored_seen_at(self, request_id: bytes) -> float | None:
        """When the store first saw ``request_id`` (its ``seen_at`` column)."""
        try:
            return self.store.seen_at(request_id)
        except Exception:  # metrics are best effort
            return None

    def _on_transaction(self, tx_hash: str, state: str) -> None:
        if state == TX_DROPPED:
            self.metrics.submissions.inc(outcome="dropped")
        elif state == TX_REPLACED:
            self.metrics.submissions.inc(outcome="replaced")

    def _on_mined(self, tx_hash: str, receipt: Any) -> None:
        """The submitter's hook for each mined transaction (its receipt already read): count it and its gas."""
        try:
            self.metrics.submissions.inc(outcome="mined" if receipt["status"] == 1 else "reverted")
            self._count_gas("fulfil", receipt)
        except Exception as exc:  # metrics are best effort
            log.warning("metrics for %s failed: %s", tx_hash, exc)

    def _count_gas(self, kind: str, receipt: Any) -> None:
        gas = int(receipt["gasUsed"])
        price = int(receipt.get("effectiveGasPrice") or 0)
        self.metrics.gas_used.inc(gas, kind=kind)
        self.metrics.gas_cost.inc(gas * price, kind=kind)

    def _observe_chain(self, report: TickReport) -> None:
        """Refresh the state gauges and each account's balance, nonce and open transactions; warn on a low balance;
        probe the coprocessor now and then."""
        counts = self.store.counts()
        self.metrics.requests.replace(counts)
        open_txs = self.store.open_by_sender()
        accounts = []
        for account in self.accounts:
            account.balance = int(self.chain.w3.eth.get_balance(account.address))
            pending, _ = open_txs.get(account.key, (0, 0.0))
            next_nonce = self.submitter.next_nonce(account)
            self.metrics.balance.set(account.balance, account=account.address)
            self.metrics.account_pending.set(pending, account=account.address)
            self.metrics.account_nonce.set(next_nonce, account=account.address)
            accounts.append(
                {
                    "address": account.address,
                    "balance_wei": account.balance,
                    "next_nonce": next_nonce,
                    "pending_transactions": pending,
                    "low_balance": account.balance < self.config.min_balance_wei,
                }
            )
            self._check_balance(account)
        with self._health_lock:
            self._counts = counts
            self._accounts_report = accounts
        if time.monotonic() >= self._next_probe:
            self._next_probe = time.monotonic() + self.config.probe_interval
            up = self._probe_coprocessor()
            self.metrics.coprocessor_up.set(1 if up else 0)
            with self._health_lock:
                self._coprocessor_up = up

    def _check_balance(self, account: SubmitterAccount) -> None:
        """Warn (at most once per ``balance_alert_interval`` per account) when ``account`` holds too little."""
        minimum = self.config.min_balance_wei
        balance = account.balance
        if not minimum or balance is None:
            return
        if balance >= minimum:
            if account.last_alert is not None:
                log.info("relayer account %s balance is back to %d wei", account.address, balance)
            account.last_alert = None
            return
        now = time.monotonic()
        if account.last_alert is None or now - account.last_alert >= self.config.balance_alert_interval:
            account.last_alert = now
            consequence = "its transactions stop" if len(self.accounts) > 1 else "deliveries stop"
            log.warning(
                "low balance: relayer account %s holds %d wei, under --min-balance-wei %d; fund it or %s",
                account.address,
                balance,
                minimum,
                consequence,
            )

    def _probe_coprocessor(self) -> bool:
        """Whether any coprocessor of the pool answers ``/v1/health``."""
        for url in self.coprocessor.urls:
            try:
                if httpx.get(url.rstrip("/") + "/v1/health", timeout=2.0).status_code == 200:
                    return True
            except httpx.HTTPError:
                continue
        return False

    def health_report(self) -> dict[str, Any]:
        """The ``/health`` document: ``status`` is ``ok`` or ``degraded``, with the reasons in ``problems``."""
        stale_after = self.config.stale_after or max(10.0, 10 * self.config.poll_interval)
        with self._health_lock:
            last_ok, errors = self._last_tick_ok, list(self._last_errors)
            counts, accounts, up = dict(self._counts), list(self._accounts_report), self._coprocessor_up
            found = self._last_discovery
        age = None if last_ok is None else max(0.0, time.time() - last_ok)
        problems = []
        if age is None:
            problems.append("no successful pass yet")
        elif age > stale_after:
            problems.append(f"no successful pass for {age:.0f}s")
        if up is False:
            problems.append("coprocessor unreachable")
        elsewhere = self._held_elsewhere
        if elsewhere:
            problems.append(f"accounts in use by another relayer process: {', '.join(sorted(elsewhere))}")
        members = self.coprocessor.status()
        if members and not any(m["excluded"] is None for m in members):
            problems.append("no coprocessor holds a key the registry accepts (see excluded_signers)")
        warnings = []
        low = [a["address"] for a in accounts if a["low_balance"]]
        if accounts and len(low) == len(accounts):
            problems.append("balance under --min-balance-wei")
        elif low:  # the others go on delivering: not degraded, but say so
            warnings.append(f"balance under --min-balance-wei: {', '.join(low)}")
        balance = sum(a["balance_wei"] for a in accounts) if accounts else None
        return {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "warnings": warnings,
            "last_successful_tick_age_seconds": None if age is None else round(age, 3),
            "last_tick_errors": errors,
            "counts": counts,
            "balance_wei": balance,
            "min_balance_wei": self.config.min_balance_wei,
            "chain_id": self.chain_id,
            "router": self.router.address,
            "relayer": self.chain.address,
            "accounts": accounts,
            "coprocessor": self.config.coprocessor_url,
            "coprocessor_reachable": up,
            "coprocessors": members,
            "excluded_signers": self.liveness.excluded(),
            "discovery": None
            if self.discovery is None
            else {
                "registry": self.discovery.registry.address,
                "interval_seconds": self.config.discover_interval,
                "block": found.block if found else None,
                "candidates": found.candidates if found else None,
                "endpoints": found.endpoints if found else {},
                "refused": found.refused if found else {},
            },
            "store": self.store.location,
            "auto_cancel": self.config.auto_cancel,
        }

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Run the stages until SIGTERM/SIGINT (or ``stop`` is set): with ``config.pipeline`` (the default) as the
        concurrent loops of :data:`PIPELINE`, each every ``poll_interval`` seconds; else :meth:`tick` every
        ``poll_interval`` seconds."""
        targets = self.config.coprocessor_url or "no configured coprocessor"
        if self.discovery is not None:
            targets += f", plus those discovered in registry {self.discovery.registry.address}"
        log.info("relaying router %s on chain %d to %s", self.router.address, self.chain_id, targets)
        if self.config.metrics_port:
            self.serve_health()
        if self.config.pipeline:
            self._run_pipeline(stop or threading.Event())
        else:
            run_every(self.config.poll_interval, self.tick, stop)
        self.close()

    def _run_pipeline(self, stop: threading.Event) -> None:
        """One thread per loop of :data:`PIPELINE`, until ``stop`` is set or SIGTERM/SIGINT arrives.

        The loops share the store (its calls are serialised by a lock) and work on disjoint request states
        (``pending`` for execute, ``executed`` and ``submitted`` for submit), with the same fences as relayers
        sharing a PostgreSQL store: a request expired by the chain loop while another loop holds it is refused at
        the other loop's next write. Everything that signs a transaction (submit, replacements, auto-cancel) is
        in the one submit loop, so the nonce manager never races itself.
        """
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
            # The loops mostly wait on RPC and HTTP answers; one coming back waits for the GIL until the running
            # thread yields it, every 5 ms by default, several times a batch. 1 ms keeps that queue short.
            sys.setswitchinterval(PIPELINE_SWITCH_INTERVAL)
        stages = self._stages()
        stages["observe"] = self._throttled(stages["observe"], OBSERVE_INTERVAL)
        stages["expire"] = self._throttled(stages["expire"], EXPIRE_INTERVAL)
        threads = []
        for loop, names in PIPELINE.items():
            group = {name: stages[name] for name in names if name in stages}
            thread = threading.Thread(target=self._loop, args=(loop, group, stop), name=f"relayer-{loop}", daemon=True)
            thread.start()
            threads.append(thread)
        stop.wait()
        for thread in threads:
            thread.join(timeout=max(30.0, 3 * self.config.rpc_timeout))

    @staticmethod
    def _throttled(stage: Callable[[TickReport], None], interval: float) -> Callable[[TickReport], None]:
        """``stage``, run at most once every ``interval`` seconds (a call in between does nothing)."""
        due = [0.0]

        def run(report: TickReport) -> None:
            if time.monotonic() >= due[0]:
                due[0] = time.monotonic() + interval
                stage(report)

        return run

    def _loop(self, loop: str, stages: dict[str, Callable[[TickReport], None]], stop: threading.Event) -> None:
        """Run ``stages`` as one pass every ``poll_interval`` seconds (at once again if a pass took longer)."""
        passes, done, since = 0, 0, time.monotonic()
        while not stop.is_set():
            started = time.monotonic()
            report = self._run_stages(stages, loop)
            passes += 1
            done += report.seen + report.executed + report.submitted
            if started - since >= STAGE_REPORT_INTERVAL:
                self._log_stage_times(loop, stages, passes, done, started - since)
                passes, done, since = 0, 0, started
            stop.wait(max(0.0, self.config.poll_interval - (time.monotonic() - started)))

    def _log_stage_times(
        self, loop: str, stages: dict[str, Callable[[TickReport], None]], passes: int, done: int, elapsed: float
    ) -> None:
        """Log where ``loop`` spent the last ``elapsed`` seconds, stage by stage (and reset the tally)."""
        with self._health_lock:
            spent = {name: self._stage_seconds.pop(name, 0.0) for name in stages}
        if not done:
            return  # idle: nothing worth a line
        detail = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in spent.items() if seconds >= 0.05)
        log.info("%s loop: %d passes in %.0fs, %d requests moved; %s", loop, passes, elapsed, done, detail)


def _account_lease(address: str) -> str:
    """The name of the lease that keeps ``address`` to one relayer process."""
    return f"account:{address.lower()}"
