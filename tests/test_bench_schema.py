"""The issue-6 benchmark summaries have the agreed shape (keys and types), whatever the figures are."""

from __future__ import annotations

import json

import pytest

from bench.schema import (
    E2E_KEYS,
    GAS_KEYS,
    SYSTEMS,
    TEEBRIDGE_BATCH_KEYS,
    SchemaError,
    check_e2e_document,
    check_gas_document,
    e2e_document,
    gas_document,
)

TEEBRIDGE = {
    "request": 60_000,
    "fulfill": 70_000,
    "fulfill_overhead": 50_000,
    "batch10_per_item": 44_000,
    "batch50_per_item": 41_000,
    "batch10_overhead_per_item": 21_000,
    "batch50_overhead_per_item": 18_000,
}


def test_gas_document_has_every_system_and_key() -> None:
    doc = gas_document(
        {"teebridge": TEEBRIDGE, "redstone": {"request": None, "fulfill": 55_000, "fulfill_overhead": 33_000}},
        versions={"solc": "0.8.28"},
        notes={"chainlink-functions": "null: not measured"},
    )
    doc = json.loads(json.dumps(doc))  # what the file holds
    for system in SYSTEMS:
        keys = set(GAS_KEYS) | (set(TEEBRIDGE_BATCH_KEYS) if system == "teebridge" else set())
        assert set(doc[system]) == keys
        assert all(v is None or isinstance(v, int) for v in doc[system].values())
    assert doc["api3-airnode-rrp"] == dict.fromkeys(GAS_KEYS)  # not given: null everywhere
    assert doc["redstone"]["request"] is None
    assert isinstance(doc["provenance"]["commit"], str) and isinstance(doc["provenance"]["date"], str)
    assert doc["provenance"]["versions"] == {"solc": "0.8.28"}
    check_gas_document(doc)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d.pop("redstone"),
        lambda d: d["teebridge"].pop("batch50_per_item"),
        lambda d: d["teebridge"].__setitem__("fulfill", 1.5),
        lambda d: d["teebridge"].__setitem__("fulfill", "70000"),
        lambda d: d.pop("provenance"),
    ],
)
def test_gas_document_check_rejects_a_wrong_shape(breakage) -> None:
    doc = gas_document({"teebridge": TEEBRIDGE}, versions={})
    breakage(doc)
    with pytest.raises(SchemaError):
        check_gas_document(doc)


def test_e2e_document_keys_and_types() -> None:
    figures = {
        "p50_latency_blocks": 2,
        "p99_latency_s": 3.25,
        "throughput_rps": 120.5,
        "duration_s": 61.0,
        "requests": 7_000,
        "lost": 0,
        "duplicated": 0,
        "sign_rate_per_core": 7_000.0,
    }
    doc = json.loads(json.dumps(e2e_document(figures, versions={"anvil": "x"}, extra={"detail": {"a": 1}})))
    assert set(E2E_KEYS) <= set(doc)
    for key, kind in E2E_KEYS.items():
        assert isinstance(doc[key], int | float if kind is float else kind), key
    assert doc["detail"] == {"a": 1} and doc["provenance"]["versions"] == {"anvil": "x"}
    check_e2e_document(doc)
    for key in ("lost", "throughput_rps"):
        broken = dict(doc)
        broken[key] = None
        with pytest.raises(SchemaError):
            check_e2e_document(broken)
    with pytest.raises(KeyError):
        e2e_document({k: v for k, v in figures.items() if k != "lost"}, versions={})


def test_committed_summaries_have_the_shape() -> None:
    """Whatever figures were committed in bench/results/, the files themselves follow the schema."""
    from bench.harness import RESULTS_DIR

    for name, check in (("gas.json", check_gas_document), ("e2e.json", check_e2e_document)):
        path = RESULTS_DIR / name
        if path.exists():
            check(json.loads(path.read_text()))


def test_the_commit_is_dirty_for_code_changes_but_not_for_earlier_results(tmp_path) -> None:
    """``make bench`` writes gas.json before it measures throughput: that must not mark e2e.json ``-dirty``."""
    import subprocess

    from bench.schema import git_commit

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True)

    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "bench" / "results" / "gas.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "first")
    head = git_commit(tmp_path)
    assert len(head) == 40 and not head.endswith("-dirty")
    (tmp_path / "bench" / "results" / "gas.json").write_text('{"teebridge": {}}')
    assert git_commit(tmp_path) == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == head + "-dirty"
