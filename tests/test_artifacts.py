"""The committed artifacts are exactly what the pinned compiler makes of the committed sources."""

from __future__ import annotations

import json

from contracts.build import ARTIFACTS_DIR, SOLC_VERSION, compile_all, render


def test_committed_artifacts_match_the_sources() -> None:
    artifacts, compiler = compile_all()
    assert SOLC_VERSION in compiler
    on_disk = {p.stem: p.read_text() for p in ARTIFACTS_DIR.glob("*.json")}
    assert set(on_disk) == set(artifacts), "artifact set differs: run `teebridge contracts build` and commit"
    stale = [name for name, artifact in artifacts.items() if on_disk[name] != render(artifact)]
    assert not stale, f"stale artifacts {stale}: run `teebridge contracts build` and commit the result"


def test_build_info_records_every_source() -> None:
    info = json.loads((ARTIFACTS_DIR / "_build-info.json").read_text())
    assert info["solcVersion"] == SOLC_VERSION
    assert "src/Router.sol" in info["sources"] and "src/EnclaveRegistry.sol" in info["sources"]
