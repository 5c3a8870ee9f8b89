"""The relayer store on both backends (SQLite and PostgreSQL): scans, claims, leases, fences, nonces."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from eth_account import Account

from relayer.store import (
    DELIVERED,
    EXECUTED,
    EXPIRED,
    FAILED,
    MAX_REEXECUTIONS,
    PENDING,
    SUBMITTED,
    TX_DROPPED,
    TX_MINED,
    TX_REPLACED,
    TX_SENT,
    LeaseLostError,
    SqlStore,
    Store,
    StoreConfigError,
    StoredRequest,
    open_store,
)
from tests.pg_cluster import PgCluster

A = "0x" + "aa" * 20
B = "0x" + "bb" * 20
Opener = Callable[..., SqlStore]


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens stores (as several owners) on one shared state of the parametrised backend."""
    target: str = str(tmp_path / "r.sqlite")
    if request.param == "postgres":
        target = request.getfixturevalue("pg_url")
    opened: list[SqlStore] = []

    def open_(owner: str | None = None, lease_seconds: float = 30.0) -> SqlStore:
        store = open_store(target, owner, lease_seconds)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


def req(n: int, block: int = 10) -> StoredRequest:
    return StoredRequest(
        request_id=n.to_bytes(32, "big"),
        requester="0x" + "11" * 20,
        job_id=b"\x22" * 32,
        input=b"\x00\xffinput %d" % n,
        callback_gas_limit=100_000,
        fee=10**18 + n,
        expiry=2**40,
        block_number=block + n,
        tx_hash="0x" + "33" * 32,
    )


def scan(store: SqlStore, count: int, cursor: int = 100) -> None:
    assert store.try_lead()
    store.record_scan([req(i) for i in range(count)], cursor, {cursor: "0x" + "44" * 32}, 8)


def test_scan_roundtrip_and_idempotent(opener: Opener) -> None:
    store = opener(A)
    scan(store, 3)
    assert store.record_scan([req(i) for i in range(3)], 101, {}, 8) == 0, "a second scan adds nothing"
    got = store.get(req(1).request_id)
    assert got is not None and got == req(1)
    assert got.input == b"\x00\xffinput 1" and got.fee == 10**18 + 1
    assert store.cursor() == 101 and store.counts() == {PENDING: 3}
    assert store.seen_at(req(1).request_id) is not None
    assert [r.request_id for r in store.in_state(PENDING)] == [req(i).request_id for i in range(3)]


def test_bind_refuses_another_router(opener: Opener) -> None:
    opener().bind(31337, "0x" + "12" * 20)
    opener().bind(31337, "0x" + "12" * 20)
    with pytest.raises(RuntimeError, match="belongs to"):
        opener().bind(1, "0x" + "12" * 20)


def test_claims_are_disjoint_and_leases_expire(opener: Opener) -> None:
    a, b = opener(A, lease_seconds=0.5), opener(B, lease_seconds=0.5)
    scan(a, 5)
    first = a.claim(PENDING, 3)
    assert [r.request_id for r in first] == [req(i).request_id for i in range(3)], "oldest first"
    second = b.claim(PENDING, 10)
    assert [r.request_id for r in second] == [req(i).request_id for i in (3, 4)]
    assert b.claim(PENDING, 10) != [] and a.claim(PENDING, 10) == [r for r in first], "re-claiming your own extends it"
    assert a.lease_of(req(0).request_id)[0] == A.lower()
    time.sleep(0.6)  # A died: its leases lapse, B takes them over
    taken = b.claim(PENDING, 10)
    assert {r.request_id for r in taken} == {req(i).request_id for i in range(5)}


def test_renewed_leases_do_not_expire(opener: Opener) -> None:
    a, b = opener(A, lease_seconds=0.4), opener(B, lease_seconds=0.4)
    scan(a, 2)
    a.claim(PENDING, 10)
    for _ in range(3):
        time.sleep(0.2)
        a.renew_leases()
    assert b.claim(PENDING, 10) == []


