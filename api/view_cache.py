"""Results of views, computed once per data version and request shape, served from memory.

The key is (view, data version, filter, parameters). When the data version moves on (a feed was
loaded), entries of older versions are dropped. Concurrent first requests for the same key wait
for one computation instead of each starting their own (the cold-start stampede after a load).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class ViewCache:
    """A bounded, thread-safe LRU of computed view results."""

    def __init__(self, max_entries: int = 512) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._computing: dict[Hashable, threading.Lock] = {}
        self._version: Hashable = None

    def get_or_compute(self, version: Hashable, key: Hashable, compute: Callable[[], T]) -> T:
        full_key = (version, key)
        with self._lock:
            if version != self._version:
                # A newer load: nothing computed on the old data is worth keeping.
                self._entries.clear()
                self._version = version
            if full_key in self._entries:
                self._entries.move_to_end(full_key)
                return self._entries[full_key]  # type: ignore[no-any-return]
            gate = self._computing.setdefault(full_key, threading.Lock())
        with gate:
            with self._lock:
                if full_key in self._entries:
                    return self._entries[full_key]  # type: ignore[no-any-return]
            value = compute()
            with self._lock:
                if version == self._version:
                    self._entries[full_key] = value
                    while len(self._entries) > self.max_entries:
                        self._entries.popitem(last=False)
                self._computing.pop(full_key, None)
        return value

    def peek(self, version: Hashable, key: Hashable) -> tuple[bool, Any]:
        """(True, value) when the result is already computed, else (False, None); never
        computes or waits (for the event loop's fast path)."""
        full_key = (version, key)
        with self._lock:
            if version == self._version and full_key in self._entries:
                self._entries.move_to_end(full_key)
                return True, self._entries[full_key]
        return False, None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
