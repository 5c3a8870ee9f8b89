"""Several relayer processes sharing one PostgreSQL state, on real processes (anvil, coprocessor, relayers, PostgreSQL).

Each relayer pays from its own funded account. A stream of requests is sent while they run; afterwards every
request must be ``Fulfilled`` exactly once on-chain, no ``FulfillmentSkipped`` may exist (a second broadcast
fulfilment of the same request would leave one: the Router turns it into a no-op, which is why it is counted
on-chain rather than trusted), and the shared store must hold exactly one signed transaction per request.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from eth_account import Account
from web3 import Web3

from relayer.chain import ChainClient
from relayer.store import TX_MINED, open_store
from relayer.submitter import FAULT_ENV, FAULT_EXIT_CODE
from teebridge.processes import RELAYER_READY, Child
from teebridge.stack import OWNER_KEY, USER_KEY, LocalStack
from tests.pg_cluster import PgCluster
from verifier.envelope import plain
from verifier.protocol import job_id

ECHO = job_id("echo", 1)
LEASE_SECONDS = 2.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(with_relayer=False, workdir=tmp_path_factory.mktemp("multi")) as stack:
        yield stack


def funded_keys(stack: LocalStack, count: int) -> list[str]:
    """Fresh accounts with 100 ETH each (one per relayer: nonces are per account)."""
    funder = ChainClient(stack.anvil.rpc_url, OWNER_KEY)
    keys = []
    for _ in range(count):
        account = Account.create()
        tx = {"from": funder.address, "to": account.address, "value": 100 * 10**18}
        funder.w3.eth.wait_for_transaction_receipt(funder.w3.eth.send_transaction(tx))
        keys.append(account.key.to_0x_hex())
    return keys


class Stream:
    """Sends ``count`` echo requests from the user account in a background thread, without waiting for receipts."""

    def __init__(self, stack: LocalStack, count: int, interval: float = 0.01) -> None:
        self.user = ChainClient(stack.anvil.rpc_url, USER_KEY)
        self.w3: Web3 = self.user.w3
        self.consumer = self.user.contract("ExampleConsumer", stack.deployment.consumer)
        self.router = self.user.contract("Router", stack.deployment.router)
        self.count = count
        self.interval = interval
        self.start_block = self.w3.eth.block_number + 1
        self.sent = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Stream:
        self._thread.start()
        return self

    def _run(self) -> None:
        nonce = self.w3.eth.get_transaction_count(self.user.address, "pending")
        chain_id = self.w3.eth.chain_id
        for i in range(self.count):
            tx = self.consumer.functions.send(ECHO, plain(b"multi %d" % i), 200_000, 3600).build_transaction(
                {"from": self.user.address, "nonce": nonce + i, "gas": 400_000, "chainId": chain_id}
            )
            self.w3.eth.send_raw_transaction(self.user.account.sign_transaction(tx).raw_transaction)
            self.sent += 1
            time.sleep(self.interval)

    def join(self, timeout: float = 60) -> None:
        self._thread.join(timeout)
        assert self.sent == self.count

    def requested(self) -> list[bytes]:
        logs = self.router.events.Requested().get_logs(from_block=self.start_block)
        return [bytes(e["args"]["requestId"]) for e in logs]

    def fulfilled(self) -> Counter[bytes]:
        logs = self.router.events.Fulfilled().get_logs(from_block=self.start_block)
        return Counter(bytes(e["args"]["requestId"]) for e in logs)

    def skipped(self) -> list[object]:
        return list(self.router.events.FulfillmentSkipped().get_logs(from_block=self.start_block))

    def wait_all_fulfilled(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.fulfilled()) >= self.count:
                return
            time.sleep(0.25)
        raise AssertionError(f"only {len(self.fulfilled())} of {self.count} requests fulfilled in {timeout}s")


def start_relayers(
    stack: LocalStack, url: str, keys: list[str], start: int, *, first: int = 0, max_batch: int = 16, **env: str
) -> list[Child]:
    relayers = []
    for i, key in enumerate(keys, start=first):
        relayers.append(
            stack.start_relayer(
                db=url,
                key=key,
                name=f"relayer-{i}-{start}",
                extra_args=(
                    "--start-block",
                    str(start),
                    "--lease-seconds",
                    str(LEASE_SECONDS),
                    "--max-batch",
                    str(max_batch),
                ),
                extra_env=env if i == first else None,
            )
        )
    return relayers


def check_exactly_once(stream: Stream, url: str, count: int, senders: set[str]) -> dict[str, int]:
    """Every request fulfilled once, nothing skipped, one mined transaction per request; return txs per sender."""
    requested = stream.requested()
    assert len(requested) == len(set(requested)) == count
    fulfilled = stream.fulfilled()
    assert set(fulfilled) == set(requested), "zero lost"
    assert max(fulfilled.values()) == 1, "zero delivered twice"
    assert stream.skipped() == [], "zero FulfillmentSkipped: no relayer broadcast a fulfilment another had sent"
    store = open_store(url)
    try:
        deadline = time.monotonic() + 20
        while store.counts() != {"delivered": count} and time.monotonic() < deadline:
            time.sleep(0.2)
        assert store.counts() == {"delivered": count}
        assert all(store.transactions_for(r) == 1 for r in requested), "one signed transaction per request, ever"
        txs = store._query("SELECT sender, state FROM transactions")
        assert {t["state"] for t in txs} == {TX_MINED}
        per_sender = Counter(t["sender"] for t in txs)
        assert set(per_sender) <= senders
        return dict(per_sender)
    finally:
        store.close()


def addresses(keys: list[str]) -> set[str]:
    return {Account.from_key(k).address.lower() for k in keys}


@pytest.mark.parametrize("relayers", [2, 3])
def test_relayers_share_one_postgres_without_duplicates_or_losses(
    local: LocalStack, postgres: PgCluster, relayers: int
) -> None:
    count = 120 * relayers
    url = postgres.database("multi")
    keys = funded_keys(local, relayers)
    stream = Stream(local, count)
    # Small batches, so one relayer alone cannot keep up with the stream and the others must take work: the
    # point is several relayers submitting side by side (with 16 a fast one could take everything alone).
    children = start_relayers(local, url, keys, stream.start_block, max_batch=4)
    try:
        for child in children:
            child.wait_for_line(RELAYER_READY, after=child.log_offset)
        started = time.monotonic()
        stream.start()
        stream.join()
        stream.wait_all_fulfilled(timeout=45)
        elapsed = time.monotonic() - started
        per_sender = check_exactly_once(stream, url, count, addresses(keys))
        assert len(per_sender) >= 2, f"the work was shared: {per_sender}"
        print(f"{relayers} relayers: {count} requests delivered exactly once in {elapsed:.1f}s; txs {per_sender}")
    finally:
        for child in children:
            child.stop()


def test_dead_relayers_leases_are_taken_over(local: LocalStack, postgres: PgCluster) -> None:
    """Three relayers: one dies right after persisting a signed transaction it never broadcast (while leading),
    another is SIGKILLed mid-stream; the survivor takes over their leases and adopts their transactions."""
    count = 240
    url = postgres.database("takeover")
    keys = funded_keys(local, 3)
    stream = Stream(local, count)
    # The crashing relayer runs alone until it has crashed, so it surely signs (and persists) something first:
    # with the others already running, they could take every request before it reaches its first submit.
    (crashing,) = start_relayers(local, url, keys[:1], stream.start_block, **{FAULT_ENV: "crash-before-broadcast"})
    others: list[Child] = []
    try:
        stream.start()
        assert crashing.process is not None and crashing.process.wait(timeout=30) == FAULT_EXIT_CODE
        others = start_relayers(local, url, keys[1:], stream.start_block, first=1)
        victim, survivor = others
        for child in others:
            child.wait_for_line(RELAYER_READY, after=child.log_offset)
        while len(stream.fulfilled()) < count // 3:
            time.sleep(0.1)
        victim.kill()  # SIGKILL mid-stream: whatever it claimed or signed is left behind
        stream.join()
        stream.wait_all_fulfilled(timeout=50)
        per_sender = check_exactly_once(stream, url, count, addresses(keys))
        crashed_address = Account.from_key(keys[0]).address.lower()
        assert per_sender.get(crashed_address) == 1, "the crashed relayer's persisted transaction was adopted"
        assert survivor.alive()
        # whichever of the two others got to it first adopted it (the victim may have, before it was killed)
        logs = victim.log_path.read_text() + survivor.log_path.read_text()
        assert "adopting transaction" in logs
    finally:
        for child in (crashing, *others):
            child.stop()


def test_two_relayer_processes_on_one_account_never_both_submit(local: LocalStack, postgres: PgCluster) -> None:
    """Started twice with the same key on one state, only one relayer process works (the other logs why and
    waits: nonces are per account); when that one is killed, the other takes over at once (same host)."""
    url = postgres.database("same_account")
    keys = funded_keys(local, 1)
    stream = Stream(local, 60)
    twins = [start_relayers(local, url, keys, stream.start_block, first=i)[0] for i in range(2)]
    try:
        for child in twins:
            child.wait_for_line(RELAYER_READY, after=child.log_offset)
        stream.start()
        stream.join()
        stream.wait_all_fulfilled(timeout=45)
        check_exactly_once(stream, url, 60, addresses(keys))
        refused = "is in use by another relayer process"
        waiting = [c for c in twins if refused in c.log_path.read_text()[c.log_offset :]]
        assert len(waiting) == 1, "exactly one of the two stood aside"
        (holder,) = [c for c in twins if c is not waiting[0]]
        holder.kill()
        more = Stream(local, 20)
        more.start()
        more.join()
        more.wait_all_fulfilled(timeout=30)
        assert max(more.fulfilled().values()) == 1 and more.skipped() == []
        assert waiting[0].alive()
        assert "now holds all its accounts; resuming" in waiting[0].log_path.read_text()
    finally:
        for child in twins:
            child.stop()
