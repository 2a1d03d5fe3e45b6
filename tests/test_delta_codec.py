"""
Tests for L{railgun.delta.codec} and L{railgun.delta.digest}.
"""

from __future__ import annotations

import random
import zlib

import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import maybeDeferred
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from railgun._compat.zstd import PreparedBase
from railgun.delta import codec as codecModule
from railgun.delta.codec import (
    CodecRegistry,
    DeltaError,
    GzipFullCodec,
    IDeltaCodec,
    IdentityFullCodec,
    IFullCodec,
    ZstdFullCodec,
    ZstdPatchCodec,
    codecs,
    deferEncode,
)
from railgun.delta.digest import DIGEST_RE, isValidDigest, versionDigest
from railgun.delta.preparer import BackgroundPreparer
from railgun.versions import deferEncodeVersion

HYPOTHESIS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def page(seed: int, size: int) -> bytes:
    """
    A deterministic text-like body: words drawn from a small vocabulary, so
    it compresses roughly like HTML.
    """
    rnd = random.Random(seed)
    words = [
        b'<div class="teaser">',
        b"</div>",
        b'<a href="/news/',
        b'">',
        b"</a>",
        b"Politik",
        b"Wirtschaft",
        b"comments",
        b"12",
        b"345",
        b"\n",
        b"  ",
        b'data-id="',
        b"<span>",
        b"</span>",
    ]
    out = bytearray()
    while len(out) < size:
        out += rnd.choice(words)
        if rnd.random() < 0.1:
            out += str(rnd.randrange(10**6)).encode()
    return bytes(out[:size])


@st.composite
def edited(draw):
    """
    A base and a target made from it by random insert/delete/replace runs.
    """
    base = draw(st.binary(max_size=4000))
    target = bytearray(base)
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        pos = draw(st.integers(0, len(target)))
        run = draw(st.binary(max_size=200))
        if op == "insert":
            target[pos:pos] = run
        elif op == "delete":
            del target[pos : pos + draw(st.integers(0, 300))]
        else:
            target[pos : pos + len(run)] = run
    return base, bytes(target)


class DigestTests(SynchronousTestCase):
    """
    Tests for L{versionDigest} and L{DIGEST_RE}.
    """

    def test_shape(self) -> None:
        """
        A digest is 32 lower-case hex characters that DIGEST_RE accepts.
        """
        d = versionDigest(b"hello")
        self.assertEqual(len(d), 32)
        self.assertIsNotNone(DIGEST_RE.match(d.encode("ascii")))
        self.assertTrue(isValidDigest(d))

    def test_knownValue(self) -> None:
        """
        The digest is BLAKE2b with a 16-byte digest size (stable across
        processes and versions, so both ends agree).
        """
        self.assertEqual(versionDigest(b""), "cae66941d9efbd404e4d88758ea67670")

    def test_distinguishes(self) -> None:
        """
        Bodies differing in one byte have different digests.
        """
        self.assertNotEqual(
            versionDigest(b"a" * 1000), versionDigest(b"a" * 999 + b"b")
        )

    def test_rejectsMalformed(self) -> None:
        """
        Digests received in the wrong shape are refused.
        """
        good = versionDigest(b"x")
        for bad in [
            good[:-1],
            good + "0",
            good.upper(),
            good + "\n",
            "g" * 32,
            "",
            "é" * 32,
        ]:
            self.assertFalse(isValidDigest(bad), bad)
        self.assertFalse(isValidDigest(good.encode("ascii") + b"\n"))
        self.assertTrue(isValidDigest(good.encode("ascii")))


