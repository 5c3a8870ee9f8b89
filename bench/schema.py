"""The two machine-readable summaries of issue 6: ``bench/results/gas.json`` and ``bench/results/e2e.json``.

``gas.json`` maps each system to ``{"request", "fulfill", "fulfill_overhead"}`` in gas (``null`` where a system
has no such step or could not be measured, with the reason under ``notes``); ``teebridge`` also has the
batch figures. ``e2e.json`` holds the local stack's latency, throughput and signing rate. Both record the
commit, the versions used and the date under ``provenance``. The builders here check the shape (keys and
types), never the figures; ``tests/test_bench_schema.py`` runs them.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

from teebridge.tools import REPO_ROOT

SYSTEMS = ("teebridge", "api3-airnode-rrp", "chainlink-functions", "redstone")
GAS_KEYS = ("request", "fulfill", "fulfill_overhead")
TEEBRIDGE_BATCH_KEYS = (
    "batch10_per_item",
    "batch50_per_item",
    "batch10_overhead_per_item",
    "batch50_overhead_per_item",
)
#: e2e.json's figures and their types (``int`` where a count, ``float`` where a measurement).
E2E_KEYS: dict[str, type] = {
    "p50_latency_blocks": int,
    "p99_latency_s": float,
    "throughput_rps": float,
    "duration_s": float,
    "requests": int,
    "lost": int,
    "duplicated": int,
    "sign_rate_per_core": float,
}


class SchemaError(ValueError):
    """A summary document does not have the agreed shape."""


def git_commit(root: Path = REPO_ROOT) -> str:
    """The checked-out commit (with ``-dirty`` if tracked files outside ``bench/results/`` have changes), or
    ``unknown``. The results directory does not count: ``make bench`` writes one summary after another, and an
    earlier step's figures do not change the code a later step measures."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/results"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def provenance(versions: dict[str, Any]) -> dict[str, Any]:
    """Commit, versions used and UTC date, for the ``provenance`` key of both files."""
    return {
        "commit": git_commit(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": versions,
    }


def _is_gas(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)


def gas_document(
    systems: dict[str, dict[str, int | None] | None],
    versions: dict[str, Any],
    notes: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build and check ``gas.json``: every system in :data:`SYSTEMS` with its gas keys, plus provenance.

    A system given as ``None`` (not measured) gets ``null`` for every key; its reason belongs in ``notes``.
    """
    doc: dict[str, Any] = {}
    for system in SYSTEMS:
        keys = GAS_KEYS + (TEEBRIDGE_BATCH_KEYS if system == "teebridge" else ())
        figures = systems.get(system) or {}
        doc[system] = {key: figures.get(key) for key in keys}
    doc["provenance"] = provenance(versions)
    doc["notes"] = dict(notes or {})
    if extra:
        doc.update(extra)
    check_gas_document(doc)
    return doc


def check_gas_document(doc: dict[str, Any]) -> None:
    """Raise :class:`SchemaError` unless ``doc`` has the shape of ``gas.json``."""
    for system in SYSTEMS:
        entry = doc.get(system)
        if not isinstance(entry, dict):
            raise SchemaError(f"{system}: missing or not an object")
        keys = GAS_KEYS + (TEEBRIDGE_BATCH_KEYS if system == "teebridge" else ())
        for key in keys:
            if key not in entry or not _is_gas(entry[key]):
                raise SchemaError(f"{system}.{key}: must be a non-negative integer or null, got {entry.get(key)!r}")
    _check_provenance(doc)


def e2e_document(figures: dict[str, Any], versions: dict[str, Any], extra: dict[str, Any] | None = None) -> dict:
    """Build and check ``e2e.json`` from :data:`E2E_KEYS` figures, plus provenance and any ``extra`` detail."""
    doc: dict[str, Any] = {key: figures[key] for key in E2E_KEYS}
    doc["provenance"] = provenance(versions)
    if extra:
        doc.update({k: v for k, v in extra.items() if k not in E2E_KEYS})
    check_e2e_document(doc)
    return doc


def check_e2e_document(doc: dict[str, Any]) -> None:
    """Raise :class:`SchemaError` unless ``doc`` has the shape of ``e2e.json``."""
    for key, kind in E2E_KEYS.items():
        value = doc.get(key)
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok:
            raise SchemaError(f"{key}: expected {kind.__name__}, got {value!r}")
    _check_provenance(doc)


def _check_provenance(doc: dict[str, Any]) -> None:
    prov = doc.get("provenance")
    if not isinstance(prov, dict):
        raise SchemaError("provenance: missing")
    for key, kind in (("commit", str), ("date", str), ("versions", dict)):
        if not isinstance(prov.get(key), kind):
            raise SchemaError(f"provenance.{key}: expected {kind.__name__}")
