"""Deterministic randomness and time helpers.

Every stream of random numbers is a ``random.Random`` seeded from a SHA-256 of the user's seed and a
purpose label, so one region never depends on another one's draws, and the dirty-record stream does not
shift the clean data when its share changes. Timestamps carry the civil offset of the territory
(Europe/Paris summer time rule, fixed offsets overseas), computed here rather than from the system's
time-zone database so that output bytes do not depend on the machine.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import random
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache


def stream(seed: int, *labels: object) -> random.Random:
    digest = hashlib.sha256(":".join([str(seed), *map(str, labels)]).encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


class Weighted:
    """Choose among values with fixed weights, in O(log n) per draw."""

    __slots__ = ("cum", "total", "values")

    def __init__(self, pairs):
        pairs = [(v, w) for v, w in pairs if w > 0]
        if not pairs:
            raise ValueError("no positive weight")
        self.values = [v for v, _ in pairs]
        self.cum = list(itertools.accumulate(w for _, w in pairs))
        self.total = self.cum[-1]

    def __call__(self, rng: random.Random):
        return self.values[bisect.bisect_right(self.cum, rng.random() * self.total)]


def between(rng: random.Random, bounds: tuple[int, int]) -> int:
    lo, hi = bounds
    return lo if hi <= lo else rng.randint(lo, hi)


# --- civil time ------------------------------------------------------------------------------------
# Fixed UTC offsets (minutes) of the overseas regions (TRE_R30 codes); metropolitan regions follow Paris.
_OVERSEAS_OFFSET = {"01": -240, "02": -240, "03": -180, "04": 240, "06": 180}


def _last_sunday(year: int, month: int) -> date:
    d = date(year, month + 1, 1) - timedelta(days=1)
    return d - timedelta(days=(d.weekday() + 1) % 7)


@lru_cache(maxsize=64)
def _summer_time(year: int) -> tuple[datetime, datetime]:
    """EU summer time of a year: from 01:00 UTC on the last Sunday of March to that of October."""
    one = timedelta(hours=1)
    return (datetime.combine(_last_sunday(year, 3), datetime.min.time(), UTC) + one,
            datetime.combine(_last_sunday(year, 10), datetime.min.time(), UTC) + one)


def utc_offset_minutes(region: str, moment_utc: datetime) -> int:
    if region in _OVERSEAS_OFFSET:
        return _OVERSEAS_OFFSET[region]
    start, end = _summer_time(moment_utc.year)
    return 120 if start <= moment_utc < end else 60


_SUFFIX = {m: f"{'+' if m >= 0 else '-'}{abs(m) // 60:02d}:{abs(m) % 60:02d}" for m in (-240, -180, 60, 120, 180, 240)}


@lru_cache(maxsize=1 << 16)
def local_iso(region: str, moment_utc: datetime) -> str:
    """``2025-03-18T11:05:00+01:00``: the instant in the territory's civil time, to the second."""
    off = utc_offset_minutes(region, moment_utc)
    local = (moment_utc + timedelta(minutes=off)).replace(tzinfo=None, microsecond=0)
    return local.isoformat() + _SUFFIX[off]


def local_midnight(region: str, day: date) -> str:
    """``2026-01-01T00:00:00+01:00``: the start of a civil day in the territory."""
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    off = utc_offset_minutes(region, noon)
    sign = "+" if off >= 0 else "-"
    return f"{day.isoformat()}T00:00:00{sign}{abs(off) // 60:02d}:{abs(off) % 60:02d}"


class Clock:
    """Random instants before the extraction date, skewed towards recent ones (records get updated)."""

    def __init__(self, as_of: date, first: date = date(2016, 1, 4)):
        self.end = datetime.combine(as_of, datetime.min.time(), UTC) - timedelta(hours=2)
        self.span_s = int((self.end - datetime.combine(first, datetime.min.time(), UTC)).total_seconds())

    def instant(self, rng: random.Random, recent: float = 1.0) -> datetime:
        """An instant in working hours; ``recent`` > 1 pulls it towards the extraction date."""
        back = int(self.span_s * rng.random() ** recent)
        moment = self.end - timedelta(seconds=back)
        return moment.replace(hour=6 + rng.randrange(12), minute=rng.randrange(60), second=0)

    def after(self, rng: random.Random, start: datetime) -> datetime:
        """An instant between ``start`` and the extraction date."""
        span = max(0, int((self.end - start).total_seconds()))
        return start + timedelta(seconds=int(span * rng.random() ** 0.5))
