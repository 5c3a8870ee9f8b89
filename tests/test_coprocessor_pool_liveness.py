"""The pool gives no work to a coprocessor whose key the registry no longer holds live (relayer.signer_liveness)."""

from __future__ import annotations

import pytest

from relayer.coprocessor_pool import KEY_RECHECK_SECONDS, CoprocessorPool, NoLiveSignerError
from relayer.signer_liveness import EXPIRED, REVOKED, SignerLiveness
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
        with pytest.raises(NoLiveSignerError, match="no coprocessor with a live key") as raised:
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


def test_a_revoked_signer_stays_excluded_and_the_others_are_looked_up_again() -> None:
    clock = [0.0]
    liveness = SignerLiveness(None, recheck_seconds=60.0, clock=lambda: clock[0])
    liveness.exclude(REVOKED_KEY, REVOKED)
    liveness.exclude(LIVE_KEY.upper().replace("0X", "0x"), EXPIRED)
    assert liveness.excluded() == {REVOKED_KEY: REVOKED, LIVE_KEY: EXPIRED}
    clock[0] += 60.0
    assert liveness.known_not_live(REVOKED_KEY) == REVOKED
    assert liveness.known_not_live(LIVE_KEY) is None, "expired can pass (renewed): looked up again when refused"
