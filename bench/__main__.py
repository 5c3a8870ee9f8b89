"""``python -m bench``: the gas benchmark, the latency benchmark, then the price feed benchmark."""

from __future__ import annotations

from bench import feeds, gas, latency


def main() -> int:
    return gas.main([]) or latency.main([]) or feeds.main()


if __name__ == "__main__":
    raise SystemExit(main())
