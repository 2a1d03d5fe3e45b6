"""
The link's wire codec: frame classes, their encoding, and an incremental
parser.  Pure functions over bytes: no transport, no reactor.

Every frame is a 9-byte header (uint24 payload length, uint8 type, uint8
flags, uint32 stream id whose high bit is reserved) followed by the payload.
See C{docs/protocol.md} for the byte-by-byte layout.
"""

from __future__ import annotations

from collections.abc import Iterable
from struct import Struct
from typing import ClassVar

from attrs import field, frozen, validators

from .errors import ErrorCode, ProtocolError

HEADER_SIZE = 9
MAX_STREAM_ID = 0x7FFFFFFF
MAX_WINDOW = 0x7FFFFFFF
FLAG_END_STREAM = 0x1
MAGIC = b"RGLK"
PROTOCOL_VERSION = 1
MAX_TOKEN_LENGTH = 1024
MAX_REASON_LENGTH = 1024
MAX_CODECS = 255

TYPE_DATA = 0x0
TYPE_HEADERS = 0x1
TYPE_WINDOW = 0x2
TYPE_RESET = 0x3
TYPE_PING = 0x4
TYPE_PONG = 0x5
TYPE_GOAWAY = 0x6
TYPE_HELLO = 0x7

_STREAM_MASK = 0x7FFFFFFF

_header = Struct("!BHBBI")
_u16 = Struct("!H")
_u32 = Struct("!I")
_goAwayHead = Struct("!II")
_setting = Struct("!HI")
_helloHead = Struct("!4sH")


def _inRange(low: int, high: int):  # type: ignore[no-untyped-def]
    return [validators.instance_of(int), validators.ge(low), validators.le(high)]


@frozen
class Settings:
    """
    The limits one side announces in its HELLO: what it accepts from the peer.

    @ivar maxFrameSize: largest frame payload accepted (setting 1).
    @ivar initialStreamWindow: initial per-stream receive window (setting 2).
    @ivar connectionWindow: initial connection receive window (setting 3).
    @ivar maxConcurrentStreams: streams the peer may have open toward us
        (setting 4).
    @ivar maxHeaderBlock: largest encoded header block accepted (setting 5).
    """

    maxFrameSize: int = field(default=65536, validator=_inRange(16384, 16777215))
    initialStreamWindow: int = field(default=1048576, validator=_inRange(0, MAX_WINDOW))
    connectionWindow: int = field(
        default=16777216, validator=_inRange(65535, MAX_WINDOW)
    )
    maxConcurrentStreams: int = field(default=1000, validator=_inRange(0, MAX_WINDOW))
    maxHeaderBlock: int = field(default=65536, validator=_inRange(1024, 16777215))


# Setting id -> (Settings attribute, lowest, highest); the wire order of
# encoding is this order.
SETTINGS_IDS: dict[int, tuple[str, int, int]] = {
    1: ("maxFrameSize", 16384, 16777215),
    2: ("initialStreamWindow", 0, MAX_WINDOW),
    3: ("connectionWindow", 65535, MAX_WINDOW),
    4: ("maxConcurrentStreams", 0, MAX_WINDOW),
    5: ("maxHeaderBlock", 1024, 16777215),
}


def frameHeader(frameType: int, flags: int, streamId: int, length: int) -> bytes:
    """
    Encode a 9-byte frame header.

    @param frameType: the frame type code.
    @param flags: the flag byte.
    @param streamId: the stream id (0..2^31-1).
    @param length: the payload length (0..2^24-1).
    @return: the header bytes.
    @raise ValueError: on an out-of-range length or stream id.
    """
    if not 0 <= length <= 0xFFFFFF:
        raise ValueError(f"frame payload length {length} out of range")
    if not 0 <= streamId <= MAX_STREAM_ID:
        raise ValueError(f"stream id {streamId} out of range")
    return _header.pack(length >> 16, length & 0xFFFF, frameType, flags, streamId)


