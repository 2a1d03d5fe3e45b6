"""
The outbound side of a link, without I/O: the control queue, the opening
HEADERS waiting to leave, each stream's queue, and a fair round-robin of
stream frames within the send windows.

Part of L{railgun.link.connection.LinkConnection} (its C{scheduler}),
kept apart because it is the hot path of every body byte sent: a stream's
transport queues its headers, data and END_STREAM here.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .counting import ByteCounters
from .events import STREAM_DRAINED, LinkEvent
from .frames import TYPE_DATA, TYPE_HEADERS, Settings, encodeStreamFrameHeader
from .headerblock import Header, HeaderBlockEncoder, blockFits
from .streamstate import (
    END,
    LOCAL_OPEN,
    TRANSITIONS,
    HeadersItem,
    StreamInput,
    StreamLife,
    StreamRecord,
)

_DATA_TYPES = (bytes, memoryview)
_QUEUE_END = StreamInput.QUEUE_END


class Scheduler:
    """
    Queue and interleave a link's outbound frames.

    @ivar sendWindow: the peer's connection credit.
    @ivar paused: whether the transport asked us to stop writing.
    @ivar flushWanted: whether L{frames} has something to do; the I/O layer
        schedules a flush while it is set.
    @ivar overflowed: whether more than L{maxControlBytes} of control
        frames waited while paused.
    @ivar maxControlBytes: bound of control frames queued while paused.
    @ivar flushBudget: DATA bytes per L{frames} call at most.
    @ivar controlBytes: bytes of control frames queued.
    """

    maxControlBytes = 1024 * 1024
    flushBudget = 512 * 1024

    def __init__(
        self,
        encoder: HeaderBlockEncoder,
        counters: ByteCounters,
        stats: Any,
        events: list[LinkEvent],
        peerSettings: Settings,
    ) -> None:
        self._encoder = encoder
        self._counters = counters
        self._stats = stats
        self._events = events
        self.sendWindow = peerSettings.connectionWindow
        self._maxFrame = peerSettings.maxFrameSize
        self._peerSettings = peerSettings
        self.paused = False
        self.flushWanted = False
        self.overflowed = False
        self._stopped = False
        self._control: list[bytes] = []
        self.controlBytes = 0
        self._pendingOpens: deque[StreamRecord] = deque()
        self._ready: deque[StreamRecord] = deque()

    def peerSettingsChanged(self, settings: Settings) -> None:
        """
        The peer's HELLO arrived: its connection window and frame size.
        """
        self.sendWindow = settings.connectionWindow
        self._maxFrame = settings.maxFrameSize
        self._peerSettings = settings

    def wantFlush(self) -> None:
        """
        Ask for a call of L{frames} (connection credit may be due).
        """
        if not self._stopped:
            self.flushWanted = True

    def queueControl(self, frame: bytes, check: bool = True) -> None:
        """
        Queue a control frame, ahead of every stream frame.
        """
        if self._stopped:
            return
        self._control.append(frame)
        self.controlBytes += len(frame)
        if check and self.paused and self.controlBytes > self.maxControlBytes:
            self.overflowed = True
        self.flushWanted = True

    def finalControl(self, frame: bytes) -> None:
        """
        Queue the last frame of a closing link (its GOAWAY).
        """
        self._control.append(frame)
        self.controlBytes += len(frame)

    def takeFinalControl(self) -> list[bytes]:
        """
        @return: what control frames are left, once the link is closing.
        """
        out = self._control
        self._control = []
        self.controlBytes = 0
        if out:
            self._stats.framesSent += len(out)
            self._counters.sent += sum(map(len, out))
        return out

    def stop(self) -> None:
        """
        The link is closing: queue nothing more, schedule nothing.
        """
        self._stopped = True
        self.flushWanted = False
        self._pendingOpens.clear()
        self._ready.clear()

    def clear(self) -> None:
        """
        The transport is gone: drop the control frames too.
        """
        self._control = []
        self.controlBytes = 0

    def checkHeaderSize(self, headers: list[Any]) -> None:
        """
        @raise ValueError: when the block could exceed the peer's limits.
        """
        limit = min(self._peerSettings.maxHeaderBlock, self._peerSettings.maxFrameSize)
        if not blockFits(headers, limit):
            raise ValueError(
                f"header block may exceed the peer's limit of {limit} bytes"
            )

    # The three methods that queue on a stream return whether the output
    # they caused still needs a flush scheduled: only the first call after
    # a flush does.

    def sendHeaders(
        self, record: StreamRecord, headers: list[Header], endStream: bool
    ) -> bool:
        """
        Queue a header block behind the stream's data.

        @return: whether a flush must now be scheduled.
        @raise RuntimeError: when our side was already ended.
        @raise ValueError: when the block could exceed the peer's limits.
        """
        if record.life is StreamLife.RESET:
            return False
        if record.life not in LOCAL_OPEN:
            raise RuntimeError(f"stream {record.streamId}: headers after END_STREAM")
        self.checkHeaderSize(headers)
        record.outbound.append(HeadersItem(headers, endStream))
        if endStream:
            record.life = TRANSITIONS[(record.life, _QUEUE_END)]
        wanted = self.flushWanted
        self.hasOutput(record)
        return not wanted and self.flushWanted

    def sendData(self, record: StreamRecord, data: bytes) -> bool:
        """
        Queue body bytes; dropped once our side is ended or the stream gone.

        @return: whether a flush must now be scheduled.
        """
        if record.life not in LOCAL_OPEN or not data:
            return False
        record.outbound.append(data)
        record.outboundBytes += len(data)
        if record.scheduled:
            return False
        wanted = self.flushWanted
        self.hasOutput(record)
        return not wanted and self.flushWanted

    def endStream(self, record: StreamRecord) -> bool:
        """
        Queue END_STREAM behind the stream's data.

        @return: whether a flush must now be scheduled.
        """
        if record.life not in LOCAL_OPEN:
            return False
        record.life = TRANSITIONS[(record.life, _QUEUE_END)]
        record.outbound.append(END)
        wanted = self.flushWanted
        self.hasOutput(record)
        return not wanted and self.flushWanted

    def opening(self, record: StreamRecord) -> None:
        """
        A stream's opening HEADERS wait to leave.
        """
        self._pendingOpens.append(record)
        self.flushWanted = True

    def hasOutput(self, record: StreamRecord) -> None:
        """
        A stream has something queued: put it in the round-robin if it may
        send.
        """
        if record.scheduled or self._stopped:
            return
        queue = record.outbound
        if not queue:
            return
        if queue[0].__class__ in _DATA_TYPES and record.sendWindow <= 0:
            return
        record.scheduled = True
        self._ready.append(record)
        self.flushWanted = True

    def connectionWindowOpened(self) -> None:
        """
        The peer returned connection credit.
        """
        if self._ready:
            self.flushWanted = True

    def frames(self) -> tuple[list[Any], list[StreamRecord]]:
        """
        Take, for one C{writeSequence}: control frames, then opening
        HEADERS in stream id order, then a round-robin of one frame per
        stream until the budget or the windows run out.

        @return: the chunks to write (nothing while paused), and the
            streams whose END_STREAM is among them.
        """
        self.flushWanted = False
        if self.paused:
            return [], []
        out: list[Any] = self._control
        frames = len(out)
        self._control = []
        self.controlBytes = 0
        ended: list[StreamRecord] = []
        encoder = self._encoder

        pendingOpens = self._pendingOpens
        while pendingOpens:
            record = pendingOpens.popleft()
            item = record.pendingOpen
            record.pendingOpen = None
            if item is None:
                continue
            block = encoder.encode(item.headers)
            out.append(
                encodeStreamFrameHeader(
                    TYPE_HEADERS, record.streamId, len(block), item.endStream
                )
            )
            out.append(block)
            frames += 1
            if item.endStream:
                ended.append(record)

        ready = self._ready
        budget = self.flushBudget
        maxFrame = self._maxFrame
        idle = 0
        events = self._events
        while ready and budget > 0 and idle < len(ready):
            record = ready.popleft()
            queue = record.outbound
            if not queue:
                record.scheduled = False
                continue
            head = queue[0]
            if head is END:
                queue.popleft()
                out.append(encodeStreamFrameHeader(TYPE_DATA, record.streamId, 0, True))
                frames += 1
                ended.append(record)
            elif head.__class__ is HeadersItem:
                queue.popleft()
                block = encoder.encode(head.headers)
                out.append(
                    encodeStreamFrameHeader(
                        TYPE_HEADERS, record.streamId, len(block), head.endStream
                    )
                )
                out.append(block)
                frames += 1
                if head.endStream:
                    ended.append(record)
            else:
                allowed = min(record.sendWindow, self.sendWindow, maxFrame)
                if allowed <= 0:
                    if record.sendWindow <= 0:
                        record.scheduled = False
                    else:
                        # Blocked on the connection window only.
                        ready.append(record)
                        idle += 1
                    continue
                size, endStream = self._takeData(record, allowed, out)
                budget -= size
                if record.wakeBelow and record.outboundBytes <= record.wakeBelow:
                    events.append((STREAM_DRAINED, record))
                frames += 1
                if endStream:
                    ended.append(record)
            idle = 0
            if queue and (
                queue[0].__class__ not in _DATA_TYPES or record.sendWindow > 0
            ):
                ready.append(record)
            else:
                record.scheduled = False

        if out:
            self._stats.framesSent += frames
            self._counters.sent += sum(map(len, out))
        if budget <= 0 and ready:
            self.flushWanted = True
        return out, ended

    def _takeData(
        self, record: StreamRecord, allowed: int, out: list[Any]
    ) -> tuple[int, bool]:
        """
        Append one DATA frame of at most C{allowed} bytes from the stream's
        queue to C{out}; whole chunks go as they are (no copy).  When the
        frame empties the queue up to an END marker, the frame carries
        END_STREAM.

        @return: the payload size, and whether END_STREAM was set.
        """
        queue = record.outbound
        headerIndex = len(out)
        out.append(b"")
        size = 0
        while queue and size < allowed:
            item = queue[0]
            cls = item.__class__
            if cls is bytes:
                room = allowed - size
                length = len(item)
                if length <= room:
                    queue.popleft()
                    out.append(item)
                    size += length
                else:
                    out.append(item[:room])
                    queue[0] = memoryview(item)[room:]
                    size += room
            elif cls is memoryview:
                room = allowed - size
                length = len(item)
                if length <= room:
                    queue.popleft()
                    out.append(item.tobytes())
                    size += length
                else:
                    out.append(item[:room].tobytes())
                    queue[0] = item[room:]
                    size += room
            else:
                break
        endStream = bool(queue) and queue[0] is END
        if endStream:
            queue.popleft()
        out[headerIndex] = encodeStreamFrameHeader(
            TYPE_DATA, record.streamId, size, endStream
        )
        record.sendWindow -= size
        self.sendWindow -= size
        record.outboundBytes -= size
        record.counters.sent += size
        return size, endStream
