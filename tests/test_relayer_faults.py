"""The relayer against RPC faults and a congested chain, on real processes (anvil, coprocessor, relayer).

A JSON-RPC proxy (``tests/rpc_proxy.py``) sits between the relayer and anvil and refuses connections, drops
responses after the node acted on the request, or delays them past the relayer's timeout. A stuck transaction is
made by turning anvil's automine off. Every test checks on-chain that every request was ``Fulfilled`` exactly
once and that no ``FulfillmentSkipped`` exists (a second fulfilment would leave one).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes
from web3 import Web3

from relayer.chain import ChainClient
from relayer.rpc import ChainIdMismatchError, FailoverProvider
from relayer.service import Relayer, RelayerConfig
from relayer.store import DELIVERED, SUBMITTED, TX_MINED, TX_REPLACED, open_store
from relayer.submitter import GWEI, bumped
from teebridge.anvil import Anvil
from teebridge.processes import RELAYER_READY, Child
from teebridge.stack import USER_KEY, LocalStack
from tests.rpc_proxy import RpcProxy
from tests.test_relayer_multi import ECHO, Stream, funded_keys
from verifier.envelope import plain


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(with_relayer=False, workdir=tmp_path_factory.mktemp("faults")) as stack:
        yield stack


def head(stack: LocalStack) -> int:
    return ChainClient(stack.anvil.rpc_url, USER_KEY).w3.eth.block_number


def start_relayer(stack: LocalStack, db: Path, key: str, name: str, urls: tuple[str, ...], *args: str) -> Child:
    child = stack.start_relayer(
        db=str(db),
        key=key,
        name=name,
        rpc_urls=urls,
        extra_args=("--start-block", str(head(stack) + 1), "--rpc-timeout", "1", *args),
    )
    child.wait_for_line(RELAYER_READY, after=child.log_offset)
    return child


def check_exactly_once(stream: Stream, db: Path, count: int) -> None:
    requested = stream.requested()
    assert len(requested) == len(set(requested)) == count
    fulfilled = stream.fulfilled()
    assert set(fulfilled) == set(requested), "zero lost"
    assert max(fulfilled.values()) == 1, "zero delivered twice"
    assert stream.skipped() == [], "zero FulfillmentSkipped"
    store = open_store(db)
    try:
        deadline = time.monotonic() + 15
        while store.counts() != {DELIVERED: count} and time.monotonic() < deadline:
            time.sleep(0.2)
        assert store.counts() == {DELIVERED: count}
    finally:
        store.close()


def test_failover_to_the_second_url_when_the_first_refuses(local: LocalStack, tmp_path: Path) -> None:
    count = 30
    (key,) = funded_keys(local, 1)
    db = tmp_path / "relayer.sqlite"
    with RpcProxy(local.anvil.rpc_url) as proxy:
        stream = Stream(local, count, interval=0.05)
        relayer = start_relayer(local, db, key, "relayer-failover", (proxy.url, local.anvil.rpc_url))
        try:
            stream.start()
            while stream.sent < count // 3 or len(stream.fulfilled()) < count // 3:
                time.sleep(0.1)
            used_before = proxy.forwarded
            proxy.refuse()
            stream.join()
            stream.wait_all_fulfilled(timeout=30)
            check_exactly_once(stream, db, count)
            assert used_before > 0, "the first URL was used while it answered"
            log = relayer.log_path.read_text()
            assert "backing off it" in log
            proxy.accept()  # back: the relayer returns to its first URL once the backoff has passed
            deadline = time.monotonic() + 20
            while proxy.forwarded == used_before and time.monotonic() < deadline:
                time.sleep(0.2)
            assert proxy.forwarded > used_before, "the relayer went back to the first URL"
            assert relayer.alive()
        finally:
            relayer.stop()


def test_dropped_and_delayed_responses_deliver_exactly_once(local: LocalStack, tmp_path: Path) -> None:
    count = 20
    (key,) = funded_keys(local, 1)
    db = tmp_path / "relayer.sqlite"
    with RpcProxy(local.anvil.rpc_url, drop_rate=0.2, delay_rate=0.1, delay=0.6, seed=7) as proxy:
        stream = Stream(local, count, interval=0.05)
        relayer = start_relayer(local, db, key, "relayer-flaky", (proxy.url,))
        try:
            stream.start()
            stream.join()
            stream.wait_all_fulfilled(timeout=35)
            check_exactly_once(stream, db, count)
            assert proxy.dropped > 5 and proxy.delayed > 2, (proxy.dropped, proxy.delayed)
            assert relayer.alive()
            print(f"proxy: {proxy.forwarded} forwarded, {proxy.dropped} dropped, {proxy.delayed} delayed")
        finally:
            relayer.stop()


def rpc(stack: LocalStack, method: str, *params: object) -> object:
    return ChainClient(stack.anvil.rpc_url, USER_KEY).w3.provider.make_request(method, list(params))  # type: ignore[arg-type]


def send_request_unmined(stack: LocalStack, payload: bytes) -> None:
    """Send one echo request with automine off and mine just its block."""
    user = ChainClient(stack.anvil.rpc_url, USER_KEY)
    consumer = user.contract("ExampleConsumer", stack.deployment.consumer)
    tx = consumer.functions.send(ECHO, plain(payload), 200_000, 3600).build_transaction(
        {
            "from": user.address,
            "nonce": user.w3.eth.get_transaction_count(user.address, "pending"),
            "gas": 400_000,
            "chainId": user.w3.eth.chain_id,
        }
    )
    user.w3.eth.send_raw_transaction(user.account.sign_transaction(tx).raw_transaction)
    rpc(stack, "evm_mine")


def fees_of(raw: bytes) -> tuple[int, int]:
    tx = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
    return int(tx["maxFeePerGas"]), int(tx["maxPriorityFeePerGas"])


def test_stuck_transaction_is_replaced_with_bumped_fees_up_to_the_ceiling(local: LocalStack, tmp_path: Path) -> None:
    (key,) = funded_keys(local, 1)
    db = tmp_path / "relayer.sqlite"
    ceiling = 2 * GWEI
    stream = Stream(local, 1)  # only for its log readers
    relayer = start_relayer(
        local, db, key, "relayer-stuck", (local.anvil.rpc_url,),
        "--replace-after", "0.5", "--priority-fee-gwei", "1", "--max-fee-gwei", "2",
    )  # fmt: skip
    rpc(local, "evm_setAutomine", False)
    try:
        send_request_unmined(local, b"stuck")
        # Nothing is mined now: the relayer bumps its fulfilment until the ceiling stops it.
        deadline = time.monotonic() + 25
        while "cannot be bumped under the fee ceiling" not in relayer.log_path.read_text():
            assert time.monotonic() < deadline, "the relayer never reached the fee ceiling"
            time.sleep(0.2)
        rpc(local, "evm_setAutomine", True)
        rpc(local, "evm_mine")
        stream.count = 1
        stream.wait_all_fulfilled(timeout=15)
        check_exactly_once(stream, db, 1)
        store = open_store(db)
        try:
            (tx,) = store._query("SELECT sender, nonce FROM transactions GROUP BY sender, nonce")
            versions = store.versions_of(tx["sender"], tx["nonce"])
            deadline = time.monotonic() + 10
            while any(v.state not in (TX_MINED, TX_REPLACED) for v in versions) and time.monotonic() < deadline:
                time.sleep(0.2)
                versions = store.versions_of(tx["sender"], tx["nonce"])
        finally:
            store.close()
        assert len(versions) >= 3, "the stuck transaction was replaced several times"
        assert [v.state for v in versions].count(TX_MINED) == 1
        assert {v.state for v in versions} == {TX_MINED, TX_REPLACED}
        fees = [fees_of(v.raw) for v in versions]
        assert all(max_fee <= ceiling for max_fee, _ in fees), f"fee ceiling respected: {fees}"
        for (old_max, old_tip), (new_max, new_tip) in itertools.pairwise(fees):
            assert new_max >= bumped(old_max) and new_tip >= bumped(old_tip), "each replacement bumps both by 12.5%"
        assert bumped(fees[-1][0]) > ceiling, "replaced until the ceiling forbade another bump"
        assert relayer.alive()
        print(f"{len(versions)} versions, max fees {[f[0] for f in fees]}")
    finally:
        rpc(local, "evm_setAutomine", True)
        relayer.stop()


def test_original_mined_after_its_replacement_settles_the_requests(local: LocalStack, tmp_path: Path) -> None:
    """The replacement is persisted but never reaches the pool; the original is mined: it settles, once."""
    (key,) = funded_keys(local, 1)
    stream = Stream(local, 1)
    relayer = Relayer(
        RelayerConfig(
            rpc_url=local.anvil.rpc_url,
            private_key=key,
            router=local.deployment.router,
            coprocessor_url=local.coprocessor_url,
            db_path=tmp_path / "relayer.sqlite",
            start_block=head(local) + 1,
            retry_delay=0.0,
            replace_after=2.0,  # long enough that the first pass cannot replace its own transaction
        )
    )
    rpc(local, "evm_setAutomine", False)
    try:
        send_request_unmined(local, b"race")
        relayer.tick()
        (stored,) = relayer.store.in_state(SUBMITTED)
        (original,) = relayer.store.open_transactions()
        swallowed: list[str] = []
        relayer.submitter.broadcast = lambda raw, tx_hash: swallowed.append(tx_hash)  # type: ignore[method-assign]
        time.sleep(2.1)
        relayer.tick()
        versions = relayer.store.versions_of(original.sender or "", original.nonce)
        assert len(versions) == 2 and versions[0].tx_hash == original.tx_hash
        assert relayer.store.get(stored.request_id).submit_tx == versions[1].tx_hash  # type: ignore[union-attr]
        assert versions[1].tx_hash in swallowed
        rpc(local, "evm_mine")  # mines the original: the pool never saw the replacement
        del relayer.submitter.broadcast
        relayer.tick()
        done = relayer.store.get(stored.request_id)
        assert done is not None and done.state == DELIVERED
        assert original.tx_hash in (done.outcome or "")
        states = {v.tx_hash: v.state for v in relayer.store.versions_of(original.sender or "", original.nonce)}
        assert states == {original.tx_hash: TX_MINED, versions[1].tx_hash: TX_REPLACED}
        stream.count = 1
        assert list(stream.fulfilled().values()) == [1] and stream.skipped() == []
    finally:
        rpc(local, "evm_setAutomine", True)
        relayer.close()


def test_failover_provider_refuses_urls_of_different_chains(local: LocalStack) -> None:
    with Anvil(chain_id=1337) as other:
        provider = FailoverProvider([local.anvil.rpc_url, other.rpc_url])
        with pytest.raises(ChainIdMismatchError, match="different chains"):
            provider.check_chain_ids()


def test_failover_provider_returns_to_a_url_down_at_start(local: LocalStack) -> None:
    proxy = RpcProxy(local.anvil.rpc_url)  # not listening yet: connections are refused
    try:
        provider = FailoverProvider([proxy.url, local.anvil.rpc_url], timeout=1, base_backoff=0.2, retry_delay=0.05)
        assert provider.check_chain_ids() == 31337
        w3 = Web3(provider)
        assert w3.eth.block_number >= 0 and proxy.forwarded == 0
        proxy.accept()
        deadline = time.monotonic() + 5
        while proxy.forwarded == 0 and time.monotonic() < deadline:
            assert w3.eth.block_number > 0
            time.sleep(0.05)
        assert proxy.forwarded > 0, "the first URL is used again once its backoff has passed"
        assert provider.endpoints[0].chain_checked and provider.endpoints[0].failures == 0
    finally:
        proxy.stop()
