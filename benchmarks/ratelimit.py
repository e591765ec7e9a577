"""Cost of one rate-limit check: the shared (memory-mapped, flock) table against the in-process buckets.

    .venv/bin/python benchmarks/ratelimit.py [--calls 20000] [--keys 50] [--rounds 5]

Times ``take(key)`` one call at a time with ``perf_counter_ns`` on a table in a temporary folder,
cycling over ``--keys`` application keys with a rate high enough that every call is allowed (the
common case), and prints the median and 99th percentile in microseconds, per round and overall.
The machine may be shared: the median is the figure to quote.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from ror.access.ratelimit import RateLimiter, SharedRateLimiter


def run(limiter, keys: list[str], calls: int) -> list[int]:
    out = []
    for i in range(calls):
        key = keys[i % len(keys)]
        t0 = time.perf_counter_ns()
        limiter.take(key)
        out.append(time.perf_counter_ns() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--keys", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    keys = [f"app-{i}" for i in range(args.keys)]
    print(f"load average: {os.getloadavg()}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        limiters = {"shared (mmap + flock)": SharedRateLimiter(os.path.join(tmp, "ratelimit.bin"), 1e9, 10**6,
                                                               namespace="bench"),
                    "in-process": RateLimiter(1e9, 10**6)}
        all_times: dict[str, list[int]] = {name: [] for name in limiters}
        for r in range(args.rounds):
            for name, lim in limiters.items():
                times = run(lim, keys, args.calls)
                all_times[name] += times
                print(f"round {r + 1} {name}: median {statistics.median(times) / 1000:.1f} µs", file=sys.stderr)
        print("| limiter | median µs | p99 µs |\n|---|---:|---:|")
        for name, times in all_times.items():
            times.sort()
            print(f"| {name} | {statistics.median(times) / 1000:.1f} | {times[int(len(times) * 0.99)] / 1000:.1f} |")


if __name__ == "__main__":
    main()
