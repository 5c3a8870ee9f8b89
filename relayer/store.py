"""The relayer's durable state in SQLite: requests seen, their progress, and every transaction it signed.

A request moves through these states::

    pending --execute--> executed --submit--> submitted --receipt--> delivered
       |                    |                     |                   (or settled: done by someone else,
       +--------------------+---------------------+-----> expired      or failed: refused for a reason)

The invariant that makes a restart (even after ``kill -9``) lose nothing and submit nothing twice: a
transaction is signed and written here, together with the states of the requests it carries, in one SQL
transaction *before* it is broadcast. After a crash the relayer finds it here and re-broadcasts the same
signed bytes (same nonce, same hash) or reads its receipt; it never signs a second transaction for them.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    updated_at         REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_state ON requests (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS transactions (
    tx_hash     TEXT PRIMARY KEY,
    nonce       INTEGER NOT NULL,
    raw         TEXT NOT NULL,
    request_ids TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS transactions_state ON transactions (state);
CREATE TABLE IF NOT EXISTS scanned_blocks (
    number INTEGER PRIMARY KEY,
    hash   TEXT NOT NULL
);
"""

PENDING = "pending"
EXECUTED = "executed"
SUBMITTED = "submitted"
DELIVERED = "delivered"
SETTLED = "settled"
EXPIRED = "expired"
FAILED = "failed"
#: The request's log was in a block a reorganisation removed. Set only by :meth:`Store.rewind`; if the same
#: request id is logged again on the new chain, :meth:`Store.record_scan` revives the row as ``pending``.
ORPHANED = "orphaned"
OPEN_STATES = (PENDING, EXECUTED, SUBMITTED)

TX_SENT = "sent"
TX_MINED = "mined"
TX_DROPPED = "dropped"


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