class InterfaceTests(SynchronousTestCase):
    """
    The codecs provide their interfaces and are reachable by wire name.
    """

    def test_verify(self) -> None:
        """
        Every codec provides IDeltaCodec or IFullCodec.
        """
        self.assertTrue(verifyObject(IDeltaCodec, ZstdPatchCodec()))
        for codec in [ZstdFullCodec(), GzipFullCodec(), IdentityFullCodec()]:
            self.assertTrue(verifyObject(IFullCodec, codec))

    def test_registry(self) -> None:
        """
        The default registry announces the codecs by name, most preferred
        first, and finds them again.
        """
        self.assertEqual(codecs.deltaNames(), ["zstd-delta", "zstd-patch"])
        self.assertEqual(codecs.fullNames(), ["zstd", "gzip", "identity"])
        self.assertIsInstance(codecs.deltaCodec("zstd-patch"), ZstdPatchCodec)
        self.assertIsInstance(codecs.deltaCodec("zstd-delta"), ZstdPatchCodec)
        self.assertIsInstance(codecs.fullCodec("gzip"), GzipFullCodec)

    def test_magicless(self) -> None:
        """
        C{zstd-delta} frames are C{zstd-patch} frames without the 4-byte
        magic number (at the fixed level, at the best level cold and with a
        prepared base); each codec refuses the other's frames with a
        L{DeltaError}; a peer that knows only C{zstd-patch} gets it.
        """
        base = page(75, 60_000)
        target = base[:30_000] + b"<p>fresh</p>" + base[30_000:]
        for level, prepare in ((9, False), (19, False), (19, True)):
            classic = ZstdPatchCodec(budget=0.030)
            bare = ZstdPatchCodec(budget=0.030, magicless=True)
            if prepare:
                classic.prepare(base)
                bare.prepare(base)
            frame = classic.encodeLeveled(base, target, level)[1]
            shorter = bare.encodeLeveled(base, target, level)[1]
            self.assertEqual(shorter, frame[4:], (level, prepare))
            self.assertEqual(bare.decode(base, shorter, len(target)), target)
            self.assertRaises(DeltaError, bare.decode, base, frame, len(target))
            self.assertRaises(DeltaError, classic.decode, base, shorter, len(target))
        empty = ZstdPatchCodec(magicless=True)
        self.assertEqual(empty.decode(b"", empty.encode(b"", target), 10**6), target)
        self.assertEqual(codecs.chooseDelta(["zstd-patch"]).name, "zstd-patch")
        self.assertEqual(
            codecs.chooseDelta(["zstd-patch", "zstd-delta"]).name, "zstd-delta"
        )

    def test_registryUnknown(self) -> None:
        """
        An unknown wire name is a DeltaError, not a KeyError.
        """
        self.assertRaises(DeltaError, codecs.deltaCodec, "bsdiff")
        self.assertRaises(DeltaError, codecs.fullCodec, "lzma")

    def test_choose(self) -> None:
        """
        The most preferred codec the peer also supports is chosen.
        """
        registry = CodecRegistry()
        registry.registerFull(ZstdFullCodec())
        registry.registerFull(GzipFullCodec())
        self.assertEqual(registry.chooseFull(["gzip", "zstd"]).name, "zstd")
        self.assertEqual(registry.chooseFull(["gzip"]).name, "gzip")
        self.assertIsNone(registry.chooseFull(["br"]))
        self.assertIsNone(registry.chooseDelta(["zstd-patch"]))
        registry.registerDelta(ZstdPatchCodec())
        self.assertEqual(registry.chooseDelta(["x", "zstd-patch"]).name, "zstd-patch")

    def test_badLevel(self) -> None:
        """
        A level zstd does not have is refused when the codec is made.
        """
        self.assertRaises(ValueError, ZstdPatchCodec, 0)
        self.assertRaises(ValueError, ZstdPatchCodec, 23)
        self.assertRaises(ValueError, ZstdFullCodec, 99)


