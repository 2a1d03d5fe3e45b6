"""
Encoded deltas reused: many edges ask the origin role for the same (base,
target) pair (each holds the version before, the page changed once). The
first answer is encoded at the level the budget allows
(L{railgun.delta.codec.ZstdPatchCodec.levelFor}) and kept; then the pair is
encoded again at the best level in a thread, off every request's path, and
that smaller delta replaces it, so the next edge asking gets it at no cost.

Kept in process memory (bounded by count and bytes) and, when the origin
role's store is shared (memcached), there too, so the origin roles behind
one memcached share them.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from attrs import define, field
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from railgun.delta.codec import releasingWhenDone

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorFromThreads
    from twisted.python.threadpool import ThreadPool

    from railgun.stores.interfaces import IVersionStore

log = Logger()


def deltaKey(codec: str, base: str, target: str) -> bytes:
    """
    The store key of the delta from version C{base} to version C{target}
    made with C{codec} (no space or control character: a valid memcached
    key).
    """
    return f"delta-{codec}-{base}-{target}".encode("ascii")


@define
class _Kept:
    """
    Deltas by key with their level, least recently used dropped past
    C{maxItems} entries or C{maxBytes} bytes of deltas.
    """

    maxItems: int
    maxBytes: int
    _items: OrderedDict[bytes, tuple[int, bytes]] = field(factory=OrderedDict)
    _bytes: int = 0

    def get(self, key: bytes) -> tuple[int, bytes] | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: bytes, value: tuple[int, bytes]) -> None:
        if len(value[1]) > self.maxBytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= len(old[1])
        self._items[key] = value
        self._bytes += len(value[1])
        while len(self._items) > self.maxItems or self._bytes > self.maxBytes:
            _, dropped = self._items.popitem(last=False)
            self._bytes -= len(dropped[1])


@define
class DeltaReuse:
    """
    Recent encoded deltas by (codec, base digest, target digest), with the
    level they were made at.

    @ivar store: the origin role's version store, shared when it is
        memcached: deltas are written there too (L{None}: memory only).
    @ivar shared: whether C{store} is worth asking on a miss in memory
        (another process may have put the delta there).
    @ivar upgrades: re-encodes at the best level started (for tests and
        statistics).
    """

    reactor: IReactorFromThreads
    threadpool: ThreadPool
    store: IVersionStore | None = None
    shared: bool = False
    maxItems: int = 1024
    maxBytes: int = 16 * 1024 * 1024
    upgrades: int = 0
    _kept: _Kept = field(init=False)
    _pending: set[bytes] = field(factory=set, init=False)

    def __attrs_post_init__(self) -> None:
        self._kept = _Kept(self.maxItems, self.maxBytes)

    def get(self, codec: str, base: str, target: str) -> Deferred[bytes | None]:
        """
        @return: a L{Deferred} firing with the kept delta from C{base} to
            C{target}, or L{None}.
        """
        key = deltaKey(codec, base, target)
        kept = self._kept.get(key)
        if kept is not None:
            return succeed(kept[1])
        if not self.shared or self.store is None:
            return succeed(None)

        def fromStore(value: bytes | None) -> bytes | None:
            if not value:
                return None
            self._kept.put(key, (value[0], value[1:]))
            return value[1:]

        d = self.store.get(key)
        d.addCallback(fromStore)
        return d

    def encoded(
        self,
        codec: Any,
        baseDigest: str,
        base: bytes,
        targetDigest: str,
        target: bytes,
        delta: bytes,
        level: int = 0,
    ) -> None:
        """
        A delta was made and sent: keep it, with the level it was made at.

        @param codec: the L{railgun.delta.codec.ZstdPatchCodec} that made
            C{delta}; codecs without levels are kept as they are.
        @param level: the level C{delta} was made at (0: not known, then
            the one the codec would choose now).
        """
        key = deltaKey(codec.name, baseDigest, targetDigest)
        best = getattr(codec, "bestLevel", None)
        if not level and best is not None:
            level = codec.levelFor(base, len(target))
        self._keep(key, level, delta)

    def reused(
        self,
        codec: Any,
        baseDigest: str,
        base: bytes,
        targetDigest: str,
        target: bytes,
        delta: bytes,
    ) -> None:
        """
        A kept delta was sent again: the pair is in demand, so unless it was
        made at the codec's best level, make that one in the thread pool and
        keep it instead when smaller, for the next edges asking. Counted as
        one of the codec's best-level encodes (C{reserveBest}), and not
        started while they are all taken.

        Not at the first answer: measured (C{python -m bench.deltas},
        2026-12-03), re-encoding every delta at level 19 tripled the CPU per
        fetch (9.5 to 31 ms; 740 KB pages take ~190 ms at level 19) for
        pairs that, with one edge, are never asked again.
        """
        key = deltaKey(codec.name, baseDigest, targetDigest)
        kept = self._kept.get(key)
        level = kept[0] if kept is not None else 0
        best = getattr(codec, "bestLevel", None)
        if best is None or level >= best or key in self._pending:
            return
        if codec.bestBusy():
            # The one best-level encode allowed runs: the next edge asking
            # for this pair will try again.
            return
        release = codec.reserveBest()
        self._pending.add(key)
        self.upgrades += 1
        d = deferToThreadPool(
            self.reactor, self.threadpool, codec.encodeAt, base, target, best
        )
        releasingWhenDone(d, release)

        def upgraded(smaller: bytes) -> None:
            if len(smaller) < len(delta):
                self._keep(key, best, smaller)

        d.addCallback(upgraded)
        d.addErrback(lambda f: log.failure("re-encoding a delta", f))
        d.addBoth(lambda _: self._pending.discard(key))

    def _keep(self, key: bytes, level: int, delta: bytes) -> None:
        self._kept.put(key, (level, delta))
        if self.shared and self.store is not None:
            self.store.set(key, bytes([level]) + delta).addErrback(
                lambda f: log.failure("keeping a delta", f)
            )