def test_fences_refuse_writes_on_a_lost_lease(opener: Opener) -> None:
    a, b = opener(A, lease_seconds=0.3), opener(B, lease_seconds=30)
    scan(a, 1)
    rid = req(0).request_id
    a.claim(PENDING, 1)
    time.sleep(0.4)  # A stalls past its lease; B takes the request and executes it
    assert b.claim(PENDING, 1)
    with pytest.raises(LeaseLostError):
        a.mark_executed(rid, {"x": 1})
    b.mark_executed(rid, {"x": 2})
    with pytest.raises(LeaseLostError):
        a.record_transaction("0x" + "01" * 32, 0, b"raw", [rid])
    assert a.get(rid).state == EXECUTED and a.get(rid).fulfillment == {"x": 2}
    assert a.transactions_for(rid) == 0, "nothing was written for the stalled relayer"
    b.record_transaction("0x" + "02" * 32, 0, b"raw", [rid])
    assert a.get(rid).state == SUBMITTED and a.transactions_for(rid) == 1


def test_batch_writes_fence_each_request_on_its_own(opener: Opener) -> None:
    """One SQL transaction for a batch, yet a request another relayer took over is left to it, not the batch."""
    a, b = opener(A, lease_seconds=0.3), opener(B, lease_seconds=30)
    scan(a, 3)
    ids = [req(i).request_id for i in range(3)]
    assert len(a.claim(PENDING, 3)) == 3
    time.sleep(0.4)  # A stalls past its lease; B takes the requests, gives two back and executes the third
    assert [r.request_id for r in b.claim(PENDING, 3)] == ids
    b.release(ids[:2])
    b.mark_executed(ids[2], {"by": "B"})
    lost = a.mark_executed_many([(rid, {"by": "A"}) for rid in ids])
    assert set(lost) == {ids[2]} and "no longer pending" in lost[ids[2]]
    assert [a.get(rid).fulfillment for rid in ids] == [{"by": "A"}, {"by": "A"}, {"by": "B"}]
    changed = a.mark_final_many(
        [(ids[0], DELIVERED, "ok"), (ids[1], DELIVERED, "ok"), (ids[2], DELIVERED, "ok")], only_from=(PENDING,)
    )
    assert changed == [], "only_from holds for every row of the batch"
    assert a.mark_final_many([(ids[0], DELIVERED, "ok"), (ids[1], EXPIRED, "late")]) == ids[:2]
    assert [a.get(rid).state for rid in ids] == [DELIVERED, EXPIRED, EXECUTED]


def test_nonces_are_per_account_and_transactions_adopted_after_their_lease(opener: Opener) -> None:
    a, b = opener(A, lease_seconds=0.3), opener(B, lease_seconds=30)
    scan(a, 4)
    assert a.next_nonce() is None
    a.claim(PENDING, 2)
    b.claim(PENDING, 2)
    for store, first, nonce in ((a, 0, 7), (b, 2, 3)):
        for i in (first, first + 1):
            store.mark_executed(req(i).request_id, {"i": i})
        store.record_transaction(f"0x{nonce:064x}", nonce, b"r", [req(first).request_id, req(first + 1).request_id])
    assert a.next_nonce() == 8 and b.next_nonce() == 4 and a.next_nonce(B) == 4
    assert [t.nonce for t in a.claim_transactions()] == [7]
    assert [t.nonce for t in b.claim_transactions()] == [3], "B does not touch A's live transaction"
    time.sleep(0.4)  # A is gone; B adopts its transaction (and will re-broadcast A's signed bytes)
    adopted = b.claim_transactions()
    assert sorted((t.sender, t.nonce) for t in adopted) == [(A.lower(), 7), (B.lower(), 3)]
    assert a.claim_transactions() == [], "A, back, finds its transaction in B's hands"
    b.close_transaction(f"0x{7:064x}", TX_DROPPED, requeue=[req(0).request_id, req(1).request_id])
    assert a.get(req(0).request_id).state == EXECUTED and a.lease_of(req(0).request_id)[0] is None
    assert [t.nonce for t in a.open_transactions()] == [3]


