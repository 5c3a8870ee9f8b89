"""Locate the native tools teebridge drives: anvil and solcjs.

anvil: ``$TEEBRIDGE_ANVIL``, else ``anvil`` on PATH, else the pinned npm package in ``node_modules``.
solcjs: the pinned npm package ``solc`` in ``node_modules``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_BIN = REPO_ROOT / "node_modules" / ".bin"


class ToolNotFoundError(RuntimeError):
    """A required external tool is not installed."""


def find_anvil() -> str:
    """Path of the anvil binary to run."""
    override = os.environ.get("TEEBRIDGE_ANVIL")
    if override:
        return override
    on_path = shutil.which("anvil")
    if on_path:
        return on_path
    # The npm wrapper is a node script that execs the platform binary; run the binary directly.
    for platform_pkg in sorted((REPO_ROOT / "node_modules" / "@foundry-rs").glob("anvil-*/bin/anvil")):
        return str(platform_pkg)
    if (NODE_BIN / "anvil").exists():
        return str(NODE_BIN / "anvil")
    raise ToolNotFoundError(
        "anvil not found: run `make setup` (installs the pinned @foundry-rs/anvil) or put anvil on PATH"
    )


def find_solcjs() -> str:
    """Path of the pinned solcjs."""
    path = NODE_BIN / "solcjs"
    if path.exists():
        return str(path)
    raise ToolNotFoundError("solcjs not found: run `make setup` (installs the pinned npm package solc)")
