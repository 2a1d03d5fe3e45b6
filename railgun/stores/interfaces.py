"""
The seam between Railgun and whatever remembers versions of pages.

Both roles keep recent versions so that the origin role can send a delta:
the origin role by digest, the edge by URL key.  Both only need a bounded,
byte-keyed cache whose failures degrade to "not found" rather than errors,
which is what L{IVersionStore} describes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrs import define
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred


@define
class StoreStats:
    """
    Counters kept by a version store, for metrics and tests.

    Stores only ever increase the counters, except C{bytes} and C{items},
    which are gauges.

    @ivar hits: C{get}s that returned a value.
    @ivar misses: C{get}s that returned L{None}, including those caused by a
        store failure.
    @ivar sets: C{set}s that stored their value.
    @ivar errors: operations that failed because the store failed (server
        down, timeout, protocol error, overload); each also counts as a miss
        or an unstored set.
    @ivar evictions: items dropped to make room (memory store), or the sum
        reported by the servers at the last refresh (memcached store).
    @ivar bytes: bytes held (memory store: an estimate including overhead).
    @ivar items: items held.
    @ivar rejected: C{set}s refused because the value is larger than the
        store's per-item cap.
    """

    hits: int = 0
    misses: int = 0
    sets: int = 0
    errors: int = 0
    evictions: int = 0
    bytes: int = 0
    items: int = 0
    rejected: int = 0


class IVersionStore(Interface):
    """
    A bounded cache from byte keys to byte values.

    No method ever fails its L{Deferred}: a store that is down or slow reads
    as a miss and refuses writes, so Railgun falls back to full responses
    instead of failing requests.  Passing a key or value that is not
    L{bytes} is a programming error and raises L{TypeError} at once.
    """

    stats = Attribute("A L{StoreStats} updated as the store is used.")

    def get(key: bytes) -> Deferred[bytes | None]:
        """
        Look up a value.

        @param key: the key.
        @return: a L{Deferred} firing with the value, or L{None} when the key
            is absent, expired, evicted, unreadable, or the store failed.
        @raise TypeError: if C{key} is not L{bytes}.
        """

    def set(key: bytes, value: bytes) -> Deferred[bool]:
        """
        Store a value, replacing any previous one.

        @param key: the key.
        @param value: the value.
        @return: a L{Deferred} firing with C{True} when stored and C{False}
            when not (too large, store failure).
        @raise TypeError: if C{key} or C{value} is not L{bytes}.
        """

    def delete(key: bytes) -> Deferred[None]:
        """
        Forget a key, if present.

        @param key: the key.
        @return: a L{Deferred} firing with L{None}, also when the store
            failed.
        @raise TypeError: if C{key} is not L{bytes}.
        """


__all__ = ["IVersionStore", "StoreStats"]