class ZstdPatchRoundTripTests(SynchronousTestCase):
    """
    L{ZstdPatchCodec} rebuilds the target exactly.
    """

    def setUp(self) -> None:
        self.codec = ZstdPatchCodec()

    def roundTrip(self, base: bytes, target: bytes) -> bytes:
        delta = self.codec.encode(base, target)
        self.assertEqual(self.codec.decode(base, delta, len(target)), target)
        return delta

    @HYPOTHESIS
    @given(edited())
    def test_edits(self, pair: tuple[bytes, bytes]) -> None:
        """
        Random insert/delete/replace runs round-trip.
        """
        self.roundTrip(*pair)

    @HYPOTHESIS
    @given(st.binary(max_size=3000), st.binary(max_size=3000))
    def test_unrelated(self, base: bytes, target: bytes) -> None:
        """
        Unrelated bodies (including empty ones) round-trip.
        """
        self.roundTrip(base, target)

    def test_emptyBaseEmptyTarget(self) -> None:
        """
        Empty base, empty target, and both empty round-trip.
        """
        self.roundTrip(b"", b"")
        self.roundTrip(b"", b"abc" * 100)
        self.roundTrip(b"abc" * 100, b"")

    def test_identicalIsTiny(self) -> None:
        """
        A target identical to a 200 KB base costs a few bytes.
        """
        base = page(1, 200_000)
        self.assertLess(len(self.roundTrip(base, base)), 40)

    def test_smallEditIsSmall(self) -> None:
        """
        A few edits in a page give a delta far below compressing it whole:
        the base is really used as a dictionary.
        """
        base = page(2, 150_000)
        target = (
            base[:50_000] + b"<b>breaking</b>" + base[50_100:120_000] + base[120_500:]
        )
        delta = self.roundTrip(base, target)
        self.assertLess(len(delta), 200)
        self.assertGreater(len(zlib.compress(target, 6)), 50 * len(delta))

    def test_largeBodies(self) -> None:
        """
        2 MB bodies round-trip, and edits near the start of the base are
        still found (the window covers base and target).
        """
        base = page(3, 2_000_000)
        target = base[:10] + b"X" + base[10:1_000_000] + base[1_000_100:] + base[:5000]
        delta = self.roundTrip(base, target)
        self.assertLess(len(delta), 300)

    def test_targetMuchLargerThanBase(self) -> None:
        """
        A target many times the base still round-trips (window sized by
        both).
        """
        base = page(4, 1000)
        target = page(5, 500_000) + base
        self.roundTrip(base, target)

    def test_frameAnnouncesSize(self) -> None:
        """
        The delta is one zstd frame that writes the content size and no
        checksum (the digest checks the result).
        """
        target = page(6, 5000)
        params = zstandard.get_frame_parameters(
            self.codec.encode(page(7, 5000), target)
        )
        self.assertEqual(params.content_size, len(target))
        self.assertFalse(params.has_checksum)

    def test_levelsInteroperate(self) -> None:
        """
        The level is not part of the format: a delta made at level 19 decodes
        with the default codec.
        """
        base, target = page(8, 20_000), page(8, 21_000)
        delta = ZstdPatchCodec(19, None).encode(base, target)
        self.assertEqual(self.codec.decode(base, delta, 21_000), target)

    def test_cacheReused(self) -> None:
        """
        Encoding twice against one base reuses the prepared compressor and
        gives identical output; distinct bases each get one, within budget.
        """
        base, target = page(9, 50_000), page(9, 51_000)
        first = self.codec.encode(base, target)
        self.assertEqual(len(self.codec._cache), 1)
        self.assertEqual(self.codec.encode(base, target), first)
        self.assertEqual(len(self.codec._cache), 1)
        self.codec.encode(page(10, 50_000), target)
        self.assertEqual(len(self.codec._cache), 2)

    def test_cacheBounded(self) -> None:
        """
        A small budget keeps only what fits (nothing, for a zero budget),
        and encoding still works.
        """
        codec = ZstdPatchCodec(cacheBytes=0)
        base, target = page(11, 50_000), page(11, 51_000)
        delta = codec.encode(base, target)
        self.assertEqual(len(codec._cache), 0)
        self.assertEqual(codec.decode(base, delta, 51_000), target)
        tight = ZstdPatchCodec(cacheBytes=3 * 1024 * 1024)
        for seed in range(12, 20):
            tight.encode(page(seed, 50_000), target)
        self.assertLess(len(tight._cache), 8)
        self.assertGreater(len(tight._cache), 0)