def encodeStreamFrameHeader(
    frameType: int, streamId: int, length: int, endStream: bool
) -> bytes:
    """
    Encode only the header of a DATA or HEADERS frame, so that the payload
    can be handed to C{writeSequence} after it without being copied. Nothing
    is checked: the payload's size was already checked against the peer's
    limits (a DATA chunk by the windows and frame size, a header block by
    the link before it was queued).

    @param frameType: L{TYPE_DATA} or L{TYPE_HEADERS}.
    @param streamId: the stream (>0).
    @param length: the payload length.
    @param endStream: set the END_STREAM flag.
    @return: the 9 header bytes.
    """
    return _header.pack(
        length >> 16,
        length & 0xFFFF,
        frameType,
        FLAG_END_STREAM if endStream else 0,
        streamId,
    )


def _positiveStream(instance: object, attribute: object, value: int) -> None:
    if not 0 < value <= MAX_STREAM_ID:
        raise ValueError(f"stream id must be 1..{MAX_STREAM_ID}, not {value}")


def _eightBytes(instance: object, attribute: object, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != 8:
        raise ValueError("PING/PONG payload must be exactly 8 bytes")


def _u32Value(instance: object, attribute: object, value: int) -> None:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{value} does not fit in uint32")


@frozen
class Data:
    """
    DATA (type 0x0): body bytes of a stream.
    """

    TYPE: ClassVar[int] = TYPE_DATA
    streamId: int
    data: bytes
    endStream: bool = False

    def encode(self) -> bytes:
        _positiveStream(self, None, self.streamId)
        return (
            frameHeader(
                TYPE_DATA,
                FLAG_END_STREAM if self.endStream else 0,
                self.streamId,
                len(self.data),
            )
            + self.data
        )


@frozen
class Headers:
    """
    HEADERS (type 0x1): one complete HPACK header block; the first one opens
    the stream.
    """

    TYPE: ClassVar[int] = TYPE_HEADERS
    streamId: int
    block: bytes
    endStream: bool = False

    def encode(self) -> bytes:
        _positiveStream(self, None, self.streamId)
        return (
            frameHeader(
                TYPE_HEADERS,
                FLAG_END_STREAM if self.endStream else 0,
                self.streamId,
                len(self.block),
            )
            + self.block
        )


@frozen
class Window:
    """
    WINDOW (type 0x2): flow-control credit for a stream, or for the whole
    connection when C{streamId} is 0.
    """

    TYPE: ClassVar[int] = TYPE_WINDOW
    streamId: int = field(validator=_inRange(0, MAX_STREAM_ID))
    increment: int = field(validator=_inRange(1, MAX_WINDOW))

    def encode(self) -> bytes:
        return _header.pack(0, 4, TYPE_WINDOW, 0, self.streamId) + _u32.pack(
            self.increment
        )


@frozen
class Reset:
    """
    RESET (type 0x3): abort one stream; its last frame.
    """

    TYPE: ClassVar[int] = TYPE_RESET
    streamId: int = field(validator=_positiveStream)
    code: int = field(validator=_u32Value)

    def encode(self) -> bytes:
        return _header.pack(0, 4, TYPE_RESET, 0, self.streamId) + _u32.pack(self.code)


@frozen
class Ping:
    """
    PING (type 0x4): liveness probe; answered with a PONG carrying the same
    8 bytes.
    """

    TYPE: ClassVar[int] = TYPE_PING
    opaque: bytes = field(validator=_eightBytes)

    def encode(self) -> bytes:
        return _header.pack(0, 8, TYPE_PING, 0, 0) + self.opaque


@frozen
class Pong:
    """
    PONG (type 0x5): the answer to a PING.
    """

    TYPE: ClassVar[int] = TYPE_PONG
    opaque: bytes = field(validator=_eightBytes)

    def encode(self) -> bytes:
        return _header.pack(0, 8, TYPE_PONG, 0, 0) + self.opaque


def _reasonFits(instance: object, attribute: object, value: str) -> None:
    if len(value.encode("utf-8")) > MAX_REASON_LENGTH:
        raise ValueError(f"GOAWAY reason longer than {MAX_REASON_LENGTH} bytes")


def truncateReason(reason: str) -> str:
    """
    Cut C{reason} so that its UTF-8 form fits in a GOAWAY frame, without
    splitting a character.
    """
    raw = reason.encode("utf-8")
    if len(raw) <= MAX_REASON_LENGTH:
        return reason
    return raw[:MAX_REASON_LENGTH].decode("utf-8", "ignore")


@frozen
class GoAway:
    """
    GOAWAY (type 0x6): no new streams; the sender processed peer streams up
    to C{lastStreamId}.
    """

    TYPE: ClassVar[int] = TYPE_GOAWAY
    lastStreamId: int = field(validator=_inRange(0, MAX_STREAM_ID))
    code: int = field(validator=_u32Value)
    reason: str = field(default="", validator=_reasonFits)

    def encode(self) -> bytes:
        raw = self.reason.encode("utf-8")
        return (
            _header.pack(0, 8 + len(raw), TYPE_GOAWAY, 0, 0)
            + _goAwayHead.pack(self.lastStreamId, self.code)
            + raw
        )


def _tokenFits(instance: object, attribute: object, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) > MAX_TOKEN_LENGTH:
        raise ValueError(f"token must be bytes of at most {MAX_TOKEN_LENGTH}")


def _codecsFit(instance: object, attribute: object, value: tuple[str, ...]) -> None:
    if len(value) > MAX_CODECS:
        raise ValueError(f"at most {MAX_CODECS} codecs")
    for name in value:
        if not (0 < len(name) <= 255 and name.isascii()):
            raise ValueError(f"codec name {name!r} must be 1..255 ASCII characters")


def _asTuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@frozen
class Hello:
    """
    HELLO (type 0x7): the first frame each side sends.
    """

    TYPE: ClassVar[int] = TYPE_HELLO
    version: int = field(validator=_inRange(0, 0xFFFF))
    token: bytes = field(validator=_tokenFits)
    settings: Settings = Settings()
    codecs: tuple[str, ...] = field(
        default=(), converter=_asTuple, validator=_codecsFit
    )

    def encode(self) -> bytes:
        parts = [
            _helloHead.pack(MAGIC, self.version),
            _u16.pack(len(self.token)),
            self.token,
            _u16.pack(len(SETTINGS_IDS)),
        ]
        for settingId, (name, _, _) in SETTINGS_IDS.items():
            parts.append(_setting.pack(settingId, getattr(self.settings, name)))
        parts.append(bytes([len(self.codecs)]))
        for codec in self.codecs:
            raw = codec.encode("ascii")
            parts.append(bytes([len(raw)]))
            parts.append(raw)
        payload = b"".join(parts)
        return frameHeader(TYPE_HELLO, 0, 0, len(payload)) + payload


@frozen
class Unknown:
    """
    A frame of a type this version does not know; the link ignores it.
    """

    frameType: int
    flags: int
    streamId: int
    payload: bytes

    def encode(self) -> bytes:
        return (
            frameHeader(self.frameType, self.flags, self.streamId, len(self.payload))
            + self.payload
        )


Frame = Data | Headers | Window | Reset | Ping | Pong | GoAway | Hello | Unknown
# A DATA or HEADERS frame as L{FrameParser.feedRaw} returns it:
# (type, streamId, flags, payload).
RawFrame = tuple[int, int, int, bytes]


def encodeFrame(frame: Frame) -> bytes:
    """
    Encode any frame.

    @return: header and payload.
    """
    return frame.encode()


# Fixed payload lengths, checked as soon as the header arrives.
_FIXED_LENGTH = {
    TYPE_WINDOW: 4,
    TYPE_RESET: 4,
    TYPE_PING: 8,
    TYPE_PONG: 8,
}
# Types that must carry a stream id > 0 (others known must carry 0, except
# WINDOW, which may carry either).
_STREAM_TYPES = frozenset({TYPE_DATA, TYPE_HEADERS, TYPE_RESET})
_CONNECTION_TYPES = frozenset({TYPE_PING, TYPE_PONG, TYPE_GOAWAY, TYPE_HELLO})
_TYPE_NAMES = {
    TYPE_DATA: "DATA",
    TYPE_HEADERS: "HEADERS",
    TYPE_WINDOW: "WINDOW",
    TYPE_RESET: "RESET",
    TYPE_PING: "PING",
    TYPE_PONG: "PONG",
    TYPE_GOAWAY: "GOAWAY",
    TYPE_HELLO: "HELLO",
}


def parseHello(payload: bytes) -> Hello:
    """
    Parse a HELLO payload.

    @param payload: the frame payload.
    @return: the L{Hello}.
    @raise ProtocolError: on a bad magic (PROTOCOL_ERROR), a version other
        than 1 (UNSUPPORTED_VERSION), a truncated or over-long payload, an
        oversize token, an out-of-range setting or a non-ASCII codec name.
    """

    def bad(why: str) -> ProtocolError:
        return ProtocolError(ErrorCode.PROTOCOL_ERROR, f"bad HELLO: {why}")

    end = len(payload)
    if end < 6:
        raise bad("truncated")
    magic, version = _helloHead.unpack_from(payload, 0)
    if magic != MAGIC:
        raise bad("wrong magic")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {version} not supported (want {PROTOCOL_VERSION})",
        )
    pos = 6
    if end < pos + 2:
        raise bad("truncated")
    (tokenLength,) = _u16.unpack_from(payload, pos)
    pos += 2
    if tokenLength > MAX_TOKEN_LENGTH:
        raise bad("token too long")
    if end < pos + tokenLength + 2:
        raise bad("truncated")
    token = payload[pos : pos + tokenLength]
    pos += tokenLength
    (count,) = _u16.unpack_from(payload, pos)
    pos += 2
    if end < pos + 6 * count + 1:
        raise bad("truncated")
    values: dict[str, int] = {}
    for _ in range(count):
        settingId, value = _setting.unpack_from(payload, pos)
        pos += 6
        known = SETTINGS_IDS.get(settingId)
        if known is None:
            continue
        name, low, high = known
        if not low <= value <= high:
            raise bad(f"setting {settingId} value {value} out of {low}..{high}")
        values[name] = value
    codecCount = payload[pos]
    pos += 1
    codecs = []
    for _ in range(codecCount):
        if pos >= end:
            raise bad("truncated")
        nameLength = payload[pos]
        pos += 1
        if nameLength == 0 or pos + nameLength > end:
            raise bad("bad codec name")
        raw = payload[pos : pos + nameLength]
        pos += nameLength
        if not raw.isascii():
            raise bad("codec name not ASCII")
        codecs.append(raw.decode("ascii"))
    if pos != end:
        raise bad("trailing bytes")
    return Hello(
        version=version, token=token, settings=Settings(**values), codecs=tuple(codecs)
    )


