"""The pool gives no work to a coprocessor whose key the registry no longer holds live (relayer.signer_liveness)."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from relayer.coprocessor_pool import KEY_RECHECK_SECONDS, CoprocessorPool, NoLiveSignerError
from relayer.signer_liveness import EXPIRED, REVOKED, UNAPPROVED, UNREGISTERED, SignerLiveness
from tests.helpers import serve_http
from tests.test_coprocessor_pool_discovery import CALLS, executor, request

REVOKED_KEY = "0x" + "aa" * 20
LIVE_KEY = "0x" + "bb" * 20
NEW_KEY = "0x" + "cc" * 20


def test_a_member_holding_an_excluded_key_gets_no_more_work_and_nothing_signed_with_it_is_returned() -> None:
    CALLS.clear()
    clock = [0.0]
    liveness = SignerLiveness(None, clock=lambda: clock[0])
    with serve_http(executor("old", REVOKED_KEY)) as old, serve_http(executor("new", LIVE_KEY)) as new:
        pool = CoprocessorPool([old, new], liveness=liveness, clock=lambda: clock[0])
        for _ in range(2):  # both members answer, taking turns: the pool learns each one's key
            pool.execute(1, "0x" + "00" * 20, [request()])
        assert CALLS == {"old": 1, "new": 1}

        liveness.exclude(REVOKED_KEY, REVOKED)
        signers = {pool.execute(1, "0x" + "00" * 20, [request()])[0].signer.lower() for _ in range(4)}
        assert signers == {LIVE_KEY}
        assert CALLS == {"old": 1, "new": 5}, "the member with the revoked key was not even asked"
        status = {m["url"]: m for m in pool.status()}
        assert status[old]["excluded"] == f"holds signer {status[old]['holds']}, revoked"
        assert status[old]["failures"] == 0, "its key is the problem, not the member: no cool-down"
        assert status[new]["excluded"] is None and pool.live_members() == 1
        pool.close()


def test_results_signed_with_an_excluded_key_are_thrown_away_and_the_next_member_asked() -> None:
    CALLS.clear()
    liveness = SignerLiveness(None)
    liveness.exclude(REVOKED_KEY, REVOKED)  # known before the pool ever asked the member holding it
    with serve_http(executor("old", REVOKED_KEY)) as old, serve_http(executor("new", LIVE_KEY)) as new:
        pool = CoprocessorPool([old, new], liveness=liveness)
        for _ in range(4):
            (result,) = pool.execute(1, "0x" + "00" * 20, [request()])
            assert result.signer.lower() == LIVE_KEY
        assert CALLS["old"] == 1, "asked once, its answer discarded, then left alone"
        pool.close()


def test_no_member_with_a_live_key_is_a_retryable_error_and_a_new_key_lifts_the_exclusion() -> None:
    CALLS.clear()
    clock = [0.0]
    liveness = SignerLiveness(None, clock=lambda: clock[0])
    key = [REVOKED_KEY]

    class Rotating(executor("only", REVOKED_KEY)):  # type: ignore[misc, valid-type]
        """Answers with whatever key it holds now (the operator restarts it with a new one)."""

        def _reply(self, doc: object) -> None:
            if isinstance(doc, dict) and "fulfillments" in doc:
                for item in doc["fulfillments"]:
                    item["signer"] = key[0]
            elif isinstance(doc, dict):
                doc["signer"] = key[0]
            super()._reply(doc)

    with serve_http(Rotating) as only:
        pool = CoprocessorPool([only], liveness=liveness, clock=lambda: clock[0])
        pool.execute(1, "0x" + "00" * 20, [request()])
        liveness.exclude(REVOKED_KEY, REVOKED)
        with pytest.raises(NoLiveSignerError, match="no coprocessor whose results the registry accepts") as raised:
            pool.execute(1, "0x" + "00" * 20, [request()])
        assert raised.value.retryable
        assert CALLS["only"] == 1
        key[0] = NEW_KEY  # restarted with a new key: seen at the next /v1/health look, not before
        with pytest.raises(NoLiveSignerError):
            pool.execute(1, "0x" + "00" * 20, [request()])
        clock[0] += KEY_RECHECK_SECONDS
        (result,) = pool.execute(1, "0x" + "00" * 20, [request()])
        assert result.signer.lower() == NEW_KEY and CALLS["only"] == 2
        pool.close()


def test_a_discovered_member_pinned_to_an_excluded_signer_is_skipped() -> None:
    CALLS.clear()
    liveness = SignerLiveness(None)
    with serve_http(executor("pinned", REVOKED_KEY)) as pinned:
        pool = CoprocessorPool([], discovery=True, liveness=liveness)
        pool.set_discovered({pinned: REVOKED_KEY})
        liveness.exclude(REVOKED_KEY, REVOKED)
        with pytest.raises(NoLiveSignerError):
            pool.execute(1, "0x" + "00" * 20, [request()])
        assert CALLS == {}
        pool.close()


class _Call:
    def __init__(self, value: object) -> None:
        self.value = value

    def call(self, block_identifier: object = None) -> object:
        return self.value


class FakeRegistry:
    """The registry views SignerLiveness reads, answering from dicts the test changes."""

    def __init__(self) -> None:
        self.expiry: dict[str, int] = {}
        self.revoked: set[str] = set()
        self.approved: set[tuple[bytes, bytes]] = set()
        self.reads = 0
        self.w3 = SimpleNamespace(
            eth=SimpleNamespace(block_number=7, get_block=lambda _tag: {"number": 7, "timestamp": 1_000})
        )
        self.functions = self

    def signerInfo(self, signer: str) -> _Call:  # noqa: N802 - the contract's name
        self.reads += 1
        key = signer.lower()
        return _Call((b"\x00" * 32, self.expiry.get(key, 0), key in self.revoked, False, b""))

    def simulatedAttestationsAllowed(self) -> _Call:  # noqa: N802
        return _Call(True)

    def isApproved(self, job: bytes, measurement: bytes) -> _Call:  # noqa: N802
        self.reads += 1
        return _Call((job, measurement) in self.approved)


JOB = b"\x01" * 32
OTHER_JOB = b"\x02" * 32
OLD_IMAGE = b"\x0a" * 32
NEW_IMAGE = b"\x0b" * 32


def test_the_registry_says_why_a_refused_result_is_stale_and_verdicts_that_can_change_are_read_again() -> None:
    clock = [0.0]
    registry = FakeRegistry()
    liveness = SignerLiveness(registry, recheck_seconds=60.0, clock=lambda: clock[0])
    registry.expiry = {REVOKED_KEY: 5_000, LIVE_KEY: 500, NEW_KEY: 5_000}  # LIVE_KEY's registration lapsed
    registry.revoked = {REVOKED_KEY}
    registry.approved = {(JOB, NEW_IMAGE), (OTHER_JOB, OLD_IMAGE)}
    assert liveness.stale_reason(REVOKED_KEY, JOB, NEW_IMAGE) == REVOKED
    assert liveness.stale_reason(LIVE_KEY, JOB, NEW_IMAGE) == EXPIRED
    assert liveness.stale_reason(NEW_KEY, JOB, OLD_IMAGE) == UNAPPROVED, "live, but the image was withdrawn for JOB"
    assert liveness.stale_reason(NEW_KEY, JOB, NEW_IMAGE) is None, "live and approved: refused for another cause"
    assert liveness.stale_reason("0x" + "dd" * 20, JOB, NEW_IMAGE) == UNREGISTERED
    reads = registry.reads
    assert liveness.stale_reason(REVOKED_KEY, OTHER_JOB, OLD_IMAGE) == REVOKED and registry.reads == reads, "cached"
    assert liveness.known_stale(NEW_KEY, OTHER_JOB, OLD_IMAGE) is None, "OTHER_JOB still approves the old image"
    assert liveness.jobs_with_unapproved() == {JOB}

    registry.expiry[LIVE_KEY] = 9_000  # renewed by the gatekeeper
    registry.approved.add((JOB, OLD_IMAGE))  # approved again
    assert liveness.refresh() == [], "not due yet"
    clock[0] += 60.0
    lifted = liveness.refresh()
    assert f"signer {LIVE_KEY} is live again" in lifted
    assert f"job 0x{JOB.hex()} approves measurement 0x{OLD_IMAGE.hex()} again" in lifted
    assert liveness.known_not_live(REVOKED_KEY) == REVOKED, "a revocation is for good: never read again"
    assert liveness.known_not_live(LIVE_KEY) is None and liveness.jobs_with_unapproved() == set()
    assert liveness.known_not_live("0x" + "dd" * 20) == UNREGISTERED, "still not registered"


def test_a_member_running_a_measurement_the_job_no_longer_approves_gets_none_of_its_requests() -> None:
    CALLS.clear()
    liveness = SignerLiveness(None)
    with serve_http(executor("old", LIVE_KEY)) as old:
        pool = CoprocessorPool([old], liveness=liveness)
        (result,) = pool.execute(1, "0x" + "00" * 20, [request()])  # learns its measurement
        liveness.exclude_measurement(request().job_id, result.measurement)
        with pytest.raises(NoLiveSignerError, match="does not approve"):
            pool.execute(1, "0x" + "00" * 20, [request()])
        assert CALLS["old"] == 1
        other = replace(request(), job_id=OTHER_JOB)
        (result,) = pool.execute(1, "0x" + "00" * 20, [other])
        assert CALLS["old"] == 2, "other jobs still go to it"
        assert {m["url"]: m["excluded"] for m in pool.status()} == {old: None}, "its key is fine"
        pool.close()
