"""The relayer's durable state: requests seen, their progress, and every transaction it signed.

A request moves through these states::

    pending --execute--> executed --submit--> submitted --receipt--> delivered
       |                    |                     |                   (or settled: done by someone else,
       +--------------------+---------------------+-----> expired      or failed: refused for a reason)

The invariant that makes a restart (even after ``kill -9``) lose nothing and submit nothing twice: a
transaction is signed and written here, together with the states of the requests it carries, in one SQL
transaction *before* it is broadcast. After a crash the relayer (or, past its lease, another relayer) finds
it here and re-broadcasts the same signed bytes (same nonce, same hash) or reads its receipt; nobody ever
signs a second transaction for them.

Two backends share this module's SQL: :class:`Store` (SQLite, one relayer process per file, the default) and
:class:`relayer.store_pg.PostgresStore` (several relayer processes on several machines sharing one state).
:func:`open_store` picks one from a path or a ``postgresql://`` URL. Work is handed out with leases
(:meth:`SqlStore.claim`, :meth:`SqlStore.claim_transactions`, :meth:`SqlStore.try_lead`): a store opened with
an ``owner`` only moves the requests it holds a live lease on, so with PostgreSQL no two relayers execute,
submit or reconcile the same thing, and the leases of a relayer that died expire and are taken over.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from verifier.hexutil import from_hex, to_hex
from verifier.protocol import Request

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    request_id         TEXT PRIMARY KEY,
    requester          TEXT NOT NULL,
    job_id             TEXT NOT NULL,
    input              BLOB NOT NULL,
    callback_gas_limit INTEGER NOT NULL,
    fee                TEXT NOT NULL,
    expiry             INTEGER NOT NULL,
    block_number       INTEGER NOT NULL,
    tx_hash            TEXT NOT NULL,
    state              TEXT NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at    REAL NOT NULL DEFAULT 0,
    fulfillment        TEXT,
    submit_tx          TEXT,
    outcome            TEXT,
    last_error         TEXT,
    seen_at            REAL NOT NULL,
    updated_at         REAL NOT NULL,
    lease_owner        TEXT,
    lease_until        REAL NOT NULL DEFAULT 0,
    reexecutions       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS requests_state ON requests (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS requests_state_order ON requests (state, block_number, seen_at);
CREATE TABLE IF NOT EXISTS transactions (
    tx_hash     TEXT PRIMARY KEY,
    nonce       INTEGER NOT NULL,
    raw         TEXT NOT NULL,
    request_ids TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  REAL NOT NULL,
    sender      TEXT,
    lease_owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS transactions_state ON transactions (state);
CREATE TABLE IF NOT EXISTS scanned_blocks (
    number INTEGER PRIMARY KEY,
    hash   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    name        TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    lease_until REAL NOT NULL
);
"""

#: Columns added after the first release, with their SQLite definitions: an older database file gets them on open.
ADDED_COLUMNS = {
    "requests": {
        "lease_owner": "TEXT",
        "lease_until": "REAL NOT NULL DEFAULT 0",
        "reexecutions": "INTEGER NOT NULL DEFAULT 0",
    },
    "transactions": {"sender": "TEXT", "lease_owner": "TEXT", "lease_until": "REAL NOT NULL DEFAULT 0"},
}

PENDING = "pending"
EXECUTED = "executed"
SUBMITTED = "submitted"
DELIVERED = "delivered"
SETTLED = "settled"
EXPIRED = "expired"
FAILED = "failed"
#: The request's log was in a block a reorganisation removed. Set only by :meth:`SqlStore.rewind`; if the same
#: request id is logged again on the new chain, :meth:`SqlStore.record_scan` revives the row as ``pending``.
ORPHANED = "orphaned"
OPEN_STATES = (PENDING, EXECUTED, SUBMITTED)

#: How many times one request is executed again because the Router refused its result's signer as no longer live
#: (:meth:`SqlStore.requeue_for_reexecution`); past this it is closed as ``failed``.
MAX_REEXECUTIONS = 5

TX_SENT = "sent"
TX_MINED = "mined"
TX_DROPPED = "dropped"
#: A signed version of a nonce that was not mined because another version of the same nonce (a fee-bumped
#: replacement, or the original it replaced) was: its requests are settled by that one.
TX_REPLACED = "replaced"

#: Seconds a lease lasts unless renewed; a relayer renews its leases every pass.
DEFAULT_LEASE_SECONDS = 30.0
#: The lease that designates the one relayer which follows the chain (watch) and auto-cancels.
LEADER_LEASE = "leader"


class LeaseLostError(RuntimeError):
    """This relayer no longer holds the lease a write needed (it stalled past it and another relayer took over).

    Nothing was written; the work now belongs to the other relayer.
    """


class StoreConfigError(ValueError):
    """The store location cannot be used as given (an unknown URL scheme, a missing driver)."""


