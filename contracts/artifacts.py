"""Read the committed compiled artifacts (ABI and bytecode) of the teebridge contracts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"


@dataclass(frozen=True)
class Artifact:
    """One compiled contract."""

    name: str
    abi: list[dict]
    bytecode: str
    deployed_bytecode: str


@cache
def load_artifact(name: str) -> Artifact:
    """Load ``contracts/artifacts/<name>.json``; run ``teebridge contracts build`` if it is missing."""
    path = ARTIFACTS_DIR / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no artifact for {name!r} at {path}: run `teebridge contracts build`")
    data = json.loads(path.read_text())
    return Artifact(name, data["abi"], data["bytecode"], data["deployedBytecode"])
