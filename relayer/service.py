"""The relayer loop: reconcile, watch, execute, submit, expire. One pass is :meth:`Relayer.tick`."""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

from apscheduler.schedulers.blocking import BlockingScheduler

from relayer.chain import ChainClient
from relayer.coprocessor_client import CoprocessorClient, CoprocessorError
from relayer.store import EXECUTED, EXPIRED, FAILED, PENDING, Store, StoredRequest
from relayer.submitter import SubmitPolicy, Submitter
from relayer.watcher import Watcher
from verifier.protocol import Domain
from verifier.signed_result import SignedResultError, verify_signed_result

log = logging.getLogger("teebridge.relayer")


@dataclass(frozen=True)
class RelayerConfig:
    """Everything a relayer needs to run."""

    rpc_url: str
    private_key: str
    router: str
    coprocessor_url: str
    db_path: Path
    start_block: int = 0
    confirmations: int = 0
    poll_interval: float = 0.5
    max_batch: int = 32
    retry_delay: float = 1.0


@dataclass
class TickReport:
    """What one pass did."""

    seen: int = 0
    executed: int = 0
    submitted: int = 0
    expired: int = 0
    errors: list[str] = field(default_factory=list)


class Relayer:
    """Watches one Router and relays its requests to one coprocessor."""

    def __init__(self, config: RelayerConfig) -> None:
        self.config = config
        self.chain = ChainClient(config.rpc_url, config.private_key)
        self.router = self.chain.contract("Router", config.router)
        self.chain_id = self.chain.chain_id
        self.domain = Domain(self.chain_id, self.router.address)
        self.store = Store(config.db_path)
        self.store.bind(self.chain_id, self.router.address)
        self.coprocessor = CoprocessorClient(config.coprocessor_url)
        self.watcher = Watcher(
            self.chain.w3, self.router, self.store, start_block=config.start_block, confirmations=config.confirmations
        )
        self.submitter = Submitter(
            self.chain,
            self.router,
            self.store,
            SubmitPolicy(max_batch=config.max_batch, retry_delay=config.retry_delay),
        )

    def close(self) -> None:
        """Release the database and HTTP connections."""
        self.coprocessor.close()
        self.store.close()

    def tick(self) -> TickReport:
        """One full pass. Each stage runs even if an earlier one failed; errors are logged and reported."""
        report = TickReport()
        stages = {
            "reconcile": self._reconcile,
            "watch": self._watch,
            "execute": self._execute,
            "submit": self._submit,
            "settle": self._reconcile,
            "expire": self._expire,
        }
        for name, stage in stages.items():
            try:
                stage(report)
            except Exception as exc:  # a flaky RPC or coprocessor must not kill the loop
                log.warning("%s failed: %s", name, exc)
                report.errors.append(f"{name}: {exc}")
        return report

    def _reconcile(self, report: TickReport) -> None:
        self.submitter.reconcile()

    def _watch(self, report: TickReport) -> None:
        report.seen = self.watcher.poll()

    def _execute(self, report: TickReport) -> None:
        pending = self.store.in_state(PENDING, limit=self.config.max_batch, due=True)
        if pending:
            report.executed = self._execute_batch(pending)

    def _execute_batch(self, pending: list[StoredRequest]) -> int:
        try:
            results = self.coprocessor.execute(self.chain_id, self.router.address, pending)
        except CoprocessorError as exc:
            if not exc.retryable and len(pending) > 1:
                return sum(self._execute_batch([one]) for one in pending)
            for stored in pending:
                if exc.retryable:
                    self.store.mark_retry(stored.request_id, str(exc), self._backoff(stored))
                else:
                    self.store.mark_final(stored.request_id, FAILED, f"coprocessor refused the request: {exc}")
            log.warning("execute failed for %d request(s): %s", len(pending), exc)
            return 0
        done = 0
        for stored, signed in zip(pending, results, strict=True):
            try:
                verify_signed_result(signed, stored.request(), self.domain)
            except SignedResultError as exc:
                self.store.mark_retry(
                    stored.request_id, f"coprocessor returned a bad signature: {exc}", self._backoff(stored)
                )
                continue
            self.store.mark_executed(stored.request_id, signed.to_json())
            done += 1
        return done

    def _backoff(self, stored: StoredRequest) -> float:
        return min(60.0, self.config.retry_delay * (2 ** min(stored.attempts, 6)))

    def _submit(self, report: TickReport) -> None:
        report.submitted = self.submitter.submit()

    def _expire(self, report: TickReport) -> None:
        now = self.chain.w3.eth.get_block("latest")["timestamp"]
        for state in (PENDING, EXECUTED):
            for stored in self.store.in_state(state):
                if now > stored.expiry:
                    self.store.mark_final(stored.request_id, EXPIRED, "expired before delivery; cancel() refunds")
                    report.expired += 1

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Run :meth:`tick` every ``poll_interval`` seconds until SIGTERM/SIGINT (or ``stop`` is set)."""
        scheduler = BlockingScheduler()
        scheduler.add_job(
            self.tick,
            "interval",
            seconds=self.config.poll_interval,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )

        def shutdown(*_: object) -> None:
            scheduler.shutdown(wait=False)

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, shutdown)
            signal.signal(signal.SIGINT, shutdown)
        if stop is not None:
            threading.Thread(target=lambda: (stop.wait(), shutdown()), daemon=True).start()
        log.info(
            "relaying router %s on chain %d to %s", self.router.address, self.chain_id, self.config.coprocessor_url
        )
        self.tick()
        scheduler.start()
        self.close()
