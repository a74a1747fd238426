"""Per-key rate limiting: a token bucket per API key, in this process.

Litestar's own `RateLimitConfig` keeps a list of every request time per window and has no
Retry-After, which costs more per request than the page it guards at high limits; a bucket is
O(1). Counters are per process: behind a load balancer with N replicas a key gets up to N times
the limit (documented in the README).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`per_minute` requests per key per minute, with bursts up to the same number."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(max(per_minute, 1))
        self.refill_per_second = self.capacity / 60.0
        self._buckets: dict[str, _Bucket] = {}

    def retry_after(self, key_id: str) -> int | None:
        """Take one request from the key's bucket: None when allowed, else seconds to wait."""
        now = time.monotonic()
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(tokens=self.capacity, updated=now)
        else:
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.refill_per_second)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - bucket.tokens) / self.refill_per_second))
