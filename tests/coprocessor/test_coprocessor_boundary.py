"""The trusted computing base imports nothing from the untrusted side."""

from __future__ import annotations

import json
import subprocess
import sys

from coprocessor.measurement import REPO_ROOT, VERIFIER_MODULES

FORBIDDEN = ("web3", "eth_account", "relayer", "teebridge", "verifier.gatekeeper")

PROBE = """
import json, sys
import coprocessor.app, coprocessor.__main__
print(json.dumps(sorted(sys.modules)))
"""


def test_coprocessor_imports_no_untrusted_code_and_only_measured_verifier_modules() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    modules = json.loads(out.stdout)
    assert "coprocessor.app" in modules and "verifier.protocol" in modules  # the probe really imported them
    bad = [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert bad == []
    measured = {rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for rel in VERIFIER_MODULES}
    verifier_loaded = {m for m in modules if m == "verifier" or m.startswith("verifier.")}
    assert verifier_loaded <= measured, "a verifier module the coprocessor imports is missing from VERIFIER_MODULES"