class ZstdPatchDecodeErrorTests(SynchronousTestCase):
    """
    Corrupt input gives L{DeltaError} and nothing else.
    """

    def setUp(self) -> None:
        self.codec = ZstdPatchCodec()
        self.base = page(20, 30_000)
        self.target = self.base[:1000] + b"changed" + self.base[1200:]
        self.delta = self.codec.encode(self.base, self.target)

    @HYPOTHESIS
    @given(st.binary(max_size=2000))
    def test_garbage(self, garbage: bytes) -> None:
        """
        Random bytes never decode.
        """
        self.assertRaises(DeltaError, self.codec.decode, self.base, garbage, 10**6)

    @HYPOTHESIS
    @given(st.integers(min_value=0), st.integers(1, 255))
    def test_bitFlips(self, where: int, xor: int) -> None:
        """
        A delta with one byte altered either fails with DeltaError or
        decodes to something of the announced size, never another error.
        """
        data = bytearray(self.delta)
        data[where % len(data)] ^= xor
        try:
            out = self.codec.decode(self.base, bytes(data), 10**6)
        except DeltaError:
            return
        self.assertLessEqual(len(out), 10**6)

    def test_truncated(self) -> None:
        """
        Every proper prefix of a delta is refused.
        """
        for n in range(len(self.delta)):
            self.assertRaises(
                DeltaError, self.codec.decode, self.base, self.delta[:n], 10**6
            )

    def test_trailingData(self) -> None:
        """
        Bytes after the frame are refused, also after an empty frame.
        """
        self.assertRaises(
            DeltaError, self.codec.decode, self.base, self.delta + b"\0", 10**6
        )
        empty = self.codec.encode(self.base, b"")
        self.assertEqual(self.codec.decode(self.base, empty, 0), b"")
        self.assertRaises(DeltaError, self.codec.decode, self.base, empty + b"x", 10**6)

    def test_maxSize(self) -> None:
        """
        A delta announcing more than maxSize is refused before decoding.
        """
        self.assertRaises(
            DeltaError, self.codec.decode, self.base, self.delta, len(self.target) - 1
        )
        self.assertEqual(
            self.codec.decode(self.base, self.delta, len(self.target)), self.target
        )

    def test_bombRefused(self) -> None:
        """
        A frame announcing 1 GB is refused at the header against a 1 MB cap,
        without allocating it.
        """
        bomb = zstandard.ZstdCompressor(level=1).compress(b"\0" * (64 * 1024 * 1024))
        self.assertRaises(DeltaError, self.codec.decode, b"", bomb, 1024 * 1024)

    def test_unknownSizeRefused(self) -> None:
        """
        A frame that does not announce its content size is refused.
        """
        frame = zstandard.ZstdCompressor(write_content_size=False).compress(b"abc")
        self.assertRaises(DeltaError, self.codec.decode, b"", frame, 1000)

    def test_skippableFrameRefused(self) -> None:
        """
        A skippable frame (valid zstd, no content) is not taken as a delta.
        """
        skippable = b"\x50\x2a\x4d\x18" + b"\x00\x00\x00\x00"
        self.assertRaises(DeltaError, self.codec.decode, self.base, skippable, 100)

    def test_trainedDictionaryFrameRefused(self) -> None:
        """
        A frame made with a numbered dictionary is refused clearly.
        """
        samples = [page(s, 2000) for s in range(40)]
        trained = zstandard.train_dictionary(4096, samples)
        frame = zstandard.ZstdCompressor(dict_data=trained).compress(page(99, 2000))
        self.assertRaises(DeltaError, self.codec.decode, self.base, frame, 10**6)

    def test_wrongBaseCaughtByDigest(self) -> None:
        """
        A delta applied to the wrong base either fails or yields bytes whose
        digest differs from the target's: the digest is what protects
        clients.
        """
        other = page(21, 30_000)
        try:
            out = self.codec.decode(other, self.delta, 10**6)
        except DeltaError:
            return
        self.assertNotEqual(out, self.target)
        self.assertNotEqual(versionDigest(out), versionDigest(self.target))

    def test_wrongBaseSameLengthOneByte(self) -> None:
        """
        A base differing in one copied byte decodes silently to a wrong body;
        the digest tells.
        """
        wrong = bytearray(self.base)
        wrong[500] ^= 1
        out = self.codec.decode(bytes(wrong), self.delta, 10**6)
        self.assertNotEqual(out, self.target)
        self.assertNotEqual(versionDigest(out), versionDigest(self.target))


class FullCodecTests(SynchronousTestCase):
    """
    Tests for the whole-body codecs.
    """

    @HYPOTHESIS
    @given(st.binary(max_size=5000))
    def test_roundTrip(self, body: bytes) -> None:
        """
        Every whole-body codec round-trips.
        """
        for codec in [ZstdFullCodec(), GzipFullCodec(), IdentityFullCodec()]:
            self.assertEqual(codec.decompress(codec.compress(body), len(body)), body)

    @HYPOTHESIS
    @given(st.binary(max_size=500))
    def test_garbage(self, garbage: bytes) -> None:
        """
        Garbage is a DeltaError for zstd and gzip.
        """
        for codec in [ZstdFullCodec(), GzipFullCodec()]:
            self.assertRaises(DeltaError, codec.decompress, garbage, 10**6)

    def test_maxSize(self) -> None:
        """
        Every whole-body codec refuses a result over maxSize; gzip stops
        inflating a bomb at the cap.
        """
        body = b"\0" * 1_000_000
        for codec in [ZstdFullCodec(), GzipFullCodec(), IdentityFullCodec()]:
            self.assertRaises(
                DeltaError, codec.decompress, codec.compress(body), 999_999
            )

    def test_truncatedAndTrailing(self) -> None:
        """
        Truncated or padded compressed bodies are refused.
        """
        body = page(30, 20_000)
        for codec in [ZstdFullCodec(), GzipFullCodec()]:
            data = codec.compress(body)
            self.assertRaises(DeltaError, codec.decompress, data[:-1], 10**6)
            self.assertRaises(DeltaError, codec.decompress, data + b"\0", 10**6)


