"""Benchmarks: on-chain gas (``python -m bench.gas``) and end-to-end latency (``python -m bench.latency``).

``python -m bench`` runs both. Results are written to ``bench/results/*.json``; BENCHMARKS.md explains them.
"""
