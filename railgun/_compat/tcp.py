"""
Twisted's TCP transport, from the inside: finding the socket under a
transport and making it send in C{write()} (see L{railgun._sockets}).

Private API used: the C{_producer} of a
L{twisted.protocols.tls.TransportProxyProducer}; C{_writeDisconnecting},
C{_writeDisconnected} and C{_tempDataLen} of
L{twisted.internet.abstract.FileDescriptor}; and the replacement of a live
L{twisted.internet.tcp.Server} or L{twisted.internet.tcp.Client}'s
C{__class__}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp
from twisted.internet.abstract import FileDescriptor

#: What L{EagerWrites} reads of a transport; all but the last are set by
#: Twisted's FileDescriptor and TCP Connection.
EAGER_NEEDS = (
    "TLS",
    "connected",
    "disconnecting",
    "_writeDisconnecting",
    "_writeDisconnected",
    "_tempDataLen",
    "offset",
    "dataBuffer",
    "producer",
    "streamingProducer",
    "SEND_LIMIT",
    "writeSomeData",
)

#: Twisted's private names this module uses, by the class (or module) that
#: defines them: checked by tests/test_compat.py.
TWISTED_PRIVATE = {
    "twisted.internet.abstract.FileDescriptor": (
        "_writeDisconnecting",
        "_writeDisconnected",
        "_tempDataLen",
    ),
    "twisted.web._newclient.TransportProxyProducer": ("_producer",),
}

#: The private attribute of Twisted's TransportProxyProducer (an HTTP client
#: response's transport) holding the transport it wraps.
PROXIED_PRODUCER = "_producer"


def socketUnder(transport: Any) -> FileDescriptor | None:
    """
    @return: the socket transport under C{transport} (through a TLS layer
        or a Twisted proxy producer, if any), or L{None} when there is none
        (in-memory transports in tests).
    """
    for _ in range(4):
        if transport is None:
            return None
        if isinstance(transport, FileDescriptor):
            return transport
        # TLSMemoryBIOProtocol wraps .transport; TransportProxyProducer
        # (an HTTP client response's transport) wraps ._producer. (Not
        # hasattr(): protocol wrappers forward unknown attributes.)
        attributes = getattr(transport, "__dict__", {})
        transport = attributes.get("transport") or attributes.get(PROXIED_PRODUCER)
    return None


class EagerWrites:
    """
    Mixed into Twisted's TCP transports by L{makeEager}: C{write()} and
    C{writeSequence()} send at once what the socket takes when nothing is
    waiting to be sent before it, and leave the rest to Twisted's buffer.

    Not eager, and exactly Twisted's behaviour, when: TLS was started on
    the transport itself (C{startTLS}); the connection is closing, or
    half-closing; bytes are already buffered (order); a pull producer is
    registered (Twisted asks it for more only when a buffered write
    drains).
    """

    def _mayWriteNow(self: Any) -> bool:
        return bool(
            not self.TLS
            and self.connected
            and not self.disconnecting
            and not self._writeDisconnecting
            and not self._writeDisconnected
            and not self._tempDataLen
            and self.offset == len(self.dataBuffer)
            and (self.producer is None or self.streamingProducer)
        )

    def _sendNow(self: Any, data: bytes) -> bytes:
        """
        Send what the socket takes of C{data} now.

        @return: what it did not take. On an error (the peer gone), all of
            it: Twisted's own write path meets the error again on the next
            reactor turn and closes the connection as it always does,
            rather than inside this C{write()}.
        """
        size = len(data)
        view = memoryview(data)
        sent = 0
        while sent < size:
            tried = min(size - sent, self.SEND_LIMIT)
            n = self.writeSomeData(view[sent:])
            if not isinstance(n, int) or n <= 0:
                break
            sent += n
            if n < tried:
                break  # the socket is full
        if sent == 0:
            return data
        return data[sent:]

    def write(self, data: bytes) -> None:
        if isinstance(data, bytes) and data and self._mayWriteNow():
            data = self._sendNow(data)
            if not data:
                return
        super().write(data)  # type: ignore[misc]

    def writeSequence(self, iovec: Any) -> None:
        iovec = list(iovec)
        if self._mayWriteNow() and all(isinstance(part, bytes) for part in iovec):
            self.write(b"".join(iovec))
            return
        super().writeSequence(iovec)  # type: ignore[misc]


class _EagerServer(EagerWrites, tcp.Server):
    pass


class _EagerClient(EagerWrites, tcp.Client):
    pass


_EAGER = {tcp.Server: _EagerServer, tcp.Client: _EagerClient}


def makeEager(socket: FileDescriptor) -> bool:
    """
    Make a TCP socket transport send in C{write()} when it can
    (L{EagerWrites}), by changing its class.

    Only Twisted's own TCP transport classes are changed, and only when
    they have every attribute the change reads (a future Twisted that
    renamed one keeps its own behaviour); others are left alone.

    @return: whether the transport now writes eagerly.
    """
    if isinstance(socket, EagerWrites):
        return True
    eager = _EAGER.get(type(socket))  # type: ignore[call-overload]
    if eager is None or not all(hasattr(socket, name) for name in EAGER_NEEDS):
        return False
    socket.__class__ = eager
    return True
