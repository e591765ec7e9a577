"""The rate limit shared by the worker processes of a server (a memory-mapped table of buckets)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import struct
import time

import pytest

from ror.access.ratelimit import _HEADER, _PROBE, _SLOT, SharedRateLimiter
from ror.access.trust import TrustSpace
from ror.settings import Settings


class Clock:
    t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def table(tmp_path):
    return tmp_path / "var" / "ratelimit.bin"


def test_burst_then_the_rate(table):
    clock = Clock()
    limiter = SharedRateLimiter(table, 17, 17, clock=clock)
    assert [limiter.take("a") for _ in range(17)] == [0.0] * 17
    assert limiter.take("a") == pytest.approx(1 / 17)  # Retry-After: when the next call is possible
    assert limiter.take("b") == 0.0  # buckets are per application
    clock.t += 1 / 17
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    clock.t += 10  # an idle application gets its burst back, not more
    assert sum(limiter.take("a") == 0.0 for _ in range(30)) == 17


def test_sustained_rate_and_refusals_do_not_consume(table):
    clock = Clock()
    limiter = SharedRateLimiter(table, 17, 17, clock=clock)
    allowed = 0
    for _ in range(10_000):  # 100 calls/s for 100 s
        clock.t += 0.01
        allowed += limiter.take("a") == 0.0
    assert 17 * 100 <= allowed <= 17 * 100 + 17
    slow = SharedRateLimiter(table.with_name("slow.bin"), 2, 1, clock=clock)
    assert slow.take("a") == 0.0
    for _ in range(5):
        assert slow.take("a") == pytest.approx(0.5)
    clock.t += 0.5
    assert slow.take("a") == 0.0


def test_instances_on_one_file_share_buckets_and_namespaces_separate_them(table):
    clock = Clock()
    one, two = (SharedRateLimiter(table, 17, 17, namespace="db1", clock=clock) for _ in range(2))
    other_db = SharedRateLimiter(table, 17, 17, namespace="db2", clock=clock)
    assert sum(lim.take("app") == 0.0 for lim in (one, two) for _ in range(17)) == 17
    assert one.take("app") > 0 and two.take("app") > 0
    assert all(other_db.take("app") == 0.0 for _ in range(17))


def _hammer(path: str, key: str, rate: float, burst: int, seconds: float, ready, go, out) -> None:
    limiter = SharedRateLimiter(path, rate, burst)
    ready.put(key)
    go.wait(60)
    allowed = calls = 0
    first = time.monotonic()
    while (last := time.monotonic()) < first + seconds:
        calls += 1
        allowed += limiter.take(key) == 0.0
    out.put((key, allowed, calls, first, last))


def test_two_processes_share_the_limit(table):
    """Two real OS processes hammering one key get at most rate × t + burst calls in all, not twice
    that; a third process on another key is not slowed by them."""
    rate, burst, seconds = 40.0, 10, 2.0
    ctx = multiprocessing.get_context("spawn")
    ready, go, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(str(table), key, rate, burst, seconds, ready, go, out))
             for key in ("app", "app", "other")]
    for p in procs:
        p.start()
    for _ in procs:  # all started (spawn imports take a while on a busy machine): go together
        ready.get(timeout=60)
    go.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
        assert p.exitcode == 0
    same = [r for r in results if r[0] == "app"]
    total = sum(r[1] for r in same)
    span = max(r[4] for r in same) - min(r[3] for r in same)  # from the first call of either to the last
    overlap = min(r[4] for r in same) - max(r[3] for r in same)
    assert overlap > seconds / 2, results  # both really ran together
    assert all(r[2] > 2 * (rate * span + burst) for r in same), results  # and really hammered
    assert total <= rate * span + burst + 1, results
    assert total >= rate * overlap * 0.9, results  # the limit does not starve them either
    _, allowed, _, first, last = next(r for r in results if r[0] == "other")
    assert rate * (last - first) * 0.9 <= allowed <= rate * (last - first) + burst + 1, results


@pytest.mark.parametrize("damage", ["truncated", "garbage header", "extended", "emptied"])
def test_a_damaged_file_is_rebuilt_with_a_log_line(table, caplog, damage):
    clock = Clock()
    limiter = SharedRateLimiter(table, 17, 17, clock=clock)
    for _ in range(17):
        limiter.take("a")
    assert limiter.take("a") > 0
    size = os.path.getsize(table)
    with open(table, "r+b") as f:
        if damage == "truncated":
            f.truncate(size // 2)
        elif damage == "garbage header":
            f.write(b"\xff" * _HEADER.size)
        elif damage == "extended":
            f.truncate(size + 4096)
        else:
            f.truncate(0)
    caplog.set_level(logging.INFO, logger="ror.ratelimit")
    assert limiter.take("a") == 0.0  # rebuilt: buckets start full
    assert os.path.getsize(table) == size
    assert any("rate-limit table" in r.getMessage() and "rebuilt" in r.getMessage() for r in caplog.records)
    assert all(limiter.take("a") == 0.0 for _ in range(16)) and limiter.take("a") > 0  # and it limits again


@pytest.mark.parametrize("value", [float("nan"), 1e300, float("inf")])
def test_a_corrupt_bucket_value_does_not_lock_out(table, value):
    clock = Clock()
    limiter = SharedRateLimiter(table, 17, 17, clock=clock)
    limiter.take("a")
    raw = bytearray(table.read_bytes())
    for off in range(_HEADER.size, len(raw), _SLOT):  # the used slot: a time far in the future, or not a number
        if raw[off:off + 16] != bytes(16):
            raw[off + 16:off + 24] = struct.pack("<d", value)
    table.write_bytes(bytes(raw))
    assert limiter.take("a") == 0.0


def test_a_removed_file_is_recreated(table):
    clock = Clock()
    limiter = SharedRateLimiter(table, 17, 17, clock=clock)
    limiter.take("a")
    table.unlink()
    clock.t += 2  # the path is checked once a second
    assert limiter.take("a") == 0.0
    assert table.exists()
    late = SharedRateLimiter(table, 17, 17, clock=clock)  # a worker started now shares the new file
    assert sum(late.take("b") == 0.0 for _ in range(10)) + sum(limiter.take("b") == 0.0 for _ in range(10)) == 17


def test_keys_never_share_a_bucket_when_the_table_is_full(table, caplog):
    """A table of one probe window: 32 busy keys fill it; a 33rd is limited alone in this worker
    (with a warning), and no key ever spends another's calls."""
    clock = Clock()
    limiter = SharedRateLimiter(table, 1, 3, slots=_PROBE, clock=clock)
    keys = [f"app{i}" for i in range(_PROBE)]
    for k in keys:
        assert limiter.take(k) == 0.0  # each now busy (its bucket not full)
    caplog.set_level(logging.WARNING, logger="ror.ratelimit")
    assert [limiter.take("late") for _ in range(3)] == [0.0] * 3
    assert limiter.take("late") > 0
    assert any("no free slot" in r.getMessage() for r in caplog.records)
    for k in keys:  # each still has exactly its own two calls left
        assert [limiter.take(k) == 0.0 for _ in range(3)] == [True, True, False]
    clock.t += 10  # all idle again: their slots can be reused, by a new key
    assert limiter.take("new") == 0.0


def test_the_server_uses_the_shared_table(tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'ror.db'}", auth_required=True,
                        rate_limit_file=str(tmp_path / "rl.bin"))
    from ror.store.engine import make_engine
    engine = make_engine(settings.database_url)
    try:
        trust = TrustSpace(engine, settings)
        assert isinstance(trust.limiter, SharedRateLimiter)
        trust.limiter.take("x")
        assert (tmp_path / "rl.bin").exists()
    finally:
        engine.dispose()


def test_bad_configuration(table):
    with pytest.raises(ValueError):
        SharedRateLimiter(table, 0, 17)
    with pytest.raises(ValueError):
        SharedRateLimiter(table, 17, 17, slots=4)