class FrameParser:
    """
    Incremental frame parser: feed it bytes as they arrive, get whole frames.

    At most one partial frame stays buffered between calls, and a frame's
    declared length is checked against the limits as soon as its header
    arrives, so a peer can never make it buffer more than one maximum-size
    frame.

    @ivar maxFrameSize: the largest payload accepted (our MAX_FRAME_SIZE).
    @ivar maxHeaderBlock: the largest HEADERS payload accepted.
    """

    def __init__(self, maxFrameSize: int, maxHeaderBlock: int | None = None) -> None:
        """
        @param maxFrameSize: the largest payload accepted.
        @param maxHeaderBlock: the largest HEADERS payload accepted (defaults
            to C{maxFrameSize}).
        """
        self.maxFrameSize = maxFrameSize
        self.maxHeaderBlock = maxFrameSize if maxHeaderBlock is None else maxHeaderBlock
        self._buffer = bytearray()
        self._failed: ProtocolError | None = None

    def bufferedBytes(self) -> int:
        """
        @return: how many bytes of an incomplete frame are buffered.
        """
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """
        Add received bytes and return every frame they complete.

        @param data: the next bytes from the peer, split anywhere.
        @return: the complete frames, in order.
        @raise ProtocolError: on malformed input; the parser then stays
            failed and raises the same error on every later call.
        """
        frames: list[Frame] = []
        for item in self.feedRaw(data):
            if isinstance(item, tuple):
                frameType, streamId, flags, payload = item
                cls = Data if frameType == TYPE_DATA else Headers
                frames.append(cls(streamId, payload, bool(flags & FLAG_END_STREAM)))
            else:
                frames.append(item)
        return frames

    def feedRaw(self, data: bytes) -> list[RawFrame | Frame]:
        """
        Like L{feed}, but DATA and HEADERS frames, the hot path of a link,
        come as plain C{(type, streamId, flags, payload)} tuples instead of
        frame objects; every other frame is parsed and checked as by
        L{feed}.

        Frames are parsed where they are in C{data}, so a payload is copied
        once (sliced out of C{data}).  Only an incomplete frame at the end
        is kept; the next call completes it with just the bytes it lacks
        and parses the rest of its input in place again (a link delivers
        up to a socket read at once: appending all of it to the buffer
        would copy every byte once more).

        @param data: the next bytes from the peer, split anywhere.
        @return: the complete frames, in order.
        @raise ProtocolError: as L{feed}.
        """
        if self._failed is not None:
            raise self._failed
        if data.__class__ is not bytes:
            data = bytes(data)
        frames: list[RawFrame | Frame] = []
        try:
            pos = self._completeBuffered(data, frames) if self._buffer else 0
            if pos < 0:
                return frames
            pos = self._parseFrom(data, pos, frames)
            if pos < len(data):
                self._buffer += memoryview(data)[pos:]
        except ProtocolError as e:
            self._failed = e
            raise
        return frames

    def _completeBuffered(self, data: bytes, frames: list[RawFrame | Frame]) -> int:
        """
        Complete the buffered partial frame from the start of C{data}.

        @return: where the rest of C{data} starts, or -1 when all of it went
            into the buffer (the frame is still incomplete).
        """
        buf = self._buffer
        taken = 0
        if len(buf) < HEADER_SIZE:
            taken = min(HEADER_SIZE - len(buf), len(data))
            buf += data[:taken]
            if len(buf) < HEADER_SIZE:
                return -1
        high, low, frameType, flags, streamId = _header.unpack_from(buf, 0)
        length = (high << 16) | low
        streamId &= _STREAM_MASK
        self._checkFast(frameType, streamId, length)
        need = HEADER_SIZE + length - len(buf)
        if len(data) - taken < need:
            buf += memoryview(data)[taken:]
            return -1
        buf += memoryview(data)[taken : taken + need]
        payload = bytes(memoryview(buf)[HEADER_SIZE:])
        buf.clear()
        if frameType <= TYPE_HEADERS:
            frames.append((frameType, streamId, flags, payload))
        else:
            frames.append(_parsePayload(frameType, flags, streamId, payload))
        return taken + need

    def _checkFast(self, frameType: int, streamId: int, length: int) -> None:
        """
        L{_checkHeader}, skipped for the common valid DATA/HEADERS header.
        """
        if frameType > TYPE_HEADERS or not streamId or length > self.maxFrameSize:
            self._checkHeader(frameType, streamId, length)
        elif frameType == TYPE_HEADERS and length > self.maxHeaderBlock:
            self._checkHeader(frameType, streamId, length)

    def _parseFrom(
        self, source: bytes, pos: int, frames: list[RawFrame | Frame]
    ) -> int:
        """
        Parse the complete frames of C{source} from C{pos}, checking each
        header (also that of an incomplete frame at the end) before its
        payload is taken.

        @return: where the first incomplete frame starts.
        """
        append = frames.append
        end = len(source)
        unpack = _header.unpack_from
        check = self._checkFast
        while end - pos >= HEADER_SIZE:
            high, low, frameType, flags, streamId = unpack(source, pos)
            length = (high << 16) | low
            streamId &= _STREAM_MASK
            check(frameType, streamId, length)
            start = pos + HEADER_SIZE
            if end - start < length:
                break
            pos = start + length
            if frameType <= TYPE_HEADERS:
                append((frameType, streamId, flags, source[start:pos]))
            else:
                append(_parsePayload(frameType, flags, streamId, source[start:pos]))
        return pos

    def _checkHeader(self, frameType: int, streamId: int, length: int) -> None:
        """
        Validate a frame header before its payload is buffered.

        @raise ProtocolError: when the frame cannot be valid.
        """
        if length > self.maxFrameSize:
            raise ProtocolError(
                ErrorCode.FRAME_SIZE_ERROR,
                f"frame of {length} bytes exceeds MAX_FRAME_SIZE {self.maxFrameSize}",
            )
        if frameType > TYPE_HELLO:
            return
        name = _TYPE_NAMES[frameType]
        if frameType == TYPE_HEADERS and length > self.maxHeaderBlock:
            raise ProtocolError(
                ErrorCode.FRAME_SIZE_ERROR,
                f"header block of {length} bytes exceeds MAX_HEADER_BLOCK "
                f"{self.maxHeaderBlock}",
            )
        fixed = _FIXED_LENGTH.get(frameType)
        if fixed is not None and length != fixed:
            raise ProtocolError(
                ErrorCode.FRAME_SIZE_ERROR,
                f"{name} payload must be {fixed} bytes, not {length}",
            )
        if frameType == TYPE_GOAWAY and not 8 <= length <= 8 + MAX_REASON_LENGTH:
            raise ProtocolError(
                ErrorCode.FRAME_SIZE_ERROR, f"GOAWAY payload of {length} bytes"
            )
        if streamId == 0 and frameType in _STREAM_TYPES:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"{name} frame on stream 0")
        if streamId != 0 and frameType in _CONNECTION_TYPES:
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR, f"{name} frame on stream {streamId}"
            )


