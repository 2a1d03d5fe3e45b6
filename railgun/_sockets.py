"""
Socket tuning for the few long-lived, high-volume connections Railgun
makes (links, and connections to origin servers).

Twisted reads at most C{bufferSize} bytes per C{recv} (64 KiB), and pauses
a transport's producer once that much is waiting to be written. For a link
carrying many streams, or a large body, that is one system call, one
Python callback and one TLS slice batch per 64 KiB: raising it to 256 KiB
was measured to lift bulk transfers by 15-30% (docs/benchmarks.md). Client
connections at the edge keep the default (there are many of them, and the
write threshold bounds what a slow client can make the edge hold), except
one that starts sending a body over 1 MiB or chunked
(L{railgun.edge.http.LARGE_BODY}): its reads are the upload's.
"""

from __future__ import annotations

from typing import Any

#: bytes read per call and buffered before back-pressure, on tuned sockets.
TUNED_BUFFER = 256 * 1024


def tuneForVolume(transport: Any) -> None:
    """
    Raise the read/write buffer size of the socket under C{transport}
    (through a TLS layer or a Twisted proxy producer, if any); transports
    that are not sockets (in-memory ones in tests) are left alone.
    """
    from twisted.internet.abstract import FileDescriptor

    for _ in range(4):
        if transport is None:
            return
        if isinstance(transport, FileDescriptor):
            transport.bufferSize = TUNED_BUFFER
            return
        # TLSMemoryBIOProtocol wraps .transport; TransportProxyProducer
        # (an HTTP client response's transport) wraps ._producer. (Not
        # hasattr(): protocol wrappers forward unknown attributes.)
        attributes = getattr(transport, "__dict__", {})
        inner = attributes.get("transport") or attributes.get("_producer")
        transport = inner
