"""
Socket tuning for the connections Railgun makes and accepts.

Read size (L{tuneForVolume}): Twisted reads at most C{bufferSize} bytes per
C{recv} (64 KiB), and pauses a transport's producer once that much is
waiting to be written. For a link carrying many streams, or a large body,
that is one system call, one Python callback and one TLS slice batch per
64 KiB: raising it to 256 KiB was measured to lift bulk transfers by 15-30%
(docs/benchmarks.md). Client connections at the edge keep the default
(there are many of them, and the write threshold bounds what a slow client
can make the edge hold), except one that starts sending a body over 1 MiB
or chunked (L{railgun.edge.http.LARGE_BODY}): its reads are the upload's.

Eager writes (L{writeEagerly}): a Twisted TCP transport never sends in
C{write()}; it buffers, asks the reactor to watch the socket for
writability (an C{epoll_ctl}), sends on the next reactor turn, then stops
watching (another C{epoll_ctl}). A transport made eager sends at once when
nothing is waiting before it, as asyncio's transports do, and falls back to
Twisted's buffering for whatever the socket does not take.

No delay (L{noDelay}): links batch their frames per reactor turn
themselves, so Nagle's algorithm could only hold a small frame back until
the peer acknowledges the previous one: up to a round trip on a real WAN.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp

from railgun._compat.tcp import EagerWrites as _EagerWrites
from railgun._compat.tcp import makeEager, socketUnder

#: bytes read per call and buffered before back-pressure, on tuned sockets.
TUNED_BUFFER = 256 * 1024


def tuneForVolume(transport: Any) -> None:
    """
    Raise the read/write buffer size of the socket under C{transport};
    transports that are not sockets are left alone.
    """
    socket = socketUnder(transport)
    if socket is not None:
        socket.bufferSize = TUNED_BUFFER


def noDelay(transport: Any) -> None:
    """
    Turn Nagle's algorithm off on the TCP socket under C{transport}, if any.
    """
    socket = socketUnder(transport)
    if isinstance(socket, tcp.Connection):
        socket.setTcpNoDelay(True)


def writeEagerly(transport: Any) -> bool:
    """
    Make the TCP socket transport under C{transport} (through a TLS layer,
    if any) send in C{write()} when it can
    (L{railgun._compat.tcp.EagerWrites}).

    Only Twisted's own TCP transport classes are changed, and only when
    they have every attribute the change reads (a future Twisted that
    renamed one keeps its own behaviour); others are left alone.

    @return: whether the transport now writes eagerly.
    """
    socket = socketUnder(transport)
    if socket is None:
        return False
    return makeEager(socket)


__all__ = ["TUNED_BUFFER", "_EagerWrites", "noDelay", "tuneForVolume", "writeEagerly"]
