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


UNGUARDED_HTTP = ("httpx.Client(", "httpx.get(", "httpx.post(", "httpx.stream(", "urllib.request", "http.client")
GUARD_EXEMPT = {
    "coprocessor/egress.py": "builds the guarded client itself",
    "coprocessor/attestation/dstack.py": "talks to the dstack agent's Unix socket, a path the operator fixes",
}


def test_outgoing_http_goes_through_the_egress_guard_only() -> None:
    """Every fetch a requester can steer must use ``coprocessor.egress.guarded_client`` (docs: Outgoing HTTP)."""
    unguarded = []
    for path in sorted((REPO_ROOT / "coprocessor").rglob("*.py")):
        rel = path.relative_to(REPO_ROOT).as_posix()
        text = path.read_text()
        unguarded += [f"{rel}: {call}" for call in UNGUARDED_HTTP if call in text and rel not in GUARD_EXEMPT]
    assert unguarded == []
    assert "guarded_client(" in (REPO_ROOT / "coprocessor/jobs/http_json.py").read_text()
    assert "guarded_client(" in (REPO_ROOT / "coprocessor/jobs/llm_chat.py").read_text()
