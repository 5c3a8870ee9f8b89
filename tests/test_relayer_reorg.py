"""The relayer across chain reorganisations, on a real anvil driven with ``anvil_reorg``.

``anvil_reorg [depth, [[rawTx, blockOffset], ...]]`` replaces the newest ``depth`` blocks with as many new
blocks (different hashes) holding only the listed transactions; transactions of the old blocks that are
not listed are gone, not returned to the mempool. The relayer is driven in-process with ``tick()`` so the
interleaving of chain and relayer is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3
from web3.logs import DISCARD

from relayer.chain import ChainClient
from relayer.service import Relayer, RelayerConfig
from relayer.store import DELIVERED, ORPHANED, PENDING, SUBMITTED, Store
from relayer.watcher import ReorgTooDeepError, Watcher
from teebridge.anvil import free_port
from teebridge.stack import RELAYER_KEY, USER_KEY, LocalStack
from verifier.envelope import plain
from verifier.protocol import job_id

ECHO = job_id("echo", 1)


@pytest.fixture(scope="module")
def local() -> Iterator[LocalStack]:
    with LocalStack(with_relayer=False) as stack:
        yield stack


def relayer_for(
    stack: LocalStack, db: Path, start_block: int, *, coprocessor_up: bool = True, confirmations: int = 0
) -> Relayer:
    url = stack.coprocessor_url if coprocessor_up else f"http://127.0.0.1:{free_port()}"
    return Relayer(
        RelayerConfig(
            rpc_url=stack.anvil.rpc_url,
            private_key=RELAYER_KEY,
            router=stack.deployment.router,
            coprocessor_url=url,
            db_path=db,
            start_block=start_block,
            retry_delay=0.0,
            confirmations=confirmations,
        )
    )


class User:
    """Signs consumer requests itself, so a test can re-send the very same bytes after a reorg."""

    def __init__(self, stack: LocalStack) -> None:
        self.client = ChainClient(stack.anvil.rpc_url, USER_KEY)
        self.w3: Web3 = self.client.w3
        self.consumer = self.client.contract("ExampleConsumer", stack.deployment.consumer)
        self.router = self.client.contract("Router", stack.deployment.router)

    def sign(self, payload: bytes, ttl: int = 600) -> bytes:
        """A signed ``consumer.send`` transaction for the account's next nonce (not sent)."""
        tx = self.consumer.functions.send(ECHO, plain(payload), 300_000, ttl).build_transaction(
            {
                "from": self.client.address,
                "nonce": self.w3.eth.get_transaction_count(self.client.address),
                "chainId": self.w3.eth.chain_id,
                "gas": 500_000,
            }
        )
        return bytes(self.client.account.sign_transaction(tx).raw_transaction)

    def send(self, raw: bytes) -> tuple[bytes, int]:
        """Broadcast ``raw`` (automine); return the request id and the block it landed in."""
        receipt = self.w3.eth.wait_for_transaction_receipt(self.w3.eth.send_raw_transaction(raw))
        (event,) = self.router.events.Requested().process_receipt(receipt, errors=DISCARD)
        return bytes(event["args"]["requestId"]), receipt["blockNumber"]

    def pending_on_chain(self, request_id: bytes) -> bool:
        return int.from_bytes(self.router.functions.commitments(request_id).call(), "big") != 0

    def fulfilled_events(self, request_id: bytes, from_block: int) -> int:
        logs = self.router.events.Fulfilled().get_logs(from_block=from_block)
        return sum(1 for e in logs if bytes(e["args"]["requestId"]) == request_id)


def reorg(w3: Web3, depth: int, include: list[tuple[bytes, int]] | None = None) -> None:
    """Replace the newest ``depth`` blocks; ``include`` puts raw transactions at block offsets in the new ones."""
    txs = [["0x" + raw.hex(), offset] for raw, offset in include or []]
    answer = w3.provider.make_request("anvil_reorg", [depth, txs])
    assert "error" not in answer, answer


def mine(w3: Web3, blocks: int) -> None:
    for _ in range(blocks):
        w3.provider.make_request("evm_mine", [])


def test_request_in_orphaned_block_is_never_delivered(local: LocalStack, tmp_path: Path) -> None:
    user = User(local)
    start = user.w3.eth.block_number + 1
    request_id, _ = user.send(user.sign(b"gone"))
    mine(user.w3, 2)
    db = tmp_path / "r.sqlite"
    down = relayer_for(local, db, start, coprocessor_up=False)
    down.tick()  # seen, execution failed: pending, cursor at the head
    assert down.store.get(request_id).state == PENDING
    down.close()

    reorg(user.w3, 3)  # the request's block and the two after it are replaced by empty blocks
    assert not user.pending_on_chain(request_id)

    up = relayer_for(local, db, start)
    for _ in range(3):
        report = up.tick()
        assert not report.errors, report.errors
    stored = up.store.get(request_id)
    assert stored is not None and stored.state == ORPHANED, stored
    assert "3-block reorg" in (stored.last_error or "")
    assert up.watcher.rewinds == 1
    assert up.store.transactions_for(request_id) == 0, "no gas spent on a request that no longer exists"
    assert up.store.in_state(PENDING) == []
    assert user.fulfilled_events(request_id, start) == 0
    up.close()