@dataclass(frozen=True, slots=True)
class StoredRequest:
    """One request as the relayer saw it in a ``Requested`` log."""

    request_id: bytes
    requester: str
    job_id: bytes
    input: bytes
    callback_gas_limit: int
    fee: int
    expiry: int
    block_number: int
    tx_hash: str
    state: str = PENDING
    attempts: int = 0
    fulfillment: dict[str, Any] | None = None
    submit_tx: str | None = None
    outcome: str | None = None
    last_error: str | None = None
    reexecutions: int = 0
    """How many times its signed result was discarded and the request executed again (the Router refused the
    result's signer as no longer live; see :meth:`SqlStore.requeue_for_reexecution`)."""
    seen_at: float = field(default=0.0, compare=False)
    """When the store first saw the request (Unix time); 0.0 for one not read from the store. Not part of
    equality: two reads of one request are equal whatever the row's bookkeeping."""

    def request(self) -> Request:
        """The committed fields of this request."""
        return Request.from_input(
            request_id=self.request_id,
            requester=self.requester,
            job_id=self.job_id,
            input=self.input,
            callback_gas_limit=self.callback_gas_limit,
            fee=self.fee,
            expiry=self.expiry,
        )


@dataclass(frozen=True, slots=True)
class StoredTransaction:
    """A signed submission, written before it was broadcast."""

    tx_hash: str
    nonce: int
    raw: bytes
    request_ids: tuple[bytes, ...]
    state: str
    sender: str | None = None
    """The signing account (lowercase ``0x`` address); None only for rows of a database older than leases."""
    created_at: float = 0.0
    """When this version was signed and persisted (Unix time)."""


