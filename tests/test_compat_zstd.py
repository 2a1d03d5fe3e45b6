"""
Tests for L{railgun._compat.zstd}: zstandard's cffi backend still has what
it uses, and the frames made with a prepared base are the zstd frames the
public decoder reads.
"""

from __future__ import annotations

import random
import threading

import zstandard
from twisted.trial.unittest import SynchronousTestCase

from railgun._compat import zstd


def _page(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    words = [b"railgun", b"twisted", b"delta", b"<div>", b"</div>", b"origin"]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b"%d " % rng.randrange(1000)
    return bytes(out[:size])


def _decode(base: bytes, frame: bytes, magicless: bool = False) -> bytes:
    dctx = zstandard.ZstdDecompressor(
        dict_data=zstandard.ZstdCompressionDict(
            base, dict_type=zstandard.DICT_TYPE_RAWCONTENT
        ),
        format=zstandard.FORMAT_ZSTD1_MAGICLESS
        if magicless
        else zstandard.FORMAT_ZSTD1,
    )
    return dctx.decompress(frame)


class BackendTests(SynchronousTestCase):
    """
    Tests for what L{railgun._compat.zstd} needs of zstandard.
    """

    def test_available(self) -> None:
        """
        The cffi backend is importable here and has every function and
        constant the module calls.
        """
        self.assertTrue(zstd.AVAILABLE)
        for name in zstd.LIB_NEEDS:
            self.assertTrue(hasattr(zstd._backend.lib, name), name)
        self.assertRegex(zstd.libraryVersion(), r"^1\.\d+\.\d+$")


class PreparedBaseTests(SynchronousTestCase):
    """
    Tests for L{zstd.PreparedBase}.
    """

    def test_frameDecodes(self) -> None:
        """
        A frame made with a prepared base is one zstd frame with its content
        size, no checksum and no dictionary id, that the public decoder
        rebuilds with the base.
        """
        base = _page(1, 50_000)
        target = base[:20_000] + b"fresh" + base[20_000:]
        prepared = zstd.PreparedBase(base, 19, 18, len(base))
        frame = prepared.compress(target)
        params = zstandard.get_frame_parameters(frame)
        self.assertEqual(params.content_size, len(target))
        self.assertFalse(params.has_checksum)
        self.assertEqual(params.dict_id, 0)
        self.assertEqual(_decode(base, frame), target)
        self.assertLess(len(frame), 100)

    def test_magicless(self) -> None:
        """
        Without the magic number, the frame is four bytes shorter and
        decodes in the magicless format.
        """
        base = _page(2, 20_000)
        target = base + b"more"
        prepared = zstd.PreparedBase(base, 19, 17, len(base))
        frame = prepared.compress(target, magicless=True)
        self.assertEqual(len(frame), len(prepared.compress(target)) - 4)
        self.assertEqual(_decode(base, frame, magicless=True), target)

    def test_attached(self) -> None:
        """
        A frame made with the base searched in place decodes the same way.
        """
        base = _page(7, 30_000)
        target = base[:10_000] + _page(8, 2_000) + base[10_000:]
        prepared = zstd.PreparedBase(base, 19, 17, len(base))
        self.assertEqual(_decode(base, prepared.compress(target, attach=True)), target)

    def test_reusedAndSized(self) -> None:
        """
        One prepared base makes any number of frames, the same each time,
        from several threads at once; its size is libzstd's count, more
        than the base it holds a copy of.
        """
        base = _page(3, 100_000)
        targets = [base[: 1000 * i] + b"x" + base[1000 * i :] for i in range(1, 9)]
        prepared = zstd.PreparedBase(base, 19, 19, len(base))
        self.assertGreater(prepared.size, len(base))
        expected = [prepared.compress(t) for t in targets]
        results: dict[int, list[bytes]] = {}

        def encodeAll(n: int) -> None:
            results[n] = [prepared.compress(t) for t in targets]

        threads = [threading.Thread(target=encodeAll, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(results, {n: expected for n in range(4)})
        for t, frame in zip(targets, expected, strict=True):
            self.assertEqual(_decode(base, frame), t)

    def test_contextsKept(self) -> None:
        """
        At most a few compression contexts are kept between frames.
        """
        base = _page(4, 10_000)
        prepared = zstd.PreparedBase(base, 19, 16, len(base))
        prepared.compress(base)
        self.assertLessEqual(len(zstd._contexts), zstd._KEEP_CONTEXTS)
        self.assertGreaterEqual(len(zstd._contexts), 1)

    def test_emptyTarget(self) -> None:
        """
        An empty target makes a frame that decodes to nothing.
        """
        base = _page(5, 1_000)
        frame = zstd.PreparedBase(base, 19, 12, 1).compress(b"")
        self.assertEqual(zstandard.get_frame_parameters(frame).content_size, 0)


class ContextsTests(SynchronousTestCase):
    """
    Tests for the compression contexts kept between frames.
    """

    def test_largeNotKept(self) -> None:
        """
        A context grown past the size kept is freed, not kept.
        """
        self.patch(zstd, "_KEEP_CONTEXT_BYTES", 1024)
        kept = zstd._Contexts(2)
        cctx = kept.take()
        base = _page(6, 50_000)
        prepared = zstd.PreparedBase(base, 19, 18, len(base))
        zstd._backend.lib.ZSTD_CCtx_refCDict(cctx, prepared._cdict)
        kept.give(cctx)
        self.assertEqual(len(kept), 0)

    def test_boundedCount(self) -> None:
        """
        At most C{keep} contexts are kept.
        """
        kept = zstd._Contexts(1)
        first, second = kept.take(), kept.take()
        kept.give(first)
        kept.give(second)
        self.assertEqual(len(kept), 1)


class WindowTests(SynchronousTestCase):
    """
    The frame's window is the prepared base's, not libzstd's default.
    """

    def test_farMatches(self) -> None:
        """
        A target three times its base, the base at its end after bytes
        that match nothing, reaches back to the base (over 2 MiB away): the
        delta is as small as the public API makes it with the same window.
        """
        from railgun.delta.codec import ZstdPatchCodec

        base = _page(9, 800_000)
        target = random.Random(10).randbytes(1_600_000) + base
        windowLog = ZstdPatchCodec._windowFor(base, len(target))
        frame = zstd.PreparedBase(base, 19, windowLog, len(base)).compress(target)
        public = ZstdPatchCodec(19).encodeAt(base, target, 19)
        self.assertLess(len(frame), 1.01 * len(public))
        self.assertEqual(_decode(base, frame), target)


class DeadlineTests(SynchronousTestCase):
    """
    Frames abandoned past their deadline.
    """

    def test_abandoned(self) -> None:
        """
        Past its deadline a frame is abandoned (L{None}), and the context
        it used makes the next frame right.
        """
        base = _page(11, 300_000)
        target = base[:100_000] + _page(12, 50_000) + base[100_000:]
        prepared = zstd.PreparedBase(base, 19, 20, len(base))
        self.assertIsNone(prepared.compress(target, deadline=-1.0))
        frame = prepared.compress(target, deadline=60.0)
        self.assertIsNotNone(frame)
        self.assertEqual(_decode(base, frame), target)
        self.assertEqual(frame, prepared.compress(target))
