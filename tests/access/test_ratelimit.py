"""The token bucket, on a controlled clock."""

from __future__ import annotations

import pytest

from ror.access.ratelimit import RateLimiter


class Clock:
    t = 100.0

    def __call__(self) -> float:
        return self.t


def test_burst_then_the_rate():
    clock = Clock()
    limiter = RateLimiter(17, 17, clock=clock)
    assert [limiter.take("a") for _ in range(17)] == [0.0] * 17
    wait = limiter.take("a")
    assert wait == pytest.approx(1 / 17)
    assert limiter.take("b") == 0.0  # buckets are per application
    clock.t += 1 / 17
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    clock.t += 10  # an idle application gets its burst back, not more
    assert sum(limiter.take("a") == 0.0 for _ in range(30)) == 17


def test_sustained_rate_is_respected():
    clock = Clock()
    limiter = RateLimiter(17, 17, clock=clock)
    allowed = 0
    for _ in range(10_000):  # 100 calls/s for 100 s
        clock.t += 0.01
        allowed += limiter.take("a") == 0.0
    assert 17 * 100 <= allowed <= 17 * 100 + 17


def test_refused_calls_do_not_consume():
    clock = Clock()
    limiter = RateLimiter(2, 1, clock=clock)
    assert limiter.take("a") == 0.0
    for _ in range(5):
        assert limiter.take("a") == pytest.approx(0.5)
    clock.t += 0.5
    assert limiter.take("a") == 0.0


def test_many_keys_do_not_grow_without_bound():
    clock = Clock()
    limiter = RateLimiter(17, 17, clock=clock)
    for i in range(10_000):
        limiter.take(f"k{i}")
    clock.t += 10
    limiter.take("one-more")
    assert len(limiter._buckets) == 1


def test_bad_configuration():
    with pytest.raises(ValueError):
        RateLimiter(0, 17)
