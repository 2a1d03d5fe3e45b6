"""
Twisted's HTTP/1.1 client connection, made safe for a proxy's shared pool.

Two things Twisted's client (C{twisted.web._newclient}) does that a proxy
cannot accept, fixed here by subclassing its connection protocol and pool:

  - B{Bytes with no request outstanding.} A persistent connection that
    receives bytes after a complete response and before the next request is
    out of step with its server (an origin that answered twice, say): the
    next request on it would take those bytes for its own response, another
    user's page. Twisted ignores bytes that came in the same read as the end
    of a response, and puts the connection back in the pool; bytes that
    come later it drops by accident (an C{AttributeError} on its missing
    parser, caught, closing the connection some time after, while the pool
    still offers it). L{GuardedHTTP11ClientProtocol} closes such a
    connection at once and takes it out of the pool, and the bytes are
    discarded.
  - B{A close-delimited body cut by a reset.} A response with neither
    C{Content-Length} nor chunked coding ends when the server closes the
    connection; Twisted reports that end as C{PotentialDataLoss} whether the
    server closed cleanly (FIN, or TLS close_notify) or the connection was
    reset or broken. Here an end by anything but a clean close fails the
    body with C{ResponseFailed}, as a chunked or sized body cut short does.

Private names relied on, each checked by C{tests/test_compat_httpclient.py}:
C{HTTP11ClientProtocol}'s C{_parser}, C{_state} (its C{"QUIESCENT"} and
C{"ABORTING"} states), C{_finishResponse_WAITING} and
C{_finishResponse_TRANSMITTING} (its per-state dispatch),
C{_disconnectParser}; the parser's
C{bodyDecoder}; C{twisted.web.http._IdentityTransferDecoder} (its
C{contentLength}) and C{_DataLoss}; C{HTTPConnectionPool}'s C{_factory},
C{_connections}, C{_timeouts} and C{_putConnection}; and
C{twisted.web.client._HTTP11ClientFactory} (its C{_quiescentCallback}).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Hashable
from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import _newclient, client, http
from twisted.web.client import URI, Agent
from twisted.web.error import SchemeNotSupported
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer, IResponse

from railgun._compat.tcp import socketUnder as _socketUnder

log = Logger()

#: Twisted's private names this module uses, by the class or module that
#: defines them (checked by tests/test_compat.py, and their behaviour by
#: tests/test_compat_httpclient.py).
TWISTED_PRIVATE = {
    "twisted.web": ("_newclient",),
    "twisted.web._newclient": ("_ensureValidURI",),
    "twisted.web.client.Agent": ("_getEndpoint", "_requestWithEndpoint"),
    "twisted.web._newclient.HTTP11ClientProtocol": (
        "_parser",
        "_state",
        "_finishResponse_WAITING",
        "_finishResponse_TRANSMITTING",
        "_disconnectParser",
    ),
    "twisted.web.http": ("_IdentityTransferDecoder", "_DataLoss"),
    "twisted.web.client": ("_HTTP11ClientFactory",),
    "twisted.web.client._HTTP11ClientFactory": ("_quiescentCallback",),
    "twisted.web.client.HTTPConnectionPool": (
        "_factory",
        "_connections",
        "_timeouts",
        "_putConnection",
        "_removeConnection",
    ),
}


class OutOfStep(Exception):
    """
    The origin server sent bytes no request asked for, right after this
    response: it may be one of them.
    """

    def __str__(self) -> str:
        return "the origin server sent a response nobody asked for"


class _CutShort:
    """
    Stands in for the body decoder of a close-delimited response whose
    connection did not close cleanly: its end is a loss of data, as for a
    sized body cut short.
    """

    def noMoreData(self) -> None:
        raise http._DataLoss()  # type: ignore[attr-defined]


def isCloseDelimited(decoder: object) -> bool:
    """
    @return: whether C{decoder} (an C{HTTPClientParser}'s C{bodyDecoder})
        reads a body whose end is the connection's close.
    """
    return (
        isinstance(decoder, http._IdentityTransferDecoder)  # type: ignore[attr-defined]
        and decoder.contentLength is None
    )


class GuardedHTTP11ClientProtocol(_newclient.HTTP11ClientProtocol):
    """
    Twisted's HTTP/1.1 client connection that is never reused after its
    server sent bytes no request asked for, and that fails a close-delimited
    body its server did not close cleanly.

    @ivar reusable: C{False} once the connection must not carry another
        request.
    @ivar onUnusable: set by the pool while the connection waits in it:
        takes it out.
    """

    reusable = True
    onUnusable: Callable[[], None] | None = None
    _outOfStep = False

    def __init__(self, quiescentCallback: Callable[[Any], None]) -> None:
        super().__init__(self._quiescent)
        self._poolCallback = quiescentCallback

    def dataReceived(self, data: bytes) -> None:
        if self._parser is not None:
            super().dataReceived(data)
            return
        if not self.reusable:
            return  # closing already: the rest of what it sent is dropped
        self.unsolicited(len(data))

    def _finishResponse_WAITING(self, rest: bytes) -> None:
        # A response is complete. Bytes that came after it in the same read
        # were asked for by no request: the server is out of step, and this
        # response may itself be one it sent unasked (a stray that came just
        # before the real answer). The connection is closed and this
        # response fails.
        if rest and self.reusable:
            log.warn(
                "origin {peer} sent bytes right after a complete response: "
                "out of step; the response fails, the connection is closed",
                peer=_peer(self.transport),
            )
            self.reusable = False
            self._outOfStep = True
        super()._finishResponse_WAITING(rest)  # type: ignore[misc]

    _finishResponse_TRANSMITTING = _finishResponse_WAITING

    def _disconnectParser(self, reason: Failure) -> None:
        parser = self._parser
        if self._outOfStep and parser is not None:
            self._outOfStep = False
            # (A body already ended, as a HEAD's, has no decoder left.)
            if parser.bodyDecoder is not None:
                parser.bodyDecoder = _CutShort()  # type: ignore[assignment]
            reason = Failure(OutOfStep())
        super()._disconnectParser(reason)  # type: ignore[misc]

    def _quiescent(self, protocol: Any) -> None:
        if self.reusable:
            self._poolCallback(protocol)
        else:
            self.transport.abortConnection()  # type: ignore[union-attr]

    def unsolicited(self, count: int | None = None, *, quiet: bool = False) -> None:
        """
        The server sent bytes while no request is outstanding (C{count} of
        them; L{None}: seen waiting in the socket), or closed (C{quiet}):
        the connection is closed and leaves the pool, and the bytes are
        discarded.
        """
        if not quiet:
            log.warn(
                "origin {peer} sent {count} bytes with no request outstanding; "
                "connection closed, the bytes discarded",
                peer=_peer(self.transport),
                count="some" if count is None else count,
            )
        self.reusable = False
        forget, self.onUnusable = self.onUnusable, None
        if forget is not None:
            forget()
        # (Not QUIESCENT any more: no pool hands it out again.)
        self._state = "ABORTING"
        self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.reusable = False
        forget, self.onUnusable = self.onUnusable, None
        if forget is not None:
            forget()
        parser = self._parser
        if (
            parser is not None
            and not reason.check(ConnectionDone)
            and isCloseDelimited(parser.bodyDecoder)
        ):
            parser.bodyDecoder = _CutShort()  # type: ignore[assignment]
        super().connectionLost(reason)


def pendingInput(transport: Any) -> bytes | None:
    """
    Peek at the socket under C{transport} (under its TLS layer, if any).

    @return: L{None} when nothing waits to be read (or C{transport} is not
        a socket), C{b""} when the peer closed or reset it, else the first
        byte received that nobody has read yet.
    """
    fd = _socketUnder(transport)
    handle = fd.getHandle() if fd is not None else None  # type: ignore[attr-defined]
    if not isinstance(handle, socket.socket):
        return None
    try:
        return handle.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def _peer(transport: Any) -> str:
    try:
        address = transport.getPeer()
        return f"{address.host}:{address.port}"
    except Exception:
        return "?"


class _GuardedFactory(client._HTTP11ClientFactory):  # type: ignore[name-defined,misc]
    def buildProtocol(self, addr: Any) -> GuardedHTTP11ClientProtocol:
        return GuardedHTTP11ClientProtocol(self._quiescentCallback)


class GuardedConnectionPool(client.HTTPConnectionPool):
    """
    An L{HTTPConnectionPool} of L{GuardedHTTP11ClientProtocol} connections:
    one that becomes unusable while it waits in the pool leaves it at once.
    """

    _factory = _GuardedFactory

    #: Idle connections kept over all keys (sites x origin servers): keys
    #: include the request's Host, which a wildcard host map lets clients
    #: choose; past this the oldest idle connection is closed.
    maxIdle = 1024

    def __init__(self, reactor: Any, persistent: bool = True) -> None:
        super().__init__(reactor, persistent)
        # Idle connections, oldest first (dicts keep insertion order).
        self._idleOrder: dict[Any, Any] = {}

    def getConnection(self, key: Hashable, endpoint: Any) -> Any:
        # The connection to be handed out (the pool takes the oldest first)
        # may have bytes waiting in its socket that the reactor has not read
        # yet (it reads them between requests, and a busy reactor later):
        # checked with one peek, so a request never goes out on it.
        connections = self._connections.get(key)
        while connections:
            connection = connections[0]
            waiting = pendingInput(connection.transport)
            if waiting is None:
                break
            # (Over TLS, what waits may be a record that is not data, such
            # as the alert of a server closing an idle connection: no
            # warning for it.)
            plain = isinstance(connection.transport, FileDescriptor)
            connection.unsolicited(quiet=not (waiting and plain))
        candidate = connections[0] if connections else None
        d = super().getConnection(key, endpoint)
        if candidate is not None and candidate not in self._connections.get(key, ()):
            self._idleOrder.pop(candidate, None)  # handed out: no longer idle
        return d

    def _removeConnection(self, key: Any, connection: Any) -> None:
        # (Twisted's: an idle connection's cache timeout ran out.)
        self._idleOrder.pop(connection, None)
        super()._removeConnection(key, connection)

    def closeCachedConnections(self) -> Any:
        self._idleOrder.clear()
        return super().closeCachedConnections()

    def _putConnection(self, key: Any, connection: Any) -> None:
        super()._putConnection(key, connection)
        if connection in self._connections.get(key, ()):
            connection.onUnusable = lambda: self._forget(key, connection)
            self._idleOrder[connection] = key
            while len(self._idleOrder) > self.maxIdle:
                oldest, oldestKey = next(iter(self._idleOrder.items()))
                self._forget(oldestKey, oldest)
                oldest.transport.loseConnection()

    def _forget(self, key: Any, connection: Any) -> None:
        self._idleOrder.pop(connection, None)
        connections = self._connections.get(key, [])
        if connection in connections:
            connections.remove(connection)
            self._timeouts.pop(connection).cancel()


class ExactTargetAgent(Agent):
    """
    An L{Agent} that sends the request target exactly as given and reuses
    one endpoint per origin.

    Twisted's C{Agent.request} rebuilds the target with C{urlunparse},
    which drops an empty query (C{/path?} becomes C{/path}), and builds a
    new endpoint (with IDNA encoding of the host) for every request. A proxy
    must forward the target unchanged, and its origins are few and fixed.
    This override changes only those two steps; connection pooling, TLS
    and the HTTP/1.1 exchange are Agent's own.
    """

    #: origins remembered (their parsed URI, pool key and endpoint); they
    #: come from the configuration, this only bounds a misuse.
    MAX_ORIGINS = 1024

    def __init__(
        self,
        *args: Any,
        wrapEndpoint: Callable[[Any], Any] = lambda endpoint: endpoint,
        **kwargs: Any,
    ) -> None:
        """
        @param wrapEndpoint: applied once to each origin's endpoint (the
            caller's socket tuning).
        """
        super().__init__(*args, **kwargs)
        self._wrapEndpoint = wrapEndpoint
        self._origins: dict[bytes, tuple[tuple[bytes, bytes, int], Any, URI]] = {}

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[IResponse]:
        uri = _newclient._ensureValidURI(uri.strip())
        # scheme://authority is parsed once per origin (urlparse costs more
        # than the rest of this method); the target is everything after the
        # authority, as it came.
        scheme = uri.find(b"://")
        if scheme < 0:
            return fail(SchemeNotSupported(f"no scheme in {uri[:200]!r}"))
        slash = uri.find(b"/", scheme + 3)
        if slash >= 0:
            origin, target = uri[:slash], uri[slash:]
        elif uri.endswith(b"*"):
            # scheme://authority* is the asterisk form (OPTIONS *), as
            # OriginTarget.urlFor writes it: no host name has a "*".
            origin, target = uri[:-1], b"*"
        else:
            origin, target = uri, b"/"
        known = self._origins.get(origin)
        if known is None:
            parsed = URI.fromBytes(origin)
            try:
                endpoint = self._wrapEndpoint(self._getEndpoint(parsed))
            except SchemeNotSupported:
                return fail()
            if len(self._origins) >= self.MAX_ORIGINS:
                self._origins.clear()
            known = self._origins[origin] = (
                (parsed.scheme, parsed.host, parsed.port),
                endpoint,
                parsed,
            )
        originKey, endpoint, parsed = known
        # Connections are pooled per site (the Host the request is for), not
        # only per origin server: a misbehaving origin's stray response can
        # then only answer a later request for the same site, never another
        # site's that shares the origin server (docs/http.md).
        site = headers.getRawHeaders(b"host", [b""])[0] if headers is not None else b""
        key = (*originKey, site.lower())
        # The URI the Request carries (Response.request.absoluteURI), as
        # URI.fromBytes(uri) would give it; no fragment reaches here.
        path, _, query = target.partition(b"?")
        parsedURI = URI(
            parsed.scheme,
            parsed.netloc,
            parsed.host,
            parsed.port,
            path,
            b"",
            query,
            b"",
        )
        # (Twisted's annotation of the key has no site in it.)
        return self._requestWithEndpoint(  # type: ignore[no-any-return]
            key,  # type: ignore[arg-type]
            endpoint,
            method,
            parsedURI,
            headers,
            bodyProducer,
            target,
        )