def test_reincluded_request_is_delivered_once(local: LocalStack, tmp_path: Path) -> None:
    user = User(local)
    start = user.w3.eth.block_number + 1
    raw = user.sign(b"again")
    request_id, block = user.send(raw)
    mine(user.w3, 1)
    db = tmp_path / "r.sqlite"
    down = relayer_for(local, db, start, coprocessor_up=False)
    down.tick()
    assert down.store.get(request_id).state == PENDING
    down.close()

    reorg(user.w3, 2, [(raw, 1)])  # same transaction, one block later, in a new chain
    assert user.pending_on_chain(request_id)
    up = relayer_for(local, db, start)
    for _ in range(3):
        report = up.tick()
        assert not report.errors, report.errors
    stored = up.store.get(request_id)
    assert stored is not None and stored.state == DELIVERED, stored
    assert stored.block_number == block + 1, "the row follows the new chain"
    assert up.watcher.rewinds == 1
    assert up.store.transactions_for(request_id) == 1
    assert user.fulfilled_events(request_id, start) == 1
    up.close()


def test_request_id_reused_on_the_new_chain_is_relayed_with_its_new_fields(local: LocalStack, tmp_path: Path) -> None:
    """The Router's id is its prefix and the request's number: after a reorg the next request can take an orphaned
    id (and, since the requester is not in the id, even another requester's)."""
    user = User(local)
    start = user.w3.eth.block_number + 1
    old_id, _ = user.send(user.sign(b"old"))
    db = tmp_path / "r.sqlite"
    down = relayer_for(local, db, start, coprocessor_up=False)
    down.tick()
    down.close()

    reorg(user.w3, 1)
    new_id, _ = user.send(user.sign(b"new"))
    assert new_id == old_id
    up = relayer_for(local, db, start)
    for _ in range(3):
        up.tick()
    stored = up.store.get(new_id)
    assert stored is not None and stored.state == DELIVERED, stored
    assert b"new" in stored.input and b"old" not in stored.input
    assert user.fulfilled_events(new_id, start) == 1
    up.close()


def test_no_rewind_without_reorg(local: LocalStack, tmp_path: Path) -> None:
    user = User(local)
    start = user.w3.eth.block_number + 1
    relayer = relayer_for(local, tmp_path / "r.sqlite", start)
    ids = []
    for i in range(12):
        ids.append(user.send(user.sign(b"steady %d" % i))[0])
        mine(user.w3, i % 3)
        report = relayer.tick()
        assert not report.errors, report.errors
    relayer.tick()
    assert relayer.watcher.rewinds == 0
    assert all(relayer.store.get(i).state == DELIVERED for i in ids)
    assert ORPHANED not in relayer.store.counts()
    relayer.close()


def test_reorg_deeper_than_the_window_stops_with_a_clear_error(local: LocalStack, tmp_path: Path) -> None:
    user = User(local)
    start = user.w3.eth.block_number + 1
    mine(user.w3, 6)
    relayer = relayer_for(local, tmp_path / "r.sqlite", start)
    store: Store = relayer.store
    watcher = Watcher(relayer.chain.w3, relayer.router, store, start_block=start, reorg_window=4)
    watcher.poll()
    cursor = store.cursor()
    assert len(store.scanned_hashes(cursor, 100)) == 4, "the window is bounded"
    reorg(user.w3, 5)
    with pytest.raises(ReorgTooDeepError, match=r"(?i)raise reorg_window"):
        watcher.poll()
    assert store.cursor() == cursor, "nothing was rewound on a guess"
    relayer.close()


