"""
Several versions per URL: a page that flips between a few variants (A B A B,
or back to the one seen two steps ago) costs a few bytes when the origin role
may answer against any recent version the edge holds, not only the latest.

The edge keeps the latest version of a URL under its cache key (as before)
and up to C{keep - 1} older distinct ones under L{olderKey}; L{VersionHistory}
remembers which, per URL. It names the latest in C{railgun-base} and the
older ones it still holds in C{railgun-bases}. The origin role answers
C{same} when the fresh body is any of them and otherwise encodes against the
latest, or, when it no longer holds that one, against the older one
L{chooseBase} estimates best, naming it in C{railgun-base-used}. Bookkeeping, and the edge's store reads and writes
through L{IVersionStore} (L{loadAlternates}, L{keepOlder}); no clock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from attrs import define, field
from twisted.internet.defer import Deferred, gatherResults

from railgun.delta.digest import isValidDigest, versionDigest
from railgun.delta.siblings import commonPrefixLength

if TYPE_CHECKING:
    from railgun.stores.interfaces import IVersionStore

MAX_BASES = 8
"""
Most older versions an edge may name in C{railgun-bases}; the origin role
ignores any beyond (each one named may cost it a store read).
"""


def olderKey(cacheKey: bytes, digest: str) -> bytes:
    """
    The edge store's key of an older version of the URL C{cacheKey}.
    """
    return cacheKey + b" #" + digest.encode("ascii")


def formatBases(digests: Sequence[str]) -> bytes:
    """
    @return: the C{railgun-bases} header value naming C{digests}.
    """
    return ", ".join(digests).encode("ascii")


def parseBases(value: bytes | None) -> list[str]:
    """
    The digests named in a C{railgun-bases} header value: at most
    L{MAX_BASES}, invalid ones and repeats dropped (a peer's input).
    """
    if not value:
        return []
    out: list[str] = []
    for item in value.split(b","):
        item = item.strip()
        if isValidDigest(item):
            digest = item.decode("ascii")
            if digest not in out:
                out.append(digest)
        if len(out) >= MAX_BASES:
            break
    return out


def similarity(a: bytes, b: bytes) -> int:
    """
    A cheap estimate of how well C{a} encodes against C{b}: the bytes they
    share at the start and at the end, less the difference of their sizes
    (a memory comparison, no compression).
    """
    prefix = commonPrefixLength(a, b)
    rest = min(len(a), len(b)) - prefix
    suffix = commonPrefixLength(a[::-1][:rest], b[::-1][:rest]) if rest else 0
    return prefix + suffix - abs(len(a) - len(b))


def chooseBase(
    body: bytes, candidates: Sequence[tuple[str, bytes]], latest: str | None = None
) -> tuple[str, bytes] | None:
    """
    The candidate base to encode C{body} against: the edge's latest version
    when it is among them, else the one with the highest L{similarity} (the
    first on ties).

    Measured (C{python -m bench.deltas}, 2026-12-03): choosing by
    L{similarity} among all of them sent more bytes than the latest alone on
    9 of 19 real sequences (+70% on one: a long shared prefix and suffix
    says little about the middle), so an older version is used only when the
    body is identical to it (C{same}, decided before this) or when the
    origin role no longer holds the latest.

    @param candidates: (digest, body) pairs the origin role holds.
    @param latest: the digest of the edge's latest version.
    """
    for candidate in candidates:
        if candidate[0] == latest:
            return candidate
    best: tuple[str, bytes] | None = None
    bestScore = 0
    for candidate in candidates:
        score = similarity(body, candidate[1])
        if best is None or score > bestScore:
            best, bestScore = candidate, score
    return best


@define
class VersionHistory:
    """
    Per URL key, the digests of the older distinct versions the edge keeps
    (newest first), besides the latest. Bounded: C{keep - 1} digests per
    URL and C{maxURLs} URLs, least recently used dropped first (their older
    versions then age out of the store by themselves).

    @ivar keep: versions kept per URL, the latest included; 1 keeps no
        older one.
    """

    keep: int = 4
    maxURLs: int = 65536
    _older: OrderedDict[bytes, list[str]] = field(factory=OrderedDict, init=False)

    def __attrs_post_init__(self) -> None:
        if self.keep < 1 or self.maxURLs < 1:
            raise ValueError("VersionHistory needs room for one version of one URL")

    def older(self, cacheKey: bytes) -> list[str]:
        """
        @return: the older versions' digests of C{cacheKey}, newest first.
        """
        return list(self._older.get(cacheKey, ()))

    def replaced(
        self, cacheKey: bytes, previous: str | None, latest: str
    ) -> tuple[str | None, list[str]]:
        """
        Note that the latest version of C{cacheKey} is now C{latest}, the
        one before it having been C{previous} (L{None} when there was none).

        @return: the digest of C{previous} when the caller should now keep
            it under L{olderKey} (it is not yet kept there), else L{None};
            and the digests of older versions no longer kept, whose copies
            under L{olderKey} the caller should delete (past the count, or
            C{latest} itself, now kept as the latest).
        """
        if self.keep < 2:
            return None, []
        digests = self._older.pop(cacheKey, [])
        dropped = []
        if latest in digests:
            digests.remove(latest)
            dropped.append(latest)
        store = None
        if previous is not None and previous != latest:
            if previous in digests:
                digests.remove(previous)
            else:
                store = previous
            digests.insert(0, previous)
        dropped += digests[self.keep - 1 :]
        del digests[self.keep - 1 :]
        if digests:
            self._older[cacheKey] = digests
            while len(self._older) > self.maxURLs:
                self._older.popitem(last=False)
        return store, dropped

    def forget(self, cacheKey: bytes, digest: str) -> None:
        """
        The older version C{digest} of C{cacheKey} is no longer in the
        store: do not name it again.
        """
        digests = self._older.get(cacheKey)
        if digests is not None and digest in digests:
            digests.remove(digest)
            if not digests:
                del self._older[cacheKey]

    def __len__(self) -> int:
        return len(self._older)


def loadAlternates(
    store: IVersionStore,
    history: VersionHistory,
    cacheKey: bytes,
    digests: Sequence[str],
) -> Deferred[dict[str, bytes]]:
    """
    Read the older versions C{digests} of C{cacheKey} from the edge's
    store; those gone (evicted) or not matching their key are forgotten.

    @return: a L{Deferred} firing with digest -> body of those held, in
        the order named (newest first).
    """

    def got(values: list[bytes | None]) -> dict[str, bytes]:
        held: dict[str, bytes] = {}
        for digest, value in zip(digests, values, strict=True):
            if value is not None and value[:32] == digest.encode("ascii"):
                held[digest] = value[32:]
            else:
                history.forget(cacheKey, digest)
        return held

    reads = [store.get(olderKey(cacheKey, digest)) for digest in digests]
    return gatherResults(reads, consumeErrors=True).addCallback(got)


def keepOlder(
    store: IVersionStore,
    history: VersionHistory,
    cacheKey: bytes,
    previous: tuple[str, bytes] | None,
    latest: str,
) -> None:
    """
    The edge stored C{latest} as the version of C{cacheKey}, replacing
    C{previous} (the URL's own former latest version, digest and body, or
    L{None}): keep C{previous} as an older version, bounded by the
    history's count (and the store's bytes, which evict as they do), and
    delete the older copies no longer kept.
    """
    keep, dropped = history.replaced(
        cacheKey, previous[0] if previous else None, latest
    )
    for digest in dropped:
        store.delete(olderKey(cacheKey, digest))
    if keep is not None and previous is not None:
        writing = store.set(
            olderKey(cacheKey, keep), keep.encode("ascii") + previous[1]
        )

        def written(stored: bool) -> None:
            if not stored:
                history.forget(cacheKey, keep)

        writing.addCallbacks(written, lambda _: history.forget(cacheKey, keep))


async def storedBases(
    store: IVersionStore, digests: Sequence[str]
) -> list[tuple[str, bytes]]:
    """
    The origin role's copies of the versions C{digests} (older versions an
    edge named in C{railgun-bases}), each checked against its digest; those
    missing are left out.
    """
    reads = [store.get(digest.encode("ascii")) for digest in digests]
    values = await gatherResults(reads, consumeErrors=True)
    return [
        (digest, value)
        for digest, value in zip(digests, values, strict=True)
        if value is not None and versionDigest(value) == digest
    ]