def test_replacements_are_versions_of_one_nonce(opener: Opener) -> None:
    a, b = opener(A, lease_seconds=0.3), opener(B, lease_seconds=30)
    scan(a, 2)
    ids = [req(0).request_id, req(1).request_id]
    a.claim(PENDING, 2)
    for rid in ids:
        a.mark_executed(rid, {"r": 1})
    a.record_transaction("0x" + "01" * 32, 5, b"v1", ids)
    (original,) = a.claim_transactions()
    a.record_replacement("0x" + "02" * 32, original, b"v2")
    versions = a.versions_of(A, 5)
    assert [(v.tx_hash, v.raw, v.state) for v in versions] == [
        ("0x" + "01" * 32, b"v1", TX_SENT),
        ("0x" + "02" * 32, b"v2", TX_SENT),
    ]
    assert all(v.request_ids == tuple(ids) for v in versions) and a.next_nonce() == 6
    assert a.get(ids[0]).submit_tx == "0x" + "02" * 32 and a.transactions_for(ids[0]) == 2
    assert sorted(t.tx_hash for t in a.claim_transactions()) == [v.tx_hash for v in versions]
    with pytest.raises(LeaseLostError):  # B holds no lease on A's transaction: it may not replace it
        b.record_replacement("0x" + "03" * 32, original, b"v3")
    a.close_transaction(original.tx_hash, TX_MINED)  # the original won the race
    a.close_transaction("0x" + "02" * 32, TX_REPLACED)
    with pytest.raises(LeaseLostError):  # a closed version is never replaced
        a.record_replacement("0x" + "04" * 32, original, b"v4")
    assert [v.state for v in a.versions_of(A, 5)] == [TX_MINED, TX_REPLACED] and a.open_transactions() == []


def test_one_leader_at_a_time(opener: Opener) -> None:
    a, b = opener(A, lease_seconds=0.3), opener(B, lease_seconds=0.3)
    assert a.try_lead() and not b.try_lead() and a.try_lead()
    assert a.leader() == A.lower()
    time.sleep(0.4)
    assert b.try_lead() and not a.try_lead()
    with pytest.raises(LeaseLostError):
        a.record_scan([req(0)], 50, {}, 8)
    assert a.get(req(0).request_id) is None and a.cursor() is None


def test_a_named_hold_keeps_to_one_holder_until_it_lets_go_runs_out_or_is_gone(opener: Opener) -> None:
    """The lease that keeps an account to one relayer process (relayer.process_identity)."""
    a, b = opener(A, lease_seconds=0.3), opener(B, lease_seconds=0.3)
    assert a.hold("account:x", "host/1/aa") is None
    assert a.hold("account:x", "host/1/aa") is None, "renewed by its holder"
    assert b.hold("account:x", "host/2/bb") == "host/1/aa", "refused while the holder lives"
    assert b.hold("account:y", "host/2/bb") is None, "another name is another lease"
    assert b.hold("account:x", "host/2/bb", holder_is_gone=lambda h: h == "host/1/aa") is None, "a gone holder"
    assert a.hold("account:x", "host/1/aa") == "host/2/bb"
    b.let_go("account:x", "host/1/aa")  # not the holder: nothing changes
    assert a.hold("account:x", "host/1/aa") == "host/2/bb"
    b.let_go("account:x", "host/2/bb")
    assert a.hold("account:x", "host/1/aa") is None, "free once let go"
    time.sleep(0.4)
    assert b.hold("account:x", "host/2/bb") is None, "taken once it ran out"
    assert a.try_lead() and a.leader() == A.lower(), "the leader lease is another row"


def test_final_states_and_conditional_expiry(opener: Opener) -> None:
    store = opener()
    scan(store, 2)
    rid = req(0).request_id
    assert store.mark_final(rid, DELIVERED, "ok")
    assert not store.mark_final(rid, EXPIRED, "too late", only_from=(PENDING, EXECUTED))
    assert store.get(rid).state == DELIVERED
    assert store.mark_final(req(1).request_id, EXPIRED, "late", only_from=(PENDING,))
    assert store.counts() == {DELIVERED: 1, EXPIRED: 1}


