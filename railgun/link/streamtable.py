"""
The stream table of a link, without I/O: the open streams by id, the ids
used so far on each side, and how many each side has open.  Part of
L{railgun.link.connection.LinkConnection}.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from .errors import ErrorCode, ProtocolError
from .frames import MAX_STREAM_ID
from .headerblock import Header
from .streamstate import StreamRecord

REQUEST_ID_HEADER = b":request-id"
_HEX = b"0123456789abcdefABCDEF"
_headerName = itemgetter(0)


def splitRequestId(headers: list[Header]) -> tuple[bytes | None, list[Header]]:
    """
    Take the C{:request-id} out of a peer's opening headers.

    @return: the request id (C{None} when it is missing or malformed: at
        most 64 hex digits) and the other headers.
    """
    # Our peer sends the id first and once: check that at C speed, and
    # fall back to a full scan for any other order.
    if (
        headers
        and headers[0][0] == REQUEST_ID_HEADER
        and REQUEST_ID_HEADER not in map(_headerName, headers[1:])
    ):
        requestId: Any = headers[0][1]
        rest = headers[1:]
    else:
        requestId = None
        rest = []
        for header in headers:
            if header[0] == REQUEST_ID_HEADER:
                if requestId is None:
                    requestId = header[1]
            else:
                rest.append(header)
    if not requestId or len(requestId) > 64 or requestId.strip(_HEX):
        return None, rest
    return requestId, rest


class StreamTable:
    """
    The open streams of one link end.

    @ivar streams: the open streams by id.
    @ivar nextStreamId: the id our next stream gets (odd on the dialing
        side, even on the other).
    @ivar highestPeerStreamId: the highest id the peer opened (or tried to).
    @ivar lastAcceptedPeerStreamId: the highest peer stream we accepted,
        as our GOAWAY announces it.
    @ivar localOpen: streams we opened that are still open.
    @ivar peerOpen: streams the peer opened that are still open.
    """

    def __init__(self, isDialer: bool) -> None:
        self.streams: dict[int, StreamRecord] = {}
        self._peerParity = 0 if isDialer else 1
        self.nextStreamId = 1 if isDialer else 2
        self.highestPeerStreamId = 0
        self.lastAcceptedPeerStreamId = 0
        self.localOpen = 0
        self.peerOpen = 0

    def isPeerStreamId(self, streamId: int) -> bool:
        """
        @return: whether the peer opens streams with this id.
        """
        return (streamId & 1) == self._peerParity

    def checkClosed(self, streamId: int, what: str) -> None:
        """
        A frame names a stream we do not have: fine if the stream existed and
        closed (frames cross RESETs), a protocol error if it never existed.

        @raise ProtocolError: when it never existed.
        """
        if self.isPeerStreamId(streamId):
            if streamId > self.highestPeerStreamId:
                raise ProtocolError(
                    ErrorCode.PROTOCOL_ERROR, f"{what} on idle stream {streamId}"
                )
        elif streamId >= self.nextStreamId:
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR,
                f"{what} on stream {streamId}, which we never opened",
            )

    def isNewPeerStream(self, streamId: int) -> bool:
        """
        HEADERS arrived for a peer stream id we do not have.

        @return: C{True} when the id is new (it is then taken), C{False}
            when it belongs to a stream already closed.
        """
        if streamId <= self.highestPeerStreamId:
            return False
        self.highestPeerStreamId = streamId
        return True

    def idsExhausted(self) -> bool:
        """
        @return: whether we have no stream id left.
        """
        return self.nextStreamId > MAX_STREAM_ID

    def addLocal(self, record: StreamRecord) -> None:
        """
        Add a stream we opened with L{nextStreamId}.
        """
        self.streams[record.streamId] = record
        self.nextStreamId += 2
        self.localOpen += 1

    def addPeer(self, record: StreamRecord) -> None:
        """
        Add a stream the peer opened and we accepted.
        """
        self.streams[record.streamId] = record
        self.peerOpen += 1
        self.lastAcceptedPeerStreamId = record.streamId

    def remove(self, record: StreamRecord) -> bool:
        """
        Remove a stream that is over.

        @return: whether it was there.
        """
        if self.streams.pop(record.streamId, None) is None:
            return False
        if (record.streamId & 1) == self._peerParity:
            self.peerOpen -= 1
        else:
            self.localOpen -= 1
        return True
