"""Per-application rate limit: one token bucket per key.

A bucket holds up to ``burst`` calls and refills at ``rate`` calls per second; a call finding it
empty is told how long to wait (``Retry-After``). Two implementations of ``take(key) -> seconds``:

- ``SharedRateLimiter`` (the server's): the buckets live in a small memory-mapped file shared by
  every worker process of one server, so that an application gets ``rate`` calls/s whatever the
  number of workers (the national gateway's rule). No database write, one ``flock`` per call.
- ``RateLimiter``: the same buckets in one process's memory (tests, tools).

The shared table
----------------

Each bucket is kept as its GCRA "theoretical arrival time" ``tat`` (the generic cell rate
algorithm, equivalent to a token bucket): with ``T = 1/rate`` and ``tau = (burst - 1) * T``, a call
at ``now`` is allowed when ``max(tat, now) - now <= tau`` and then moves ``tat`` to
``max(tat, now) + T``; otherwise it must wait ``max(tat, now) - now - tau``. ``tat <= now`` is a
full bucket: such a slot holds nothing worth keeping and can be given to another key.

File layout (little-endian): a 32-byte header (magic ``RORRATE1``, slot count, slot size, a
checksum of those), then ``slots`` slots of 32 bytes: the 16-byte BLAKE2b hash of
``namespace NUL key`` (all zero: never used) and ``tat`` (a double, seconds of ``CLOCK_MONOTONIC``,
which all processes of one machine share). The namespace (the database URL) keeps two servers on
different databases apart when they share the file.

A key lives in one slot of its probe window (``_PROBE`` slots from ``hash mod slots``): a lookup
walks the window until it finds the key's own hash — a slot is only ever used by the key whose
full hash it stores, so two applications never share a bucket — or a never-used slot (the key is
not further: claims take the first free slot and slots never become unused again). A missing key
claims the first never-used or idle (full-bucket) slot of its window. When the window is full of
busy buckets of other keys (thousands of keys active within the same second), the key falls back
to a bucket in this process's memory, with a warning: the limit is then per worker for that key,
never shared with another key.

Everything happens under ``flock`` on the file (and a thread lock, since ``flock`` does not
exclude threads sharing a descriptor). The header and the file size are checked under the lock on
every call: a truncated, resized, replaced or corrupt file is rebuilt (every bucket full again)
with an error log line, never read out of bounds.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import math
import mmap
import os
import struct
import threading
import time
from pathlib import Path

log = logging.getLogger("ror.ratelimit")

_MAX_KEYS = 10_000  # beyond this, full (idle) buckets are forgotten: keys can come from unauthenticated input

_MAGIC = b"RORRATE1"
_HEADER = struct.Struct("<8sIIQ8x")  # magic, slots, slot size, checksum of the three
_SLOT = 32
_KEY = 16
_TAT = struct.Struct("<d")
_EMPTY = bytes(_KEY)
_PROBE = 32
DEFAULT_SLOTS = 16_384  # 512 KiB


class RateLimiter:
    """Token buckets in this process's memory."""

    def __init__(self, rate_per_s: float, burst: int, clock=time.monotonic):
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        self.rate = rate_per_s
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, time of last update]
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one call from ``key``'s bucket: 0.0 if allowed, else the seconds until one is available."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= _MAX_KEYS:
                    self._forget_idle(now)
                bucket = self._buckets[key] = [self.burst, now]
            tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
            if tokens >= 1.0:
                bucket[0] = tokens - 1.0
                return 0.0
            bucket[0] = tokens
            return (1.0 - tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        full = [k for k, (tokens, last) in self._buckets.items() if tokens + (now - last) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]


def _checksum(slots: int) -> int:
    digest = hashlib.blake2b(_MAGIC + struct.pack("<II", slots, _SLOT), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class SharedRateLimiter:
    """Token buckets in a memory-mapped file shared by the worker processes of a server (module doc)."""

    def __init__(self, path: str | os.PathLike, rate_per_s: float, burst: int, namespace: str = "",
                 slots: int = DEFAULT_SLOTS, clock=time.monotonic):
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        if slots < _PROBE:
            raise ValueError(f"slots must be at least {_PROBE}")
        self.path = Path(path)
        self.rate = rate_per_s
        self.burst = burst
        self.interval = 1.0 / rate_per_s
        self.tolerance = (burst - 1) * self.interval
        self.slots = slots
        self.size = _HEADER.size + slots * _SLOT
        self.header = _HEADER.pack(_MAGIC, slots, _SLOT, _checksum(slots))
        self.clock = clock
        self._namespace = namespace.encode() + b"\0"
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._mm: mmap.mmap | None = None
        self._pid = 0
        self._ino = 0
        self._stat_at = 0.0
        self._overflow = RateLimiter(rate_per_s, burst, clock)
        self._overflow_logged = 0.0
        self.rebuilds = 0  # files (re)initialised by this process: tests read it

    # -- the file ----------------------------------------------------------------------------------
    def _open(self) -> None:
        """Open (creating it if needed) and map the file; called without the file lock."""
        self._close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise RuntimeError(f"ROR_RATE_LIMIT_FILE: cannot open {self.path}: {e.strerror}") from None
        self._fd, self._pid, self._ino = fd, os.getpid(), os.fstat(fd).st_ino
        self._stat_at = self.clock()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            self._check_file()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _close(self) -> None:
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        with self._lock:
            self._close()

    def _map(self) -> None:
        if self._mm is not None:
            self._mm.close()
        self._mm = mmap.mmap(self._fd, self.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)

    def _check_file(self) -> None:
        """Under the file lock: the file has the right size and header, else it is rebuilt."""
        size = os.fstat(self._fd).st_size
        if size == self.size:
            if self._mm is None:
                self._map()
            if self._mm[:_HEADER.size] == self.header:
                return
            problem = "its header is not this version's (corrupt, or written with another slot count)"
        else:
            problem = "it is empty (new file)" if size == 0 else f"it is {size} bytes instead of {self.size}"
        if self._mm is not None:  # never touch a mapping whose file may be shorter than it
            self._mm.close()
            self._mm = None
        (log.info if size == 0 else log.error)(
            "rate-limit table %s rebuilt: %s; every application's bucket starts full", self.path, problem)
        os.ftruncate(self._fd, 0)  # drops any stale content: every slot reads as never used
        os.ftruncate(self._fd, self.size)
        os.pwrite(self._fd, self.header, 0)
        self.rebuilds += 1
        self._map()

    def _lock_file(self, now: float) -> None:
        if self._fd is None or self._pid != os.getpid():  # a forked child must not share the descriptor
            self._open()
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        if now - self._stat_at >= 1.0 or now < self._stat_at:  # once a second: removed or replaced?
            self._stat_at = now
            try:
                ino = os.stat(self.path).st_ino
            except FileNotFoundError:
                ino = None
            if ino != self._ino:  # use the file now at the path, as the other workers will
                log.error("rate-limit table %s was removed or replaced: opening it again", self.path)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                self._open()
                fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._check_file()

    # -- buckets -----------------------------------------------------------------------------------
    def _key(self, key: str) -> bytes:
        digest = hashlib.blake2b(self._namespace + key.encode(), digest_size=_KEY).digest()
        return digest if digest != _EMPTY else b"\1" + digest[1:]

    def take(self, key: str) -> float:
        """Take one call from ``key``'s bucket: 0.0 if allowed, else the seconds until one is available."""
        h = self._key(key)
        home = int.from_bytes(h[:8], "little") % self.slots
        with self._lock:
            now = self.clock()
            self._lock_file(now)
            try:
                return self._take(h, home, now)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _take(self, h: bytes, home: int, now: float) -> float:
        mm = self._mm
        free = -1
        for i in range(_PROBE):
            off = _HEADER.size + ((home + i) % self.slots) * _SLOT
            held = mm[off:off + _KEY]
            if held == h:
                return self._spend(off, now)
            if held == _EMPTY:
                if free < 0:
                    free = off
                break
            if free < 0:
                tat = _TAT.unpack_from(mm, off + _KEY)[0]
                if not tat > now:  # idle (full bucket), or not a number: nothing worth keeping
                    free = off
        if free < 0:
            if now - self._overflow_logged > 60:
                self._overflow_logged = now
                log.warning("rate-limit table %s: no free slot for a key (more than %d keys busy in its "
                            "window); this worker limits it alone", self.path, _PROBE)
            return self._overflow.take(h.hex())
        mm[free:free + _KEY] = h
        _TAT.pack_into(mm, free + _KEY, now)
        return self._spend(free, now)

    def _spend(self, off: int, now: float) -> float:
        tat = _TAT.unpack_from(self._mm, off + _KEY)[0]
        # tat beyond now + tau + T cannot happen (clock restarted after a reboot, or a corrupt value):
        # start again from a full bucket rather than lock the application out.
        if not math.isfinite(tat) or tat < now or tat - now > self.tolerance + self.interval + 1.0:
            tat = now
        ahead = tat - now
        if ahead > self.tolerance + 1e-9:  # (rounding of the sums of T)
            return ahead - self.tolerance
        _TAT.pack_into(self._mm, off + _KEY, tat + self.interval)
        return 0.0
