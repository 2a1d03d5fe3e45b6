"""
Tests for L{railgun.stores.memory}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from railgun.stores import IVersionStore, MemoryVersionStore, StoreStats
from railgun.stores.memory import ITEM_OVERHEAD


def _size(key: bytes, value: bytes) -> int:
    return len(key) + len(value) + ITEM_OVERHEAD


class MemoryVersionStoreTests(SynchronousTestCase):
    """
    Tests for L{MemoryVersionStore}.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def store(self, **kwargs: object) -> MemoryVersionStore:
        return MemoryVersionStore(clock=self.clock, **kwargs)  # type: ignore[arg-type]

    def test_interface(self) -> None:
        """
        A memory store provides L{IVersionStore}.
        """
        self.assertTrue(verifyObject(IVersionStore, self.store()))

    def test_setGet(self) -> None:
        """
        A stored value is returned by C{get}, already fired.
        """
        store = self.store()
        self.assertIs(self.successResultOf(store.set(b"k", b"value")), True)
        self.assertEqual(self.successResultOf(store.get(b"k")), b"value")

    def test_missing(self) -> None:
        """
        An unknown key reads as L{None}.
        """
        self.assertIsNone(self.successResultOf(self.store().get(b"nope")))

    def test_replace(self) -> None:
        """
        Setting a key again replaces its value and its byte count.
        """
        store = self.store()
        store.set(b"k", b"a" * 100)
        store.set(b"k", b"b" * 10)
        self.assertEqual(self.successResultOf(store.get(b"k")), b"b" * 10)
        self.assertEqual(store.stats.items, 1)
        self.assertEqual(store.stats.bytes, _size(b"k", b"b" * 10))

    def test_delete(self) -> None:
        """
        A deleted key reads as a miss; deleting an unknown key is harmless.
        """
        store = self.store()
        store.set(b"k", b"v")
        self.assertIsNone(self.successResultOf(store.delete(b"k")))
        self.assertIsNone(self.successResultOf(store.get(b"k")))
        self.assertIsNone(self.successResultOf(store.delete(b"k")))
        self.assertEqual((store.stats.items, store.stats.bytes), (0, 0))

    def test_emptyKeyAndValue(self) -> None:
        """
        Empty keys and values are ordinary, and an empty value is a hit.
        """
        store = self.store()
        store.set(b"", b"")
        self.assertEqual(self.successResultOf(store.get(b"")), b"")
        self.assertEqual(store.stats.hits, 1)

    def test_byteBound(self) -> None:
        """
        The bytes held, overhead included, never exceed C{maxBytes}; the
        oldest items make room and are counted as evictions.
        """
        value = b"x" * 1000
        itemSize = _size(b"k00", value)
        store = self.store(maxBytes=itemSize * 5 + 10)
        for i in range(20):
            store.set(b"k%02d" % (i,), value)
            self.assertLessEqual(store.stats.bytes, itemSize * 5 + 10)
        self.assertEqual(store.stats.items, 5)
        self.assertEqual(store.stats.evictions, 15)
        self.assertIsNone(self.successResultOf(store.get(b"k14")))
        self.assertEqual(self.successResultOf(store.get(b"k15")), value)

    def test_lruOrder(self) -> None:
        """
        Reading a key makes it the most recently used, so the least recently
        read one is evicted, not the oldest written.
        """
        store = self.store(maxBytes=_size(b"a", b"1" * 100) * 3)
        for key in (b"a", b"b", b"c"):
            store.set(key, b"1" * 100)
        store.get(b"a")
        store.set(b"d", b"1" * 100)
        self.assertIsNone(self.successResultOf(store.get(b"b")))
        for key in (b"a", b"c", b"d"):
            self.assertIsNotNone(self.successResultOf(store.get(key)), key)

    def test_bigValueEvictsSeveral(self) -> None:
        """
        One large value evicts as many small ones as it needs.
        """
        store = self.store(maxBytes=10_000)
        for i in range(10):
            store.set(b"%d" % (i,), b"s" * 500)
        store.set(b"big", b"B" * 9500)
        self.assertEqual(store.stats.items, 1)
        self.assertEqual(self.successResultOf(store.get(b"big")), b"B" * 9500)
        self.assertEqual(store.stats.evictions, 10)

    def test_ttl(self) -> None:
        """
        A value expires C{ttl} seconds after it was set, even if it was read
        in between; expiry is not an eviction.
        """
        store = self.store(ttl=10.0)
        store.set(b"k", b"v")
        self.clock.advance(9.9)
        self.assertEqual(self.successResultOf(store.get(b"k")), b"v")
        self.clock.advance(0.1)
        self.assertIsNone(self.successResultOf(store.get(b"k")))
        self.assertEqual(store.stats.items, 0)
        self.assertEqual(store.stats.bytes, 0)
        self.assertEqual(store.stats.evictions, 0)

    def test_ttlResetBySet(self) -> None:
        """
        Setting a key again restarts its ttl.
        """
        store = self.store(ttl=10.0)
        store.set(b"k", b"v1")
        self.clock.advance(8)
        store.set(b"k", b"v2")
        self.clock.advance(8)
        self.assertEqual(self.successResultOf(store.get(b"k")), b"v2")

    def test_noTtl(self) -> None:
        """
        With C{ttl=None} or C{ttl=0} (memcached's spelling), values never
        expire.
        """
        for ttl in (None, 0, 0.0):
            store = self.store(ttl=ttl)
            store.set(b"k", b"v")
            self.clock.advance(10**9)
            self.assertEqual(self.successResultOf(store.get(b"k")), b"v")

    def test_expiredDroppedOnSet(self) -> None:
        """
        Expired items at the old end are dropped when new items are set,
        so an idle key does not hold memory until it is read.
        """
        store = self.store(ttl=10.0)
        store.set(b"old", b"v" * 1000)
        self.clock.advance(11)
        store.set(b"new", b"v")
        self.assertEqual(store.stats.items, 1)
        self.assertEqual(store.stats.bytes, _size(b"new", b"v"))

    def test_oversize(self) -> None:
        """
        A value over C{maxItemBytes} is refused with C{False} and one log
        line, counted as rejected, and the key's old value is dropped.
        """
        store = self.store(maxItemBytes=100)
        store.set(b"k", b"old")
        with capturedLogs() as events:
            self.assertIs(self.successResultOf(store.set(b"k", b"x" * 101)), False)
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["length"], 101)
        self.assertEqual(events[0]["limit"], 100)
        self.assertEqual(store.stats.rejected, 1)
        self.assertEqual(store.stats.sets, 1)
        self.assertIsNone(self.successResultOf(store.get(b"k")))
        self.assertIs(self.successResultOf(store.set(b"k", b"x" * 100)), True)

    def test_largerThanStore(self) -> None:
        """
        A value that could not fit even in an empty store is refused
        without evicting anything.
        """
        store = self.store(maxBytes=1000, maxItemBytes=10_000)
        store.set(b"a", b"1")
        self.assertIs(self.successResultOf(store.set(b"b", b"x" * 2000)), False)
        self.assertEqual(self.successResultOf(store.get(b"a")), b"1")
        self.assertEqual(store.stats.evictions, 0)

    def test_oversizeLogRateLimited(self) -> None:
        """
        A flood of refused values logs one line per interval, then reports
        how many were suppressed.
        """
        store = self.store(maxItemBytes=1)
        with capturedLogs() as events:
            for _ in range(100):
                store.set(b"k", b"xx")
            self.clock.advance(60)
            store.set(b"k", b"xx")
        self.assertEqual(len(events), 2)
        self.assertEqual(events[1]["suppressed"], 99)
        self.assertEqual(store.stats.rejected, 101)

    def test_stats(self) -> None:
        """
        Hits, misses, sets, items and bytes are counted.
        """
        store = self.store()
        store.set(b"a", b"1")
        store.set(b"b", b"22")
        store.get(b"a")
        store.get(b"a")
        store.get(b"zz")
        self.assertEqual(
            store.stats,
            StoreStats(
                hits=2,
                misses=1,
                sets=2,
                errors=0,
                evictions=0,
                bytes=_size(b"a", b"1") + _size(b"b", b"22"),
                items=2,
            ),
        )

    def test_typeErrors(self) -> None:
        """
        Keys and values that are not bytes are refused with L{TypeError}.
        """
        store = self.store()
        self.assertRaises(TypeError, store.get, "k")
        self.assertRaises(TypeError, store.set, b"k", "v")
        self.assertRaises(TypeError, store.set, "k", b"v")
        self.assertRaises(TypeError, store.delete, 1)

    def test_badOptions(self) -> None:
        """
        Non-positive bounds and a negative ttl are refused when the store
        is built.
        """
        self.assertRaises(ValueError, self.store, maxBytes=0)
        self.assertRaises(ValueError, self.store, maxItemBytes=-1)
        self.assertRaises(ValueError, self.store, ttl=-1.0)
