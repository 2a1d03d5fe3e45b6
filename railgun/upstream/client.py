"""
Fetching from origin servers through treq: one L{HTTPClient} over an
L{Agent} with a persistent connection pool, and the mapping of fetch
failures to the HTTP errors an edge's client sees.
"""

from __future__ import annotations

from http.cookiejar import CookieJar
from typing import Any

from attrs import frozen
from hyperlink import EncodedURL
from treq.client import HTTPClient
from twisted.internet import error as ierror
from twisted.internet.abstract import isIPAddress
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import (
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IPolicyForHTTPS, IResponse
from zope.interface import implementer

from railgun._compat.httpclient import ExactTargetAgent, GuardedConnectionPool
from railgun._sockets import tuneForVolume, writeEagerly
from railgun.http.headers import HOP_BY_HOP, fromRawHeaders, stripHopByHop
from railgun.http.messages import stripControl
from railgun.http.routing import OriginTarget


class _NoCookies(CookieJar):
    """
    treq keeps a cookie jar per client; a proxy must never remember one
    user's cookies and send them with another user's request, so this jar
    stores and sends nothing.
    """

    def add_cookie_header(self, request: Any) -> None:
        pass

    def extract_cookies(self, response: Any, request: Any) -> None:
        pass


#: Where an origin response's Content-Encoding waits while the response
#: passes treq's content decoder (see L{_IdentityEncodingAgent}).
_HELD_CODINGS = b"railgun-held-content-encoding"


@implementer(IAgent)
class _IdentityEncodingAgent:
    """
    Ask origin servers for identity encoding, and keep whatever encoding
    they send anyway as it is.

    treq's own C{ContentDecoderAgent} (above this one) adds
    C{Accept-Encoding: gzip}; we replace it: a version is a body in identity
    encoding, and the edge compresses for its own client. An origin may
    send gzip anyway, and treq's decoder would inflate it without bound,
    stop at the end of the first gzip member and never notice a truncated
    stream. So the response's C{Content-Encoding} is moved out of that
    decoder's sight (L{_HELD_CODINGS}) and restored by
    L{responseHeaderList}: a body is relayed in the coding the origin sent,
    and a version is decoded by L{railgun.delta.content.decodeContentEncoding},
    bounded and strict.
    """

    def __init__(self, agent: IAgent) -> None:
        self._agent = agent

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[IResponse]:
        # treq's decoder agent above has already copied the headers: they
        # are ours to change.
        headers = headers if headers is not None else Headers()
        headers.setRawHeaders(b"accept-encoding", [b"identity"])
        return self._agent.request(method, uri, headers, bodyProducer).addCallback(
            _holdCodings
        )


def _holdCodings(response: IResponse) -> IResponse:
    headers = response.headers
    codings = headers.getRawHeaders(b"content-encoding")
    # A header of that name from the origin itself is not ours to restore.
    headers.removeHeader(_HELD_CODINGS)
    if codings is not None:
        headers.removeHeader(b"content-encoding")
        headers.setRawHeaders(_HELD_CODINGS, codings)
    return response


@implementer(IStreamClientEndpoint)
class _TunedEndpoint:
    """
    An endpoint whose connections get L{tuneForVolume}'s buffers and
    L{writeEagerly}'s writes once, when they are made, rather than at every
    response a pooled connection carries.
    """

    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self._endpoint = endpoint

    def connect(self, protocolFactory: Any) -> Deferred[Any]:
        # (twisted.web's connection factory would log "Starting factory"
        # and "Stopping factory" for every origin connection.)
        protocolFactory.noisy = False
        return self._endpoint.connect(protocolFactory).addCallback(_tuned)


def _tuned(protocol: Any) -> Any:
    tuneForVolume(protocol.transport)
    writeEagerly(protocol.transport)
    return protocol


@implementer(IPolicyForHTTPS)
class _NoVerification:
    """
    The policy for origins configured with C{verify_origin_tls = false}: TLS
    without certificate checks (an origin with a self-signed certificate on
    the same machine). Off by default.
    """

    def __init__(self) -> None:
        from twisted.internet.ssl import CertificateOptions

        self._context = CertificateOptions(verify=False).getContext()

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return _UncheckedCreator(self._context, hostname)


@implementer(IOpenSSLClientConnectionCreator)
class _UncheckedCreator:
    """
    A TLS client connection that checks nothing but still names the origin
    (SNI), for origins that serve several names.
    """

    def __init__(self, context: Any, hostname: bytes) -> None:
        self._context = context
        self._hostname = hostname

    def clientConnectionForTLS(self, tlsProtocol: Any) -> Any:
        from OpenSSL.SSL import Connection

        connection = Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        if not isIPAddress(self._hostname.decode("ascii", "replace")):
            connection.set_tlsext_host_name(self._hostname)
        return connection


def makeOriginClient(
    reactor: Any,
    *,
    connectTimeout: float,
    maxConnectionsPerOrigin: int,
    verifyTLS: bool = True,
) -> tuple[HTTPClient, HTTPConnectionPool]:
    """
    Build the treq client the origin role fetches with.

    @return: the client and its pool (closed on shutdown).
    """
    pool = GuardedConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = maxConnectionsPerOrigin
    pool.cachedConnectionTimeout = 120
    pool.retryAutomatically = True
    policy = BrowserLikePolicyForHTTPS() if verifyTLS else _NoVerification()
    agent = ExactTargetAgent(
        reactor,
        contextFactory=policy,
        connectTimeout=connectTimeout,
        pool=pool,
        wrapEndpoint=_TunedEndpoint,
    )
    return originClient(agent), pool


def originClient(agent: IAgent) -> HTTPClient:
    """
    The treq client of the origin role over C{agent}: identity encoding
    asked for, no cookie jar.
    """
    return HTTPClient(_IdentityEncodingAgent(agent), cookiejar=_NoCookies())  # type: ignore[arg-type]


def _asciiURL(url: bytes) -> bytes:
    """
    C{url} with bytes outside ASCII percent-encoded (a client may send them
    raw; the Agent refuses them), everything else unchanged.
    """
    if url.isascii():
        return url
    return b"".join(bytes((b,)) if b < 0x80 else b"%%%02X" % b for b in url)


@frozen
class FetchError:
    """
    How a failed origin fetch is reported to the edge.

    @ivar status: the HTTP status the client gets (502 or 504).
    @ivar code: a short machine-readable cause (C{railgun-error} header).
    @ivar message: one line for the response body and the log.
    """

    status: int
    code: str
    message: str


def classifyFetchFailure(failure: Failure, timedOut: bool) -> FetchError:
    """
    Map an origin fetch failure to the response the edge's client gets: an
    origin that cannot be reached is a 502, one that does not answer in time
    a 504.

    @param timedOut: whether our own response timer cancelled the fetch.
    """
    if timedOut or failure.check(CancelledError):
        return FetchError(
            504, "origin-timeout", "the origin server did not answer in time"
        )
    if failure.check(ierror.TimeoutError):
        return FetchError(
            504, "origin-connect-timeout", "connecting to the origin server timed out"
        )
    if failure.check(ierror.DNSLookupError):
        return FetchError(
            502, "origin-dns", "the origin server's name does not resolve"
        )
    if failure.check(ierror.ConnectError):
        return FetchError(
            502,
            "origin-unreachable",
            "the origin server refused or could not be reached",
        )
    if failure.check(ResponseNeverReceived, ResponseFailed):
        return FetchError(
            502,
            "origin-failed",
            "the origin server closed the connection without a valid response",
        )
    return FetchError(
        502,
        "origin-error",
        f"fetching from the origin server failed: {failure.getErrorMessage()}",
    )


def originRequestHeaders(headers: list[tuple[bytes, bytes]]) -> Headers:
    """
    The headers to send to the origin: the end-to-end headers the edge
    forwarded, less C{Content-Length} (the Agent writes its own from the body
    producer) and C{Accept-Encoding} (we always ask for identity), and less
    any connection-specific header (C{Transfer-Encoding}, C{Connection}...):
    the edge strips them, and the origin role does not trust it to, since
    the origin connection is shared by every edge's requests.
    """
    result = Headers()
    # (Names from the link are lowercase: the common case, none to drop, is
    # one set test per header.)
    if not HOP_BY_HOP.isdisjoint([name for name, _ in headers]):
        headers = stripHopByHop(headers)
    for name, value in headers:
        if name in (b"content-length", b"accept-encoding"):
            continue
        result.addRawHeader(name, value)
    return result


class ExactURL(EncodedURL):
    """
    A URL that treq sends exactly as given.

    treq's C{request()} passes every URL through hyperlink
    (C{EncodedURL.from_text(...).to_uri()}), which percent-encodes
    characters clients do send raw (C{{}|^`"<>[]\\}) and drops an empty
    C{?}; a proxy must forward the request target unchanged. treq takes an
    L{EncodedURL} as it is and only asks it C{to_uri().to_text()}, which
    this one answers with its exact text (and no parsing per request).
    """

    def __init__(self, url: bytes) -> None:  # no URL.__init__: nothing to parse
        # Bytes a client left unencoded outside ASCII would make treq's
        # .encode("ascii") fail: percent-encode those alone.
        self._exactText = _asciiURL(url).decode("ascii")

    def to_uri(self) -> ExactURL:  # type: ignore[override]
        return self

    def to_text(self, with_password: bool = False) -> str:
        return self._exactText


def fetchFromOrigin(
    client: HTTPClient,
    clock: IReactorTime,
    target: OriginTarget,
    method: bytes,
    path: bytes,
    headers: Headers,
    body: IBodyProducer | None,
    timeout: float,
) -> Deferred[IResponse]:
    """
    Send one request to an origin server and fire with its response once the
    head has arrived (the body is delivered later, unbuffered).

    A response head that does not arrive within C{timeout} seconds cancels
    the request; the Deferred then fails with L{CancelledError}.
    """
    return client.request(  # type: ignore[return-value]
        method.decode("ascii"),
        ExactURL(target.urlFor(path)),
        headers=headers,
        data=body,
        allow_redirects=False,
        unbuffered=True,
        reactor=clock,  # type: ignore[arg-type]
        timeout=timeout,
    )


def responseHeaderList(response: IResponse) -> list[tuple[bytes, bytes]]:
    """
    An origin response's end-to-end headers as a list with lowercase names,
    less hop-by-hop and C{railgun-*} ones, and less the empty
    C{Content-Encoding} that treq's C{ContentDecoderAgent} sets on every
    response that had none; the origin's own C{Content-Encoding}, held out
    of that decoder's sight, is back.
    """
    headers = []
    for name, value in fromRawHeaders(response.headers.getAllRawHeaders()):
        if name == b"content-encoding" and not value:
            continue  # treq's decoder's empty one (the origin's is held)
        if name == _HELD_CODINGS:
            name = b"content-encoding"
        headers.append((name, value))
    return stripControl(stripHopByHop(headers))


class DiscardBody(Protocol):
    """
    Drop a response body nobody wants (its stream or client is gone, or it
    has none) without reading it: stopping the transport frees the origin
    connection.
    """

    def connectionMade(self) -> None:
        self.transport.stopProducing()  # type: ignore[union-attr]
