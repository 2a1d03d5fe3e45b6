"""
Tests for L{railgun.delta.history}: several versions per URL.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from railgun.delta.digest import versionDigest
from railgun.delta.history import (
    MAX_BASES,
    VersionHistory,
    chooseBase,
    formatBases,
    keepOlder,
    loadAlternates,
    olderKey,
    parseBases,
    similarity,
    storedBases,
)
from railgun.stores.memory import MemoryVersionStore

A, B, C, D, E = (versionDigest(x) for x in (b"a", b"b", b"c", b"d", b"e"))
KEY = b"www.example.test /page"


class HeaderTests(SynchronousTestCase):
    """
    Tests for L{formatBases} and L{parseBases}.
    """

    def test_roundTrip(self) -> None:
        """
        Digests formatted for railgun-bases parse back in order.
        """
        self.assertEqual(parseBases(formatBases([A, B, C])), [A, B, C])

    def test_peerInput(self) -> None:
        """
        Invalid items and repeats are dropped, at most MAX_BASES are read,
        and a missing header names none.
        """
        self.assertEqual(parseBases(None), [])
        self.assertEqual(parseBases(b"nope, " + A.encode() + b", " + A.encode()), [A])
        many = [versionDigest(b"%d" % i) for i in range(MAX_BASES + 3)]
        self.assertEqual(parseBases(formatBases(many)), many[:MAX_BASES])


class ChooseTests(SynchronousTestCase):
    """
    Tests for L{similarity} and L{chooseBase}.
    """

    def test_closest(self) -> None:
        """
        The candidate sharing the most at both ends wins.
        """
        body = b"<html>" + b"x" * 1000 + b"<p>new</p>" + b"y" * 1000 + b"</html>"
        near = b"<html>" + b"x" * 1000 + b"<p>old</p>" + b"y" * 1000 + b"</html>"
        far = b"<html>" + b"z" * 2000 + b"</html>"
        self.assertGreater(similarity(body, near), similarity(body, far))
        self.assertEqual(chooseBase(body, [(A, far), (B, near)]), (B, near))

    def test_latestFirst(self) -> None:
        """
        The edge's latest version is chosen whenever it is a candidate.
        """
        body = b"<html>" + b"x" * 1000 + b"</html>"
        self.assertEqual(
            chooseBase(body, [(A, b"zzz"), (B, body)], latest=A), (A, b"zzz")
        )

    def test_tieLatest(self) -> None:
        """
        On a tie the first candidate (the latest) wins; none gives None.
        """
        self.assertEqual(chooseBase(b"abc", [(A, b"xyz"), (B, b"xyz")]), (A, b"xyz"))
        self.assertIsNone(chooseBase(b"abc", []))


class VersionHistoryTests(SynchronousTestCase):
    """
    Tests for L{VersionHistory}.
    """

    def test_flips(self) -> None:
        """
        Replacing the latest keeps the previous one as an older version
        (newest first), asks for it to be stored only once, and a version
        that becomes the latest again leaves the older ones.
        """
        h = VersionHistory(keep=3)
        self.assertEqual(h.replaced(KEY, None, A), (None, []))
        self.assertEqual(h.replaced(KEY, A, B), (A, []))
        self.assertEqual(h.older(KEY), [A])
        # Back to A: B is kept, A is the latest again (its older copy is
        # to be deleted).
        self.assertEqual(h.replaced(KEY, B, A), (B, [A]))
        self.assertEqual(h.older(KEY), [B])
        # To B again: A becomes older again, and must be stored again.
        self.assertEqual(h.replaced(KEY, A, B), (A, [B]))
        self.assertEqual(h.older(KEY), [A])

    def test_bounded(self) -> None:
        """
        At most keep - 1 older versions per URL, and maxURLs URLs.
        """
        h = VersionHistory(keep=3, maxURLs=2)
        previous = None
        dropped = []
        for digest in (A, B, C, D, E):
            dropped += h.replaced(KEY, previous, digest)[1]
            previous = digest
        self.assertEqual(h.older(KEY), [D, C])
        self.assertEqual(dropped, [A, B])
        h.replaced(b"k2", A, B)
        h.replaced(b"k3", A, B)
        self.assertEqual(len(h), 2)
        self.assertEqual(h.older(KEY), [])

    def test_keepOne(self) -> None:
        """
        keep=1 keeps no older version.
        """
        h = VersionHistory(keep=1)
        self.assertEqual(h.replaced(KEY, A, B), (None, []))
        self.assertEqual(h.older(KEY), [])

    def test_forget(self) -> None:
        """
        A forgotten older version is no longer named.
        """
        h = VersionHistory()
        h.replaced(KEY, A, B)
        h.forget(KEY, A)
        self.assertEqual(h.older(KEY), [])
        self.assertEqual(len(h), 0)


class StoreTests(SynchronousTestCase):
    """
    Tests for L{keepOlder}, L{loadAlternates} and L{storedBases} over a
    real in-memory store.
    """

    def test_keepAndLoad(self) -> None:
        """
        The previous latest version is written under its older key and read
        back; one evicted from the store is forgotten.
        """
        store = MemoryVersionStore(clock=Clock())
        h = VersionHistory()
        a, b, c = b"version a", b"version b", b"version c"
        da, db, dc = (versionDigest(x) for x in (a, b, c))
        keepOlder(store, h, KEY, None, da)
        keepOlder(store, h, KEY, (da, a), db)
        keepOlder(store, h, KEY, (db, b), dc)
        self.assertEqual(h.older(KEY), [db, da])
        # Past the count (keep=4 here: three older), the oldest copy goes.
        d0 = versionDigest(b"version 0")
        small = VersionHistory(keep=2)
        keepOlder(store, small, b"k", (d0, b"version 0"), da)
        keepOlder(store, small, b"k", (da, a), db)
        self.assertIsNone(self.successResultOf(store.get(olderKey(b"k", d0))))
        self.assertIsNotNone(self.successResultOf(store.get(olderKey(b"k", da))))
        held = self.successResultOf(loadAlternates(store, h, KEY, h.older(KEY)))
        self.assertEqual(held, {db: b, da: a})
        self.successResultOf(store.delete(olderKey(KEY, da)))
        held = self.successResultOf(loadAlternates(store, h, KEY, h.older(KEY)))
        self.assertEqual(held, {db: b})
        self.assertEqual(h.older(KEY), [db])

    def test_storedBasesChecked(self) -> None:
        """
        The origin role uses only the named versions it holds whose bytes
        match their digest.
        """
        store = MemoryVersionStore(clock=Clock())
        a, b = b"version a", b"version b"
        da, db = versionDigest(a), versionDigest(b)
        store.set(da.encode(), a)
        store.set(db.encode(), b"tampered")
        self.assertEqual(
            self.successResultOf(storedBases(store, [da, db, C])), [(da, a)]
        )
