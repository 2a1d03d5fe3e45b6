"""
Tests for L{railgun._lru.SizedLRU}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from railgun._lru import SizedLRU


class SizedLRUTests(SynchronousTestCase):
    """
    Least recently used first out, within a count and a byte bound.
    """

    def test_replaceKeepsSizeRight(self) -> None:
        """
        Putting a key again replaces its value and its size.
        """
        lru: SizedLRU[str, bytes] = SizedLRU(4, 100, len)
        lru.put("a", b"12345")
        lru.put("a", b"12")
        self.assertEqual((lru.get("a"), lru.size), (b"12", 2))

    def test_evictsLeastRecentlyUsed(self) -> None:
        """
        Past either bound the least recently used entries go; a value over
        the byte bound alone is not kept.
        """
        lru: SizedLRU[str, bytes] = SizedLRU(2, 10, len)
        lru.put("a", b"1234")
        lru.put("b", b"1234")
        lru.get("a")
        lru.put("c", b"1234")
        self.assertIsNone(lru.get("b"))
        self.assertEqual(lru.get("a"), b"1234")  # now the most recently used
        lru.put("d", b"123456")
        self.assertEqual(lru.size, 10)
        self.assertIsNone(lru.get("c"))
        self.assertEqual(lru.get("a"), b"1234")
        lru.put("e", b"x" * 11)
        self.assertIsNone(lru.get("e"))
        self.assertEqual(lru.size, 10)
