"""
Error codes and exceptions of the link protocol.

L{ErrorCode} values travel on the wire in RESET and GOAWAY frames;
L{ProtocolError} is what the codec and the link raise internally when a peer
breaks the protocol; the L{LinkError} family is what stream handlers and the
roles see as failures.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """
    The uint32 error codes carried by RESET and GOAWAY frames.
    """

    NO_ERROR = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2
    FLOW_CONTROL_ERROR = 3
    STREAM_CLOSED = 4
    FRAME_SIZE_ERROR = 5
    REFUSED_STREAM = 6
    CANCEL = 7
    COMPRESSION_ERROR = 8
    AUTH_FAILED = 9
    ENHANCE_YOUR_CALM = 10
    HELLO_TIMEOUT = 11
    PING_TIMEOUT = 12
    UNSUPPORTED_VERSION = 13


def errorCodeFromWire(value: int) -> ErrorCode:
    """
    Map a received error code to an L{ErrorCode}; unknown codes are accepted
    and treated as L{ErrorCode.INTERNAL_ERROR} so that the protocol can grow.

    @param value: the uint32 from the wire.
    @return: the matching L{ErrorCode}, or C{INTERNAL_ERROR}.
    """
    try:
        return ErrorCode(value)
    except ValueError:
        return ErrorCode.INTERNAL_ERROR


def describeCode(value: int) -> str:
    """
    @return: a readable name for a possibly unknown wire error code.
    """
    try:
        return ErrorCode(value).name
    except ValueError:
        return f"UNKNOWN({value})"


class ProtocolError(Exception):
    """
    The peer (or the bytes it sent) broke the link protocol.

    @ivar code: the L{ErrorCode} to send in the GOAWAY (or RESET).
    @ivar reason: a short human-readable explanation, also sent on the wire.
    """

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.code.name}: {self.reason}"


class LinkError(Exception):
    """
    Base class of the failures a stream or a link user can see.
    """


class StreamReset(LinkError):
    """
    The stream was reset, by the peer (C{remote=True}) or by us.

    @ivar code: the RESET error code (unknown received codes are mapped to
        C{INTERNAL_ERROR}).
    @ivar remote: C{True} when the peer sent the RESET.
    """

    def __init__(self, code: ErrorCode, remote: bool) -> None:
        super().__init__(code, remote)
        self.code = code
        self.remote = remote

    def __str__(self) -> str:
        who = "peer" if self.remote else "us"
        return f"stream reset by {who}: {self.code.name}"


class StreamRefused(LinkError):
    """
    The peer refused the stream or never processed it (RESET REFUSED_STREAM,
    or a GOAWAY whose last stream id is below it): safe to retry elsewhere.
    """


class LinkLost(LinkError):
    """
    The link died or closed while the stream was open.
    """


class LinkUnavailable(LinkError):
    """
    A stream cannot be opened: the link is not ready, draining, closed, or at
    the peer's stream limit.
    """
