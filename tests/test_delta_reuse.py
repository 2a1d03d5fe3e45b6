"""
Tests for L{railgun.delta.reuse}: encoded deltas kept by (base, target)
and made again at the best level off the request's path.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from railgun.delta.codec import ZstdPatchCodec
from railgun.delta.digest import versionDigest
from railgun.delta.reuse import DeltaReuse, deltaKey
from railgun.stores.memory import MemoryVersionStore
from tests.test_delta_codec import page


class _Pool:
    """
    A thread pool that runs each call at once and records it.
    """

    def __init__(self) -> None:
        self.calls: list[object] = []

    def callInThreadWithCallback(self, onResult, f, *a, **kw):
        self.calls.append(f)
        onResult(True, f(*a, **kw))


class _Reactor:
    def callFromThread(self, f, *a, **kw):
        f(*a, **kw)


def _pair() -> tuple[bytes, bytes]:
    base = page(60, 60_000)
    target = base[:20_000] + page(61, 3_000) + base[20_000:50_000] + page(62, 500)
    return base, target


class DeltaReuseTests(SynchronousTestCase):
    """
    Tests for L{DeltaReuse}.
    """

    def test_keptAndUpgraded(self) -> None:
        """
        A delta sent at level 9 is kept; when it is sent again it is made
        again at level 19 in the thread pool (once), and the smaller one is
        what the next request gets.
        """
        codec = ZstdPatchCodec()
        base, target = _pair()
        nine, best = codec.encode(base, target), ZstdPatchCodec(19).encode(base, target)
        self.assertLess(len(best), len(nine))
        pool = _Pool()
        reuse = DeltaReuse(_Reactor(), pool)
        db, dt = versionDigest(base), versionDigest(target)
        self.assertIsNone(self.successResultOf(reuse.get(codec.name, db, dt)))
        reuse.encoded(codec, db, base, dt, target, nine)
        # Asked once: kept as made, nothing more spent on it.
        self.assertEqual(pool.calls, [])
        kept = self.successResultOf(reuse.get(codec.name, db, dt))
        self.assertEqual(kept, nine)
        # Asked again: made at level 19 for the next ones.
        reuse.reused(codec, db, base, dt, target, kept)
        self.assertEqual(len(pool.calls), 1)
        self.assertEqual(reuse.upgrades, 1)
        self.assertEqual(self.successResultOf(reuse.get(codec.name, db, dt)), best)
        reuse.reused(codec, db, base, dt, target, best)
        self.assertEqual(len(pool.calls), 1)
        self.assertEqual(codec.decode(base, best, len(target)), target)

    def test_upgradeTakesTheGate(self) -> None:
        """
        A re-encode at the best level counts as the codec's one best-level
        encode while it runs, and none is started while that one is taken:
        requests and upgrades never make two level-19 encodes at once.
        """
        codec = ZstdPatchCodec(budget=0.030)
        base, target = _pair()
        nine = codec.encodeAt(base, target, 9)
        held: list[tuple[object, object, tuple]] = []

        class _Held:
            def callInThreadWithCallback(self, onResult, f, *a, **kw):
                held.append((onResult, f, a))

        reuse = DeltaReuse(_Reactor(), _Held())
        db, dt = versionDigest(base), versionDigest(target)
        reuse.encoded(codec, db, base, dt, target, nine, 9)
        release = codec.reserveBest()
        reuse.reused(codec, db, base, dt, target, nine)
        self.assertEqual((held, reuse.upgrades), ([], 0))
        release()
        reuse.reused(codec, db, base, dt, target, nine)
        self.assertEqual(len(held), 1)
        self.assertTrue(codec.bestBusy())
        self.assertEqual(codec.levelFor(base, len(target)), 9)
        onResult, f, a = held.pop()
        onResult(True, f(*a))
        self.assertFalse(codec.bestBusy())

    def test_bestLevelNotAgain(self) -> None:
        """
        A delta already made at the best level is kept as is, with no
        re-encode.
        """
        codec = ZstdPatchCodec(19)
        base, target = _pair()
        delta = codec.encode(base, target)
        pool = _Pool()
        reuse = DeltaReuse(_Reactor(), pool)
        db, dt = versionDigest(base), versionDigest(target)
        reuse.encoded(codec, db, base, dt, target, delta)
        reuse.reused(codec, db, base, dt, target, delta)
        self.assertEqual(pool.calls, [])
        self.assertEqual(self.successResultOf(reuse.get(codec.name, db, dt)), delta)

    def test_sharedStore(self) -> None:
        """
        With a shared store, another process's DeltaReuse finds the delta
        there (written with its level).
        """
        store = MemoryVersionStore(clock=Clock())
        codec = ZstdPatchCodec(19)
        base, target = _pair()
        delta = codec.encode(base, target)
        db, dt = versionDigest(base), versionDigest(target)
        DeltaReuse(_Reactor(), _Pool(), store, shared=True).encoded(
            codec, db, base, dt, target, delta
        )
        stored = self.successResultOf(store.get(deltaKey(codec.name, db, dt)))
        self.assertEqual(stored, bytes([19]) + delta)
        other = DeltaReuse(_Reactor(), _Pool(), store, shared=True)
        self.assertEqual(self.successResultOf(other.get(codec.name, db, dt)), delta)
        # Not shared: the store is not asked.
        alone = DeltaReuse(_Reactor(), _Pool(), store)
        self.assertIsNone(self.successResultOf(alone.get(codec.name, db, dt)))

    def test_bounded(self) -> None:
        """
        Past its count or bytes, the least recently used delta is dropped;
        one larger than the byte bound is not kept.
        """
        codec = ZstdPatchCodec(19)
        reuse = DeltaReuse(_Reactor(), _Pool(), maxItems=2, maxBytes=10)
        for n in range(3):
            reuse.encoded(codec, "b", b"", f"t{n}", b"", b"%d" % n)
        reuse.encoded(codec, "b", b"", "big", b"", b"x" * 11)
        found = [
            self.successResultOf(reuse.get(codec.name, "b", t))
            for t in ("t0", "t1", "t2", "big")
        ]
        self.assertEqual(found, [None, b"1", b"2", None])
