"""Two attested coprocessors behind one relayer: one is SIGKILLed mid-stream, the other takes over."""

from __future__ import annotations

import time

from web3.logs import DISCARD

from relayer.chain import ChainClient
from teebridge.processes import RELAYER_READY
from teebridge.stack import USER_KEY, LocalStack
from tests.helpers import registered_enclave
from verifier.envelope import plain
from verifier.protocol import Status, job_id

ECHO = job_id("echo", 1)
REQUESTS = 30


def test_a_killed_coprocessor_is_replaced_by_another_enclave() -> None:
    with (
        LocalStack(with_relayer=False) as local,
        registered_enclave(local, "coprocessor-2") as (second_url, second_signer),
    ):
        relayer = local.start_relayer(extra_args=("--coprocessor", second_url))
        relayer.wait_for_line(RELAYER_READY, after=relayer.log_offset)

        user = ChainClient(local.anvil.rpc_url, USER_KEY)
        router = user.contract("Router", local.deployment.router)
        consumer = user.contract("ExampleConsumer", local.deployment.consumer)
        start = user.w3.eth.block_number
        ids = []
        for i in range(REQUESTS):
            receipt = user.send(consumer.functions.send(ECHO, plain(i.to_bytes(4, "big")), 100_000, 600))
            (event,) = router.events.Requested().process_receipt(receipt, errors=DISCARD)
            ids.append(bytes(event["args"]["requestId"]))
            if i == REQUESTS // 3:
                local.coprocessor.kill()  # the first enclave dies with work in flight
            time.sleep(0.05)

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            fulfilled = router.events.Fulfilled().get_logs(from_block=start)
            if len({bytes(e["args"]["requestId"]) for e in fulfilled}) >= REQUESTS:
                break
            time.sleep(0.2)
        fulfilled = router.events.Fulfilled().get_logs(from_block=start)
        skipped = router.events.FulfillmentSkipped().get_logs(from_block=start)
        delivered = [bytes(e["args"]["requestId"]) for e in fulfilled]
        assert sorted(delivered) == sorted(ids)  # every request once: none lost, none twice
        assert skipped == []
        assert all(e["args"]["status"] == Status.OK for e in fulfilled)
        signers = {e["args"]["signer"] for e in fulfilled}
        assert second_signer in signers  # the second enclave answered after the first died
