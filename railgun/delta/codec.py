"""
Delta and whole-body codecs for versions sent over the link.

The origin role encodes a fresh page against the version the edge holds
(L{IDeltaCodec}), or compresses it whole when the edge holds nothing usable
(L{IFullCodec}). The edge decodes. Decoding input comes from a peer, so every
decode is bounded by a caller-given C{maxSize} and reports any failure as
L{DeltaError}, never as another exception and never after allocating more
than the frame header announced (itself checked against C{maxSize} first).

The codec and its level were chosen by measurement on real successive
versions of real pages; see C{docs/benchmarks.md}, section "Codec".
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import zstandard
from attrs import define, field
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from zope.interface import Attribute, Interface, implementer

from railgun._compat import zstd as _zstd

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorFromThreads
    from twisted.python.threadpool import ThreadPool

_T = TypeVar("_T")

ENCODE_IN_THREAD_ABOVE = 256 * 1024
"""
Targets larger than this many bytes are encoded in a thread pool rather than
on the reactor thread: above it, one cold encode at the default level takes
over ~1 ms (3 ms for a 740 KB page) on the measured machine, below it the
thread hop is not worth it (C{docs/benchmarks.md}, "Codec"). zstandard
releases the GIL while it hashes the base and compresses, so the reactor
keeps running meanwhile.
"""

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_WINDOWLOG_MIN = 10
_WINDOWLOG_MAX = 31
# Estimated cost of one cached prepared dictionary beyond its base: the hash
# and chain tables, four bytes per entry.
_TABLE_ENTRY_BYTES = 4

BEST_LEVEL = 19
"""
The level a budget buys when it can: on the corpus it comes within 0.5% of
C{zstd --ultra -22 --long --patch-from} (C{docs/benchmarks.md}, "Codec").
"""

BEST_COLD_SECONDS_PER_BYTE = 70e-9
"""
Estimated CPU time of a level-19 encode per byte of base and target when the
base is not hashed yet (measured on the corpus: 31-62 ns for pages up to
160 KB, 133-138 ns for the 580-740 KB ones; C{python -m bench.codec},
"Encode time per level").
"""

BEST_WARM_SECONDS_PER_BYTE = 35e-9
"""
Estimated CPU time of a level-19 encode per target byte against a prepared
base (L{ZstdPatchCodec.prepare}): 28-30 ns per byte measured for the
corpus' pages up to 740 KB, 84 ns for a page that changed by a tenth
(C{docs/benchmarks.md}, "Prepared bases").
"""

BEST_ATTACHED_SECONDS_PER_BYTE = 250e-9
"""
Estimated CPU time of a level-19 encode per target byte against a prepared
base searched in place (L{_zstd.PreparedBase.compress}, C{attach}), at its
slowest: 1.1-3 times the copied tables' time where a page changed little,
up to 250 ns per byte where it changed by a tenth (a 740 KB page: 182 ms);
for deltas 0.1-1.4% smaller. Used when even that fits the budget (pages up
to ~120 KB with 30 ms).
"""

OVERRUN = 4.0
"""
A best-level frame a request waits for is abandoned, and the delta made at
the fixed level instead, once it took this many times the encode-time
budget of CPU. The estimates hold for a page and its next version when it
changed by a few percent (within the budget on every pair of the corpus);
pages that changed by a tenth take up to twice as long (the largest of the
measured: 65 ms for a 740 KB page, 82 ms for a 250 KB JSON), and a page that
shares little with its base (a sibling, or a page rewritten) 6-8 times. At
2 times, 65 of 399 pairs of one unseen JSON sequence were abandoned, for 13%
more bytes; at 4 times, none of the measured pairs of related versions.
"""

BEST_FROM = 48 * 1024
"""
Pages smaller than this get the fixed level even when level 19 fits the
budget: there, level 19 saves tens of bytes per delta (the corpus' pages
under 48 KB: 2-5%, 80 bytes on average) for 1-3 ms more on the request's
path, which over a WAN is the worse trade (C{docs/benchmarks.md}, "Before
and after (issue 14)").
"""

PREPARED_BYTES = 64 * 1024 * 1024
"""
Default bound on the memory prepared bases take (libzstd's own count): a
740 KB page hashed at level 19 takes 17.5 MB, a 100 KB one about 2.5 MB.
"""


class DeltaError(Exception):
    """
    A delta or compressed body could not be decoded: corrupt, truncated,
    trailing garbage, made for another dictionary, or announcing (or
    producing) more than the allowed size.
    """


class IDeltaCodec(Interface):
    """
    Encodes a version as the difference from an earlier version (the base)
    and rebuilds it from the base and that difference.
    """

    name = Attribute("Wire name of the codec (C{str}), announced in HELLO.")

    def encode(base: bytes, target: bytes) -> bytes:
        """
        Encode C{target} against C{base}.

        @param base: the version the decoding side holds (may be empty).
        @param target: the version to send.
        @return: the delta.
        """

    def decode(base: bytes, delta: bytes, maxSize: int) -> bytes:
        """
        Rebuild a version from C{base} and a C{delta} received from a peer.

        A delta decoded against the wrong base may yield wrong bytes without
        any error: callers check the result with
        L{railgun.delta.digest.versionDigest}.

        @param base: the version the delta was made against.
        @param delta: the delta as received.
        @param maxSize: largest acceptable result, in bytes.
        @return: the rebuilt version.
        @raise DeltaError: on any corrupt input or a result over C{maxSize}.
        """


class IFullCodec(Interface):
    """
    Compresses a whole body, for versions sent without a base.
    """

    name = Attribute("Wire name of the codec (C{str}), announced in HELLO.")

    def compress(body: bytes) -> bytes:
        """
        Compress C{body}.

        @param body: the body in identity encoding.
        @return: the compressed body.
        """

    def decompress(data: bytes, maxSize: int) -> bytes:
        """
        Decompress a body received from a peer.

        @param data: the compressed body.
        @param maxSize: largest acceptable result, in bytes.
        @return: the body.
        @raise DeltaError: on any corrupt input or a result over C{maxSize}.
        """


def _windowLog(size: int) -> int:
    """
    Smallest window log whose window covers C{size} bytes of history.

    @param size: bytes the encoder must be able to reach back over.
    @return: a window log within zstd's limits.
    """
    return min(_WINDOWLOG_MAX, max(_WINDOWLOG_MIN, size.bit_length()))


def _maxWindow(base: bytes, maxSize: int) -> int:
    """
    Window size to allow a decoder: enough for any honest frame over C{base}
    and a result of at most C{maxSize}, and no more.
    """
    return 1 << _windowLog(len(base) + max(0, maxSize))


def _zstdDecodeFrame(
    dctx: zstandard.ZstdDecompressor,
    data: bytes,
    maxSize: int,
    magicless: bool = False,
) -> bytes:
    """
    Decode exactly one zstd frame that announces its content size.

    The size is read from the frame header and checked against C{maxSize}
    before the output buffer is allocated; zstd then checks that the frame
    produces exactly that many bytes.

    @param magicless: the frame has no magic number (and so can be no
        skippable or legacy frame); C{dctx} must read that format.
    @raise DeltaError: on anything but one well-formed frame of at most
        C{maxSize} bytes.
    """
    if not magicless and data[:4] != _ZSTD_MAGIC:
        # Skippable frames and legacy formats would "decode" to nothing.
        raise DeltaError("not a zstd frame")
    try:
        params = zstandard.get_frame_parameters(
            data,
            format=zstandard.FORMAT_ZSTD1_MAGICLESS
            if magicless
            else zstandard.FORMAT_ZSTD1,
        )
    except zstandard.ZstdError as e:
        raise DeltaError(f"not a zstd frame: {e}") from e
    size = params.content_size
    if size == zstandard.CONTENTSIZE_UNKNOWN:
        raise DeltaError("zstd frame does not announce its content size")
    if size > maxSize:
        raise DeltaError(f"zstd frame announces {size} bytes, over {maxSize}")
    if params.dict_id != 0:
        raise DeltaError(f"zstd frame needs dictionary {params.dict_id}")
    try:
        if size == 0:
            # decompress() returns early for an empty frame without reading
            # it; a stream decoder checks the frame and what follows it.
            obj = dctx.decompressobj()
            out = obj.decompress(data)
            if not obj.eof or obj.unused_data:
                raise DeltaError("truncated zstd frame or trailing data")
        else:
            out = dctx.decompress(data, allow_extra_data=False)
    except DeltaError:
        raise
    except Exception as e:
        raise DeltaError(f"corrupt zstd frame: {e}") from e
    if len(out) != size:
        raise DeltaError(f"zstd frame produced {len(out)} bytes, announced {size}")
    return out


@define
class _CompressorCache:
    """
    A small LRU of zstd compressors that have hashed a base, keyed by base
    and level.

    Hashing a 700 KB base costs more than compressing the target against it,
    and several edges (or lanes) asking against the same version reuse it. A
    compressor is not thread-safe, so L{take} removes it and L{give} puts it
    back: two threads encoding against one base each get their own. Bounded
    by an estimate of the bytes held; the lock makes it safe to use from the
    thread pool the origin role encodes large pages in.
    """

    _maxBytes: int
    _entries: OrderedDict[
        tuple[bytes, int], tuple[zstandard.ZstdCompressor, int, int]
    ] = field(factory=OrderedDict)
    _size: int = 0
    _lock: threading.Lock = field(factory=threading.Lock)

    def holds(self, base: bytes, level: int, windowLog: int) -> bool:
        """
        Whether a compressor for C{base} at C{level} with a window of at
        least C{windowLog} is kept (and not taken by another thread).
        """
        with self._lock:
            entry = self._entries.get((base, level))
            return entry is not None and entry[1] >= windowLog

    def take(
        self, base: bytes, level: int, windowLog: int
    ) -> tuple[zstandard.ZstdCompressor, int] | None:
        """
        Remove and return the compressor for C{base} at C{level} and its
        cost, if there is one whose window is at least C{windowLog}.
        """
        with self._lock:
            key = (base, level)
            entry = self._entries.get(key)
            if entry is None or entry[1] < windowLog:
                return None
            del self._entries[key]
            self._size -= entry[2]
            return entry[0], entry[2]

    def give(
        self,
        base: bytes,
        cctx: zstandard.ZstdCompressor,
        windowLog: int,
        cost: int,
        level: int,
    ) -> None:
        """
        Keep C{cctx} for C{base} at C{level}, dropping the least recently
        used entries to stay within budget.
        """
        if cost > self._maxBytes:
            return
        with self._lock:
            key = (base, level)
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= old[2]
            self._entries[key] = (cctx, windowLog, cost)
            self._size += cost
            while self._size > self._maxBytes:
                _, (_, _, oldCost) = self._entries.popitem(last=False)
                self._size -= oldCost

    def __len__(self) -> int:
        return len(self._entries)


@define
class _PreparedBases:
    """
    Bases hashed at the best level (L{_zstd.PreparedBase}), least recently
    used dropped past C{maxBytes} of libzstd's own count. Thread-safe: bases
    are prepared in a background thread and used from the thread pool.
    """

    maxBytes: int
    _entries: OrderedDict[bytes, _zstd.PreparedBase] = field(factory=OrderedDict)
    _size: int = 0
    lock: threading.Lock = field(factory=threading.Lock)

    def get(self, base: bytes, windowLog: int) -> _zstd.PreparedBase | None:
        """
        The prepared C{base} whose window reaches at least C{windowLog}.
        """
        with self.lock:
            prepared = self._entries.get(base)
            if prepared is None or prepared.windowLog < windowLog:
                return None
            self._entries.move_to_end(base)
            return prepared

    def put(self, base: bytes, prepared: _zstd.PreparedBase) -> bool:
        """
        Keep C{prepared}, dropping the least recently used past the bound.

        @return: whether it was kept (not when larger than the bound).
        """
        if prepared.size > self.maxBytes:
            return False
        with self.lock:
            old = self._entries.pop(base, None)
            if old is not None:
                self._size -= old.size
            self._entries[base] = prepared
            self._size += prepared.size
            while self._size > self.maxBytes:
                _, dropped = self._entries.popitem(last=False)
                self._size -= dropped.size
        return True

    @property
    def size(self) -> int:
        """
        Bytes the prepared bases take.
        """
        return self._size

    def __len__(self) -> int:
        return len(self._entries)


@implementer(IDeltaCodec)
@define
class ZstdPatchCodec:
    """
    zstd with the base as a raw-content prefix dictionary, like
    C{zstd --patch-from}: the window covers base and target, the content size
    is written in the frame (and checked on decode), no checksum (the version
    digest already checks the result, end to end).

    The default, level 9 with C{searchLog} raised to 6, was measured to send
    7.8% more than C{zstd --ultra -22 --long --patch-from} (1/49 of gzip) at
    about 210 MB/s; level 19 matches it at about 9 MB/s.

    @ivar name: wire name: C{"zstd-patch"}, or C{"zstd-delta"} for frames
        without the 4-byte magic number (C{magicless}: the response's head
        already names the codec); the level does not change the format, so
        any level decodes with any other.
    @ivar _level: zstd compression level (1..22) for encoding.
    @ivar _searchLog: lower bound on zstd's search log, or C{None} to take
        the level's own.
    @ivar _cacheBytes: budget (estimated bytes) for compressors kept with
        their hashed base, reused when the next encode uses the same base;
        0 keeps none.
    @ivar _cache: compressors for bases encoded against recently.
    """

    _level: int = 9
    _searchLog: int | None = 6
    _cacheBytes: int = 32 * 1024 * 1024
    _largeLevel: int | None = None
    _largeAbove: int = 256 * 1024
    _budget: float | None = None
    _bestLevel: int = BEST_LEVEL
    _preparedBytes: int = PREPARED_BYTES
    _maxBestInFlight: int = 1
    _magicless: bool = False
    _bestFrom: int = BEST_FROM
    name: str = field(default="zstd-patch", init=False)
    _cache: _CompressorCache = field(init=False)
    _prepared: _PreparedBases = field(init=False)
    _bestInFlight: int = field(default=0, init=False)
    abandoned: int = field(default=0, init=False)
    _tooLargeFrom: float = field(default=float("inf"), init=False)

    def __attrs_post_init__(self) -> None:
        if self._budget is not None and self._budget < 0:
            raise ValueError(f"encode budget {self._budget} is negative")
        for level in (self._level, self._largeLevel or self._level, self._bestLevel):
            if not 1 <= level <= zstandard.MAX_COMPRESSION_LEVEL:
                raise ValueError(f"zstd level {level} out of range")
        if self._maxBestInFlight < 0:
            raise ValueError(f"{self._maxBestInFlight} best-level encodes at once")
        self._cache = _CompressorCache(self._cacheBytes)
        self._prepared = _PreparedBases(self._preparedBytes)
        if self._magicless:
            self.name = "zstd-delta"

    def _levelFor(self, baseSize: int) -> int:
        """
        The level for a base of C{baseSize} bytes: C{_largeLevel}, when set,
        above C{_largeAbove}. Large pages are where the fast level loses most
        against the best delta (15-37% on the corpus' 600-740 KB pages,
        against 0-7% below 256 KB), but at level 19 they cost ~100 ms each,
        which a fetch waits for; not the default. Chosen by the base, so
        that a cached compressor always matches.
        """
        if self._largeLevel is not None and baseSize > self._largeAbove:
            return self._largeLevel
        return self._level

    @property
    def bestLevel(self) -> int:
        """
        The level the budget buys when it can, and deltas kept for reuse
        are made again at (L{railgun.delta.reuse}).
        """
        return self._bestLevel

    def estimateBest(self, base: bytes, targetSize: int) -> float:
        """
        Estimated CPU seconds of encoding a target of C{targetSize} bytes
        against C{base} at the best level: the base's hashing is counted
        unless it is prepared (L{prepare}).

        @param base: the base the delta would be made against.
        @param targetSize: the target's size in bytes.
        """
        if self._prepared.get(base, self._windowFor(base, targetSize)) is not None:
            return targetSize * BEST_WARM_SECONDS_PER_BYTE
        return (len(base) + targetSize) * BEST_COLD_SECONDS_PER_BYTE

    def levelFor(self, base: bytes, targetSize: int) -> int:
        """
        The level to encode a target of C{targetSize} bytes against C{base}
        at: with an encode-time budget, the best level when its estimated
        time (L{estimateBest}) fits in the budget and fewer than
        C{_maxBestInFlight} best-level encodes run (L{reserveBest}): when
        requests come together the CPU is not spare, and the fixed level
        answers them sooner; and the page is at least C{_bestFrom} bytes
        (L{BEST_FROM}). Else, and without a budget, the fixed level
        (L{_levelFor}).
        """
        if (
            self._budget is not None
            and base
            and targetSize >= self._bestFrom
            and not self.bestBusy()
            and self.estimateBest(base, targetSize) <= self._budget
        ):
            return self._bestLevel
        return self._levelFor(len(base))

    def reserveBest(self) -> Callable[[], None]:
        """
        Count a best-level encode as running until the returned function is
        called (once). For one thread: the origin role calls both on its
        reactor thread, around an encode it runs in the thread pool.
        """
        self._bestInFlight += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._bestInFlight -= 1

        return release

    def prepare(self, base: bytes) -> bool:
        """
        Hash C{base} at the best level now and keep it, so that the next
        target encoded against it (a fresh version of the same page, usually
        its size) costs only its own share (L{BEST_WARM_SECONDS_PER_BYTE})
        and fits the budget at the best level. Meant for a background
        thread, off every request's path: the origin role calls it for each
        new version it stores (L{railgun.delta.preparer}).

        @return: whether a base was prepared (not when L{shouldPrepare}
            says no).
        """
        if not self.shouldPrepare(base):
            return False
        return self._prepare(base) is not None

    def _prepare(self, base: bytes) -> _zstd.PreparedBase | None:
        """
        Hash C{base} at the best level and keep it if it fits the bound.

        @return: the prepared base, L{None} when it was not kept.
        """
        windowLog = self._windowFor(base, len(base))
        prepared = _zstd.PreparedBase(base, self._bestLevel, windowLog, len(base))
        if self._prepared.put(base, prepared):
            return prepared
        with self._prepared.lock:
            self._tooLargeFrom = min(self._tooLargeFrom, len(base))
        return None

    def shouldPrepare(self, base: bytes) -> bool:
        """
        Whether L{prepare} would do anything for C{base}: only with a budget
        that a target of the base's size would fit once it is prepared, when
        no base as large was too large for C{_preparedBytes} (the tables
        grow with the base), and when it is not prepared yet. Cheap, so a caller decides on its own thread
        whether to start one in another.
        """
        if not (
            _zstd.AVAILABLE
            and self._budget is not None
            and len(base) >= max(1, self._bestFrom)
            and len(base) * BEST_WARM_SECONDS_PER_BYTE <= self._budget
        ):
            return False
        return (
            len(base) < self._tooLargeFrom
            and self._prepared.get(base, self._windowFor(base, len(base))) is None
        )

    @property
    def preparedBytes(self) -> int:
        """
        Bytes the prepared bases take now (for statistics).
        """
        return self._prepared.size

    @staticmethod
    def _windowFor(base: bytes, targetSize: int) -> int:
        # The window is sized for a target up to twice the base, so a cached
        # compressor fits the next version of the same page too.
        return _windowLog(len(base) + max(targetSize, 2 * len(base)))

    def _compressor(
        self, base: bytes, windowLog: int, level: int
    ) -> tuple[zstandard.ZstdCompressor, int]:
        """
        A new compressor holding C{base} as its raw-content dictionary, and
        the estimated bytes it takes.
        """
        params = self._params(2 * len(base), windowLog, level)
        # Not precomputed: the dictionary is then hashed inside compress(),
        # which releases the GIL (precompute_compress does not), so a thread
        # pool keeps the reactor free.
        cctx = zstandard.ZstdCompressor(
            dict_data=zstandard.ZstdCompressionDict(
                base, dict_type=zstandard.DICT_TYPE_RAWCONTENT
            ),
            compression_params=params,
        )
        # The compressor's tables and the dictionary's hashed copy.
        cost = len(base) + 2 * _TABLE_ENTRY_BYTES * (
            (1 << params.hash_log) + (1 << params.chain_log)
        )
        return cctx, cost

    def _params(
        self, sizeHint: int, windowLog: int, level: int | None = None
    ) -> zstandard.ZstdCompressionParameters:
        """
        Compression parameters: the level's table for an input of
        C{sizeHint} bytes (base and target together, as the CLI does), the
        window set to C{windowLog}, the search log raised to C{_searchLog}.

        For the hash-chain strategies (levels up to 12) the tables are
        capped near the input size: allocating and filling them is most of
        a cold encode; on the corpus the cap halves the time of a 700 KB
        encode and costs 0.4% in size. The binary-tree strategies of the
        high levels lose much more from it, so they keep their tables.
        """
        level = self._level if level is None else level
        p = zstandard.ZstdCompressionParameters.from_level(
            level, source_size=max(1, sizeHint)
        )
        searchLog = p.search_log
        if self._searchLog is not None and level == self._level:
            searchLog = max(searchLog, self._searchLog)
        hashLog, chainLog = p.hash_log, p.chain_log
        if p.strategy <= zstandard.STRATEGY_LAZY2:
            tableLog = _windowLog(sizeHint // 2)
            hashLog, chainLog = min(hashLog, tableLog), min(chainLog, tableLog)
        return zstandard.ZstdCompressionParameters(
            window_log=windowLog,
            chain_log=chainLog,
            hash_log=hashLog,
            search_log=searchLog,
            min_match=p.min_match,
            target_length=p.target_length,
            strategy=p.strategy,
            write_content_size=1,
            write_checksum=0,
            write_dict_id=0,
            format=self._format,
        )

    @property
    def _format(self) -> int:
        return (
            zstandard.FORMAT_ZSTD1_MAGICLESS
            if self._magicless
            else zstandard.FORMAT_ZSTD1
        )

    def encode(self, base: bytes, target: bytes) -> bytes:
        if not base:
            params = self._params(2 * len(target), _windowLog(len(target)))
            return zstandard.ZstdCompressor(compression_params=params).compress(target)
        return self.encodeLeveled(base, target, self.levelFor(base, len(target)))[1]

    def encodeLeveled(
        self, base: bytes, target: bytes, level: int
    ) -> tuple[int, bytes]:
        """
        Encode C{target} against a non-empty C{base} at C{level}, as a
        request waits for it: at the best level with a budget, the frame is
        abandoned once it took L{OVERRUN} times the budget of this thread's
        CPU (a page that shares little with its base costs several times the
        estimate), and the delta made at the fixed level instead.

        @return: the level the delta was made at, and the delta.
        """
        if level == self._bestLevel and self._budget is not None and _zstd.AVAILABLE:
            delta = self._bestWithin(base, target, OVERRUN * self._budget)
            if delta is not None:
                return level, delta
            with self._prepared.lock:
                self.abandoned += 1
            level = self._levelFor(len(base))
        return level, self.encodeAt(base, target, level)

    def _bestWithin(self, base: bytes, target: bytes, deadline: float) -> bytes | None:
        """
        The best-level delta if made within C{deadline} CPU seconds of this
        thread, hashing C{base} first (and keeping it) when it is not
        prepared: then only when that fits the budget's estimate.
        """
        started = time.thread_time()
        windowLog = self._windowFor(base, len(target))
        prepared = self._prepared.get(base, windowLog)
        if prepared is None:
            if self.estimateBest(base, len(target)) > (self._budget or 0):
                # The base was dropped since the level was chosen.
                return None
            if len(base) >= self._tooLargeFrom:
                return None
            prepared = _zstd.PreparedBase(base, self._bestLevel, windowLog, len(base))
            self._prepared.put(base, prepared)
        attach = (
            self._budget is not None
            and len(target) * BEST_ATTACHED_SECONDS_PER_BYTE <= self._budget
        )
        try:
            return prepared.compress(
                target,
                magicless=self._magicless,
                attach=attach,
                deadline=deadline - (time.thread_time() - started),
            )
        except _zstd.ZstdLibError:
            # Out of memory, say: the fixed level may still manage.
            return None

    def encodeAt(self, base: bytes, target: bytes, level: int) -> bytes:
        """
        Encode C{target} against a non-empty C{base} at exactly C{level}
        (with a prepared base when there is one for it), however long it
        takes: for work nothing waits for, such as the kept deltas made
        again at the best level (L{railgun.delta.reuse}).
        """
        windowLog = self._windowFor(base, len(target))
        if level == self._bestLevel:
            prepared = self._prepared.get(base, windowLog)
            if prepared is not None:
                try:
                    delta = prepared.compress(target, magicless=self._magicless)
                except _zstd.ZstdLibError:
                    # Out of memory, say: the public API may still manage.
                    pass
                else:
                    assert delta is not None
                    return delta
        taken = self._cache.take(base, level, windowLog)
        if taken is None:
            cctx, cost = self._compressor(base, windowLog, level)
        else:
            cctx, cost = taken
        delta = cctx.compress(target)
        self._cache.give(base, cctx, windowLog, cost, level)
        return delta

    def bestBusy(self) -> bool:
        """
        Whether as many best-level encodes run as allowed
        (L{reserveBest}): work that can wait should then wait.
        """
        return self._bestInFlight >= self._maxBestInFlight

    def decode(self, base: bytes, delta: bytes, maxSize: int) -> bytes:
        try:
            if base:
                dictionary = zstandard.ZstdCompressionDict(
                    base, dict_type=zstandard.DICT_TYPE_RAWCONTENT
                )
                dctx = zstandard.ZstdDecompressor(
                    dict_data=dictionary,
                    max_window_size=_maxWindow(base, maxSize),
                    format=self._format,
                )
            else:
                dctx = zstandard.ZstdDecompressor(
                    max_window_size=_maxWindow(base, maxSize), format=self._format
                )
        except Exception as e:
            raise DeltaError(f"cannot set up zstd decoder: {e}") from e
        return _zstdDecodeFrame(dctx, delta, maxSize, self._magicless)


@implementer(IFullCodec)
@define
class ZstdFullCodec:
    """
    zstd for a whole body, content size in the frame, no checksum.

    @ivar name: wire name, C{"zstd"}.
    @ivar _level: zstd compression level.
    """

    _level: int = 6
    name: str = field(default="zstd", init=False)

    def __attrs_post_init__(self) -> None:
        if not 1 <= self._level <= zstandard.MAX_COMPRESSION_LEVEL:
            raise ValueError(f"zstd level {self._level} out of range")

    def compress(self, body: bytes) -> bytes:
        params = zstandard.ZstdCompressionParameters.from_level(
            self._level,
            source_size=max(1, len(body)),
            write_content_size=1,
            write_checksum=0,
        )
        return zstandard.ZstdCompressor(compression_params=params).compress(body)

    def decompress(self, data: bytes, maxSize: int) -> bytes:
        dctx = zstandard.ZstdDecompressor(max_window_size=_maxWindow(b"", maxSize))
        return _zstdDecodeFrame(dctx, data, maxSize)


def _inflateBounded(data: bytes, wbits: int, maxSize: int) -> bytes:
    """
    Inflate one zlib/gzip/raw-deflate stream, producing at most C{maxSize}
    bytes and refusing trailing data.

    @raise DeltaError: when corrupt, truncated, followed by garbage or over
        C{maxSize}.
    """
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(data, maxSize + 1)
    except zlib.error as e:
        raise DeltaError(f"corrupt deflate data: {e}") from e
    if len(out) > maxSize:
        raise DeltaError(f"deflate data inflates over {maxSize} bytes")
    if not d.eof:
        raise DeltaError("truncated deflate data")
    if d.unused_data:
        raise DeltaError("trailing data after deflate stream")
    return out


@implementer(IFullCodec)
@define
class GzipFullCodec:
    """
    gzip (level 6, as most servers use): the reference every figure is
    compared with, and the fallback a peer without zstd can still decode.

    @ivar name: wire name, C{"gzip"}.
    """

    _level: int = 6
    name: str = field(default="gzip", init=False)

    def compress(self, body: bytes) -> bytes:
        return gzip.compress(body, compresslevel=self._level, mtime=0)

    def decompress(self, data: bytes, maxSize: int) -> bytes:
        return _inflateBounded(data, 31, maxSize)


@implementer(IFullCodec)
@define
class IdentityFullCodec:
    """
    No compression, for bodies that do not shrink.

    @ivar name: wire name, C{"identity"}.
    """

    name: str = field(default="identity", init=False)

    def compress(self, body: bytes) -> bytes:
        return body

    def decompress(self, data: bytes, maxSize: int) -> bytes:
        if len(data) > maxSize:
            raise DeltaError(f"body of {len(data)} bytes is over {maxSize}")
        return data


@define
class CodecRegistry:
    """
    The codecs a process supports, by wire name, in order of preference, so
    the link HELLO can announce them and both ends agree on one.
    """

    _delta: dict[str, IDeltaCodec] = field(factory=dict)
    _full: dict[str, IFullCodec] = field(factory=dict)

    def registerDelta(self, codec: IDeltaCodec) -> None:
        """
        Add (or replace) a delta codec; earlier ones are preferred.
        """
        self._delta[codec.name] = codec

    def registerFull(self, codec: IFullCodec) -> None:
        """
        Add (or replace) a whole-body codec; earlier ones are preferred.
        """
        self._full[codec.name] = codec

    def deltaNames(self) -> list[str]:
        """
        @return: delta codec names, most preferred first.
        """
        return list(self._delta)

    def fullNames(self) -> list[str]:
        """
        @return: whole-body codec names, most preferred first.
        """
        return list(self._full)

    def deltaCodec(self, name: str) -> IDeltaCodec:
        """
        @param name: a wire name received from a peer.
        @raise DeltaError: for a name not registered here.
        """
        try:
            return self._delta[name]
        except KeyError:
            raise DeltaError(f"unknown delta codec {name!r}") from None

    def fullCodec(self, name: str) -> IFullCodec:
        """
        @param name: a wire name received from a peer.
        @raise DeltaError: for a name not registered here.
        """
        try:
            return self._full[name]
        except KeyError:
            raise DeltaError(f"unknown full codec {name!r}") from None

    def chooseDelta(self, peerNames: Iterable[str]) -> IDeltaCodec | None:
        """
        @param peerNames: the delta codec names the peer announced.
        @return: our most preferred codec the peer supports, or C{None}.
        """
        peer = set(peerNames)
        for name, codec in self._delta.items():
            if name in peer:
                return codec
        return None

    def chooseFull(self, peerNames: Iterable[str]) -> IFullCodec | None:
        """
        @param peerNames: the whole-body codec names the peer announced.
        @return: our most preferred codec the peer supports, or C{None}.
        """
        peer = set(peerNames)
        for name, codec in self._full.items():
            if name in peer:
                return codec
        return None


def defaultRegistry(
    deltaLevel: int = 9,
    largeLevel: int | None = None,
    budget: float | None = None,
    preparedBytes: int = PREPARED_BYTES,
    bestFrom: int = BEST_FROM,
) -> CodecRegistry:
    """
    The codecs the project uses, with the levels chosen by measurement.

    @param deltaLevel: the zstd level deltas are encoded at (9 by default:
        within ~8% of the best offline delta at ~200 MB/s; 19 reaches it at
        ~10 MB/s). Any level decodes with any other.
    @param largeLevel: the level for bases over 256 KiB; L{None} (the
        default) uses C{deltaLevel} for all. 19 comes within 3% of the best
        delta on the corpus' large pages, where 9 is 15-37% above it, but
        costs ~95 ms instead of ~8 ms per 740 KB page: about 500 bytes saved
        for 100 ms added to the fetch (docs/benchmarks.md).
    @param budget: encode-time budget in seconds: a delta whose level-19
        encode is estimated to fit is made at level 19, others at the
        levels above (L{ZstdPatchCodec.levelFor}); L{None} for none.
    @param preparedBytes: memory bound of the bases prepared at the best
        level (L{ZstdPatchCodec.prepare}).
    @param bestFrom: smallest page made at the best level (L{BEST_FROM}).
    """
    registry = CodecRegistry()
    # Without the 4-byte magic number first (every delta's head already
    # names its codec); the classic frames for peers that know only those.
    for magicless in (True, False):
        registry.registerDelta(
            ZstdPatchCodec(
                deltaLevel,
                largeLevel=largeLevel,
                budget=budget,
                preparedBytes=preparedBytes,
                magicless=magicless,
                bestFrom=bestFrom,
            )
        )
    registry.registerFull(ZstdFullCodec())
    registry.registerFull(GzipFullCodec())
    registry.registerFull(IdentityFullCodec())
    return registry


codecs = defaultRegistry()
"""
The process-wide registry; HELLO announces C{codecs.deltaNames()} and
C{codecs.fullNames()}.
"""


def releasingWhenDone(d: Deferred[_T], release: Callable[[], None]) -> Deferred[_T]:
    """
    Call C{release} once C{d} has a result, success or failure, and pass
    the result on (for the best-level slot of L{ZstdPatchCodec.reserveBest}).
    """

    def released(result: _T) -> _T:
        release()
        return result

    return d.addBoth(released)


def offReactorAbove(
    reactor: IReactorFromThreads,
    threadpool: ThreadPool,
    size: int,
    threshold: int,
    work: Callable[..., _T],
    *args: Any,
) -> Deferred[_T]:
    """
    Run C{work(*args)} in C{threadpool} when C{size} (of the input it
    handles) is over C{threshold}, inline otherwise: a thread hop costs about
    as much as a small compression, and a large one would hold up every
    other request on the reactor thread (zlib, brotli and zstandard release
    the GIL, so the work also uses another core).

    @param reactor: the reactor the result is delivered in.
    @param threadpool: a started thread pool.
    @return: a L{Deferred} firing with C{work}'s result or failure (already
        fired when run inline).
    """
    if size <= threshold:
        try:
            return succeed(work(*args))
        except Exception:
            return fail()
    return deferToThreadPool(reactor, threadpool, work, *args)


def deferEncode(
    reactor: IReactorFromThreads,
    threadpool: ThreadPool,
    codec: IDeltaCodec,
    base: bytes,
    target: bytes,
    threshold: int = ENCODE_IN_THREAD_ABOVE,
) -> Deferred[bytes]:
    """
    Encode a delta, in C{threadpool} when C{target} is large enough for one
    encode to hold up the reactor, inline otherwise (a thread hop costs more
    than a small encode).

    @param reactor: the reactor the result is delivered in.
    @param threadpool: a started thread pool.
    @param codec: the delta codec; must be safe to call from threads
        (L{ZstdPatchCodec} is).
    @param base: the version the edge holds.
    @param target: the fresh version.
    @param threshold: size in bytes above which the thread pool is used.
    @return: a L{Deferred} firing with the delta.
    """
    return offReactorAbove(
        reactor, threadpool, len(target), threshold, codec.encode, base, target
    )
