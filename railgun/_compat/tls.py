"""
Twisted's TLS transport, from the inside: L{BatchedTLSProtocol}, the link's
TLS transport (L{railgun.tls.LinkTLSProtocol}), overrides and calls private
methods of L{twisted.protocols.tls.TLSMemoryBIOProtocol} (L{TLS_INTERNALS}).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from OpenSSL.SSL import Error, WantReadError, ZeroReturnError
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure

# Ciphertext taken out of OpenSSL's memory BIO per call (a flush loops until
# the BIO is empty, then writes all the pieces at once). Each call allocates
# this much: at 256 KiB, above glibc's initial mmap threshold, uploads after
# a download sometimes cost the edge 50-80% more CPU per GiB (seen in 2 of 3
# runs, bio_read a third of the samples); at 64 KiB not in 7 runs.
_BIO_READ_SIZE = 64 * 1024

# Plaintext asked for per SSL_read; OpenSSL returns at most one record
# (16 KiB) per call whatever the size.
_RECV_SIZE = 32 * 1024


class BatchedTLSProtocol(TLSMemoryBIOProtocol):
    """
    TLS for a link connection: Twisted's L{TLSMemoryBIOProtocol} with its
    per-record work batched, for a protocol that already batches its own
    writes (L{railgun.link.protocol.LinkProtocol} writes once per reactor
    turn).

    Twisted's version slices every write into 16 KiB pieces (a copy each),
    encrypts each, reads each record out of the BIO and writes it to the
    socket transport on its own; on input it hands every decrypted record
    (at most 16 KiB) to the protocol separately.  Here:

      - a write or a C{writeSequence} goes to OpenSSL chunk by chunk as it
        is (no join, no slicing: OpenSSL cuts the records), and all the
        resulting ciphertext leaves in one C{write} to the socket transport;
      - the records decrypted from one socket read reach the protocol in
        one C{dataReceived}, so a 64 KiB link frame is parsed from one
        buffer instead of being reassembled from four records.

    No small-write aggregation (L{twisted.protocols.tls.BufferingTLSTransport})
    either: it would only delay the link's already batched writes by a turn
    and copy them once more.  The handshake, shutdown, producer and error
    handling are Twisted's.
    """

    def writeSequence(self, iovec: Iterable[bytes]) -> None:
        """
        Encrypt each chunk where it is (no join) and flush the ciphertext
        once.
        """
        if self.disconnecting and self._producer is None:
            return
        if self._lostTLSConnection:
            return
        if self._appSendBuffer:
            # Earlier bytes wait for OpenSSL to read: queue behind them.
            self._bufferedWrite(b"".join(iovec))
            return
        chunks = iter(iovec)
        for chunk in chunks:
            if not self._encrypt(chunk):
                # OpenSSL wants to read first (or the connection broke):
                # what follows keeps its order behind the buffered rest.
                rest = b"".join(chunks)
                if rest and not self._lostTLSConnection:
                    self._appSendBuffer.append(rest)
                break
        self._flushSendBIO()

    def _write(self, bytes: bytes) -> None:  # noqa: A002 (Twisted's name)
        """
        Encrypt application bytes in one piece and flush the ciphertext.
        """
        if self._lostTLSConnection:
            return
        self._encrypt(bytes)
        self._flushSendBIO()

    def _encrypt(self, data: Any) -> bool:
        """
        Hand C{data} to OpenSSL, without flushing the ciphertext.

        @return: C{True} when all of it was taken; C{False} when the rest was
            buffered (OpenSSL must read first) or the connection broke.
        """
        if not data:
            return True
        connection = self._tlsConnection
        view = None
        sent = 0
        length = len(data)
        while sent < length:
            try:
                if view is None:
                    sent = connection.send(data)
                else:
                    sent += connection.send(view[sent:])
            except WantReadError:
                self._bufferedWrite(bytes(data[sent:]) if sent else data)
                return False
            except Error:
                # As Twisted's _write: the application protocol learns why
                # in connectionLost.
                self._tlsShutdownFinished(Failure())
                return False
            if sent < length and view is None:
                view = memoryview(data)
        return True

    def _flushSendBIO(self) -> None:
        """
        Write all the ciphertext waiting in the send BIO with one call.
        """
        connection = self._tlsConnection
        first = None
        more: list[bytes] | None = None
        while True:
            try:
                data = connection.bio_read(_BIO_READ_SIZE)
            except WantReadError:
                break
            if first is None:
                first = data
            elif more is None:
                more = [first, data]
            else:
                more.append(data)
        if more is not None:
            self.transport.writeSequence(more)  # type: ignore[union-attr]
        elif first is not None:
            self.transport.write(first)  # type: ignore[union-attr]

    def _flushReceiveBIO(self) -> None:
        """
        Decrypt every record the last socket read completed and deliver them
        together.
        """
        received: list[bytes] = []
        while not self._lostTLSConnection:
            try:
                data = self._tlsConnection.recv(_RECV_SIZE)
            except WantReadError:
                break
            except ZeroReturnError:
                # What came before the close_notify goes first.
                self._deliver(received)
                received = []
                self._shutdownTLS()
                self._tlsShutdownFinished(None)
            except Error:
                self._deliver(received)
                received = []
                self._tlsShutdownFinished(Failure())
            else:
                received.append(data)
        self._deliver(received)
        self._flushSendBIO()

    def _deliver(self, received: list[bytes]) -> None:
        if not received or self._aborted:
            return
        data = received[0] if len(received) == 1 else b"".join(received)
        ProtocolWrapper.dataReceived(self, data)


#: What L{BatchedTLSProtocol} relies on in Twisted's TLSMemoryBIOProtocol
#: besides its public interface (checked at import by
#: L{railgun.tls.batchedTLSAvailable}: with a Twisted that changed them,
#: links fall back to Twisted's own TLS transport).
TLS_INTERNALS = (
    "_bufferedWrite",
    "_shutdownTLS",
    "_tlsShutdownFinished",
    "_flushSendBIO",
    "_flushReceiveBIO",
    "_write",
    "_lostTLSConnection",
    "_aborted",
    "_producer",
    "_handshakeDone",
)

#: Twisted's private names this module uses, by the class that defines them
#: (L{TLS_INTERNALS} and the instance attributes its methods read): checked
#: by tests/test_compat.py.
TWISTED_PRIVATE = {
    "twisted.protocols.tls.TLSMemoryBIOProtocol": (
        *TLS_INTERNALS,
        "_tlsConnection",
        "_appSendBuffer",
    ),
}
