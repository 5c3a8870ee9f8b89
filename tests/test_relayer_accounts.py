"""One relayer process with several submitter accounts, on real processes (anvil, coprocessor, relayer).

The relayer gets its keys from ``TEEBRIDGE_RELAYER_KEYS``. Each test checks on-chain that every request was
``Fulfilled`` exactly once and that no ``FulfillmentSkipped`` exists, reads which account submitted each
fulfilment (the ``submitter`` of the ``Fulfilled`` event), and checks every account's nonces: the store holds one
mined transaction per nonce, for exactly the nonces ``0 .. n-1`` the chain counts for that account (a nonce
signed twice, dropped or skipped would show).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from relayer.accounts import KEY_FILE_ENV, KEYS_ENV, KeyConfigError, load_keys
from relayer.store import TX_MINED, open_store
from relayer.submitter import FAULT_ENV, FAULT_EXIT_CODE
from teebridge.processes import RELAYER_READY, Child
from teebridge.stack import LocalStack
from tests.test_relayer_faults import check_exactly_once
from tests.test_relayer_multi import Stream, funded_keys

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(with_relayer=False, workdir=tmp_path_factory.mktemp("accounts")) as stack:
        yield stack


def start(stack: LocalStack, db: Path, keys: list[str], name: str, *args: str, env: dict[str, str] | None = None):
    child = stack.start_relayer(
        db=str(db),
        keys=tuple(keys),
        name=name,
        extra_args=("--max-batch", "4", *args),
        extra_env=env,
    )
    return child


def ready(child: Child) -> Child:
    child.wait_for_line(RELAYER_READY, after=child.log_offset)
    return child


def submitters(stream: Stream) -> Counter[str]:
    """How many fulfilments each account submitted (the sender of the transaction of each ``Fulfilled`` event)."""
    logs = stream.router.events.Fulfilled().get_logs(from_block=stream.start_block)
    senders: dict[bytes, str] = {}
    for e in logs:
        tx_hash = bytes(e["transactionHash"])
        if tx_hash not in senders:
            senders[tx_hash] = stream.router.w3.eth.get_transaction(tx_hash)["from"].lower()
    return Counter(senders[bytes(e["transactionHash"])] for e in logs)


def deliver_all(stream: Stream, db: Path, count: int) -> Counter[str]:
    """Send the whole stream, check every request was delivered exactly once; fulfilments per account."""
    stream.start()
    stream.join()
    stream.wait_all_fulfilled(timeout=60)
    check_exactly_once(stream, db, count)
    return submitters(stream)


def addresses(keys: list[str]) -> list[str]:
    return [Account.from_key(k).address.lower() for k in keys]


def check_nonces(stream: Stream, db: Path, senders: list[str]) -> dict[str, int]:
    """Each account's stored transactions: one mined version per nonce, for exactly the nonces the chain counts
    (0 .. n-1, none missing, none extra, none left open); return the nonce count per account."""
    store = open_store(db)
    try:
        deadline = time.monotonic() + 15
        while store.open_transactions() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert store.open_transactions() == [], "every transaction settled"
        counts = {}
        for sender in senders:
            rows = store._query("SELECT nonce, state FROM transactions WHERE sender = ?", (sender,))
            mined = sorted(r["nonce"] for r in rows if r["state"] == TX_MINED)
            on_chain = stream.w3.eth.get_transaction_count(stream.w3.to_checksum_address(sender), "latest")
            assert mined == list(range(on_chain)), f"{sender}: mined nonces {mined}, chain count {on_chain}"
            assert {r["state"] for r in rows} <= {TX_MINED}, f"{sender}: nothing dropped or replaced: {rows}"
            counts[sender] = on_chain
        return counts
    finally:
        store.close()


def test_three_accounts_share_the_work_exactly_once(local: LocalStack, tmp_path: Path) -> None:
    count = 90
    keys = funded_keys(local, 3)
    db = tmp_path / "relayer.sqlite"
    stream = Stream(local, count, interval=0.02)
    relayer = ready(start(local, db, keys, "relayer-three", "--start-block", str(stream.start_block)))
    try:
        by_account = deliver_all(stream, db, count)
        assert set(by_account) == set(addresses(keys)), f"all three accounts submitted: {by_account}"
        nonces = check_nonces(stream, db, addresses(keys))
        assert all(n > 0 for n in nonces.values())
        assert relayer.alive()
        print(f"fulfilments per account {dict(by_account)}; transactions per account {nonces}")
    finally:
        relayer.stop()


def test_an_account_without_funds_is_skipped_and_the_others_deliver(local: LocalStack, tmp_path: Path) -> None:
    count = 40
    broke = Account.create()
    keys = [broke.key.to_0x_hex(), *funded_keys(local, 2)]  # the broke one first: it is the primary
    db = tmp_path / "relayer.sqlite"
    stream = Stream(local, count, interval=0.02)
    relayer = ready(
        start(local, db, keys, "relayer", "--start-block", str(stream.start_block), "--min-balance-wei", str(10**15))
    )
    try:
        by_account = deliver_all(stream, db, count)
        assert set(by_account) == set(addresses(keys[1:])), f"only the funded accounts submitted: {by_account}"
        log = relayer.log_path.read_text()
        assert f"account {broke.address} holds 0 wei" in log and "skipped, the other accounts go on" in log
        assert f"low balance: relayer account {broke.address} holds 0 wei" in log
        check_nonces(stream, db, addresses(keys))
        report = httpx.get(local.relayer_url + "/health", timeout=5).json()
        accounts = {a["address"]: a for a in report["accounts"]}
        assert list(accounts) == [Account.from_key(k).address for k in keys]
        assert accounts[broke.address] == {
            "address": broke.address,
            "balance_wei": 0,
            "next_nonce": 0,
            "pending_transactions": 0,
            "low_balance": True,
        }
        assert report["status"] == "ok", "the other accounts deliver: not degraded"
        assert report["warnings"] == [f"balance under --min-balance-wei: {broke.address}"]
        metrics = httpx.get(local.relayer_url + "/metrics", timeout=5).text
        assert f'teebridge_relayer_balance_wei{{account="{broke.address}"}} 0' in metrics
    finally:
        relayer.stop()


def test_restarts_keep_every_accounts_nonces_consecutive(local: LocalStack, tmp_path: Path) -> None:
    """A crash right after persisting a transaction (never broadcast), then a SIGKILL mid-stream: after each
    restart every account goes on from its own persisted nonce; none is reused, skipped or left open."""
    count = 90
    keys = funded_keys(local, 3)
    db = tmp_path / "relayer.sqlite"
    stream = Stream(local, count, interval=0.03)
    first = str(stream.start_block)
    crashing = start(
        local, db, keys, "relayer-restart-1", "--start-block", first, env={FAULT_ENV: "crash-before-broadcast"}
    )
    children = [crashing]
    try:
        stream.start()
        assert crashing.process is not None and crashing.process.wait(timeout=30) == FAULT_EXIT_CODE
        second = ready(start(local, db, keys, "relayer-restart-2", "--start-block", first))
        children.append(second)
        deadline = time.monotonic() + 60
        while len(stream.fulfilled()) < count // 2:
            assert second.alive() and time.monotonic() < deadline, "half the requests delivered before the kill"
            time.sleep(0.1)
        second.kill()  # SIGKILL mid-stream: whatever it signed and persisted, it may not have broadcast
        third = ready(start(local, db, keys, "relayer-restart-3", "--start-block", first))
        children.append(third)
        stream.join()
        stream.wait_all_fulfilled(timeout=60)
        check_exactly_once(stream, db, count)
        nonces = check_nonces(stream, db, addresses(keys))
        assert set(submitters(stream)) == set(addresses(keys)), "all three accounts submitted"
        assert third.alive()
        print(f"transactions per account after two restarts: {nonces}")
    finally:
        for child in children:
            child.stop()


def test_keys_from_the_environment_and_a_file(tmp_path: Path) -> None:
    a, b, c = (Account.create() for _ in range(3))
    key_file = tmp_path / "keys"
    key_file.write_text(f"# relayer accounts\n{c.key.to_0x_hex()}\n\n{a.key.to_0x_hex()}  # again\n")
    env = {
        "TEEBRIDGE_RELAYER_KEY": a.key.to_0x_hex(),
        KEYS_ENV: f"{b.key.to_0x_hex()}, {a.key.to_0x_hex()}",
        KEY_FILE_ENV: str(key_file),
    }
    keys = load_keys(env)
    assert [Account.from_key(k).address for k in keys] == [a.address, b.address, c.address]
    secret = "0x" + "zz" * 32
    with pytest.raises(KeyConfigError, match=f"entry 2 of {KEYS_ENV} is not") as info:
        load_keys({KEYS_ENV: f"{a.key.to_0x_hex()},{secret}"})
    assert secret not in str(info.value)
    with pytest.raises(KeyConfigError, match="cannot read"):
        load_keys({KEY_FILE_ENV: str(tmp_path / "missing")})
    with pytest.raises(KeyConfigError, match="never pass keys as arguments"):
        load_keys({})
