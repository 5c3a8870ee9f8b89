"""The relayer state in PostgreSQL, shared by several relayer processes (on several machines).

The SQL is :class:`relayer.store.SqlStore`'s, written with ``?`` placeholders that this module turns into
psycopg's ``%s``; what differs is here: the column types, the connection (psycopg 3, autocommit outside
explicit transactions, reconnecting after the server went away) and the row locks that make claiming safe
between processes (``FOR UPDATE SKIP LOCKED`` to pick work, ``FOR UPDATE`` to check a lease before a write).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from relayer.store import DEFAULT_LEASE_SECONDS, SqlStore, StoreConfigError

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.rows import dict_row
except ImportError:  # pragma: no cover - psycopg is a relayer dependency
    psycopg = None  # type: ignore[assignment]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    request_id         TEXT PRIMARY KEY,
    requester          TEXT NOT NULL,
    job_id             TEXT NOT NULL,
    input              BYTEA NOT NULL,
    callback_gas_limit BIGINT NOT NULL,
    fee                TEXT NOT NULL,
    expiry             BIGINT NOT NULL,
    block_number       BIGINT NOT NULL,
    tx_hash            TEXT NOT NULL,
    state              TEXT NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at    DOUBLE PRECISION NOT NULL DEFAULT 0,
    fulfillment        TEXT,
    submit_tx          TEXT,
    outcome            TEXT,
    last_error         TEXT,
    seen_at            DOUBLE PRECISION NOT NULL,
    updated_at         DOUBLE PRECISION NOT NULL,
    lease_owner        TEXT,
    lease_until        DOUBLE PRECISION NOT NULL DEFAULT 0,
    reexecutions       INTEGER NOT NULL DEFAULT 0
);
-- columns added after the first release: a database created by an older relayer gets them here
ALTER TABLE requests ADD COLUMN IF NOT EXISTS reexecutions INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS requests_state ON requests (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS requests_state_order ON requests (state, block_number, seen_at);
CREATE TABLE IF NOT EXISTS transactions (
    tx_hash     TEXT PRIMARY KEY,
    nonce       BIGINT NOT NULL,
    raw         TEXT NOT NULL,
    request_ids TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    sender      TEXT,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS transactions_state ON transactions (state);
CREATE INDEX IF NOT EXISTS transactions_sender ON transactions (sender, nonce);
CREATE TABLE IF NOT EXISTS scanned_blocks (
    number BIGINT PRIMARY KEY,
    hash   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    name        TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    lease_until DOUBLE PRECISION NOT NULL
);
"""

#: Key of the advisory lock held while creating the schema, so relayers starting together do not race.
SCHEMA_LOCK = 0x7465_6562_7269_6467  # "teebridg"


def _pg(sql: str) -> str:
    """``?`` placeholders (shared SQL) to psycopg's ``%s``; a literal ``%`` is escaped."""
    return sql.replace("%", "%%").replace("?", "%s")


def redact(url: str) -> str:
    """The URL's host, port, database and user, never its password (for messages and logs)."""
    try:
        parts = conninfo_to_dict(url)
    except Exception:  # unparsable: say nothing of it but the scheme
        return url.split("://", 1)[0] + "://..."
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = parts.get("host") or "localhost"
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname') or ''}"


class _Handle:
    """A psycopg connection speaking the shared SQL's ``?`` placeholders."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Any:
        return self._conn.execute(_pg(sql), tuple(params))

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> Any:
        rows = [tuple(p) for p in params]
        cur = self._conn.cursor()
        if rows:
            cur.executemany(_pg(sql), rows)
        return cur


class PostgresStore(SqlStore):
    """Relayer state in one PostgreSQL database, shared by any number of relayer processes.

    Each relayer opens it with its own ``owner`` (its account address) and takes work with leases
    (:meth:`SqlStore.claim`); see ``docs/relayer.md`` ("Several relayers on PostgreSQL").
    """

    claim_lock = " FOR UPDATE SKIP LOCKED"
    row_lock = " FOR UPDATE"

    def __init__(self, url: str, owner: str | None = None, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        if psycopg is None:
            raise StoreConfigError(
                "a postgresql:// store needs psycopg 3: pip install -c constraints.txt 'psycopg[binary]'"
            )
        super().__init__(owner, lease_seconds)
        self.url = url
        self.location = redact(url)
        self._conn = self._connect()
        with self.transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    def _connect(self) -> Any:
        try:
            return psycopg.connect(self.url, autocommit=True, row_factory=dict_row, connect_timeout=10)
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise ConnectionError(
                f"cannot connect to the relayer store {self.location}: {reason}. Check that PostgreSQL is running"
                " and reachable, and the URL given with --db or TEEBRIDGE_RELAYER_DB (user, host, port, database)"
            ) from exc

    def _live(self) -> Any:
        """The connection, reopened if the server dropped the previous one."""
        if self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[_Handle]:
        """One atomic SQL transaction (READ COMMITTED; claims and fences take row locks)."""
        with self._lock:
            conn = self._live()
            with conn.transaction():
                yield _Handle(conn)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._live().execute(_pg(sql), tuple(params)).fetchall()
