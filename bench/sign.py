"""The coprocessor's signing rate on one core: signed Fulfillments per second through the real signing path.

Run ``python -m bench.sign``. Each signature is what ``coprocessor.executor.Executor._sign`` does per request:
``verifier.protocol.fulfillment_for`` (keccak of the result, the request's commitment), the EIP-712 digest
under the Router's domain, and ``coprocessor.keys.KeySet.sign`` (coincurve, low-s recoverable ECDSA). Each
request is a distinct 7-field Request and a distinct 32-byte result, so nothing is cached between them. The
process pins itself to one CPU (``os.sched_setaffinity``) and runs a single thread. The digest and ECDSA
parts are also timed apart. Used by ``bench.e2e`` for ``sign_rate_per_core`` in ``bench/results/e2e.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from coprocessor.keys import KeySet
from verifier.protocol import Domain, Request, Status, fulfillment_for
from verifier.suites import Suite

DEFAULT_SECONDS = 3.0
MEASUREMENT = bytes(range(32))
ROUTER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def _requests(n: int) -> list[tuple[Request, bytes]]:
    """``n`` distinct requests with distinct 32-byte results."""
    out = []
    for i in range(n):
        word = i.to_bytes(32, "big")
        req = Request(
            request_id=os.urandom(32),
            requester="0x" + "11" * 20,
            job_id=word,
            input_hash=os.urandom(32),
            callback_gas_limit=300_000,
            fee=0,
            expiry=2_000_000_000 + i,
        )
        out.append((req, os.urandom(32)))
    return out


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def measure(seconds: float = DEFAULT_SECONDS, pin: bool = True) -> dict[str, Any]:
    """Sign for about ``seconds`` on one core; return rates (per second) for the whole path and its parts."""
    cpu = None
    if pin and hasattr(os, "sched_setaffinity"):
        before = os.sched_getaffinity(0)
        cpu = min(before)
        os.sched_setaffinity(0, {cpu})
    try:
        keys = KeySet.generate((Suite.X25519,))
        domain = Domain(31337, ROUTER)
        batch = _requests(2_000)
        # warm-up (imports, coincurve context, domain separator)
        for req, result in batch[:50]:
            keys.sign(fulfillment_for(req, Status.OK, result, MEASUREMENT).digest(domain))

        count, start = 0, time.perf_counter()
        digests: list[bytes] = []
        while time.perf_counter() - start < seconds:
            for req, result in batch:
                digest = fulfillment_for(req, Status.OK, result, MEASUREMENT).digest(domain)
                keys.sign(digest)
                digests.append(digest)
            count += len(batch)
        elapsed = time.perf_counter() - start

        t0 = time.perf_counter()
        for req, result in batch:
            fulfillment_for(req, Status.OK, result, MEASUREMENT).digest(domain)
        digest_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for digest in digests[: len(batch)]:
            keys.sign(digest)
        ecdsa_s = time.perf_counter() - t0
    finally:
        if cpu is not None:
            os.sched_setaffinity(0, before)
    return {
        "signaturesPerSecond": _rate(count, elapsed),
        "signatures": count,
        "seconds": round(elapsed, 3),
        "digestOnlyPerSecond": _rate(len(batch), digest_s),
        "ecdsaOnlyPerSecond": _rate(len(batch), ecdsa_s),
        "pinnedCpu": cpu,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sign", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.seconds), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
