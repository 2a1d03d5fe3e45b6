"""
A version store in process memory: an LRU cache bounded by bytes.
"""

from __future__ import annotations

from collections import OrderedDict

from attrs import define, field, validators
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ._common import checkBytes, refuseOversize
from ._ratelimit import RateLimitedLog
from .interfaces import IVersionStore, StoreStats

MiB = 1024 * 1024

#: Estimated bytes of Python overhead per item beyond the lengths of its key
#: and value: the two L{bytes} headers, the entry object and its expiry
#: float, and the ordered dictionary's slot and link (measured at about 290
#: on CPython 3.11, 64-bit).  Counting it keeps millions of tiny items from
#: exceeding C{maxBytes} by a large factor.
ITEM_OVERHEAD = 300


@define
class _Entry:
    """
    One stored value.

    @ivar value: the value.
    @ivar expires: the clock time after which it is gone, or L{None}.
    @ivar size: what it counts against C{maxBytes}.
    """

    value: bytes
    expires: float | None
    size: int


def _positive(instance: object, attribute: object, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{getattr(attribute, 'name', '?')} must be > 0: {value!r}")


def _nonNegative(instance: object, attribute: object, value: float | None) -> None:
    if value is not None and not value >= 0:
        raise ValueError(f"{getattr(attribute, 'name', '?')} must be >= 0: {value!r}")


@implementer(IVersionStore)
@define(eq=False)
class MemoryVersionStore:
    """
    An in-memory L{IVersionStore}: least recently used items are evicted so
    that keys, values and L{ITEM_OVERHEAD} per item stay within C{maxBytes}.

    Every operation is O(1) and its L{Deferred} has already fired when it is
    returned.  Expiry is checked lazily: an expired item reads as a miss and
    is dropped when it is next looked up or reaches the old end of the LRU
    order, so nothing is scheduled on the clock.

    @ivar _maxBytes: bound on the bytes held, overhead included.
    @ivar _maxItemBytes: largest value accepted; larger ones are refused with
        a (rate-limited) log line and a C{False} result.
    @ivar _ttl: seconds an item lives after it is set; L{None} or C{0} (as
        in memcached) for no expiry.
        expiry.  Reading an item does not extend its life.
    @ivar _clock: time source for the ttl and for rate-limiting log lines.
    @ivar stats: the store's L{StoreStats}.
    """

    _maxBytes: int = field(
        default=256 * MiB, validator=[validators.instance_of(int), _positive]
    )
    _maxItemBytes: int = field(
        default=MiB + 64, validator=[validators.instance_of(int), _positive]
    )
    _ttl: float | None = field(default=600.0, validator=_nonNegative)
    _clock: IReactorTime = field(kw_only=True)
    stats: StoreStats = field(factory=StoreStats, init=False)
    _items: OrderedDict[bytes, _Entry] = field(factory=OrderedDict, init=False)
    _warnings: RateLimitedLog = field(init=False)

    _log = Logger()

    def __attrs_post_init__(self) -> None:
        self._warnings = RateLimitedLog(self._log, self._clock)

    def get(self, key: bytes) -> Deferred[bytes | None]:
        """
        Look up C{key}; see L{IVersionStore.get}.
        """
        checkBytes("key", key)
        entry = self._items.get(key)
        if entry is not None and self._expired(entry):
            self._remove(key)
            entry = None
        if entry is None:
            self.stats.misses += 1
            return succeed(None)
        self._items.move_to_end(key)
        self.stats.hits += 1
        return succeed(entry.value)

    def set(self, key: bytes, value: bytes) -> Deferred[bool]:
        """
        Store C{value} under C{key}, evicting the least recently used items
        as needed; see L{IVersionStore.set}.  A refused value also removes
        the key's previous value.
        """
        checkBytes("key", key)
        checkBytes("value", value)
        size = len(key) + len(value) + ITEM_OVERHEAD
        if len(value) > self._maxItemBytes or size > self._maxBytes:
            refuseOversize(
                self.stats,
                self._warnings,
                len(value),
                min(self._maxItemBytes, self._maxBytes - len(key) - ITEM_OVERHEAD),
            )
            # Like memcached, drop the old value too: a get after a set never
            # answers with a value older than that set's.
            self._remove(key)
            return succeed(False)
        self._remove(key)
        expires = self._clock.seconds() + self._ttl if self._ttl else None
        self._items[key] = _Entry(value, expires, size)
        self.stats.bytes += size
        self.stats.items += 1
        self.stats.sets += 1
        self._shrink()
        return succeed(True)

    def delete(self, key: bytes) -> Deferred[None]:
        """
        Forget C{key}; see L{IVersionStore.delete}.
        """
        checkBytes("key", key)
        self._remove(key)
        return succeed(None)

    def _expired(self, entry: _Entry) -> bool:
        return entry.expires is not None and self._clock.seconds() >= entry.expires

    def _remove(self, key: bytes) -> None:
        entry = self._items.pop(key, None)
        if entry is not None:
            self.stats.bytes -= entry.size
            self.stats.items -= 1

    def _shrink(self) -> None:
        """
        Drop items from the least recently used end until within bounds;
        expired items met there are dropped too, but are not evictions.
        """
        items = self._items
        while items:
            oldestKey = next(iter(items))
            oldest = items[oldestKey]
            if self._expired(oldest):
                self._remove(oldestKey)
            elif self.stats.bytes > self._maxBytes:
                self._remove(oldestKey)
                self.stats.evictions += 1
            else:
                break


__all__ = ["ITEM_OVERHEAD", "MemoryVersionStore"]