def test_submitted_request_orphaned_with_its_fulfilment_is_never_delivered(local: LocalStack, tmp_path: Path) -> None:
    """The relayer already signed and broadcast a fulfilment when the request's block is reorganised away."""
    user = User(local)
    start = user.w3.eth.block_number + 1
    request_id, _ = user.send(user.sign(b"in flight"))
    relayer = relayer_for(local, tmp_path / "r.sqlite", start)
    w3 = relayer.chain.w3
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        relayer.tick()  # executed and submitted; the fulfilment waits in the mempool
        assert relayer.store.get(request_id).state == SUBMITTED
        reorg(w3, 1)
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
    assert not user.pending_on_chain(request_id)
    relayer.watcher.poll()  # the watch stage alone: the row is withdrawn, its transaction stays open
    assert relayer.store.get(request_id).state == ORPHANED
    assert relayer.watcher.rewinds == 1
    assert len(relayer.store.open_transactions()) == 1
    for _ in range(3):
        report = relayer.tick()
        assert not report.errors, report.errors
        mine(w3, 1)
    stored = relayer.store.get(request_id)
    # anvil kept the unmined fulfilment in its mempool; it is mined and the Router skips it (not pending).
    assert stored is not None and stored.state not in (DELIVERED, PENDING, SUBMITTED), stored
    assert relayer.watcher.rewinds == 1
    assert user.fulfilled_events(request_id, start) == 0
    assert relayer.store.open_transactions() == [], "the old fulfilment was settled, not left hanging"
    relayer.close()


def test_reorg_during_a_scan_stores_nothing_from_the_old_chain(local: LocalStack, tmp_path: Path) -> None:
    """Logs read from a chain that is replaced before they are stored are dropped, not recorded."""
    user = User(local)
    start = user.w3.eth.block_number + 1
    mine(user.w3, 1)
    store = Store(tmp_path / "r.sqlite")
    client = ChainClient(local.anvil.rpc_url, RELAYER_KEY)
    watcher = Watcher(client.w3, client.contract("Router", local.deployment.router), store, start_block=start)
    watcher.poll()
    cursor = store.cursor()
    request_id, _ = user.send(user.sign(b"raced"))
    real_get_logs = watcher.get_logs

    def get_logs_then_reorg(start, end):  # the chain is replaced right after the node answered
        logs = real_get_logs(start, end)
        reorg(user.w3, 1)
        return logs

    watcher.get_logs = get_logs_then_reorg
    assert watcher.poll() == 0
    del watcher.get_logs  # the class's own method again
    assert store.get(request_id) is None and store.cursor() == cursor
    assert watcher.poll() == 0
    assert store.get(request_id) is None and store.cursor() == client.w3.eth.block_number
    assert watcher.rewinds == 0
    store.close()


def test_chunked_backfill_remembers_only_the_window_and_then_follows(local: LocalStack, tmp_path: Path) -> None:
    user = User(local)
    start = user.w3.eth.block_number + 1
    ids = [user.send(user.sign(b"backfill %d" % i))[0] for i in range(3)]
    mine(user.w3, 8)
    store = Store(tmp_path / "r.sqlite")
    client = ChainClient(local.anvil.rpc_url, RELAYER_KEY)
    router = client.contract("Router", local.deployment.router)
    watcher = Watcher(client.w3, router, store, start_block=start, chunk=3, reorg_window=4)
    calls = []
    real_block = watcher.block
    watcher.block = lambda n: calls.append(n) or real_block(n)
    assert watcher.poll() == 3
    head = client.w3.eth.block_number
    assert min(n for n in calls if n >= start) >= head - 4, "no block outside the window was fetched"
    assert [n for n, _ in store.scanned_hashes(head, 100)] == [head, head - 1, head - 2, head - 3]
    for _ in range(3):
        mine(user.w3, 2)
        watcher.poll()
    del watcher.block  # the class's own method again
    assert watcher.rewinds == 0 and store.cursor() == client.w3.eth.block_number
    assert all(store.get(i).state == PENDING for i in ids)
    store.close()


def test_fulfilment_reorged_away_before_its_confirmations_is_rebroadcast_not_recorded(
    local: LocalStack, tmp_path: Path
) -> None:
    user = User(local)
    start = user.w3.eth.block_number + 1
    request_id, _ = user.send(user.sign(b"deep enough"))
    mine(user.w3, 2)  # the watcher reads logs 2 blocks behind the head
    relayer = relayer_for(local, tmp_path / "r.sqlite", start, confirmations=2)
    relayer.tick()  # executes and submits; automine puts the fulfilment in the head block
    assert relayer.store.get(request_id).state == SUBMITTED, "a receipt 0 blocks deep must not count yet"
    assert user.fulfilled_events(request_id, start) == 1

    reorg(user.w3, 1)  # the block with the fulfilment is replaced: the transaction is gone
    assert user.fulfilled_events(request_id, start) == 0 and user.pending_on_chain(request_id)
    relayer.tick()  # finds no receipt, the nonce unused: re-broadcasts the very same signed bytes
    assert user.fulfilled_events(request_id, start) == 1
    assert relayer.store.get(request_id).state == SUBMITTED
    mine(user.w3, 2)
    relayer.tick()
    assert relayer.store.get(request_id).state == DELIVERED
    assert relayer.store.transactions_for(request_id) == 1, "never a second signed transaction"
    relayer.close()