class DeferEncodeTests(SynchronousTestCase):
    """
    Tests for L{deferEncode}.
    """

    def test_smallInline(self) -> None:
        """
        Small targets are encoded at once, without the thread pool.
        """
        pool = ThreadPool()  # never started: using it would hang the test
        base, target = page(40, 1000), page(40, 1100)
        d = deferEncode(MemoryReactorClock(), pool, ZstdPatchCodec(), base, target)
        delta = self.successResultOf(d)
        self.assertEqual(ZstdPatchCodec().decode(base, delta, 1100), target)

    def test_largeInThreadPool(self) -> None:
        """
        Large targets go to the thread pool, and the result is delivered
        through the reactor.
        """
        calls = []

        class RecordingPool:
            def callInThreadWithCallback(self, onResult, f, *a, **kw):
                calls.append(f)
                onResult(True, f(*a, **kw))

        class ImmediateReactor:
            def callFromThread(self, f, *a, **kw):
                f(*a, **kw)

        base, target = page(41, 5000), page(41, 5100)
        d = deferEncode(
            ImmediateReactor(),
            RecordingPool(),
            ZstdPatchCodec(),
            base,
            target,
            threshold=1000,
        )
        delta = self.successResultOf(d)
        self.assertEqual(len(calls), 1)
        self.assertEqual(ZstdPatchCodec().decode(base, delta, 5100), target)


class LargeLevelTests(SynchronousTestCase):
    """
    Bases over 256 KiB are encoded at the large level.
    """

    def test_levelBySize(self):
        """
        By default every base gets the one level; with a large level set,
        bases over 256 KiB get it.
        """
        codec = ZstdPatchCodec()
        self.assertEqual(codec._levelFor(1000), 9)
        self.assertEqual(codec._levelFor(256 * 1024 + 1), 9)
        large = ZstdPatchCodec(largeLevel=19)
        self.assertEqual(large._levelFor(256 * 1024), 9)
        self.assertEqual(large._levelFor(256 * 1024 + 1), 19)

    def test_largeRoundTrip(self):
        """
        A large base and a lightly edited target round-trip at the large
        level.
        """
        rng = random.Random(7)
        base = rng.randbytes(300 * 1024)
        target = base[:1000] + b"edited" + base[1006:]
        codec = ZstdPatchCodec()
        delta = codec.encode(base, target)
        self.assertLess(len(delta), 200)
        self.assertEqual(codec.decode(base, delta, len(target)), target)


class _RecordingPool:
    """
    A thread pool that runs each call at once and records it.
    """

    def __init__(self) -> None:
        self.calls: list[object] = []

    def callInThreadWithCallback(self, onResult, f, *a, **kw):
        self.calls.append(f)
        onResult(True, f(*a, **kw))


class _ImmediateReactor:
    def callFromThread(self, f, *a, **kw):
        f(*a, **kw)


class _HeldPool:
    """
    A thread pool that holds each call until L{runAll}.
    """

    def __init__(self) -> None:
        self.held: list[tuple[object, object, tuple]] = []

    def callInThreadWithCallback(self, onResult, f, *a, **kw):
        self.held.append((onResult, f, a))

    def runAll(self) -> None:
        held, self.held = self.held, []
        for onResult, f, a in held:
            try:
                result = f(*a)
            except BaseException:
                onResult(False, Failure())
            else:
                onResult(True, result)


class _FailingCodec(ZstdPatchCodec):
    def encodeLeveled(
        self, base: bytes, target: bytes, level: int
    ) -> tuple[int, bytes]:
        raise ZeroDivisionError()


def _spawnNow(reactor, work):
    return maybeDeferred(work)


