"""The code measurement: one 32-byte hash of the Python code this coprocessor runs.

``measurement = SHA-256(encoding)`` where ``encoding`` is::

    "teebridge/v1/measurement"
    for each file, sorted by its path relative to the repository root (``/``-separated, UTF-8):
        uint32 len(path) || path || uint64 len(contents) || contents

over every ``.py`` file under ``coprocessor/`` (recursively, ``__pycache__`` excluded) plus the
``verifier`` modules the coprocessor imports (:data:`VERIFIER_MODULES`). Changing any byte of that code, or
adding, removing or renaming a file in ``coprocessor/``, changes the measurement. In simulated mode this
is what the quote reports and what every Fulfillment signs. Under a real TEE the hardware measures the whole
image (MRTD/RTMRs, MRENCLAVE) and the signed measurement is ``verifier.quote.measurement_of`` of the enclave's
own quote (docs/attestation.md); this code hash is then only informative.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from pathlib import Path

MEASUREMENT_TAG = b"teebridge/v1/measurement"
REPO_ROOT = Path(__file__).resolve().parent.parent
COPROCESSOR_DIR = "coprocessor"
VERIFIER_MODULES: tuple[str, ...] = (
    "verifier/__init__.py",
    "verifier/protocol.py",
    "verifier/signing.py",
    "verifier/envelope.py",
    "verifier/suites.py",
    "verifier/secrets.py",
    "verifier/attestation.py",
    "verifier/hashing.py",
    "verifier/hexutil.py",
    "verifier/quote.py",
    "verifier/price_report.py",
)
"""The verifier modules inside the trusted computing base (a test checks nothing else gets imported)."""


def measured_files(root: Path = REPO_ROOT, extra: Iterable[str] = VERIFIER_MODULES) -> list[str]:
    """The measured paths relative to ``root``, sorted."""
    package = root / COPROCESSOR_DIR
    paths = {
        p.relative_to(root).as_posix() for p in package.rglob("*.py") if "__pycache__" not in p.relative_to(root).parts
    }
    paths.update(extra)
    return sorted(paths)


def compute_measurement(root: Path = REPO_ROOT, extra: Iterable[str] = VERIFIER_MODULES) -> bytes:
    """SHA-256 over the canonical encoding of the measured files under ``root`` (see the module docstring)."""
    digest = hashlib.sha256(MEASUREMENT_TAG)
    for rel in measured_files(root, extra):
        path_bytes = rel.encode()
        contents = (root / rel).read_bytes()
        digest.update(len(path_bytes).to_bytes(4, "big") + path_bytes)
        digest.update(len(contents).to_bytes(8, "big"))
        digest.update(contents)
    return digest.digest()


@functools.cache
def code_measurement() -> bytes:
    """The measurement of the code this process was loaded from, computed once and cached."""
    return compute_measurement()