def _parsePayload(frameType: int, flags: int, streamId: int, payload: bytes) -> Frame:
    """
    Build the frame object for a complete frame whose header was checked.

    @raise ProtocolError: on an invalid payload.
    """
    if frameType == TYPE_DATA:
        return Data(streamId, payload, bool(flags & FLAG_END_STREAM))
    if frameType == TYPE_HEADERS:
        return Headers(streamId, payload, bool(flags & FLAG_END_STREAM))
    if frameType == TYPE_WINDOW:
        (increment,) = _u32.unpack(payload)
        if not 1 <= increment <= MAX_WINDOW:
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR,
                f"WINDOW increment {increment} outside 1..{MAX_WINDOW}",
            )
        return Window(streamId, increment)
    if frameType == TYPE_RESET:
        (code,) = _u32.unpack(payload)
        return Reset(streamId, _knownCode(code))
    if frameType == TYPE_PING:
        return Ping(payload)
    if frameType == TYPE_PONG:
        return Pong(payload)
    if frameType == TYPE_GOAWAY:
        lastStreamId, code = _goAwayHead.unpack_from(payload, 0)
        # Replacement characters can make the text longer than the bytes.
        reason = truncateReason(payload[8:].decode("utf-8", "replace"))
        return GoAway(lastStreamId & _STREAM_MASK, _knownCode(code), reason)
    if frameType == TYPE_HELLO:
        return parseHello(payload)
    return Unknown(frameType, flags, streamId, payload)


def _knownCode(code: int) -> int:
    """
    Return an L{ErrorCode} for a known code, the plain int otherwise (the
    link maps unknown codes to INTERNAL_ERROR when acting on them).
    """
    try:
        return ErrorCode(code)
    except ValueError:
        return code