class BudgetTests(SynchronousTestCase):
    """
    Tests for the encode-time budget of L{ZstdPatchCodec}: level 19 where
    its estimated time fits, the fixed level elsewhere, and bases hashed
    ahead of time by L{ZstdPatchCodec.prepare}.
    """

    def test_noBudgetFixedLevel(self) -> None:
        """
        Without a budget, every delta is made at the fixed level.
        """
        codec = ZstdPatchCodec()
        self.assertEqual(codec.levelFor(page(50, 2000), 2000), 9)
        self.assertFalse(codec.shouldPrepare(page(50, 2000)))
        self.assertFalse(codec.prepare(page(50, 2000)))

    def test_smallFitsCold(self) -> None:
        """
        A small page fits the budget at level 19 even cold, a large one
        does not, and the delta is the one a level-19 codec makes.
        """
        codec = ZstdPatchCodec(budget=0.005, bestFrom=0)
        base, target = page(51, 20_000), page(52, 20_500)
        self.assertEqual(codec.levelFor(base, len(target)), 19)
        self.assertEqual(codec.levelFor(page(53, 200_000), 200_000), 9)
        delta = codec.encode(base, target)
        self.assertEqual(delta, ZstdPatchCodec(19).encode(base, target))
        self.assertNotEqual(delta, ZstdPatchCodec().encode(base, target))
        self.assertEqual(codec.decode(base, delta, len(target)), target)

    def test_preparedBaseFitsWarm(self) -> None:
        """
        A medium page over the budget cold fits it once its base was
        prepared, and is then encoded at level 19 with the prepared base
        (the frame L{PreparedBase} makes); a prepared base is not prepared
        again.
        """
        codec = ZstdPatchCodec(budget=0.005)
        base = page(54, 100_000)
        target = base[:50_000] + b"<p>fresh</p>" + base[50_000:]
        self.assertEqual(codec.levelFor(base, len(target)), 9)
        self.assertTrue(codec.shouldPrepare(base))
        self.assertTrue(codec.prepare(base))
        self.assertGreater(codec.preparedBytes, len(base))
        self.assertFalse(codec.shouldPrepare(base))
        self.assertFalse(codec.prepare(base))
        self.assertEqual(codec.levelFor(base, len(target)), 19)
        delta = codec.encode(base, target)
        windowLog = ZstdPatchCodec._windowFor(base, len(base))
        self.assertEqual(
            delta, PreparedBase(base, 19, windowLog, len(base)).compress(target)
        )
        self.assertLess(len(delta), len(ZstdPatchCodec().encode(base, target)))
        self.assertEqual(codec.decode(base, delta, len(target)), target)

    def test_attachedWhenItFits(self) -> None:
        """
        Against a prepared base, a target whose estimated time searching
        the base in place fits the budget is encoded that way (a smaller
        delta here), a larger one with the base's tables copied.
        """
        base = page(64, 100_000)
        target = base[:30_000] + page(70, 3000) + base[31_000:]
        prepared = PreparedBase(
            base, 19, ZstdPatchCodec._windowFor(base, len(base)), len(base)
        )
        attached = prepared.compress(target, attach=True)
        copied = prepared.compress(target)
        self.assertLess(len(attached), len(copied))
        roomy = ZstdPatchCodec(budget=0.030)
        roomy.prepare(base)
        self.assertEqual(roomy.encode(base, target), attached)
        tight = ZstdPatchCodec(budget=0.005)
        tight.prepare(base)
        self.assertEqual(tight.encode(base, target), copied)
        self.assertEqual(roomy.decode(base, attached, len(target)), target)

    def test_largePreparedBase(self) -> None:
        """
        A 700 KB page, over the budget cold, is prepared and then encoded
        at level 19: the prepared bases are not limited to small pages.
        """
        codec = ZstdPatchCodec(budget=0.030)
        base = page(58, 700_000)
        target = base[:300_000] + b"<p>fresh</p>" + base[300_010:]
        self.assertEqual(codec.levelFor(base, len(target)), 9)
        self.assertTrue(codec.prepare(base))
        self.assertEqual(codec.levelFor(base, len(target)), 19)
        delta = codec.encode(base, target)
        self.assertEqual(codec.decode(base, delta, len(target)), target)

    def test_preparedBasesBounded(self) -> None:
        """
        Prepared bases are dropped, least recently used first, past the
        codec's memory bound.
        """
        bases = [page(60 + i, 50_000) for i in range(3)]
        one = PreparedBase(bases[0], 19, 18, 50_000).size
        codec = ZstdPatchCodec(budget=0.005, preparedBytes=2 * one + one // 2)
        for base in bases:
            self.assertTrue(codec.prepare(base))
        self.assertLessEqual(codec.preparedBytes, 2 * one + one // 2)
        self.assertTrue(codec.shouldPrepare(bases[0]))
        self.assertFalse(codec.shouldPrepare(bases[2]))

    def test_preparedFailsPublicPath(self) -> None:
        """
        When libzstd refuses a frame with a prepared base, the delta is made
        at the same level through the public API instead.
        """
        codec = ZstdPatchCodec(budget=0.005)
        base = page(63, 50_000)
        target = base + b"<p>x</p>"
        codec.prepare(base)

        def refuse(self: object, target: bytes, **kwargs: bool) -> bytes:
            raise codecModule._zstd.ZstdLibError("Allocation error")

        self.patch(PreparedBase, "compress", refuse)
        delta = codec.encodeAt(base, target, 19)
        self.assertEqual(delta, ZstdPatchCodec(19).encode(base, target))

    def test_abandonedPastTheDeadline(self) -> None:
        """
        A best-level frame that takes longer than L{OVERRUN} times the
        budget is abandoned: the delta is made at the fixed level, says so,
        and is counted.
        """
        self.patch(codecModule, "OVERRUN", -1.0)
        codec = ZstdPatchCodec(budget=0.030)
        base = page(65, 200_000)
        target = page(66, 200_000)
        codec.prepare(base)
        level, delta = codec.encodeLeveled(base, target, 19)
        self.assertEqual(level, 9)
        self.assertEqual(codec.abandoned, 1)
        self.assertEqual(delta, ZstdPatchCodec().encodeAt(base, target, 9))

    def test_withinTheDeadline(self) -> None:
        """
        A best-level frame within the deadline is the prepared base's.
        """
        codec = ZstdPatchCodec(budget=0.030)
        base = page(67, 50_000)
        target = base + b"<p>x</p>"
        codec.prepare(base)
        level, delta = codec.encodeLeveled(base, target, 19)
        self.assertEqual(level, 19)
        self.assertEqual(codec.abandoned, 0)
        self.assertEqual(codec.decode(base, delta, len(target)), target)

    def test_droppedSinceChosen(self) -> None:
        """
        When the prepared base the level was chosen for is dropped before
        the encode, a large page is made at the fixed level rather than
        hashed cold; a small one is hashed then (and kept).
        """
        codec = ZstdPatchCodec(budget=0.030)
        large = page(68, 700_000)
        level, delta = codec.encodeLeveled(large, large + b"x", 19)
        self.assertEqual(level, 9)
        self.assertEqual(codec.decode(large, delta, len(large) + 1), large + b"x")
        small = page(69, 20_000)
        level, _ = codec.encodeLeveled(small, small + b"x", 19)
        self.assertEqual(level, 19)
        self.assertFalse(codec.shouldPrepare(small))

    def test_preparedTooLargeForTheBound(self) -> None:
        """
        A base whose prepared size does not fit the memory bound is hashed
        once, not kept nor counted as prepared; after that, no base as large
        is hashed for nothing, smaller ones still are.
        """
        base = page(71, 700_000)
        codec = ZstdPatchCodec(budget=0.030, preparedBytes=8 * 1024 * 1024)
        self.assertTrue(codec.shouldPrepare(base))
        self.assertFalse(codec.prepare(base))
        self.assertEqual(codec.preparedBytes, 0)
        self.assertFalse(codec.shouldPrepare(base))
        self.assertFalse(codec.shouldPrepare(page(72, 800_000)))
        self.assertTrue(codec.shouldPrepare(page(73, 100_000)))
        level, _ = codec.encodeLeveled(page(74, 700_000), page(74, 700_000), 19)
        self.assertEqual(level, 9)

    def test_smallPagesFixedLevel(self) -> None:
        """
        A page under C{bestFrom} bytes gets the fixed level even when level
        19 fits the budget, and is not hashed ahead; from that size up,
        level 19.
        """
        codec = ZstdPatchCodec(budget=0.030)
        small, large = page(76, 40_000), page(77, 60_000)
        self.assertEqual(codec.levelFor(small, len(small)), 9)
        self.assertFalse(codec.shouldPrepare(small))
        self.assertEqual(codec.levelFor(large, len(large)), 19)
        self.assertTrue(codec.shouldPrepare(large))
        self.assertEqual(
            ZstdPatchCodec(budget=0.030, bestFrom=0).levelFor(small, 40_000), 19
        )

    def test_tooSlowToPrepare(self) -> None:
        """
        A base whose warm encode would still not fit the budget is never
        prepared, nor any without a budget.
        """
        self.assertFalse(ZstdPatchCodec(budget=0.001).shouldPrepare(page(55, 100_000)))
        self.assertFalse(ZstdPatchCodec().shouldPrepare(page(55, 1_000)))

    def test_withoutBackendNothingPrepared(self) -> None:
        """
        Without zstandard's cffi backend no base is prepared, and deltas
        are still made (at the levels the estimates allow cold).
        """
        self.patch(codecModule._zstd, "AVAILABLE", False)
        codec = ZstdPatchCodec(budget=0.005)
        base = page(59, 20_000)
        self.assertFalse(codec.prepare(base))
        delta = codec.encode(base, base + b"x")
        self.assertEqual(codec.decode(base, delta, len(base) + 1), base + b"x")

    def test_oneBestAtATime(self) -> None:
        """
        While a best-level encode runs (L{ZstdPatchCodec.reserveBest}), the
        next delta that would fit is made at the fixed level; once it is
        released, at the best again. Releasing twice counts once.
        """
        codec = ZstdPatchCodec(budget=0.005, bestFrom=0)
        base = page(61, 20_000)
        self.assertEqual(codec.levelFor(base, 20_000), 19)
        release = codec.reserveBest()
        self.assertEqual(codec.levelFor(base, 20_000), 9)
        release()
        release()
        self.assertEqual(codec.levelFor(base, 20_000), 19)
        other = codec.reserveBest()
        self.assertEqual(codec.levelFor(base, 20_000), 9)
        other()
        two = ZstdPatchCodec(budget=0.005, maxBestInFlight=2, bestFrom=0)
        two.reserveBest()
        self.assertEqual(two.levelFor(base, 20_000), 19)

    def test_negativeBudgetRefused(self) -> None:
        """
        A negative budget is a programming error.
        """
        self.assertRaises(ValueError, ZstdPatchCodec, budget=-1.0)

    def test_deferEncodeVersionPrepares(self) -> None:
        """
        L{deferEncodeVersion} sends a level-19 delta to the thread pool,
        records its level, holds the best level while it runs, and once it
        is made hands the fresh body to the preparer as the next base.
        """
        codec = ZstdPatchCodec(budget=0.005, bestFrom=0)
        base = page(56, 20_000)
        target = base + b"<p>more</p>"
        pool = _HeldPool()
        preparer = BackgroundPreparer(_ImmediateReactor(), _spawnNow)
        d = deferEncodeVersion(
            _ImmediateReactor(),
            pool,
            target,
            preparer=preparer,
            baseDigest=versionDigest(base),
            baseBody=base,
            deltaCodec=codec,
            fullCodec=None,
        )
        self.assertNoResult(d)
        self.assertEqual(codec.levelFor(base, len(target)), 9)
        # Not while the delta is being made: they would compete.
        self.assertEqual(preparer.prepared, 0)
        pool.runAll()
        encoded = self.successResultOf(d)
        self.assertEqual(encoded.mode, "delta")
        self.assertEqual(encoded.level, 19)
        self.assertEqual(encoded.payload, ZstdPatchCodec(19).encode(base, target))
        self.assertEqual(codec.levelFor(base, len(target)), 19)
        self.assertEqual(preparer.prepared, 1)
        self.assertFalse(codec.shouldPrepare(target))

    def test_deferEncodeVersionReleasesOnFailure(self) -> None:
        """
        A best-level encode that fails still releases the best level.
        """
        codec = _FailingCodec(budget=0.005, bestFrom=0)
        base = page(62, 20_000)
        pool = _HeldPool()
        d = deferEncodeVersion(
            _ImmediateReactor(),
            pool,
            base + b"x",
            baseDigest=versionDigest(base),
            baseBody=base,
            deltaCodec=codec,
            fullCodec=None,
        )
        pool.runAll()
        self.failureResultOf(d, ZeroDivisionError)
        self.assertEqual(codec.levelFor(base, 20_000), 19)

    def test_deferEncodeVersionSmallFixedInline(self) -> None:
        """
        Without a budget a small body is encoded inline and nothing is
        prepared.
        """
        base = page(57, 5_000)
        pool = ThreadPool()  # never started: using it would hang the test
        d = deferEncodeVersion(
            MemoryReactorClock(),
            pool,
            base + b"x",
            baseDigest=versionDigest(base),
            baseBody=base,
            deltaCodec=ZstdPatchCodec(),
            fullCodec=None,
        )
        self.assertEqual(self.successResultOf(d).mode, "delta")
