"""``python -m bench``: the gas, latency, price feed and local-model inference (``ai``) benchmarks."""

from __future__ import annotations

from bench import ai, feeds, gas, latency


def main() -> int:
    return gas.main([]) or latency.main([]) or feeds.main() or ai.main([])


if __name__ == "__main__":
    raise SystemExit(main())
