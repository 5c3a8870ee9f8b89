"""Coprocessors discovered from the registry (``relayer --discover``), with real processes throughout.

anvil, the contracts, real coprocessors registered by the gatekeeper with their public URL, and a relayer
that is told no coprocessor (or one) and finds the rest in the registry: it starts using an enclave
registered during the run, drops a revoked one, and refuses an endpoint whose enclave holds another key.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import Any

import httpx

from relayer.chain import ChainClient
from teebridge.gatekeeper_service import Outcome
from teebridge.processes import RELAYER_READY
from teebridge.stack import OWNER_KEY, USER_KEY, LocalStack
from tests.helpers import extra_coprocessor, send_echo_requests
from verifier.protocol import Status, job_id

ECHO = job_id("echo", 1)
FAST = ("--discover-interval", "0.3")


def register(local: LocalStack, url: str, public_url: str) -> str:
    """Have the gatekeeper verify the coprocessor at ``url`` and register it with ``public_url``; its signer."""
    gatekeeper = replace(local.gatekeeper, coprocessors=[url], endpoints={url: public_url})
    result = gatekeeper.check(url)
    assert result.outcome is Outcome.REGISTERED and result.endpoint == public_url.rstrip("/")
    return str(result.signer)


def fulfilled(local: LocalStack, ids: list[bytes], start: int, timeout: float = 60.0) -> dict[bytes, list[str]]:
    """Wait until every request in ``ids`` is fulfilled; request id -> the signers of its Fulfilled events."""
    router = ChainClient(local.anvil.rpc_url, USER_KEY).contract("Router", local.deployment.router)
    wanted = set(ids)
    deadline = time.monotonic() + timeout
    while True:
        by_id: dict[bytes, list[str]] = {}
        for event in router.events.Fulfilled().get_logs(from_block=start):
            assert event["args"]["status"] == Status.OK
            by_id.setdefault(bytes(event["args"]["requestId"]), []).append(event["args"]["signer"])
        if wanted <= set(by_id) or time.monotonic() > deadline:
            assert router.events.FulfillmentSkipped().get_logs(from_block=start) == []
            assert wanted <= set(by_id), f"{len(wanted - set(by_id))} of {len(wanted)} requests never delivered"
            return {request_id: by_id[request_id] for request_id in ids}
        time.sleep(0.2)


def members(local: LocalStack) -> dict[str, dict[str, Any]]:
    """The relayer's pool as its /health reports it: URL -> member."""
    report = httpx.get(local.relayer_url + "/health", timeout=5).json()
    return {m["url"]: m for m in report["coprocessors"]}


def test_a_relayer_with_only_discover_uses_enclaves_registered_during_the_run_and_drops_revoked_ones() -> None:
    with LocalStack(with_relayer=False) as local:
        first = local.coprocessor_url
        relayer = local.start_relayer(coprocessors=(), extra_args=("--discover", *FAST))
        relayer.wait_for_line(RELAYER_READY, after=relayer.log_offset)
        added = re.compile(f"discovered coprocessor {re.escape(first)} .*added")
        relayer.wait_for_line(added, after=relayer.log_offset)
        assert members(local)[first]["origin"] == "discovered"
        assert members(local)[first]["signer"] == local.registration.signer

        with extra_coprocessor(local, "coprocessor-2") as second:
            signer = register(local, second, second + "/")  # a trailing slash is fine
            relayer.wait_for_line(re.compile(f"discovered coprocessor {re.escape(second)} .*added"), after=0)
            assert members(local)[second]["signer"] == signer
            metrics = httpx.get(local.relayer_url + "/metrics", timeout=5).text
            assert 'teebridge_relayer_coprocessor_pool_members{origin="discovered"} 2' in metrics

            start = _block(local)
            ids = []
            for _ in range(4):  # four rounds, so four batches: the pool takes turns between the two enclaves
                batch = send_echo_requests(local, 3)
                fulfilled(local, batch, start)
                ids += batch
            signers = fulfilled(local, ids, start)
            assert all(len(s) == 1 for s in signers.values())  # each exactly once
            assert {s[0] for s in signers.values()} == {local.registration.signer, signer}  # work reached both

            # Revoked between batches (docs/relayer.md, "Discovery from the registry": revocation with work in flight)
            owner = ChainClient(local.anvil.rpc_url, OWNER_KEY)
            registry = owner.contract("EnclaveRegistry", local.deployment.registry)
            offset = relayer.log_path.stat().st_size
            owner.send(registry.functions.revokeSigner(signer))
            relayer.wait_for_line(re.compile(f"discovered coprocessor {re.escape(second)} removed"), after=offset)
            assert second not in members(local) and first in members(local)
            health = httpx.get(local.relayer_url + "/health", timeout=5).json()
            assert health["discovery"]["endpoints"] == {first: local.registration.signer}

            start = _block(local)
            signers = fulfilled(local, send_echo_requests(local, 20), start)
            assert all(len(s) == 1 for s in signers.values())  # every request once: none lost, none twice
            assert {s[0] for s in signers.values()} == {local.registration.signer}  # none went to the revoked one


def test_an_endpoint_whose_enclave_holds_another_key_is_refused() -> None:
    with LocalStack(with_relayer=False) as local:
        first = local.coprocessor_url
        with extra_coprocessor(local, "coprocessor-2") as second, extra_coprocessor(local, "impostor") as impostor:
            signer = register(local, second, impostor)  # a wrong URL: another enclave answers there
            relayer = local.start_relayer(extra_args=("--discover", *FAST))  # one configured, the rest discovered
            relayer.wait_for_line(RELAYER_READY, after=relayer.log_offset)
            relayer.wait_for_line(
                re.compile(f"not using endpoint {re.escape(impostor)} of signer {signer}: the enclave there holds 0x"),
                after=relayer.log_offset,
            )
            pool = members(local)
            assert set(pool) == {first}  # the impostor is not in the pool; the configured URL is there once
            assert pool[first]["origin"] == "configured"
            health = httpx.get(local.relayer_url + "/health", timeout=5).json()
            assert impostor in health["discovery"]["refused"]
            assert health["discovery"]["endpoints"] == {first: local.registration.signer}

            start = _block(local)
            signers = fulfilled(local, send_echo_requests(local, 5), start)
            assert {s[0] for s in signers.values()} == {local.registration.signer}
            assert "coprocessor " + impostor not in relayer.log_path.read_text()  # never sent work

            # The gatekeeper corrects the URL: the relayer verifies the enclave there and adds it.
            offset = relayer.log_path.stat().st_size
            corrected = replace(local.gatekeeper, coprocessors=[second], endpoints={second: second}).check(second)
            assert corrected.outcome is Outcome.FRESH and corrected.endpoint == second
            relayer.wait_for_line(re.compile(f"discovered coprocessor {re.escape(second)} .*added"), after=offset)
            assert members(local)[second]["signer"] == signer


def _block(local: LocalStack) -> int:
    return ChainClient(local.anvil.rpc_url, USER_KEY).w3.eth.block_number