class Store:
    """SQLite-backed relayer state. One writer process per database file."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic SQL transaction."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ---------------------------------------------------------------- meta

    def get_meta(self, key: str) -> str | None:
        """A stored setting, or None."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else None

    def bind(self, chain_id: int, router: str) -> None:
        """Tie this database to one chain and router; refuse to reuse it for another."""
        identity = f"{chain_id}:{router.lower()}"
        current = self.get_meta("identity")
        if current is None:
            with self.transaction() as db:
                db.execute("INSERT INTO meta (key, value) VALUES ('identity', ?)", (identity,))
        elif current != identity:
            raise RuntimeError(
                f"relayer database {self.path} belongs to {current}, not {identity}: use another --db file"
            )

    def cursor(self) -> int | None:
        """The last block whose logs are fully stored, or None before the first poll."""
        value = self.get_meta("cursor")
        return int(value) if value is not None else None

    # ---------------------------------------------------------------- requests

    def _row(self, row: sqlite3.Row) -> StoredRequest:
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
        )

    def get(self, request_id: bytes) -> StoredRequest | None:
        """One request by id."""
        row = self._db.execute("SELECT * FROM requests WHERE request_id = ?", (to_hex(request_id),)).fetchone()
        return self._row(row) if row else None

    def in_state(self, state: str, limit: int = 1000, *, due: bool = False) -> list[StoredRequest]:
        """Requests in ``state``, oldest first; with ``due``, only those whose retry time has come."""
        sql = "SELECT * FROM requests WHERE state = ?"
        params: list[Any] = [state]
        if due:
            sql += " AND next_attempt_at <= ?"
            params.append(time.time())
        sql += " ORDER BY block_number, seen_at LIMIT ?"
        params.append(limit)
        return [self._row(r) for r in self._db.execute(sql, params)]

    def counts(self) -> dict[str, int]:
        """How many requests are in each state."""
        return {
            r["state"]: r["n"] for r in self._db.execute("SELECT state, COUNT(*) AS n FROM requests GROUP BY state")
        }

    def mark_executed(self, request_id: bytes, fulfillment: dict[str, Any]) -> None:
        """Store the verified signed fulfilment of a pending request."""
        self._set(request_id, EXECUTED, fulfillment=json.dumps(fulfillment), last_error=None)

    def mark_retry(self, request_id: bytes, error: str, delay: float) -> None:
        """Record a transient failure; try again after ``delay`` seconds."""
        with self.transaction() as db:
            db.execute(
                "UPDATE requests SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, updated_at = ?"
                " WHERE request_id = ?",
                (error, time.time() + delay, time.time(), to_hex(request_id)),
            )

    def mark_final(self, request_id: bytes, state: str, outcome: str) -> None:
        """Close a request: delivered, settled, expired or failed, with what happened."""
        self._set(request_id, state, outcome=outcome)

    def _set(self, request_id: bytes, state: str, **fields: Any) -> None:
        assignments = ", ".join(f"{k} = ?" for k in fields)
        sql = (
            f"UPDATE requests SET state = ?, updated_at = ?{', ' + assignments if fields else ''} WHERE request_id = ?"
        )
        with self.transaction() as db:
            db.execute(sql, (state, time.time(), *fields.values(), to_hex(request_id)))

    # ---------------------------------------------------------------- transactions

    def next_nonce(self) -> int | None:
        """One past the highest nonce this relayer ever signed, or None."""
        row = self._db.execute("SELECT MAX(nonce) AS n FROM transactions").fetchone()
        return None if row["n"] is None else row["n"] + 1

    def record_transaction(self, tx_hash: str, nonce: int, raw: bytes, request_ids: list[bytes]) -> None:
        """Persist a signed transaction and mark its requests submitted, before broadcasting it."""
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO transactions (tx_hash, nonce, raw, request_ids, state, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (tx_hash, nonce, raw.hex(), json.dumps([to_hex(r) for r in request_ids]), TX_SENT, now),
            )
            db.executemany(
                "UPDATE requests SET state = ?, submit_tx = ?, updated_at = ? WHERE request_id = ?",
                [(SUBMITTED, tx_hash, now, to_hex(r)) for r in request_ids],
            )

    def open_transactions(self) -> list[StoredTransaction]:
        """Signed transactions whose outcome is not known yet."""
        rows = self._db.execute("SELECT * FROM transactions WHERE state = ? ORDER BY nonce", (TX_SENT,))
        return [
            StoredTransaction(
                r["tx_hash"],
                r["nonce"],
                bytes.fromhex(r["raw"]),
                tuple(from_hex(x) for x in json.loads(r["request_ids"])),
                r["state"],
            )
            for r in rows
        ]

    def close_transaction(self, tx_hash: str, state: str, *, requeue: Iterable[bytes] = ()) -> None:
        """Mark a transaction mined or dropped; put the requests of a dropped one back to ``executed``."""
        now = time.time()
        with self.transaction() as db:
            db.execute("UPDATE transactions SET state = ? WHERE tx_hash = ?", (state, tx_hash))
            db.executemany(
                "UPDATE requests SET state = ?, submit_tx = NULL, updated_at = ? WHERE request_id = ? AND state = ?",
                [(EXECUTED, now, to_hex(r), SUBMITTED) for r in requeue],
            )

    def transactions_for(self, request_id: bytes) -> int:
        """How many transactions this relayer signed that carry ``request_id`` (for tests and audits)."""
        needle = f'%"{to_hex(request_id)}"%'
        return self._db.execute("SELECT COUNT(*) FROM transactions WHERE request_ids LIKE ?", (needle,)).fetchone()[0]

    # ---------------------------------------------------------------- chain following (reorg safety)

    def record_scan(
        self, requests: Iterable[StoredRequest], cursor: int, hashes: Mapping[int, str], window: int
    ) -> int:
        """Store new requests, the hashes of the scanned blocks and the cursor in one SQL transaction.

        ``hashes`` maps block numbers to ``0x`` hashes; only the last ``window`` blocks up to ``cursor`` are
        kept. A request whose row is ``orphaned`` (its old block was reorganised away) is revived as a fresh
        ``pending`` request with the fields of the new log: the same id may now carry a different request,
        so nothing of the old row (fulfilment, submission, outcome) is kept. Returns how many rows were
        inserted or revived.
        """
        now = time.time()
        added = 0
        with self.transaction() as db:
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
                    " submit_tx = NULL, outcome = NULL, last_error = NULL, updated_at = excluded.updated_at"
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
                "INSERT OR REPLACE INTO scanned_blocks (number, hash) VALUES (?, ?)",
                [(n, h) for n, h in hashes.items() if cursor - window < n <= cursor],
            )
            db.execute("DELETE FROM scanned_blocks WHERE number <= ? OR number > ?", (cursor - window, cursor))
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('cursor', ?)", (str(cursor),))
        return added

    def scanned_hashes(self, down_from: int, limit: int) -> list[tuple[int, str]]:
        """Remembered ``(number, hash)`` of scanned blocks at or below ``down_from``, newest first."""
        rows = self._db.execute(
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
            ids = [
                r["request_id"]
                for r in db.execute(
                    f"SELECT request_id FROM requests WHERE block_number > ? AND state IN ({marks})",
                    (to_block, *OPEN_STATES),
                )
            ]
            db.execute(
                "UPDATE requests SET state = ?, last_error = ?, updated_at = ?"
                f" WHERE block_number > ? AND state IN ({marks})",
                (ORPHANED, reason, now, to_block, *OPEN_STATES),
            )
            db.execute("DELETE FROM scanned_blocks WHERE number > ?", (to_block,))
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('cursor', ?)", (str(to_block),))
        return [from_hex(i) for i in ids]
