"""The relayer rides through a restart of the chain's RPC node, on real processes (anvil, coprocessor, relayer).

anvil runs with ``--state FILE`` (load the chain at start, dump it on exit) and ``--state-interval 1`` (dump it every
second too). Requests are sent, anvil is stopped mid-stream and started again on the same port from the same file,
and more requests are sent; the relayer (one ``--rpc-url``, its normal retries) must deliver every request exactly
once.

- SIGTERM: anvil dumps the whole chain on exit, so the restarted node serves the same blocks: the relayer only sees
  an outage. Zero ``FulfillmentSkipped``.
- SIGKILL: the chain comes back as of the last periodic dump, so the blocks mined after it are gone and new ones
  are mined in their place: a reorganisation. The relayer runs with ``--confirmations`` deeper than what is lost,
  as it must for any reorg: it reads a log only that deep (so the lost request was never read), and a fulfilment
  counts only once its block is that deep (one in a lost block is still open and is re-broadcast, never re-signed;
  a reorg deeper than ``--confirmations`` would have lost blocks the relayer took as final). A request that was only in
  the lost blocks no longer exists and must not be delivered; every request on the final chain is delivered exactly
  once. A re-broadcast fulfilment of a lost request may reach the chain and be refused as a no-op
  (``FulfillmentSkipped``: not pending, or commitment mismatch when a new request took the same id): allowed,
  and counted.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relayer.chain import ChainClient
from relayer.store import DELIVERED, ORPHANED, TX_MINED, open_store
from teebridge.processes import RELAYER_READY, Child
from teebridge.stack import RELAYER_KEY, USER_KEY, LocalStack
from tests.test_relayer_faults import check_exactly_once
from tests.test_relayer_multi import ECHO, Stream
from verifier.envelope import plain

pytestmark = pytest.mark.slow

#: A pass stage failed (the relayer logs "<stage> failed: <why>" and goes on): it saw the outage.
STAGE_FAILED = re.compile(r"WARNING \w+ failed: ")
#: Deeper than the blocks a kill can lose (those mined since the last dump, at most a second's worth of the relayer's
#: and the miner's blocks), so no lost block was final to the relayer: its fulfilments there are still open.
CONFIRMATIONS = 16


@pytest.fixture
def persisted(tmp_path: Path) -> Iterator[LocalStack]:
    state = tmp_path / "anvil-state.json"
    args = ("--state", str(state), "--state-interval", "1")
    with LocalStack(with_relayer=False, workdir=tmp_path / "stack", anvil_args=args) as stack:
        yield stack


def state_file(stack: LocalStack) -> Path:
    return Path(stack.anvil_args[stack.anvil_args.index("--state") + 1])


def send_requests(stack: LocalStack, first: int, count: int) -> None:
    """Send ``count`` echo requests, each waiting for its receipt (the nonce is read from the node each time)."""
    user = ChainClient(stack.anvil.rpc_url, USER_KEY)
    consumer = user.contract("ExampleConsumer", stack.deployment.consumer)
    for i in range(first, first + count):
        user.send(consumer.functions.send(ECHO, plain(b"restart %d" % i), 200_000, 3600))


def start_relayer(stack: LocalStack, start_block: int, *args: str) -> Child:
    child = stack.start_relayer(
        db=str(stack.workdir / "relayer.sqlite"),  # type: ignore[operator]
        key=RELAYER_KEY,
        extra_args=("--start-block", str(start_block), "--rpc-timeout", "1", *args),
    )
    child.wait_for_line(RELAYER_READY, after=child.log_offset)
    return child


def wait_for_outage(relayer: Child, offset: int) -> None:
    """Until the relayer logs a failed stage after ``offset``: it has run into the dead node."""
    relayer.wait_for_line(STAGE_FAILED, timeout=60, after=offset)


def test_anvil_stopped_with_sigterm_and_restarted(persisted: LocalStack) -> None:
    stack = persisted
    half = 25
    stream = Stream(stack, 2 * half)  # only for its log readers
    relayer = start_relayer(stack, stream.start_block)
    try:
        send_requests(stack, 0, half)
        in_flight = half - len(stream.fulfilled())
        offset = relayer.log_path.stat().st_size
        stack.anvil.stop()  # SIGTERM: anvil dumps its state on exit
        wait_for_outage(relayer, offset)
        stack.anvil.start()  # same port, same state file
        send_requests(stack, half, half)
        stream.wait_all_fulfilled(timeout=60)
        check_exactly_once(stream, stack.workdir / "relayer.sqlite", 2 * half)  # type: ignore[operator]
        assert relayer.alive()
        print(f"{in_flight} of the first {half} requests were not delivered yet when anvil stopped")
    finally:
        relayer.stop()


class Miner:
    """Mines an empty block every ``interval`` seconds (so confirmations accrue on an automining chain); errors
    while the node is down are ignored."""

    def __init__(self, stack: LocalStack, interval: float = 0.3) -> None:
        self.url = stack.anvil.rpc_url
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Miner:
        self._thread.start()
        return self

    def _run(self) -> None:
        w3 = ChainClient(self.url, USER_KEY, timeout=2).w3
        while not self._stop.wait(self.interval):
            try:
                w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            except Exception:  # the node is restarting
                continue

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def dump_time(path: Path) -> int:
    """When anvil last completed a dump of its state (0: none yet, or one being written)."""
    try:
        stamp = path.stat().st_mtime_ns
        json.loads(path.read_text())
    except (OSError, ValueError):  # none yet, or being written
        return 0
    return stamp


def send_until_a_fulfilment_follows_a_dump(stack: LocalStack, relayer_address: str, limit: int) -> int:
    """Send requests one by one until the relayer has had a fulfilment mined
    since anvil's last dump, then one more request, and return how many were sent once a kill at that moment
    loses both: if anvil dumped again meanwhile (a loaded machine is slow between the two), look again."""
    w3 = ChainClient(stack.anvil.rpc_url, USER_KEY).w3
    path = state_file(stack)
    dumped, nonce_after_dump = dump_time(path), None
    sent = 0
    for poll in range(50 * limit):
        if poll % 5 == 0:  # a request every few polls keeps the relayer busy without piling up blocks
            assert sent < limit, f"no fulfilment was mined between two state dumps in {limit} requests"
            send_requests(stack, sent, 1)
            sent += 1
        stamp = dump_time(path)
        nonce = w3.eth.get_transaction_count(relayer_address)
        if stamp and stamp != dumped:
            dumped, nonce_after_dump = stamp, nonce
        elif nonce_after_dump is not None and nonce > nonce_after_dump:
            send_requests(stack, sent, 1)  # in a block after the dump: lost with the kill
            sent += 1
            if path.stat().st_mtime_ns == dumped:  # no dump since: kill now
                return sent
            dumped, nonce_after_dump = dump_time(path), None
        time.sleep(0.02)
    raise AssertionError("no fulfilment was mined between two state dumps")


def test_anvil_killed_loses_its_newest_blocks_and_the_relayer_treats_it_as_a_reorg(persisted: LocalStack) -> None:
    stack = persisted
    half = 20
    stream = Stream(stack, 0)
    db = stack.workdir / "relayer.sqlite"  # type: ignore[operator]
    relayer = start_relayer(stack, stream.start_block, "--confirmations", str(CONFIRMATIONS))
    w3 = stream.w3
    try:
        relayer_address = ChainClient(stack.anvil.rpc_url, RELAYER_KEY).address
        with Miner(stack):
            sent = send_until_a_fulfilment_follows_a_dump(stack, relayer_address, 100)
            head_before = w3.eth.block_number
            nonce_before = w3.eth.get_transaction_count(relayer_address)
            offset = relayer.log_path.stat().st_size
            assert stack.anvil.process is not None
            stack.anvil.process.kill()
            stack.anvil.process.wait()
            stack.anvil.stop()
            wait_for_outage(relayer, offset)
            stack.anvil.start()
            head_after = w3.eth.block_number
            assert head_after < head_before, "the blocks mined after the last dump are gone"
            assert head_before - head_after < CONFIRMATIONS, "the test's premise: the lost blocks were not final"
            assert w3.eth.get_transaction_count(relayer_address) < nonce_before, "a fulfilment was lost too"
            send_requests(stack, sent, half)
            deadline = time.monotonic() + 90
            while True:
                requested = stream.requested()
                fulfilled = stream.fulfilled()
                store = open_store(db)
                try:
                    settled = store.counts().get(DELIVERED, 0) == len(requested)
                finally:
                    store.close()
                if set(fulfilled) >= set(requested) and settled:
                    break
                assert time.monotonic() < deadline, f"{len(fulfilled)} of {len(requested)} delivered"
                time.sleep(0.3)
        assert len(requested) == len(set(requested))
        assert half <= len(requested) < sent + half, "the requests in the lost blocks are gone"
        assert set(fulfilled) == set(requested), "zero lost, and nothing delivered for a request that is gone"
        assert max(fulfilled.values()) == 1, "zero delivered twice"
        skipped = stream.skipped()
        assert {e["args"]["reason"] for e in skipped} <= {1, 2}, "only stale fulfilments of lost requests skipped"
        store = open_store(db)
        try:
            counts = store.counts()
            assert counts.get(DELIVERED) == len(requested) and set(counts) <= {DELIVERED, ORPHANED}, counts
            assert store.open_transactions() == []
            rows = store._query("SELECT nonce, state FROM transactions")
            address = ChainClient(stack.anvil.rpc_url, RELAYER_KEY).address
            mined = sorted(r["nonce"] for r in rows if r["state"] == TX_MINED)
            assert mined == list(range(w3.eth.get_transaction_count(address))), "no nonce gap after the reorg"
        finally:
            store.close()
        assert relayer.alive()
        after_kill = relayer.log_path.read_text(errors="replace")[offset:]
        print(
            f"lost {head_before - head_after} block(s); {after_kill.count('re-broadcasting')} re-broadcast(s);"
            f" {len(skipped)} stale fulfilment(s) skipped; reorg seen by the watcher: {'reorganisation' in after_kill}"
        )
    finally:
        relayer.stop()