class Handle(Protocol):
    """What a backend's connection offers inside :meth:`SqlStore.transaction` (SQL with ``?`` placeholders)."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any:
        """Run one statement; the result iterates over rows that are indexable by column name."""

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> Any:
        """Run one statement for each parameter tuple."""


class SqlStore:
    """The relayer state, in SQL both backends understand; a backend supplies connections and locking.

    ``owner`` (the relayer account's lowercase address) makes the store lease-aware: :meth:`claim`,
    :meth:`claim_transactions` and :meth:`try_lead` hand out work to it, and :meth:`mark_executed`,
    :meth:`mark_retry`, :meth:`record_transaction`, :meth:`record_scan` and :meth:`rewind` refuse
    (:class:`LeaseLostError`) to move work whose lease another owner holds. Without an owner (tools, tests)
    nothing is fenced.
    """

    #: Appended to the SELECT that picks rows to claim: PostgreSQL's ``FOR UPDATE SKIP LOCKED``.
    claim_lock = ""
    #: Appended to a SELECT that checks a lease before a write: PostgreSQL's ``FOR UPDATE`` (waits for the row).
    row_lock = ""
    #: Where the state lives, for messages (a file path or a URL without its password).
    location = ""

    def __init__(self, owner: str | None = None, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.owner = owner.lower() if owner else None
        self.lease_seconds = lease_seconds
        self.observer: Callable[..., None] | None = None
        """Called as ``observer(kind, *details)`` after a write that changed something; must not raise."""
        self._lock = threading.RLock()
        """Serialises the use of the one connection by the relayer's concurrent loops (a whole SQL transaction
        at a time)."""

    # ---------------------------------------------------------------- backend primitives

    @contextmanager
    def transaction(self) -> Iterator[Handle]:
        """One atomic SQL transaction."""
        raise NotImplementedError
        yield  # pragma: no cover

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of one read outside any transaction."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection."""
        raise NotImplementedError

    # ---------------------------------------------------------------- meta

    def get_meta(self, key: str) -> str | None:
        """A stored setting, or None."""
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def bind(self, chain_id: int, router: str) -> None:
        """Tie this database to one chain and router; refuse to reuse it for another."""
        identity = f"{chain_id}:{router.lower()}"
        if self.get_meta("identity") is None:
            with self.transaction() as db:
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('identity', ?) ON CONFLICT (key) DO NOTHING", (identity,)
                )
        current = self.get_meta("identity")
        if current != identity:
            raise RuntimeError(
                f"relayer database {self.location} belongs to {current}, not {identity}: use another --db"
            )

    def cursor(self) -> int | None:
        """The last block whose logs are fully stored, or None before the first poll."""
        value = self.get_meta("cursor")
        return int(value) if value is not None else None

    # ---------------------------------------------------------------- requests

    @staticmethod
    def _row(row: Any) -> StoredRequest:
        return StoredRequest(
            request_id=from_hex(row["request_id"]),
            requester=row["requester"],
            job_id=from_hex(row["job_id"]),
            input=bytes(row["input"]),
            callback_gas_limit=row["callback_gas_limit"],
            fee=int(row["fee"]),
            expiry=row["expiry"],
            block_number=row["block_number"],
            tx_hash=row["tx_hash"],
            state=row["state"],
            attempts=row["attempts"],
            fulfillment=json.loads(row["fulfillment"]) if row["fulfillment"] else None,
            submit_tx=row["submit_tx"],
            outcome=row["outcome"],
            last_error=row["last_error"],
            reexecutions=row["reexecutions"],
            seen_at=float(row["seen_at"]),
        )

    def get(self, request_id: bytes) -> StoredRequest | None:
        """One request by id."""
        rows = self._query("SELECT * FROM requests WHERE request_id = ?", (to_hex(request_id),))
        return self._row(rows[0]) if rows else None

    def full_result(self, request_id: bytes) -> bytes | None:
        """The full bytes of a result too large for the chain (status RESULT_OFFCHAIN), or None.

        Safe to call from another thread than the relayer's loop (the operator HTTP server does).
        """
        rows = self._read_concurrently("SELECT fulfillment FROM requests WHERE request_id = ?", (to_hex(request_id),))
        if not rows or not rows[0]["fulfillment"]:
            return None
        full = json.loads(rows[0]["fulfillment"]).get("fullResult")
        return bytes.fromhex(full[2:]) if full else None

    def _read_concurrently(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return self._query(sql, params)

    def seen_at(self, request_id: bytes) -> float | None:
        """When a request was first stored (Unix time), or None."""
        rows = self._query("SELECT seen_at FROM requests WHERE request_id = ?", (to_hex(request_id),))
        return float(rows[0]["seen_at"]) if rows else None

    def lease_of(self, request_id: bytes) -> tuple[str | None, float]:
        """Who holds the lease on a request and until when (for tests and audits)."""
        rows = self._query("SELECT lease_owner, lease_until FROM requests WHERE request_id = ?", (to_hex(request_id),))
        return (rows[0]["lease_owner"], float(rows[0]["lease_until"])) if rows else (None, 0.0)

    def in_state(
        self, state: str, limit: int = 1000, *, due: bool = False, expired_before: int | None = None
    ) -> list[StoredRequest]:
        """Requests in ``state``, oldest first; with ``due``, only those whose retry time has come; with
        ``expired_before`` (a chain timestamp), only those whose expiry is below it."""
        sql = "SELECT * FROM requests WHERE state = ?"
        params: list[Any] = [state]
        if due:
            sql += " AND next_attempt_at <= ?"
            params.append(time.time())
        if expired_before is not None:
            sql += " AND expiry < ?"
            params.append(expired_before)
        sql += " ORDER BY block_number, seen_at LIMIT ?"
        params.append(limit)
        return [self._row(r) for r in self._query(sql, params)]

    def claim(self, state: str, limit: int) -> list[StoredRequest]:
        """Lease up to ``limit`` due requests in ``state`` to this store's owner, oldest first; return them.

        A request is claimable when nobody holds a live lease on it, or the owner already does (its lease is
        extended). With PostgreSQL the rows are picked ``FOR UPDATE SKIP LOCKED``: relayers claiming at the
        same moment get disjoint sets without waiting for each other.
        """
        now = time.time()
        rows = self._lease(
            "requests", "request_id", "state = ? AND next_attempt_at <= ?", (state, now), "block_number, seen_at", limit
        )
        return [self._row(r) for r in rows]

    def _lease(
        self, table: str, key: str, where: str, params: tuple[Any, ...], order: str, limit: int | None = None
    ) -> list[Any]:
        """Lease to this owner the rows of ``table`` matching ``where`` that nobody else holds a live lease on
        (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), in ``order``, at most ``limit``; return them."""
        if self.owner is None:
            raise RuntimeError(f"leasing {table} needs a store opened with an owner")
        now = time.time()
        sql = (
            f"SELECT * FROM {table} WHERE {where} AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < ?)"
            f" ORDER BY {order}"
        )
        args: tuple[Any, ...] = (*params, self.owner, now)
        if limit is not None:
            sql, args = sql + " LIMIT ?", (*args, limit)
        with self.transaction() as db:
            rows = list(db.execute(sql + self.claim_lock, args))
            db.executemany(
                f"UPDATE {table} SET lease_owner = ?, lease_until = ? WHERE {key} = ?",
                [(self.owner, now + self.lease_seconds, r[key]) for r in rows],
            )
        return rows

    def renew_leases(self) -> None:
        """Extend every lease this owner holds on open work (requests, transactions, named leases)."""
        if self.owner is None:
            return
        until = time.time() + self.lease_seconds
        marks = ", ".join("?" for _ in OPEN_STATES)
        with self.transaction() as db:
            db.execute(
                f"UPDATE requests SET lease_until = ? WHERE lease_owner = ? AND state IN ({marks})",
                (until, self.owner, *OPEN_STATES),
            )
            db.execute(
                "UPDATE transactions SET lease_until = ? WHERE lease_owner = ? AND state = ?",
                (until, self.owner, TX_SENT),
            )
            db.execute("UPDATE leases SET lease_until = ? WHERE owner = ?", (until, self.owner))

    def counts(self) -> dict[str, int]:
        """How many requests are in each state."""
        return {r["state"]: r["n"] for r in self._query("SELECT state, COUNT(*) AS n FROM requests GROUP BY state")}

    def _fence(self, db: Handle, request_ids: Sequence[bytes], state: str) -> None:
        """Raise :class:`LeaseLostError` unless every request is in ``state`` and leased to nobody else."""
        if self.owner is None:
            return
        for request_id in sorted(request_ids):
            rows = list(
                db.execute(
                    f"SELECT state, lease_owner, lease_until FROM requests WHERE request_id = ?{self.row_lock}",
                    (to_hex(request_id),),
                )
            )
            if not rows or rows[0]["state"] != state:
                raise LeaseLostError(f"request {to_hex(request_id)} is no longer {state}: another relayer moved it")
            holder = rows[0]["lease_owner"]
            if holder not in (None, self.owner) and rows[0]["lease_until"] >= time.time():
                raise LeaseLostError(f"request {to_hex(request_id)} is leased to {holder}, not to {self.owner}")

    def mark_executed(self, request_id: bytes, fulfillment: dict[str, Any]) -> None:
        """Store the verified signed fulfilment of a pending request."""
        lost = self.mark_executed_many([(request_id, fulfillment)])
        if lost:
            raise LeaseLostError(lost[request_id])

    def mark_executed_many(self, items: Sequence[tuple[bytes, dict[str, Any]]]) -> dict[bytes, str]:
        """Store the verified signed fulfilments of pending requests, all in one SQL transaction.

        Each request is fenced on its own (:meth:`_fence`): one that is no longer ``pending`` or is leased to
        another owner is left alone. Returns those left alone, each with the reason (their results are dropped;
        empty when all were stored).
        """
        now = time.time()
        lost: dict[bytes, str] = {}
        with self.transaction() as db:
            stored = []
            for request_id, fulfillment in sorted(items, key=lambda item: item[0]):  # row locks in one order
                try:
                    self._fence(db, [request_id], PENDING)
                except LeaseLostError as exc:
                    lost[request_id] = str(exc)
                    continue
                stored.append((EXECUTED, json.dumps(fulfillment), now, to_hex(request_id)))
            db.executemany(
                "UPDATE requests SET state = ?, fulfillment = ?, last_error = NULL, updated_at = ?"
                " WHERE request_id = ?",
                stored,
            )
        return lost

    def mark_retry(self, request_id: bytes, error: str, delay: float) -> None:
        """Record a transient failure; try again after ``delay`` seconds (by whichever relayer claims it then)."""
        with self.transaction() as db:
            if self.owner is not None:
                current = self._query_in(db, "SELECT state FROM requests WHERE request_id = ?", (to_hex(request_id),))
                if current:
                    self._fence(db, [request_id], current[0]["state"])
            db.execute(
                "UPDATE requests SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, updated_at = ?,"
                " lease_owner = NULL, lease_until = 0 WHERE request_id = ?",
                (error, time.time() + delay, time.time(), to_hex(request_id)),
            )

    def requeue_for_reexecution(
        self, request_id: bytes, reason: str, *, only_from: Sequence[str], limit: int = MAX_REEXECUTIONS
    ) -> str | None:
        """Discard a request's signed result, whose signer the Router no longer accepts, and send the request back
        to ``pending`` (unleased, due now) so that another enclave executes it; count it in ``reexecutions``.

        Once the request was re-executed ``limit`` times it is closed as ``failed`` instead, with ``reason``. Only a
        request in one of ``only_from`` moves (``executed``: refused in simulation; ``submitted``: refused in a
        mined transaction); with an owner, one leased live to another owner raises :class:`LeaseLostError`.
        Returns the new state (``pending`` or ``failed``), or None if the request was not in ``only_from``.
        """
        now = time.time()
        with self.transaction() as db:
            rows = self._query_in(
                db,
                f"SELECT * FROM requests WHERE request_id = ?{self.row_lock}",
                (to_hex(request_id),),
            )
            if not rows or rows[0]["state"] not in only_from:
                return None
            before = self._row(rows[0])
            holder = rows[0]["lease_owner"]
            if self.owner is not None and holder not in (None, self.owner) and rows[0]["lease_until"] >= now:
                raise LeaseLostError(f"request {to_hex(request_id)} is leased to {holder}, not to {self.owner}")
            outcome = reason
            if before.reexecutions >= limit:
                outcome = f"re-executed {before.reexecutions} times, its result refused every time: {reason}"
                db.execute(
                    "UPDATE requests SET state = ?, outcome = ?, updated_at = ? WHERE request_id = ?",
                    (FAILED, outcome, now, to_hex(request_id)),
                )
                state = FAILED
            else:
                db.execute(
                    "UPDATE requests SET state = ?, fulfillment = NULL, submit_tx = NULL, last_error = ?,"
                    " reexecutions = reexecutions + 1, next_attempt_at = 0, updated_at = ?, lease_owner = NULL,"
                    " lease_until = 0 WHERE request_id = ?",
                    (PENDING, reason, now, to_hex(request_id)),
                )
                state = PENDING
        if state == FAILED:
            self._notify("final", before, FAILED, outcome)
        return state

    def mark_final(self, request_id: bytes, state: str, outcome: str, *, only_from: Sequence[str] = ()) -> bool:
        """Close a request: delivered, settled, expired or failed, with what happened.

        With ``only_from``, only a request currently in one of those states changes. Returns whether it did.
        """
        return bool(self.mark_final_many([(request_id, state, outcome)], only_from=only_from))

    def mark_final_many(self, items: Sequence[tuple[bytes, str, str]], *, only_from: Sequence[str] = ()) -> list[bytes]:
        """Close several requests (``(request_id, state, outcome)`` each) in one SQL transaction; see
        :meth:`mark_final`. Returns the ids that changed."""
        if not items:
            return []
        sql = "UPDATE requests SET state = ?, updated_at = ?, outcome = ? WHERE request_id = ?"
        if only_from:
            sql += f" AND state IN ({', '.join('?' for _ in only_from)})"
        now = time.time()
        changed: list[bytes] = []
        before: dict[bytes, StoredRequest] = {}
        with self.transaction() as db:
            if self.observer is not None:
                for chunk in range(0, len(items), 500):
                    ids = [to_hex(request_id) for request_id, _, _ in items[chunk : chunk + 500]]
                    marks = ", ".join("?" for _ in ids)
                    for row in db.execute(f"SELECT * FROM requests WHERE request_id IN ({marks})", ids):
                        before[from_hex(row["request_id"])] = self._row(row)
            for request_id, state, outcome in items:
                if db.execute(sql, [state, now, outcome, to_hex(request_id), *only_from]).rowcount > 0:
                    changed.append(request_id)
        outcomes = {request_id: (state, outcome) for request_id, state, outcome in items}
        for request_id in changed:
            state, outcome = outcomes[request_id]
            previous = before.get(request_id)
            if previous is not None and previous.state != state:
                self._notify("final", previous, state, outcome)
        return changed

    def _notify(self, kind: str, *details: Any) -> None:
        if self.observer is not None:
            self.observer(kind, *details)

    @staticmethod
    def _query_in(db: Handle, sql: str, params: Sequence[Any]) -> list[Any]:
        return list(db.execute(sql, params))

    # ---------------------------------------------------------------- transactions

    def next_nonce(self, sender: str | None = None) -> int | None:
        """One past the highest nonce signed from ``sender`` (default: the owner; else any account), or None."""
        sender = (sender or self.owner or "").lower()
        if sender:
            rows = self._query("SELECT MAX(nonce) AS n FROM transactions WHERE sender = ?", (sender,))
        else:
            rows = self._query("SELECT MAX(nonce) AS n FROM transactions")
        return None if rows[0]["n"] is None else rows[0]["n"] + 1

    def open_by_sender(self) -> dict[str, tuple[int, float]]:
        """For each account with open transactions: (how many nonces are open, when the oldest was signed)."""
        rows = self._query(
            "SELECT sender, COUNT(DISTINCT nonce) AS n, MIN(created_at) AS oldest FROM transactions WHERE state = ?"
            " AND sender IS NOT NULL GROUP BY sender",
            (TX_SENT,),
        )
        return {r["sender"]: (int(r["n"]), float(r["oldest"])) for r in rows}

    def release(self, request_ids: Iterable[bytes]) -> None:
        """Give up this owner's leases on ``request_ids`` (e.g. no account of it can pay to submit them now), so
        another relayer sharing the store may take them at once."""
        if self.owner is None:
            return
        with self.transaction() as db:
            db.executemany(
                "UPDATE requests SET lease_owner = NULL, lease_until = 0 WHERE request_id = ? AND lease_owner = ?",
                [(to_hex(r), self.owner) for r in request_ids],
            )

    def record_transaction(
        self, tx_hash: str, nonce: int, raw: bytes, request_ids: list[bytes], *, sender: str | None = None
    ) -> None:
        """Persist a signed transaction and mark its requests submitted, before broadcasting it.

        With an owner, every request must still be ``executed`` and leased to it, else :class:`LeaseLostError`
        and nothing is written: the caller must then not broadcast.
        """
        now = time.time()
        sender = (sender or self.owner or "").lower() or None
        with self.transaction() as db:
            self._fence(db, request_ids, EXECUTED)
            db.execute(
                "INSERT INTO transactions (tx_hash, nonce, raw, request_ids, state, created_at, sender, lease_owner,"
                " lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    tx_hash,
                    nonce,
                    raw.hex(),
                    json.dumps([to_hex(r) for r in request_ids]),
                    TX_SENT,
                    now,
                    sender,
                    self.owner,
                    now + self.lease_seconds if self.owner else 0,
                ),
            )
            db.executemany(
                "UPDATE requests SET state = ?, submit_tx = ?, updated_at = ? WHERE request_id = ?",
                [(SUBMITTED, tx_hash, now, to_hex(r)) for r in request_ids],
            )

    def record_replacement(
        self, tx_hash: str, replaces: StoredTransaction, raw: bytes, *, sender: str | None = None
    ) -> None:
        """Persist a fee-bumped replacement of ``replaces`` (same nonce, same requests), before broadcasting it.

        Both versions stay open: whichever is mined settles the requests (:meth:`close_transaction` the other as
        :data:`TX_REPLACED`). The requests' ``submit_tx`` points to the newest version. With an owner, the version
        replaced must still be open and leased to it, and its requests ``submitted`` and leased to nobody else;
        else :class:`LeaseLostError` and nothing is written: the caller must then not broadcast.
        """
        now = time.time()
        sender = (sender or self.owner or "").lower() or None
        with self.transaction() as db:
            rows = list(
                db.execute(
                    f"SELECT state, lease_owner FROM transactions WHERE tx_hash = ?{self.row_lock}", (replaces.tx_hash,)
                )
            )
            if not rows or rows[0]["state"] != TX_SENT:
                raise LeaseLostError(f"transaction {replaces.tx_hash} is no longer open: not replacing it")
            if self.owner is not None and rows[0]["lease_owner"] != self.owner:
                raise LeaseLostError(f"transaction {replaces.tx_hash} is reconciled by {rows[0]['lease_owner']}")
            self._fence(db, replaces.request_ids, SUBMITTED)
            db.execute(
                "INSERT INTO transactions (tx_hash, nonce, raw, request_ids, state, created_at, sender, lease_owner,"
                " lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    tx_hash,
                    replaces.nonce,
                    raw.hex(),
                    json.dumps([to_hex(r) for r in replaces.request_ids]),
                    TX_SENT,
                    now,
                    sender,
                    self.owner,
                    now + self.lease_seconds if self.owner else 0,
                ),
            )
            db.executemany(
                "UPDATE requests SET submit_tx = ?, updated_at = ? WHERE request_id = ? AND state = ?",
                [(tx_hash, now, to_hex(r), SUBMITTED) for r in replaces.request_ids],
            )

    def versions_of(self, sender: str, nonce: int) -> list[StoredTransaction]:
        """Every signed version of one nonce of ``sender``, oldest first (for tests and audits)."""
        rows = self._query(
            "SELECT * FROM transactions WHERE sender = ? AND nonce = ? ORDER BY created_at", (sender.lower(), nonce)
        )
        return [self._tx(r) for r in rows]

    @staticmethod
    def _tx(r: Any) -> StoredTransaction:
        return StoredTransaction(
            r["tx_hash"],
            r["nonce"],
            bytes.fromhex(r["raw"]),
            tuple(from_hex(x) for x in json.loads(r["request_ids"])),
            r["state"],
            r["sender"],
            float(r["created_at"]),
        )

    def open_transactions(self) -> list[StoredTransaction]:
        """Signed transactions whose outcome is not known yet (of every account)."""
        return [
            self._tx(r) for r in self._query("SELECT * FROM transactions WHERE state = ? ORDER BY nonce", (TX_SENT,))
        ]

    def claim_transactions(self) -> list[StoredTransaction]:
        """Lease the open transactions this owner must reconcile: its own, and those whose owner's lease expired.

        A transaction another relayer signed and then died with is *adopted*: its receipt is read, or the same
        signed bytes are re-broadcast (anyone may broadcast a signed transaction), so its requests are
        delivered exactly once even if its signer never comes back.
        """
        rows = self._lease("transactions", "tx_hash", "state = ?", (TX_SENT,), "sender, nonce")
        return [self._tx(r) for r in rows]

    def close_transaction(self, tx_hash: str, state: str, *, requeue: Iterable[bytes] = ()) -> None:
        """Mark a transaction mined, dropped or replaced; put ``requeue`` (the requests of a dropped one) back to
        ``executed`` (unleased)."""
        now = time.time()
        with self.transaction() as db:
            db.execute("UPDATE transactions SET state = ? WHERE tx_hash = ?", (state, tx_hash))
            db.executemany(
                "UPDATE requests SET state = ?, submit_tx = NULL, updated_at = ?, lease_owner = NULL, lease_until = 0"
                " WHERE request_id = ? AND state = ?",
                [(EXECUTED, now, to_hex(r), SUBMITTED) for r in requeue],
            )
        self._notify("tx", tx_hash, state)

    def transactions_for(self, request_id: bytes) -> int:
        """How many transactions were signed that carry ``request_id``, fee-bumped versions of one nonce included
        (for tests and audits)."""
        needle = f'%"{to_hex(request_id)}"%'
        return self._query("SELECT COUNT(*) AS n FROM transactions WHERE request_ids LIKE ?", (needle,))[0]["n"]

    # ---------------------------------------------------------------- leadership

    def try_lead(self, name: str = LEADER_LEASE) -> bool:
        """Take or extend the named lease for this owner if it is free, expired or already ours; return if held."""
        return self.owner is None or self.hold(name, self.owner) is None

    def hold(self, name: str, holder: str, holder_is_gone: Callable[[str], bool] = lambda _: False) -> str | None:
        """Take or extend the named lease ``name`` for ``holder`` (any string: not this store's owner) for
        ``lease_seconds``, when it is free, expired, already ``holder``'s, or its holder is known gone
        (``holder_is_gone``). Returns None when ``holder`` holds it now, else the other, live holder."""
        now = time.time()
        until = now + self.lease_seconds
        with self.transaction() as db:
            db.execute(
                "INSERT INTO leases (name, owner, lease_until) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
                (name, holder, until),
            )
            (row,) = list(db.execute(f"SELECT owner, lease_until FROM leases WHERE name = ?{self.row_lock}", (name,)))
            current = row["owner"]
            if current != holder and row["lease_until"] >= now and not holder_is_gone(current):
                return current
            db.execute("UPDATE leases SET owner = ?, lease_until = ? WHERE name = ?", (holder, until, name))
        return None

    def let_go(self, name: str, holder: str) -> None:
        """Give up the named lease ``name`` if ``holder`` holds it (a clean shutdown: the next holder need not
        wait for it to run out)."""
        with self.transaction() as db:
            db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, holder))

    def leader(self, name: str = LEADER_LEASE) -> str | None:
        """The owner holding the named lease now, or None."""
        rows = self._query("SELECT owner FROM leases WHERE name = ? AND lease_until >= ?", (name, time.time()))
        return rows[0]["owner"] if rows else None

    def _fence_leader(self, db: Handle) -> None:
        if self.owner is None:
            return
        rows = list(db.execute(f"SELECT owner, lease_until FROM leases WHERE name = ?{self.row_lock}", (LEADER_LEASE,)))
        if not rows or rows[0]["owner"] != self.owner or rows[0]["lease_until"] < time.time():
            raise LeaseLostError(
                f"{self.owner} no longer holds the {LEADER_LEASE} lease; another relayer follows the chain"
            )

    # ---------------------------------------------------------------- chain following (reorg safety)

    def record_scan(
        self, requests: Iterable[StoredRequest], cursor: int, hashes: Mapping[int, str], window: int
    ) -> int:
        """Store new requests, the hashes of the scanned blocks and the cursor in one SQL transaction.

        ``hashes`` maps block numbers to ``0x`` hashes; only the last ``window`` blocks up to ``cursor`` are
        kept. A request whose row is ``orphaned`` (its old block was reorganised away) is revived as a fresh
        ``pending`` request with the fields of the new log: the same id may now carry a different request,
        so nothing of the old row (fulfilment, submission, outcome) is kept. Returns how many rows were
        inserted or revived. With an owner, only the holder of the leader lease may write.
        """
        now = time.time()
        added = 0
        requests = list(requests)
        with self.transaction() as db:
            self._fence_leader(db)
            for r in requests:
                cur = db.execute(
                    "INSERT INTO requests (request_id, requester, job_id, input, callback_gas_limit, fee,"
                    " expiry, block_number, tx_hash, state, seen_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (request_id) DO UPDATE SET requester = excluded.requester,"
                    " job_id = excluded.job_id, input = excluded.input,"
                    " callback_gas_limit = excluded.callback_gas_limit, fee = excluded.fee,"
                    " expiry = excluded.expiry, block_number = excluded.block_number, tx_hash = excluded.tx_hash,"
                    " state = excluded.state, attempts = 0, next_attempt_at = 0, fulfillment = NULL,"
                    " submit_tx = NULL, outcome = NULL, last_error = NULL, updated_at = excluded.updated_at,"
                    " lease_owner = NULL, lease_until = 0"
                    " WHERE requests.state = ?",
                    (
                        to_hex(r.request_id),
                        r.requester,
                        to_hex(r.job_id),
                        r.input,
                        r.callback_gas_limit,
                        str(r.fee),
                        r.expiry,
                        r.block_number,
                        r.tx_hash,
                        PENDING,
                        now,
                        now,
                        ORPHANED,
                    ),
                )
                added += cur.rowcount
            db.executemany(
                "INSERT INTO scanned_blocks (number, hash) VALUES (?, ?)"
                " ON CONFLICT (number) DO UPDATE SET hash = excluded.hash",
                [(n, h) for n, h in hashes.items() if cursor - window < n <= cursor],
            )
            db.execute("DELETE FROM scanned_blocks WHERE number <= ? OR number > ?", (cursor - window, cursor))
            self._set_cursor(db, cursor)
        self._notify("seen", requests, added)
        return added

    @staticmethod
    def _set_cursor(db: Handle, cursor: int) -> None:
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('cursor', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(cursor),),
        )

    def scanned_hashes(self, down_from: int, limit: int) -> list[tuple[int, str]]:
        """Remembered ``(number, hash)`` of scanned blocks at or below ``down_from``, newest first."""
        rows = self._query(
            "SELECT number, hash FROM scanned_blocks WHERE number <= ? ORDER BY number DESC LIMIT ?",
            (down_from, limit),
        )
        return [(r["number"], r["hash"]) for r in rows]

    def rewind(self, to_block: int, reason: str) -> list[bytes]:
        """Undo everything scanned after ``to_block`` (the last block still on the chain), atomically.

        The cursor goes back to ``to_block``, the hashes of later blocks are forgotten, and every request
        logged after it that is still open (pending, executed or submitted) is marked ``orphaned``: its log
        no longer exists, so it must not be executed or submitted on its old fields. The next scan re-reads
        whatever the new chain holds and revives a request that reappears. Closed rows (delivered, settled,
        expired, failed) are left as they are. A signed transaction of a ``submitted`` row stays open: the
        submitter still reconciles it, and the Router refuses it unless the same request exists again.
        Returns the ids of the orphaned requests.
        """
        now = time.time()
        marks = ", ".join("?" for _ in OPEN_STATES)
        with self.transaction() as db:
            self._fence_leader(db)
            ids = [
                r["request_id"]
                for r in db.execute(
                    f"SELECT request_id FROM requests WHERE block_number > ? AND state IN ({marks})",
                    (to_block, *OPEN_STATES),
                )
            ]
            db.execute(
                "UPDATE requests SET state = ?, last_error = ?, updated_at = ?, lease_owner = NULL, lease_until = 0"
                f" WHERE block_number > ? AND state IN ({marks})",
                (ORPHANED, reason, now, to_block, *OPEN_STATES),
            )
            db.execute("DELETE FROM scanned_blocks WHERE number > ?", (to_block,))
            self._set_cursor(db, to_block)
        return [from_hex(i) for i in ids]


