"""``python -m bench``: the gas benchmark, then the latency benchmark."""

from __future__ import annotations

from bench import gas, latency


def main() -> int:
    return gas.main([]) or latency.main([])


if __name__ == "__main__":
    raise SystemExit(main())
