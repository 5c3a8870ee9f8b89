"""Benchmarks: on-chain gas beside the peers' contracts (``python -m bench.gas``), throughput and signing rate
(``python -m bench.e2e``, ``python -m bench.sign``), latency (``python -m bench.latency``), price feeds and
local-model inference.

``python -m bench`` runs them all. Results are written to ``bench/results/*.json``; BENCHMARKS.md explains them.
"""