class Store(SqlStore):
    """SQLite-backed relayer state: the default. One relayer process per database file."""

    def __init__(
        self, path: Path | str, owner: str | None = None, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> None:
        super().__init__(owner, lease_seconds)
        self.path = str(path)
        self.location = self.path
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Add the columns newer versions use to a database file created by an older one."""
        for table, columns in ADDED_COLUMNS.items():
            have = {r["name"] for r in self._db.execute(f"PRAGMA table_info({table})")}
            for name, definition in columns.items():
                if name not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")
        missing = self._db.execute("SELECT tx_hash, raw FROM transactions WHERE sender IS NULL").fetchall()
        if missing:
            from eth_account import Account  # only for databases written before transactions recorded their sender

            with self.transaction() as db:
                db.executemany(
                    "UPDATE transactions SET sender = ? WHERE tx_hash = ?",
                    [(Account.recover_transaction(bytes.fromhex(r["raw"])).lower(), r["tx_hash"]) for r in missing],
                )

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic SQL transaction (``BEGIN IMMEDIATE``: the writer lock is taken at once)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    def _read_concurrently(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)) as db:
            db.row_factory = sqlite3.Row
            return db.execute(sql, tuple(params)).fetchall()

    def seen_at(self, request_id: bytes) -> float | None:
        """When a request was first stored, read on a separate read-only handle (never inside a write)."""
        try:
            with closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)) as db:
                row = db.execute("SELECT seen_at FROM requests WHERE request_id = ?", (to_hex(request_id),)).fetchone()
        except sqlite3.Error:
            return None
        return float(row[0]) if row else None


SQLiteStore = Store

#: URL schemes that select the PostgreSQL backend (libpq accepts both).
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(target: str | Path) -> bool:
    """Whether ``target`` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def open_store(target: str | Path, owner: str | None = None, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> SqlStore:
    """Open the relayer state at ``target``: a SQLite file path (or ``sqlite:///path``), or a PostgreSQL URL.

    Raises :class:`StoreConfigError` for any other URL scheme.
    """
    text = str(target)
    if is_postgres_url(text):
        from relayer.store_pg import PostgresStore

        return PostgresStore(text, owner, lease_seconds)
    if text.startswith("sqlite:///"):
        return Store(text.removeprefix("sqlite:///"), owner, lease_seconds)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise StoreConfigError(
            f"unsupported relayer store {scheme}://...: give a SQLite file path (one relayer) or a"
            " postgresql://user@host:port/dbname URL (several relayers sharing one state)"
        )
    return Store(Path(text), owner, lease_seconds)
