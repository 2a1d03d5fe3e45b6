"""
Tests for L{railgun.delta.siblings}.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from railgun.delta.siblings import SiblingIndex, commonPrefixLength


class CommonPrefixTests(SynchronousTestCase):
    """
    Tests for L{commonPrefixLength}.
    """

    def test_examples(self) -> None:
        """
        Known pairs give their shared prefix length.
        """
        self.assertEqual(commonPrefixLength(b"", b""), 0)
        self.assertEqual(commonPrefixLength(b"/a", b""), 0)
        self.assertEqual(commonPrefixLength(b"/news/1", b"/news/2"), 6)
        self.assertEqual(commonPrefixLength(b"/news", b"/news?x=1"), 5)
        self.assertEqual(commonPrefixLength(b"abc", b"abc"), 3)

    @given(st.binary(max_size=50), st.binary(max_size=50), st.binary(max_size=50))
    def test_matchesNaive(self, prefix: bytes, a: bytes, b: bytes) -> None:
        """
        The result equals a byte-by-byte scan.
        """
        x, y = prefix + a, prefix + b
        naive = 0
        while naive < min(len(x), len(y)) and x[naive] == y[naive]:
            naive += 1
        self.assertEqual(commonPrefixLength(x, y), naive)


class SiblingIndexTests(SynchronousTestCase):
    """
    Tests for L{SiblingIndex}.
    """

    def test_emptyHost(self) -> None:
        """
        A host with nothing remembered has no sibling.
        """
        self.assertIsNone(SiblingIndex().pick(b"a.example", b"/"))

    def test_longestPrefix(self) -> None:
        """
        The remembered key sharing the longest prefix wins.
        """
        index = SiblingIndex()
        for key in (b"/", b"/news/world?page=2", b"/news/sport", b"/shop"):
            index.remember(b"h", key)
        self.assertEqual(index.pick(b"h", b"/news/world?page=3"), b"/news/world?page=2")
        self.assertEqual(index.pick(b"h", b"/news/sport?utm=1"), b"/news/sport")
        self.assertEqual(index.pick(b"h", b"/shopping"), b"/shop")

    def test_notItself(self) -> None:
        """
        The URL asked about is never its own sibling.
        """
        index = SiblingIndex()
        index.remember(b"h", b"/a")
        self.assertIsNone(index.pick(b"h", b"/a"))
        index.remember(b"h", b"/b")
        self.assertEqual(index.pick(b"h", b"/a"), b"/b")

    def test_otherHostsIgnored(self) -> None:
        """
        Keys of another host are never proposed.
        """
        index = SiblingIndex()
        index.remember(b"a", b"/news/1")
        self.assertIsNone(index.pick(b"b", b"/news/2"))

    def test_tieMostRecent(self) -> None:
        """
        On equal prefixes the most recently stored key wins.
        """
        index = SiblingIndex()
        index.remember(b"h", b"/x/1")
        index.remember(b"h", b"/x/2")
        self.assertEqual(index.pick(b"h", b"/x/3"), b"/x/2")
        index.remember(b"h", b"/x/1")
        self.assertEqual(index.pick(b"h", b"/x/3"), b"/x/1")

    def test_minPrefix(self) -> None:
        """
        Keys sharing less than minPrefix bytes are not proposed.
        """
        index = SiblingIndex(minPrefix=3)
        index.remember(b"h", b"/ab")
        self.assertIsNone(index.pick(b"h", b"/xy"))
        self.assertEqual(index.pick(b"h", b"/abc"), b"/ab")

    def test_forget(self) -> None:
        """
        A forgotten key is no longer proposed, and an emptied host goes.
        """
        index = SiblingIndex()
        index.remember(b"h", b"/a")
        index.forget(b"h", b"/a")
        index.forget(b"h", b"/a")
        index.forget(b"other", b"/a")
        self.assertIsNone(index.pick(b"h", b"/b"))
        self.assertEqual(len(index), 0)

    def test_boundedPerHost(self) -> None:
        """
        At most perHost keys are kept per host, the oldest dropped.
        """
        index = SiblingIndex(perHost=3)
        for i in range(10):
            index.remember(b"h", b"/p%d" % i)
        self.assertEqual(len(index), 3)
        self.assertEqual(index.pick(b"h", b"/p0"), b"/p9")
        index2 = SiblingIndex(perHost=3, minPrefix=3)
        for i in range(10):
            index2.remember(b"h", b"/p%d" % i)
        self.assertIsNone(index2.pick(b"h", b"/p1x"))
        self.assertEqual(index2.pick(b"h", b"/p8x"), b"/p8")

    def test_boundedHosts(self) -> None:
        """
        At most maxHosts hosts are kept, the least recently used dropped.
        """
        index = SiblingIndex(maxHosts=2)
        index.remember(b"a", b"/1")
        index.remember(b"b", b"/1")
        index.remember(b"a", b"/2")
        index.remember(b"c", b"/1")
        self.assertIsNone(index.pick(b"b", b"/x"))
        self.assertIsNotNone(index.pick(b"a", b"/x"))
        self.assertIsNotNone(index.pick(b"c", b"/x"))

    def test_badBounds(self) -> None:
        """
        An index that can hold nothing is refused.
        """
        self.assertRaises(ValueError, SiblingIndex, perHost=0)
        self.assertRaises(ValueError, SiblingIndex, maxHosts=0)
