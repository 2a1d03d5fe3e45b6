"""
twisted.web's HTTP/1.1 server, from the inside: what the edge's channel
(L{railgun.edge.http.EdgeChannel}) and its request handlers read or change
of L{twisted.web.http.HTTPChannel} and L{twisted.web.http.Request} beyond
their public API.
"""

from __future__ import annotations

from typing import Any

#: The private attributes of L{twisted.web.http.HTTPChannel} used here.
CHANNEL_NEEDS = (
    "_handlingRequest",
    "_waitingForTransport",
    "_dataBuffer",
    "_receivedHeaderSize",
    "_command",
    "_path",
    "_version",
)

#: The private attributes of L{twisted.web.http.Request} used here.
REQUEST_NEEDS = ("_disconnected",)

#: Twisted's private names this module uses, by the class that defines them:
#: checked by tests/test_compat.py.
TWISTED_PRIVATE = {
    "twisted.web.http.HTTPChannel": CHANNEL_NEEDS,
    "twisted.web.http.Request": REQUEST_NEEDS,
}


def requestDisconnected(request: Any) -> bool:
    """
    @return: whether the connection C{request} came on is gone (twisted.web
        sets this before C{notifyFinish()}'s errback runs).
    """
    return bool(request._disconnected)


def handlingRequest(channel: Any) -> bool:
    """
    @return: whether C{channel} is between a request's head and its
        response's end (while it is, twisted.web buffers what it reads).
    """
    return bool(channel._handlingRequest)


def setHandlingRequest(channel: Any, handling: bool) -> None:
    """
    Say whether C{channel} is handling a request: C{True} makes it buffer
    what it reads instead of parsing it, C{False} lets it parse again.
    """
    channel._handlingRequest = handling


def takeBufferedRequests(channel: Any) -> bytes | None:
    """
    Take the bytes C{channel} read and set aside (pipelined requests) while
    it waited for the client to read a response.

    @return: those bytes, now no longer C{channel}'s to parse; or L{None}
        when it is not waiting or holds nothing.
    """
    if not (channel._waitingForTransport and channel._dataBuffer):
        return None
    pending = b"".join(channel._dataBuffer)
    channel._dataBuffer = []
    return pending


def receivedHeaderSize(channel: Any) -> int:
    """
    @return: the bytes of the request head C{channel} has received so far.
    """
    return int(channel._receivedHeaderSize)


def requestLine(channel: Any) -> tuple[bytes, bytes, bytes]:
    """
    @return: the method, target and version of the request whose head
        C{channel} just parsed.
    """
    return channel._command, channel._path, channel._version
