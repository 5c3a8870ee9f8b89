"""Compile the contracts with a pinned solc: native through py-solc-x where one is installed, else solcjs.

Both compilers of the same version give byte-identical output for the same standard-JSON input, so the
committed artifacts are reproducible either way; ``tests/test_artifacts.py`` proves they match the sources.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from teebridge.tools import ToolNotFoundError, find_solcjs

SOLC_VERSION = "0.8.28"
CONTRACTS_DIR = Path(__file__).resolve().parent
SOURCE_DIRS = ("src", "test")
ARTIFACTS_DIR = CONTRACTS_DIR / "artifacts"
SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 10_000},
    "evmVersion": "cancun",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}


class CompileError(RuntimeError):
    """solc reported errors."""


def sources() -> dict[str, str]:
    """Every Solidity source, keyed by its path relative to ``contracts/``."""
    found: dict[str, str] = {}
    for folder in SOURCE_DIRS:
        for path in sorted((CONTRACTS_DIR / folder).rglob("*.sol")):
            found[path.relative_to(CONTRACTS_DIR).as_posix()] = path.read_text()
    return found


def standard_input() -> dict[str, Any]:
    """The solc standard-JSON input for all sources."""
    return {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sources().items()},
        "settings": SETTINGS,
    }


def _native_solc() -> str | None:
    """Path of a native solc of the pinned version, if one is installed (py-solc-x or PATH)."""
    try:
        import solcx

        for version in solcx.get_installed_solc_versions():
            if str(version) == SOLC_VERSION:
                return str(solcx.get_executable(version))
    except Exception:
        pass
    on_path = shutil.which("solc")
    if on_path:
        out = subprocess.run([on_path, "--version"], capture_output=True, text=True, check=False).stdout
        if f"Version: {SOLC_VERSION}+" in out:
            return on_path
    return None


def compile_standard(std_input: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Run the compiler; return its standard-JSON output and a description of the compiler used."""
    native = _native_solc()
    if native:
        import solcx

        return solcx.compile_standard(std_input, solc_binary=native), f"solc {SOLC_VERSION} (native, {native})"
    try:
        solcjs = find_solcjs()
    except ToolNotFoundError as exc:
        raise CompileError(str(exc)) from exc
    # solcjs exits before a pipe drains (its output is cut at 64 KiB), so it writes to a file instead; and
    # it reads stdin with one synchronous read, which fails with EAGAIN on a pipe holding more than 64 KiB,
    # so its input comes from a file too.
    with tempfile.TemporaryFile("w+") as source, tempfile.TemporaryFile("w+") as out:
        source.write(json.dumps(std_input))
        source.seek(0)
        proc = subprocess.run(
            [solcjs, "--standard-json"],
            stdin=source,
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        out.seek(0)
        text = out.read()
    # solcjs prints a notice line before the JSON document.
    start = text.find("\n{") + 1 if not text.startswith("{") else 0
    if proc.returncode != 0 or not text[start:].startswith("{"):
        raise CompileError(f"solcjs failed (exit {proc.returncode}): {proc.stderr or text[:2000]}")
    return json.loads(text[start:]), f"solcjs {SOLC_VERSION} ({solcjs})"


def compile_all() -> tuple[dict[str, dict[str, Any]], str]:
    """Compile every source; return ``{contract name: artifact}`` and the compiler description."""
    std_input = standard_input()
    output, compiler = compile_standard(std_input)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("\n".join(e.get("formattedMessage", e.get("message", "")) for e in errors))
    artifacts: dict[str, dict[str, Any]] = {}
    for source_name, contracts in output["contracts"].items():
        for name, data in contracts.items():
            bytecode = data["evm"]["bytecode"]["object"]
            if not bytecode:
                continue  # interfaces and abstract contracts
            artifacts[name] = {
                "contractName": name,
                "sourceName": source_name,
                "abi": data["abi"],
                "bytecode": "0x" + bytecode,
                "deployedBytecode": "0x" + data["evm"]["deployedBytecode"]["object"],
            }
    artifacts["_build-info"] = {
        "solcVersion": SOLC_VERSION,
        "settings": SETTINGS,
        "sources": {
            name: hashlib.sha256(src["content"].encode()).hexdigest() for name, src in std_input["sources"].items()
        },
    }
    return artifacts, compiler


def render(artifact: dict[str, Any]) -> str:
    """The canonical text of an artifact file."""
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def write_artifacts(artifacts: dict[str, dict[str, Any]], directory: Path = ARTIFACTS_DIR) -> list[Path]:
    """Write each artifact as ``<name>.json``, removing stale ones; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = {f"{name}.json" for name in artifacts}
    for old in directory.glob("*.json"):
        if old.name not in wanted:
            old.unlink()
    written = []
    for name, artifact in sorted(artifacts.items()):
        path = directory / f"{name}.json"
        path.write_text(render(artifact))
        written.append(path)
    return written