def test_a_stale_result_is_discarded_and_the_request_executed_again_a_bounded_number_of_times(opener: Opener) -> None:
    """The Router refused a result's signer for good: the result goes, the request is pending again (due now,
    unleased) and counted; past the bound it fails with the reason. Only from the states given."""
    a, b = opener(A), opener(B)
    scan(a, 2)
    rid, other = req(0).request_id, req(1).request_id
    assert [r.request_id for r in a.claim(PENDING, 1)] == [rid]
    a.mark_executed(rid, {"signer": "0x" + "0a" * 20})
    assert a.requeue_for_reexecution(rid, "signer revoked", only_from=[SUBMITTED]) is None, "not in that state"
    assert a.get(rid).state == EXECUTED
    assert [r.request_id for r in a.claim(EXECUTED, 1)] == [rid]
    with pytest.raises(LeaseLostError):  # A holds it
        b.requeue_for_reexecution(rid, "signer revoked", only_from=[EXECUTED])
    a.mark_retry(rid, "simulation reverted: UnauthorizedSigner", 3600)  # a backoff that must not delay it now

    assert a.requeue_for_reexecution(rid, "signer 0x0a.. revoked", only_from=[EXECUTED]) == PENDING
    row = a.get(rid)
    assert (row.state, row.fulfillment, row.submit_tx, row.reexecutions) == (PENDING, None, None, 1)
    assert row.last_error == "signer 0x0a.. revoked"
    assert a.lease_of(rid) == (None, 0.0), "released: any relayer may execute it again"
    assert [r.request_id for r in b.claim(PENDING, 5)] == [rid, other], "due at once, by whichever relayer"

    # refused in a mined transaction (submitted), again and again: bounded
    for n in range(2, MAX_REEXECUTIONS + 1):
        b.mark_executed(rid, {"signer": "0x" + "0b" * 20})
        b.record_transaction("0x" + f"{n:064x}", n, b"raw", [rid])
        assert b.requeue_for_reexecution(rid, "signer expired", only_from=[SUBMITTED]) == PENDING
        assert b.get(rid).reexecutions == n
        assert b.claim(PENDING, 1)
    b.mark_executed(rid, {"signer": "0x" + "0b" * 20})
    assert b.requeue_for_reexecution(rid, "signer expired", only_from=[EXECUTED]) == FAILED
    row = b.get(rid)
    assert row.state == FAILED and row.reexecutions == MAX_REEXECUTIONS
    assert row.outcome == f"re-executed {MAX_REEXECUTIONS} times, its result refused every time: signer expired"
    assert b.get(other).reexecutions == 0 and b.get(other).state == PENDING


def test_concurrent_claimers_never_share_a_request(opener: Opener) -> None:
    owners = [f"0x{i:040x}" for i in range(1, 5)]
    stores = [opener(o) for o in owners]
    scan(stores[0], 60)
    got: dict[str, list[bytes]] = {o: [] for o in owners}
    errors: list[BaseException] = []

    def work(store: SqlStore) -> None:
        try:
            while True:
                batch = store.claim(PENDING, 3)
                if not batch:
                    return
                for r in batch:
                    got[store.owner or ""].append(r.request_id)
                    store.mark_final(r.request_id, DELIVERED, store.owner or "")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    everything = [r for ids in got.values() for r in ids]
    assert len(everything) == len(set(everything)) == 60


def test_bad_store_urls_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(StoreConfigError, match=r"postgresql://user@host"):
        open_store("mysql://x@y/z")
    with pytest.raises(ConnectionError, match=r"cannot connect to the relayer store postgresql://bob@127\.0\.0\.1:1/"):
        open_store("postgresql://bob:secret@127.0.0.1:1/nowhere")
    try:
        open_store("postgresql://bob:secret@127.0.0.1:1/nowhere")
    except ConnectionError as exc:
        assert "secret" not in str(exc), "never echo a password"
    store = open_store(f"sqlite:///{tmp_path / 'u.sqlite'}")
    assert isinstance(store, Store) and os.path.exists(tmp_path / "u.sqlite")
    store.close()


