"""Inference latency and throughput of the ``ai.*`` jobs on this machine (built-in MiniLM, numpy, CPU).

Run ``python -m bench.ai``. In-process, no chain: each request goes through the coprocessor's real
:class:`~coprocessor.executor.Executor` (envelope, ABI decoding, handler on a worker thread, output encoding,
EIP-712 signing), so a figure is what the enclave spends per request; the relayer and chain add the
end-to-end latency measured by ``bench.latency``.

* **load**: first use of the model (SHA-256 of its three files, 91 MB, then reading the weights), once.
* **latency**: ``--n`` sequential requests per case (after 3 warm-up ones), p50/p99 by nearest rank.
  Cases: ``ai.embed`` (int8) of a short sentence (~12 tokens) and of a long text (truncated at 256 tokens),
  ``ai.similarity`` with 4 candidates, ``ai.classify`` with 2 and with 4 labels.
* **throughput**: ``--batch`` ``ai.classify`` (2 labels) requests in one ``execute_batch``, with 1 and 2 worker
  threads; requests per second of wall clock.

With ``--onnx DIR`` (a model directory, e.g. made by ``examples/export_minilm_onnx.py``) the latency
cases run a second time on that model through onnxruntime.

Writes ``bench/results/ai.json``.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from eth_abi import encode

from bench.harness import environment, write_json
from coprocessor.ai.builtin import BUILTIN_MODEL_HASH
from coprocessor.ai.store import ModelStore
from coprocessor.config import CoprocessorConfig
from coprocessor.executor import Executor
from coprocessor.jobs import JobRegistry
from coprocessor.jobs.ai_classify import make_classify_job
from coprocessor.jobs.ai_embed import make_embed_job
from coprocessor.jobs.ai_similarity import make_similarity_job
from coprocessor.keys import EnclaveKeys
from verifier.envelope import plain
from verifier.protocol import Request, Status, job_id

CHAIN_ID = 31337
ROUTER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
REQUESTER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
SHORT = [
    "I absolutely love this phone, the battery lasts forever!",
    "Terrible service, the food was cold and the waiter was rude.",
    "The senate passed the budget bill after a long debate.",
    "Simmer the onions in butter until golden, then add the garlic.",
]
LONG = " ".join(SHORT * 12)
SENTIMENT = ["a positive, enthusiastic review", "a negative, angry complaint"]
TOPICS = ["sports", "politics", "cooking", "technology"]
M = BUILTIN_MODEL_HASH


def nearest_rank(values: list[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def cases(m: bytes = M) -> dict[str, tuple[str, list[str], list[list[Any]]]]:
    """name -> (job, input types, input values for each request, cycled), for the model ``m``."""
    embed, texts = ["bytes32", "string", "uint8"], ["bytes32", "string", "string[]"]
    return {
        "ai.embed short": ("ai.embed", embed, [[M, s, 0] for s in SHORT]),
        "ai.embed 256 tokens": ("ai.embed", embed, [[M, LONG, 0]]),
        "ai.similarity 4 candidates": ("ai.similarity", texts, [[M, s, SHORT] for s in SHORT]),
        "ai.classify 2 labels": ("ai.classify", texts, [[M, s, SENTIMENT] for s in SHORT]),
        "ai.classify 4 labels": ("ai.classify", texts, [[M, s, TOPICS] for s in SHORT]),
    }


class Bench:
    """An executor over the built-in model with ``workers`` threads."""

    def __init__(self, store: ModelStore, workers: int, data_dir: Path) -> None:
        jobs = JobRegistry([make_embed_job(store), make_similarity_job(store), make_classify_job(store)])
        config = CoprocessorConfig(data_dir=data_dir, workers=workers, job_timeout_seconds=60)
        self.executor = Executor(EnclaveKeys.generate(), jobs, config, b"\x42" * 32)
        self.nonce = 0

    def item(self, job: str, types: list[str], values: list[Any]) -> tuple[Request, bytes]:
        self.nonce += 1
        data = plain(encode(types, values))
        request = Request.from_input(
            request_id=self.nonce.to_bytes(32, "big"),
            requester=REQUESTER,
            job_id=job_id(job, 1),
            input=data,
            callback_gas_limit=200_000,
            fee=0,
            expiry=2_000_000_000,
        )
        return request, data

    def run(self, items: list[tuple[Request, bytes]]) -> float:
        started = time.perf_counter()
        signed = self.executor.execute_batch(CHAIN_ID, ROUTER, items)
        elapsed = time.perf_counter() - started
        bad = [s.status.name for s in signed if s.status != Status.OK]
        if bad:
            raise RuntimeError(f"benchmark requests failed: {bad[:3]}")
        return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ai", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100, help="sequential requests per latency case")
    parser.add_argument("--batch", type=int, default=64, help="requests in the throughput batch")
    parser.add_argument("--out", default="ai.json", help="result file name under bench/results")
    parser.add_argument("--onnx", type=Path, help="also time this ONNX model directory (registered in a temp dir)")
    args = parser.parse_args(argv)
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    models_dir = Path(tempfile.mkdtemp(prefix="bench-models-"))
    onnx_hash = None
    if args.onnx:
        from teebridge.models import register_model

        onnx_hash, _ = register_model(args.onnx, models_dir, "bench")
    store = ModelStore(models_dir)
    started = time.perf_counter()
    store.get(BUILTIN_MODEL_HASH)
    load_seconds = time.perf_counter() - started
    print(f"model load (hash 3 files + read weights): {load_seconds * 1000:.0f} ms", file=sys.stderr)
    results: dict[str, Any] = {"loadSeconds": round(load_seconds, 4), "latency": {}, "throughput": {}}
    variants = [("", M)] + ([(" (onnx)", onnx_hash)] if onnx_hash else [])
    all_cases = {name + suffix: case for suffix, model in variants for name, case in cases(model).items()}
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(store, 1, Path(tmp))
        for name, (job, types, inputs) in all_cases.items():
            for i in range(3):
                bench.run([bench.item(job, types, inputs[i % len(inputs)])])
            samples = [bench.run([bench.item(job, types, inputs[i % len(inputs)])]) for i in range(args.n)]
            row = {
                "n": len(samples),
                "p50Ms": round(nearest_rank(samples, 0.5) * 1000, 2),
                "p99Ms": round(nearest_rank(samples, 0.99) * 1000, 2),
                "meanMs": round(statistics.fmean(samples) * 1000, 2),
                "maxMs": round(max(samples) * 1000, 2),
            }
            results["latency"][name] = row
            print(f"{name:<35} p50 {row['p50Ms']:7.2f} ms  p99 {row['p99Ms']:7.2f} ms", file=sys.stderr)
        bench.executor.close()
        job, types, inputs = cases()["ai.classify 2 labels"]
        for workers in (1, 2):
            bench = Bench(store, workers, Path(tmp))
            bench.run([bench.item(job, types, inputs[0])])
            items = [bench.item(job, types, inputs[i % len(inputs)]) for i in range(args.batch)]
            seconds = bench.run(items)
            bench.executor.close()
            results["throughput"][f"ai.classify 2 labels, {workers} worker(s)"] = {
                "requests": len(items),
                "seconds": round(seconds, 3),
                "perSecond": round(len(items) / seconds, 1),
            }
            print(f"throughput, {workers} worker(s): {len(items) / seconds:.1f} requests/s", file=sys.stderr)
    import numpy

    env = environment()
    env["numpy"] = numpy.__version__
    env["blasThreads"] = os.environ.get("OPENBLAS_NUM_THREADS", "default (all cores)")
    env["loadAverageAtStart"] = load_at_start
    env["loadAverageAtEnd"] = [round(x, 2) for x in os.getloadavg()]
    env["onnxModel"] = None if onnx_hash is None else {"dir": str(args.onnx), "modelHash": "0x" + onnx_hash.hex()}
    path = write_json(args.out, {"environment": env, **results})
    shutil.rmtree(models_dir, ignore_errors=True)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
