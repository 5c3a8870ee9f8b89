"""``python -m bench``: gas (with the peers), end-to-end throughput, latency, price feed and ``ai`` benchmarks."""

from __future__ import annotations

from bench import ai, e2e, feeds, gas, latency


def main() -> int:
    return gas.main([]) or e2e.main(list(e2e.HEADLINE_ARGS)) or latency.main([]) or feeds.main() or ai.main([])


if __name__ == "__main__":
    raise SystemExit(main())