def test_old_sqlite_database_is_migrated(tmp_path: Path) -> None:
    """A file written before leases existed gets the new columns and its transactions' senders."""
    path = tmp_path / "old.sqlite"
    account = Account.create()
    signed = account.sign_transaction(
        {"to": account.address, "value": 0, "gas": 21000, "gasPrice": 1, "nonce": 5, "chainId": 31337}
    )
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE transactions (tx_hash TEXT PRIMARY KEY, nonce INTEGER NOT NULL, raw TEXT NOT NULL,"
        " request_ids TEXT NOT NULL, state TEXT NOT NULL, created_at REAL NOT NULL);"
        "CREATE TABLE requests (request_id TEXT PRIMARY KEY, requester TEXT NOT NULL, job_id TEXT NOT NULL,"
        " input BLOB NOT NULL, callback_gas_limit INTEGER NOT NULL, fee TEXT NOT NULL, expiry INTEGER NOT NULL,"
        " block_number INTEGER NOT NULL, tx_hash TEXT NOT NULL, state TEXT NOT NULL,"
        " attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL DEFAULT 0, fulfillment TEXT,"
        " submit_tx TEXT, outcome TEXT, last_error TEXT, seen_at REAL NOT NULL, updated_at REAL NOT NULL);"
    )
    db.execute(
        "INSERT INTO transactions VALUES (?, 5, ?, '[]', ?, 0)",
        (signed.hash.to_0x_hex(), bytes(signed.raw_transaction).hex(), TX_SENT),
    )
    db.commit()
    db.close()
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO requests (request_id, requester, job_id, input, callback_gas_limit, fee, expiry, block_number,"
        " tx_hash, state, seen_at, updated_at) VALUES (?, ?, ?, ?, 1, '1', 9, 1, '0x', ?, 0, 0)",
        ("0x" + "01" * 32, "0x" + "11" * 20, "0x" + "22" * 32, b"in", EXECUTED),
    )
    db.commit()
    db.close()
    store = Store(path, owner=account.address)
    assert store.next_nonce() == 6
    (tx,) = store.claim_transactions()
    assert tx.sender == account.address.lower()
    (old,) = store.claim(EXECUTED, 5)
    assert old.reexecutions == 0
    assert store.requeue_for_reexecution(old.request_id, "revoked", only_from=[EXECUTED]) == PENDING
    assert store.get(old.request_id).reexecutions == 1
    store.close()


def test_old_postgres_database_gets_the_reexecutions_column(pg_url: str) -> None:
    """A PostgreSQL database created by a relayer before re-executions gets the column when a newer one opens it."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE requests (request_id TEXT PRIMARY KEY, requester TEXT NOT NULL, job_id TEXT NOT NULL,"
            " input BYTEA NOT NULL, callback_gas_limit BIGINT NOT NULL, fee TEXT NOT NULL, expiry BIGINT NOT NULL,"
            " block_number BIGINT NOT NULL, tx_hash TEXT NOT NULL, state TEXT NOT NULL,"
            " attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at DOUBLE PRECISION NOT NULL DEFAULT 0,"
            " fulfillment TEXT, submit_tx TEXT, outcome TEXT, last_error TEXT, seen_at DOUBLE PRECISION NOT NULL,"
            " updated_at DOUBLE PRECISION NOT NULL, lease_owner TEXT, lease_until DOUBLE PRECISION NOT NULL DEFAULT 0)"
        )
        conn.execute(
            "INSERT INTO requests (request_id, requester, job_id, input, callback_gas_limit, fee, expiry,"
            " block_number, tx_hash, state, seen_at, updated_at) VALUES (%s, %s, %s, %s, 1, '1', 9, 1, '0x', %s, 0, 0)",
            ("0x" + "01" * 32, "0x" + "11" * 20, "0x" + "22" * 32, b"in", EXECUTED),
        )
    store = open_store(pg_url, A)
    (old,) = store.claim(EXECUTED, 5)
    assert old.reexecutions == 0
    assert store.requeue_for_reexecution(old.request_id, "revoked", only_from=[EXECUTED]) == PENDING
    assert store.get(old.request_id).reexecutions == 1
    store.close()


def test_postgres_connection_is_reopened_after_a_server_restart(postgres: PgCluster) -> None:
    store = open_store(postgres.database(), A)
    scan(store, 1)
    postgres.restart()
    with pytest.raises(Exception):  # noqa: B017 - the pass that sees the cut fails (psycopg.OperationalError)
        store.counts()
    assert store.counts() == {PENDING: 1}, "the next call reconnects"
    store.close()


def test_cli_explains_a_bad_store(anvil, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from relayer.__main__ import main
    from teebridge.stack import RELAYER_KEY

    monkeypatch.setenv("TEEBRIDGE_RELAYER_KEY", RELAYER_KEY)
    base = ["--rpc-url", anvil.rpc_url, "--router", "0x" + "12" * 20, "--coprocessor", "http://127.0.0.1:1"]
    for db, expected in (
        ("mysql://u@h/d", "unsupported relayer store mysql://"),
        ("postgresql://u:pw@127.0.0.1:1/d", "cannot connect to the relayer store postgresql://u@127.0.0.1:1/d"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main([*base, "--db", db])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert expected in err and ":pw@" not in err, err
    monkeypatch.delenv("TEEBRIDGE_RELAYER_DB", raising=False)
    with pytest.raises(SystemExit):
        main(base)
    assert "TEEBRIDGE_RELAYER_DB" in capsys.readouterr().err
