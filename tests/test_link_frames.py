"""
Tests for L{railgun.link.frames}: the pure wire codec.
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from railgun.link.errors import ErrorCode, ProtocolError
from railgun.link.frames import (
    HEADER_SIZE,
    MAX_STREAM_ID,
    MAX_WINDOW,
    TYPE_DATA,
    Data,
    FrameParser,
    GoAway,
    Headers,
    Hello,
    Ping,
    Pong,
    Reset,
    Settings,
    Unknown,
    Window,
    encodeFrame,
    encodeStreamFrameHeader,
    frameHeader,
)

streamIds = st.integers(min_value=1, max_value=MAX_STREAM_ID)
codes = st.integers(min_value=0, max_value=0xFFFFFFFF)
settingsStrategy = st.builds(
    Settings,
    maxFrameSize=st.integers(16384, 16777215),
    initialStreamWindow=st.integers(0, MAX_WINDOW),
    connectionWindow=st.integers(65535, MAX_WINDOW),
    maxConcurrentStreams=st.integers(0, MAX_WINDOW),
    maxHeaderBlock=st.integers(1024, 16777215),
)
codecNames = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20
)
frames = st.one_of(
    st.builds(Data, streamIds, st.binary(max_size=3000), st.booleans()),
    st.builds(Headers, streamIds, st.binary(max_size=3000), st.booleans()),
    st.builds(Window, st.integers(0, MAX_STREAM_ID), st.integers(1, MAX_WINDOW)),
    st.builds(Reset, streamIds, codes),
    st.builds(Ping, st.binary(min_size=8, max_size=8)),
    st.builds(Pong, st.binary(min_size=8, max_size=8)),
    st.builds(GoAway, st.integers(0, MAX_STREAM_ID), codes, st.text(max_size=300)),
    st.builds(
        Hello,
        st.just(1),
        st.binary(max_size=1024),
        settingsStrategy,
        st.lists(codecNames, max_size=5).map(tuple),
    ),
    st.builds(
        Unknown,
        st.integers(8, 255),
        st.integers(0, 255),
        st.integers(0, MAX_STREAM_ID),
        st.binary(max_size=100),
    ),
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """
    Cut C{data} at the given offsets (taken modulo its length).
    """
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def feedAll(parser: FrameParser, chunks: list[bytes]) -> list[object]:
    out: list[object] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out


def helloBytes(**kw: object) -> bytes:
    """
    A valid HELLO frame, with C{Hello} fields overridden by C{kw}.
    """
    fields: dict[str, object] = {"version": 1, "token": b"secret"}
    fields.update(kw)
    return Hello(**fields).encode()  # type: ignore[arg-type]


def rawHello(payload: bytes) -> bytes:
    return frameHeader(0x7, 0, 0, len(payload)) + payload


class RoundTripTests(SynchronousTestCase):
    """
    Every frame encodes and parses back equal, whatever the input split.
    """

    @settings(max_examples=300, deadline=None)
    @given(st.lists(frames, min_size=1, max_size=6), st.lists(st.integers(0, 10**6)))
    def test_roundTripRandomSplits(self, items: list[object], cuts: list[int]) -> None:
        """
        A sequence of frames of every type, fed in random pieces, parses back
        to the same frames.
        """
        wire = b"".join(encodeFrame(f) for f in items)  # type: ignore[arg-type]
        parser = FrameParser(16777215, 16777215)
        self.assertEqual(feedAll(parser, split(wire, cuts)), items)
        self.assertEqual(parser.bufferedBytes(), 0)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(frames, min_size=1, max_size=6), st.lists(st.integers(0, 10**6)))
    def test_feedRawRandomSplits(self, items: list[object], cuts: list[int]) -> None:
        """
        feedRaw gives the same frames as feed, whatever the split, with DATA
        and HEADERS as (type, streamId, flags, payload) tuples of bytes, and
        keeps only the incomplete tail buffered.
        """
        wire = b"".join(encodeFrame(f) for f in items)  # type: ignore[arg-type]
        parser = FrameParser(16777215, 16777215)
        got: list[object] = []
        fed = 0
        for chunk in split(wire, cuts):
            got.extend(parser.feedRaw(chunk))
            fed += len(chunk)
            parsed = sum(
                HEADER_SIZE + len(f[3])
                if isinstance(f, tuple)  # type: ignore[arg-type]
                else len(encodeFrame(f))  # type: ignore[arg-type]
                for f in got
            )
            self.assertEqual(parser.bufferedBytes(), fed - parsed)
        expected: list[object] = []
        for frame in items:
            if isinstance(frame, Data):
                expected.append((0, frame.streamId, int(frame.endStream), frame.data))
            elif isinstance(frame, Headers):
                expected.append((1, frame.streamId, int(frame.endStream), frame.block))
            else:
                expected.append(frame)
        self.assertEqual(got, expected)
        for frame in got:
            if isinstance(frame, tuple):
                self.assertIs(type(frame[3]), bytes)

    def test_feedRawNotBytes(self) -> None:
        """
        A bytearray or memoryview chunk is parsed, and its incomplete tail
        kept, like bytes.
        """
        wire = Data(3, b"abc").encode() + Data(5, b"defg").encode()
        parser = FrameParser(65536)
        self.assertEqual(parser.feedRaw(memoryview(wire)[:15]), [(0, 3, 0, b"abc")])
        self.assertEqual(parser.bufferedBytes(), 3)
        self.assertEqual(parser.feedRaw(bytearray(wire[15:])), [(0, 5, 0, b"defg")])
        self.assertEqual(parser.bufferedBytes(), 0)

    def test_byteByByte(self) -> None:
        """
        Feeding one byte at a time yields the frames exactly when complete.
        """
        wire = Ping(b"12345678").encode() + Data(1, b"abc", True).encode()
        parser = FrameParser(65536)
        got = []
        for i in range(len(wire)):
            got.extend(parser.feed(wire[i : i + 1]))
            if i == 16:
                self.assertEqual(got, [Ping(b"12345678")])
        self.assertEqual(got, [Ping(b"12345678"), Data(1, b"abc", True)])

    def test_dataHeaderZeroCopy(self) -> None:
        """
        encodeStreamFrameHeader followed by the payload is exactly a DATA frame.
        """
        payload = b"x" * 70000
        self.assertEqual(
            encodeStreamFrameHeader(TYPE_DATA, 7, len(payload), True) + payload,
            Data(7, payload, True).encode(),
        )

    def test_reservedBitIgnored(self) -> None:
        """
        The high bit of the stream id is ignored on receive.
        """
        wire = struct.pack("!BHBBI", 0, 3, 0, 1, 0x80000005) + b"abc"
        self.assertEqual(FrameParser(65536).feed(wire), [Data(5, b"abc", True)])

    def test_unknownFlagsIgnored(self) -> None:
        """
        Flags not defined for a type are ignored.
        """
        wire = struct.pack("!BHBBI", 0, 8, 0x4, 0xFE, 0) + b"abcdefgh"
        self.assertEqual(FrameParser(65536).feed(wire), [Ping(b"abcdefgh")])

    def test_unknownErrorCodeKept(self) -> None:
        """
        An unknown error code in RESET parses as the plain integer.
        """
        (frame,) = FrameParser(65536).feed(Reset(3, 999).encode())
        self.assertEqual(frame, Reset(3, 999))
        self.assertNotIsInstance(frame.code, ErrorCode)

    def test_unknownSettingIgnored(self) -> None:
        """
        A HELLO with an unknown setting id parses; the id is ignored.
        """
        payload = (
            b"RGLK"
            + struct.pack("!HH", 1, 0)
            + struct.pack("!H", 2)
            + struct.pack("!HI", 99, 12345)
            + struct.pack("!HI", 4, 7)
            + b"\x01\x04zstd"
        )
        (hello,) = FrameParser(65536).feed(rawHello(payload))
        self.assertEqual(
            hello, Hello(1, b"", Settings(maxConcurrentStreams=7), ("zstd",))
        )


class MalformedTests(SynchronousTestCase):
    """
    Malformed input gives a L{ProtocolError} with the right code.
    """

    def assertCode(
        self, wire: bytes, code: ErrorCode, maxFrameSize: int = 65536
    ) -> None:
        parser = FrameParser(maxFrameSize, 4096)
        error = self.assertRaises(ProtocolError, parser.feed, wire)
        self.assertEqual(error.code, code)
        # The parser stays failed.
        self.assertRaises(ProtocolError, parser.feed, b"")

    def test_oversizeCheckedOnHeader(self) -> None:
        """
        An oversize frame is refused from its 9-byte header alone.
        """
        self.assertCode(frameHeader(0, 0, 1, 65537), ErrorCode.FRAME_SIZE_ERROR)

    def test_oversizeHeaderBlock(self) -> None:
        """
        A HEADERS frame above the header-block limit is a FRAME_SIZE_ERROR.
        """
        self.assertCode(frameHeader(1, 0, 1, 4097), ErrorCode.FRAME_SIZE_ERROR)

    def test_fixedLengths(self) -> None:
        """
        WINDOW, RESET, PING, PONG and GOAWAY with a wrong length are refused.
        """
        for frameType, length, sid in [
            (2, 3, 1),
            (2, 5, 0),
            (3, 8, 1),
            (4, 7, 0),
            (5, 9, 0),
            (6, 7, 0),
            (6, 8 + 1025, 0),
        ]:
            self.assertCode(
                frameHeader(frameType, 0, sid, length) + b"\0" * length,
                ErrorCode.FRAME_SIZE_ERROR,
            )

    def test_streamZero(self) -> None:
        """
        DATA, HEADERS and RESET on stream 0 are protocol errors.
        """
        for frameType, length in [(0, 0), (1, 0), (3, 4)]:
            self.assertCode(
                frameHeader(frameType, 0, 0, length) + b"\0" * length,
                ErrorCode.PROTOCOL_ERROR,
            )

    def test_connectionFramesOnStream(self) -> None:
        """
        PING, PONG, GOAWAY and HELLO on a stream are protocol errors.
        """
        for frameType, length in [(4, 8), (5, 8), (6, 8), (7, 6)]:
            self.assertCode(
                frameHeader(frameType, 0, 1, length) + b"\0" * length,
                ErrorCode.PROTOCOL_ERROR,
            )

    def test_windowIncrement(self) -> None:
        """
        A WINDOW increment of 0 or above 2^31-1 is a protocol error.
        """
        for increment in (0, 0x80000000):
            self.assertCode(
                frameHeader(2, 0, 0, 4) + struct.pack("!I", increment),
                ErrorCode.PROTOCOL_ERROR,
            )

    def test_helloBadMagic(self) -> None:
        """
        A HELLO without the magic is a protocol error.
        """
        good = helloBytes()
        self.assertCode(good[:9] + b"XGLK" + good[13:], ErrorCode.PROTOCOL_ERROR)

    def test_helloBadVersion(self) -> None:
        """
        A HELLO of another version is UNSUPPORTED_VERSION.
        """
        self.assertCode(helloBytes(version=2), ErrorCode.UNSUPPORTED_VERSION)

    def test_helloTruncated(self) -> None:
        """
        Every truncation of a HELLO payload is a protocol error.
        """
        good = helloBytes(codecs=("zstd", "brotli"))[HEADER_SIZE:]
        for n in range(len(good)):
            self.assertCode(rawHello(good[:n]), ErrorCode.PROTOCOL_ERROR)

    def test_helloTrailingBytes(self) -> None:
        """
        Bytes after the codec list are a protocol error.
        """
        self.assertCode(
            rawHello(helloBytes()[HEADER_SIZE:] + b"x"), ErrorCode.PROTOCOL_ERROR
        )

    def test_helloTokenTooLong(self) -> None:
        """
        A token over 1024 bytes is a protocol error.
        """
        payload = b"RGLK" + struct.pack("!HH", 1, 1025) + b"t" * 1025 + b"\0\0\0"
        self.assertCode(rawHello(payload), ErrorCode.PROTOCOL_ERROR)

    def test_helloSettingOutOfRange(self) -> None:
        """
        Each setting outside its allowed range is a protocol error.
        """
        for settingId, value in [
            (1, 16383),
            (1, 16777216),
            (2, 0x80000000),
            (3, 65534),
            (4, 0x80000000),
            (5, 1023),
            (5, 16777216),
        ]:
            payload = (
                b"RGLK"
                + struct.pack("!HHH", 1, 0, 1)
                + struct.pack("!HI", settingId, value)
                + b"\0"
            )
            self.assertCode(rawHello(payload), ErrorCode.PROTOCOL_ERROR)

    def test_helloCodecNames(self) -> None:
        """
        Empty or non-ASCII codec names are protocol errors.
        """
        for entry in (b"\x01\x00", b"\x01\x02\xff\xfe"):
            payload = b"RGLK" + struct.pack("!HHH", 1, 0, 0) + entry
            self.assertCode(rawHello(payload), ErrorCode.PROTOCOL_ERROR)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=2000), st.lists(st.integers(0, 10**5), max_size=5))
    def test_randomBytesAfterHello(self, garbage: bytes, cuts: list[int]) -> None:
        """
        Random bytes after a valid HELLO only ever raise ProtocolError.
        """
        parser = FrameParser(16384, 4096)
        self.assertEqual(len(parser.feed(helloBytes())), 1)
        try:
            for chunk in split(garbage, cuts):
                parser.feed(chunk)
        except ProtocolError:
            pass

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=300))
    def test_randomHelloPayload(self, payload: bytes) -> None:
        """
        Random HELLO payloads parse or raise ProtocolError, nothing else.
        """
        try:
            FrameParser(65536).feed(rawHello(b"RGLK\x00\x01" + payload))
        except ProtocolError:
            pass

    def test_partialFrameBounded(self) -> None:
        """
        Only the incomplete last frame stays buffered.
        """
        parser = FrameParser(65536)
        wire = Data(1, b"a" * 1000).encode() * 3
        self.assertEqual(len(parser.feed(wire[:2500])), 2)
        self.assertEqual(parser.bufferedBytes(), 2500 - 2 * 1009)


class ConstructionTests(SynchronousTestCase):
    """
    Frame and settings constructors refuse values that cannot be encoded.
    """

    def test_settingsRanges(self) -> None:
        """
        Settings outside their ranges raise ValueError; defaults match the spec.
        """
        self.assertEqual(
            Settings(),
            Settings(65536, 1048576, 16777216, 1000, 65536),
        )
        for kw in [
            {"maxFrameSize": 16383},
            {"connectionWindow": 65534},
            {"maxHeaderBlock": 1023},
            {"initialStreamWindow": -1},
        ]:
            self.assertRaises(ValueError, Settings, **kw)

    def test_invalidFrames(self) -> None:
        """
        Invalid frame fields raise ValueError at construction or encoding.
        """
        self.assertRaises(ValueError, Window, 0, 0)
        self.assertRaises(ValueError, Reset, 0, 1)
        self.assertRaises(ValueError, Ping, b"short")
        self.assertRaises(ValueError, GoAway, 0, 0, "x" * 1025)
        self.assertRaises(ValueError, Hello, 1, b"t" * 1025)
        self.assertRaises(ValueError, Hello, 1, b"", Settings(), ("é",))
        self.assertRaises(ValueError, Data(0, b"").encode)
        self.assertRaises(ValueError, frameHeader, 0, 0, 1, 1 << 24)
