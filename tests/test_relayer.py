"""The relayer on its own: it pays for nothing a coprocessor forged, retries what failed, and ends what expired."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from relayer.chain import ChainClient
from relayer.service import Relayer, RelayerConfig
from relayer.store import DELIVERED, EXPIRED, PENDING, SUBMITTED, Store
from teebridge.anvil import free_port
from teebridge.client import send_via_consumer
from teebridge.stack import RELAYER_KEY, USER_KEY, LocalStack
from tests.helpers import DevEnclave
from verifier.envelope import plain
from verifier.hexutil import from_hex
from verifier.protocol import Domain, Request, job_id

ECHO = job_id("echo", 1)


@pytest.fixture(scope="module")
def local() -> Iterator[LocalStack]:
    with LocalStack(with_relayer=False) as stack:
        yield stack


def relayer_for(
    stack: LocalStack, db: Path, coprocessor_url: str | None = None, start_block: int | None = None
) -> Relayer:
    return Relayer(
        RelayerConfig(
            rpc_url=stack.anvil.rpc_url,
            private_key=RELAYER_KEY,
            router=stack.deployment.router,
            coprocessor_url=coprocessor_url or stack.coprocessor_url,
            db_path=db,
            start_block=stack.deployment.deploy_block if start_block is None else start_block,
            retry_delay=0.0,
        )
    )


def request_echo(stack: LocalStack, payload: bytes, ttl: int = 600) -> bytes:
    user = ChainClient(stack.anvil.rpc_url, USER_KEY)
    d = stack.deployment
    sent = send_via_consumer(
        user,
        user.contract("ExampleConsumer", d.consumer),
        user.contract("Router", d.router),
        ECHO,
        plain(payload),
        ttl=ttl,
    )
    return sent.request_id


def relayer_nonce(stack: LocalStack) -> int:
    client = ChainClient(stack.anvil.rpc_url, RELAYER_KEY)
    return client.w3.eth.get_transaction_count(client.address)


class ForgingCoprocessor(BaseHTTPRequestHandler):
    """Answers /v1/execute with results signed by a key the registry has never heard of."""

    enclave = DevEnclave.random()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        domain = Domain(body["chainId"], body["router"])
        out = []
        for item in body["requests"]:
            request = Request.from_input(
                request_id=from_hex(item["requestId"]),
                requester=item["requester"],
                job_id=from_hex(item["jobId"]),
                input=from_hex(item["input"]),
                callback_gas_limit=item["callbackGasLimit"],
                fee=int(item["fee"]),
                expiry=item["expiry"],
            )
            out.append(self.enclave.sign(request, b"forged answer", domain).to_json())
        data = json.dumps({"fulfillments": out}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_forged_results_are_never_submitted(local: LocalStack, tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), ForgingCoprocessor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        request_id = request_echo(local, b"x")
        relayer = relayer_for(local, tmp_path / "r.sqlite", f"http://127.0.0.1:{server.server_port}")
        nonce = relayer_nonce(local)
        for _ in range(3):
            relayer.tick()
        stored = relayer.store.get(request_id)
        assert stored is not None and stored.state != DELIVERED
        # Refused in simulation (UnauthorizedSigner): the forger's key is not registered, so its result was
        # discarded, the request went back to be executed again, and the forger gets no more work.
        assert stored.state == PENDING and stored.reexecutions == 1
        assert (
            "no coprocessor whose results the registry accepts" in (stored.last_error or "")
            and "not registered" in stored.last_error
        )
        assert relayer_nonce(local) == nonce, "the relayer spent no gas on a forgery"
        relayer.close()
    finally:
        server.shutdown()


def test_unreachable_coprocessor_is_retried_then_delivered(local: LocalStack, tmp_path: Path) -> None:
    request_id = request_echo(local, b"later")
    db = tmp_path / "r.sqlite"
    down = relayer_for(local, db, f"http://127.0.0.1:{free_port()}")
    down.tick()
    stored = down.store.get(request_id)
    assert stored is not None and stored.state == PENDING and stored.attempts == 1
    assert "unreachable" in (stored.last_error or "")
    down.close()
    up = relayer_for(local, db)
    up.tick()
    stored = up.store.get(request_id)
    assert stored is not None and stored.state == DELIVERED, stored
    up.close()


def test_expired_request_is_closed_not_left_pending(local: LocalStack, tmp_path: Path) -> None:
    request_id = request_echo(local, b"too late", ttl=30)
    w3 = ChainClient(local.anvil.rpc_url, USER_KEY).w3
    w3.provider.make_request("evm_increaseTime", [60])
    w3.provider.make_request("evm_mine", [])
    relayer = relayer_for(local, tmp_path / "r.sqlite", f"http://127.0.0.1:{free_port()}")
    relayer.tick()
    stored = relayer.store.get(request_id)
    assert stored is not None and stored.state == EXPIRED and "cancel" in (stored.outcome or "")
    relayer.close()


def test_database_is_bound_to_one_router(local: LocalStack, tmp_path: Path) -> None:
    store = Store(tmp_path / "r.sqlite")
    store.bind(31337, "0x" + "12" * 20)
    store.close()
    with pytest.raises(RuntimeError, match="belongs to"):
        relayer_for(local, tmp_path / "r.sqlite")


def test_transaction_mined_during_reconcile_is_not_taken_for_dropped(local: LocalStack, tmp_path: Path) -> None:
    """The receipt lookup misses, then the block is mined: the relayer must not requeue a mined transaction."""
    request_id = request_echo(local, b"race")
    relayer = relayer_for(local, tmp_path / "r.sqlite")
    w3 = relayer.chain.w3
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        relayer.tick()  # executed and submitted; the transaction waits in the mempool
        stored = relayer.store.get(request_id)
        assert stored is not None and stored.state == SUBMITTED
        calls = []

        def lookup_then_mine(tx_hash):
            calls.append(tx_hash)
            w3.provider.make_request("evm_mine", [])
            return None  # "not mined yet"

        relayer.submitter.receipt = lookup_then_mine
        relayer.submitter.reconcile()
        del relayer.submitter.receipt  # the class's own lookup again
        assert calls, "the race was exercised"
        assert relayer.store.get(request_id).state == SUBMITTED, "a mined transaction was taken for dropped"
        relayer.submitter.reconcile()
        assert relayer.store.get(request_id).state == DELIVERED
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
        relayer.close()


def test_receipt_served_late_is_not_taken_for_dropped(local: LocalStack, tmp_path: Path) -> None:
    """The node reports the nonce used but no receipt yet (anvil under load does): wait, do not requeue."""
    request_id = request_echo(local, b"late receipt")
    relayer = relayer_for(local, tmp_path / "r.sqlite")

    def not_yet(tx_hash):
        return None  # "not served yet"

    relayer.submitter.receipt = not_yet
    try:
        relayer.tick()  # executed, submitted and mined at once (automine); the receipt "is not there"
        for _ in range(2):
            relayer.submitter.reconcile()
        stored = relayer.store.get(request_id)
        assert stored is not None and stored.state == SUBMITTED, "a mined transaction was taken for dropped"
    finally:
        del relayer.submitter.receipt  # the class's own lookup again
    relayer.submitter.reconcile()
    assert relayer.store.get(request_id).state == DELIVERED
    assert relayer.store.transactions_for(request_id) == 1
    relayer.close()


def _tick_until_delivered(relayer: Relayer, ids: list[bytes], passes: int = 10) -> None:
    """Run passes until every request in ``ids`` is delivered (one pass usually does it on automine)."""
    for _ in range(passes):
        relayer.tick()
        if all(relayer.store.get(i).state == DELIVERED for i in ids):
            return
    raise AssertionError({i.hex(): (relayer.store.get(i).state, relayer.store.get(i).outcome) for i in ids})


def _fulfilment_functions(stack: LocalStack, request_ids: list[bytes]) -> dict[str, int]:
    """The Router function of each transaction that delivered one of ``request_ids``, with its item count."""
    client = ChainClient(stack.anvil.rpc_url, RELAYER_KEY)
    router = client.contract("Router", stack.deployment.router)
    logs = router.events.Fulfilled().get_logs(from_block=stack.deployment.deploy_block)
    tx_hashes = {log["transactionHash"] for log in logs if bytes(log["args"]["requestId"]) in request_ids}
    functions: dict[str, int] = {}
    for tx_hash in tx_hashes:
        func, _ = router.decode_function_input(client.w3.eth.get_transaction(tx_hash)["input"])
        functions[func.fn_name] = functions.get(func.fn_name, 0) + 1
    return functions


def test_several_ready_results_go_out_under_one_enclave_signature(local: LocalStack, tmp_path: Path) -> None:
    from teebridge.client import _result_from_transaction

    ids = [request_echo(local, b"batch %d" % i) for i in range(4)]
    relayer = relayer_for(local, tmp_path / "r.sqlite")
    _tick_until_delivered(relayer, ids)
    functions = _fulfilment_functions(local, ids)
    assert "fulfillBatchSigned" in functions and "fulfillBatch" not in functions, functions
    # the SDK finds each answer in the packed calldata
    client = ChainClient(local.anvil.rpc_url, RELAYER_KEY)
    router = client.contract("Router", local.deployment.router)
    (log,) = [
        e
        for e in router.events.Fulfilled().get_logs(from_block=local.deployment.deploy_block)
        if e["args"]["requestId"] == ids[2]
    ]
    tx = client.w3.eth.get_transaction(log["transactionHash"])
    domain = Domain(client.chain_id, router.address)
    assert _result_from_transaction(router, tx, ids[2], log["args"]["signer"], domain).endswith(b"batch 2")
    relayer.close()


def test_a_single_result_goes_out_with_fulfill_packed(local: LocalStack, tmp_path: Path) -> None:
    from teebridge.client import _result_from_transaction

    (request_id,) = ids = [request_echo(local, b"alone")]
    relayer = relayer_for(local, tmp_path / "r.sqlite")
    _tick_until_delivered(relayer, ids)
    assert _fulfilment_functions(local, ids) == {"fulfillPacked": 1}
    client = ChainClient(local.anvil.rpc_url, RELAYER_KEY)
    router = client.contract("Router", local.deployment.router)
    (log,) = [
        e
        for e in router.events.Fulfilled().get_logs(from_block=local.deployment.deploy_block)
        if e["args"]["requestId"] == request_id
    ]
    tx = client.w3.eth.get_transaction(log["transactionHash"])
    domain = Domain(client.chain_id, router.address)
    assert _result_from_transaction(router, tx, request_id, log["args"]["signer"], domain).endswith(b"alone")
    relayer.close()


def test_a_callback_out_of_gas_is_recorded_by_the_relayer_and_the_sdk(local: LocalStack, tmp_path: Path) -> None:
    """A callback that runs out of its gas settles the request all the same; the relayer's outcome and the SDK's
    answer say so, with the gas the callback used (the Router's ``CallbackFailed``)."""
    from teebridge.client import wait_for_answer

    user = ChainClient(local.anvil.rpc_url, USER_KEY)
    burner, _ = user.deploy("GasBurningConsumer", local.deployment.router)
    router = user.contract("Router", local.deployment.router)
    sent = send_via_consumer(user, burner, router, ECHO, plain(b"burn"), callback_gas_limit=120_000)
    ok_id = request_echo(local, b"fine")
    relayer = relayer_for(local, tmp_path / "r.sqlite")
    _tick_until_delivered(relayer, [sent.request_id, ok_id])
    burnt = json.loads(relayer.store.get(sent.request_id).outcome)
    assert burnt["callbackSucceeded"] is False and burnt["failedCallbackGasUsed"] >= 120_000
    fine = json.loads(relayer.store.get(ok_id).outcome)
    assert fine["callbackSucceeded"] is True and "failedCallbackGasUsed" not in fine
    answer = wait_for_answer(router, sent.request_id, from_block=sent.block_number, timeout=10)
    assert answer.callback_succeeded is False and answer.failed_callback_gas_used == burnt["failedCallbackGasUsed"]
    fine_answer = wait_for_answer(router, ok_id, from_block=sent.block_number, timeout=10)
    assert fine_answer.callback_succeeded is True and fine_answer.failed_callback_gas_used is None
    relayer.close()


def test_a_bad_batch_signature_falls_back_to_per_item_signatures(local: LocalStack, tmp_path: Path) -> None:
    ids = [request_echo(local, b"fallback %d" % i) for i in range(3)]
    relayer = relayer_for(local, tmp_path / "r.sqlite")
    relayer.submitter.batch_signer = lambda results: b"\x01" * 65  # a coprocessor answering nonsense
    _tick_until_delivered(relayer, ids)
    functions = _fulfilment_functions(local, ids)
    assert "fulfillBatch" in functions and "fulfillBatchSigned" not in functions, functions
    relayer.close()


def test_large_batches_are_simulated_at_a_predicted_gas_limit(
    local: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After one estimate, a large batch is simulated with one eth_call at a predicted gas limit instead of
    eth_estimateGas; a prediction too low for the callbacks fails that call and is estimated instead."""
    from web3.eth import Eth

    from relayer.submitter import PREDICT_MIN_ITEMS

    estimates: list[int] = []
    real_estimate = Eth.estimate_gas

    def counting_estimate(self, transaction, *args, **kwargs):
        if str(transaction.get("data", "")).startswith(fulfil_batch_signed):  # not the test's own requests
            estimates.append(1)
        return real_estimate(self, transaction, *args, **kwargs)

    relayer = relayer_for(local, tmp_path / "r.sqlite")
    fulfil_batch_signed = "0x" + relayer.submitter.calls.selector("fulfillBatchSigned").hex()
    monkeypatch.setattr(Eth, "estimate_gas", counting_estimate)
    submitter = relayer.submitter
    w3 = relayer.chain.w3
    try:

        def deliver_one_batch(tag: str) -> list[bytes]:
            ids = [request_echo(local, f"{tag} {i}".encode()) for i in range(PREDICT_MIN_ITEMS)]
            _tick_until_delivered(relayer, ids)
            assert len(_fulfilment_functions(local, ids)) == 1, "one transaction carried the batch"
            return ids

        deliver_one_batch("first")
        assert len(estimates) == 1 and submitter._gas_per_item > 0, "the first large batch is estimated"
        per_item = submitter._gas_per_item
        ids = deliver_one_batch("predicted")
        assert len(estimates) == 1, "the second was simulated at the predicted gas limit, not estimated"
        stored = relayer.store.get(ids[0])
        tx = w3.eth.get_transaction(stored.submit_tx)
        assert tx["gas"] == int(per_item * PREDICT_MIN_ITEMS * submitter.policy.gas_margin) + submitter.policy.gas_extra
        submitter._gas_per_item = 1000.0  # far too little gas for these callbacks
        ids = deliver_one_batch("too low")
        assert len(estimates) == 2, "the failed prediction was estimated"
        assert submitter._gas_per_item > 1000.0
        for request_id in ids:
            outcome = json.loads(relayer.store.get(request_id).outcome)
            assert outcome["status"] == 0 and outcome["callbackSucceeded"], "no callback was starved of gas"
    finally:
        relayer.close()


def _corrupt_signatures_once(relayer: Relayer, ids: list[bytes]) -> None:
    """The relayer's answers for ``ids`` carry item signatures by a stranger's key the first time (a faulty
    coprocessor)."""
    from dataclasses import replace

    from verifier.signing import sign_digest

    stranger = DevEnclave.random()
    real = relayer.coprocessor.execute
    pending = set(ids)

    def execute(chain_id, router, requests):
        results = real(chain_id, router, requests)
        domain = Domain(chain_id, router)
        out = []
        for r in results:
            if r.request_id in pending:
                pending.discard(r.request_id)
                r = replace(r, signature=sign_digest(stranger.key, r.fulfillment().digest(domain)))
            out.append(r)
        return out

    relayer.coprocessor.execute = execute


def test_an_item_whose_own_signature_is_bad_is_executed_again(local: LocalStack, tmp_path: Path) -> None:
    """Item signatures are checked when items go out with them (here: no batch signature, so ``fulfillBatch``
    or ``fulfill``): the one whose signature recovers to another key is discarded and executed again before
    anything is sent for it; the others are delivered."""
    ids = [request_echo(local, b"own signature %d" % i) for i in range(3)]
    relayer = relayer_for(local, tmp_path / "r.sqlite")
    relayer.submitter.batch_signer = lambda results: None  # no batch signature: items go out on their own
    _corrupt_signatures_once(relayer, [ids[1]])
    try:
        _tick_until_delivered(relayer, ids)
        assert [relayer.store.get(i).reexecutions for i in ids] == [0, 1, 0]
        assert [relayer.store.transactions_for(i) for i in ids] == [1, 1, 1], "nothing went out with the bad one"
        assert "fulfillBatchSigned" not in _fulfilment_functions(local, ids)
        assert relayer.metrics.reexecutions.value(reason="bad_signature") == 1
    finally:
        relayer.close()


def test_under_a_batch_signature_item_signatures_are_not_used(local: LocalStack, tmp_path: Path) -> None:
    """``fulfillBatchSigned`` carries no item signature: the enclave signs the batch over fulfilments its key
    signed, so items whose stored signatures were garbled still go out under it, none executed again."""
    first_block = ChainClient(local.anvil.rpc_url, USER_KEY).w3.eth.block_number + 1
    ids = [request_echo(local, b"batch signed %d" % i) for i in range(3)]
    relayer = relayer_for(local, tmp_path / "r.sqlite", start_block=first_block)  # only these: one batch
    _corrupt_signatures_once(relayer, ids)
    try:
        _tick_until_delivered(relayer, ids)
        assert set(_fulfilment_functions(local, ids)) == {"fulfillBatchSigned"}
        assert [relayer.store.get(i).reexecutions for i in ids] == [0, 0, 0]
    finally:
        relayer.close()


def test_a_relayer_whose_account_another_process_holds_does_nothing(local: LocalStack, tmp_path: Path) -> None:
    """One account, one relayer process (relayer.process_identity): the lease another live process holds on the
    account stops every stage, says so in /health, and nothing is seen or sent; once it is free, work resumes."""
    db = tmp_path / "r.sqlite"
    relayer = relayer_for(local, db)
    lease = f"account:{relayer.chain.address.lower()}"
    other = "another-host.invalid/4242/cafe"  # a live process elsewhere: never known gone
    assert relayer.store.hold(lease, other) is None
    request_id = request_echo(local, b"wait for the account")
    report = relayer.tick()
    assert report.seen == 0 and report.submitted == 0
    assert any("in use by another relayer process" in e for e in report.errors), report.errors
    health = relayer.health_report()
    assert health["status"] == "degraded" and any("another relayer process" in p for p in health["problems"])
    assert relayer.store.get(request_id) is None

    relayer.store.let_go(lease, other)
    relayer._holds_checked = float("-inf")  # the next renewal is due now rather than a quarter lease later
    _tick_until_delivered(relayer, [request_id])
    relayer.close()


def test_an_unreachable_store_stops_a_pass_at_the_account_leases(
    local: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    relayer = relayer_for(local, tmp_path / "r.sqlite")

    def unreachable(*_args: object, **_kwargs: object) -> None:
        raise OSError("connection refused")

    monkeypatch.setattr(relayer.store, "hold", unreachable)
    report = relayer.tick()
    assert report.errors == ["accounts: could not renew their leases: connection refused"]
    monkeypatch.undo()
    relayer.close()


def test_requests_from_before_a_chain_id_change_are_delivered_with_their_full_ids(
    local: LocalStack, tmp_path: Path
) -> None:
    """After a fork that changes the chain id, a request made before it keeps the old chain's id prefix, which
    packed items cannot carry (the Router puts its new prefix back): it must go out with its full id (``fulfill``,
    ``fulfillBatch``), and it must not take the new chain's requests down with it in one batch."""
    before = [request_echo(local, b"before fork %d" % i) for i in range(2)]
    w3 = ChainClient(local.anvil.rpc_url, USER_KEY).w3
    old_chain_id = w3.eth.chain_id
    new_chain_id = 1337 if old_chain_id != 1337 else 31337  # another local chain id: no confirmations either
    w3.provider.make_request("anvil_setChainId", [new_chain_id])
    try:
        after = request_echo(local, b"after fork")
        new_domain = Domain(new_chain_id, local.deployment.router)
        assert not any(new_domain.owns_request_id(i) for i in before) and new_domain.owns_request_id(after)
        relayer = relayer_for(local, tmp_path / "r.sqlite")  # started after the fork: the new chain's domain
        _tick_until_delivered(relayer, [*before, after])
        relayer.close()
    finally:
        w3.provider.make_request("anvil_setChainId", [old_chain_id])
