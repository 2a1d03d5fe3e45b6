"""
A least-recently-used map bounded in count and in bytes, for the small
in-process memos of both roles (encodings kept for reuse).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from attrs import define, field

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@define
class SizedLRU(Generic[K, V]):
    """
    Values by key; past C{maxItems} entries or C{maxBytes} bytes (as
    C{sizeOf} counts them), the least recently used go first. A value
    larger than C{maxBytes} alone is not kept.

    @ivar maxItems: entries kept at most.
    @ivar maxBytes: bytes kept at most.
    @ivar sizeOf: the size of a value in bytes.
    """

    maxItems: int
    maxBytes: int
    sizeOf: Callable[[V], int]
    _items: OrderedDict[K, V] = field(factory=OrderedDict, init=False)
    _bytes: int = field(default=0, init=False)

    @property
    def size(self) -> int:
        """
        Bytes kept now.
        """
        return self._bytes

    def get(self, key: K) -> V | None:
        """
        @return: the value of C{key} (now the most recently used), or
            L{None}.
        """
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """
        Keep C{value} under C{key}, replacing any value there, and drop the
        least recently used entries past the bounds.
        """
        size = self.sizeOf(value)
        if size > self.maxBytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= self.sizeOf(old)
        self._items[key] = value
        self._bytes += size
        while len(self._items) > self.maxItems or self._bytes > self.maxBytes:
            _, dropped = self._items.popitem(last=False)
            self._bytes -= self.sizeOf(dropped)
