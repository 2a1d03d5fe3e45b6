"""
The edge proxy: turns each client request into a stream on a link to the
origin role serving its Host, and the stream's response back into an HTTP
response, with the C{Railgun} diagnostic header.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import Any

from attrs import Factory, define, field
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers

from railgun._compat.web import requestDisconnected
from railgun._lograte import RateLimitedLogger
from railgun.delta.codec import CodecRegistry, DeltaError
from railgun.delta.content import chooseEncoding, encodeBody, isDeltaEligible
from railgun.delta.digest import isValidDigest
from railgun.delta.history import (
    VersionHistory,
    formatBases,
    keepOlder,
    loadAlternates,
)
from railgun.delta.siblings import SiblingIndex
from railgun.edge.dictionaries import DCZ, Dictionaries
from railgun.edge.encodings import ClientEncodings
from railgun.edge.exchangestate import (
    EXCHANGE_TRANSITIONS,
    RELAY_TRANSITIONS,
    Exchange,
    ExchangeInput,
    Relay,
    RelayInput,
    transition,
)
from railgun.edge.links import OriginRoles
from railgun.http.diagnostic import (
    Flag,
    discloses,
    formatDiagnostic,
    formatDirect,
    formatHidden,
    linkRatio,
)
from railgun.http.headers import (
    HOP_BY_HOP,
    HeaderList,
    addForwarding,
    connectionTokens,
    stripHopByHop,
)
from railgun.http.messages import (
    CONTROL_PREFIX,
    BadMessage,
    RequestHead,
    ResponseHead,
    announcedLength,
    responseHasBody,
    splitControl,
)
from railgun.http.privacy import (
    carriesCredentials,
    exchangeShareable,
    requestShareable,
)
from railgun.http.routing import BadHost, HostMap, normalizeHost
from railgun.link.errors import ErrorCode, LinkLost, LinkUnavailable, StreamRefused
from railgun.link.protocol import LinkProtocol, StreamProtocol
from railgun.link.requestid import RequestIdGenerator
from railgun.logs import AccessRecord
from railgun.stats import Stats
from railgun.stores.interfaces import IVersionStore
from railgun.versions import DELTA, FULL, RAW, SAME, VersionMismatch, decodeVersion

log = Logger()

#: the version field of the C{Railgun} header.
RAILGUN_VERSION = "0100"

#: methods that may be sent again on another link if the first one died
#: before any response arrived (RFC 9110 9.2.2).
IDEMPOTENT = frozenset([b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"])

# The diagnostic flags as plain ints: IntFlag arithmetic costs a few
# microseconds per request.
_LINK_REUSED = Flag.LINK_REUSED.value
_BASE_SENT = Flag.BASE_SENT.value
_BASE_FOUND = Flag.BASE_FOUND.value
_RETRIED = Flag.RETRIED.value
_DELTA = Flag.DELTA.value
_SAME = Flag.SAME.value
_COMPRESSED = Flag.COMPRESSED.value

# Request headers the edge does not forward: the hop-by-hop ones, Host (it
# travels as :authority) and Content-Length (written from the body).
_NOT_FORWARDED = HOP_BY_HOP | {b"host", b"content-length"}

# Headers that addForwarding extends rather than appends.
_FORWARDING = frozenset([b"x-forwarded-for", b"forwarded", b"via"])

_CONTROL_PREFIX_LENGTH = len(CONTROL_PREFIX)

#: how a versioned body crosses the link, by its C{railgun-body} value.
_VERSION_MODES = {b"same": SAME, b"delta": DELTA, b"full": FULL}


@functools.lru_cache(maxsize=4096)  # pure; a client sends request after request
def _forwardingHeaders(
    clientAddress: str, host: bytes, proto: str
) -> tuple[tuple[bytes, bytes], ...]:
    """
    This hop's X-Forwarded-For, Forwarded and Via headers, for a request
    that has none of them (so that addForwarding would only append them).
    """
    return tuple(addForwarding([], clientAddress=clientAddress, host=host, proto=proto))


def _noAlternates(failure: Failure) -> dict[str, bytes]:
    # The older versions could not be read: the request names the latest
    # only.
    _logLookupFailure(failure)
    return {}


def _logLookupFailure(failure: Failure) -> None:
    log.failure("edge cache lookup failed", failure)


def respondPlain(
    request: Any, status: int, message: str, railgun: bytes | None = None
) -> None:
    """
    Answer a client with a short text error (the cause in one line).
    """
    if requestDisconnected(request) or request.finished:
        return
    body = message.encode("utf-8") + b"\n"
    request.setResponseCode(status)
    request.responseHeaders.setRawHeaders(
        b"content-type", [b"text/plain; charset=utf-8"]
    )
    request.responseHeaders.setRawHeaders(b"content-length", [b"%d" % len(body)])
    request.responseHeaders.setRawHeaders(b"cache-control", [b"no-store"])
    if railgun is not None:
        request.responseHeaders.setRawHeaders(b"railgun", [railgun])
    request.write(body)
    request.finish()


@define
class EdgeProxy:
    """
    Everything the edge needs to serve one request.

    @ivar pools: Host -> L{OriginRoles} (the link pools of the origin roles serving it).
    @ivar responseTimeout: seconds for the response head to come back.
    @ivar fallback: optional Host -> L{railgun.edge.direct.DirectFetcher}
        used when no link is up.
    """

    pools: HostMap
    clock: IReactorTime
    responseTimeout: float
    stats: Stats = field(factory=Stats)
    fallback: Any = None
    cache: IVersionStore | None = None
    codecs: CodecRegistry | None = None
    deltaMaxSize: int = 1024 * 1024
    linkWait: float = 5.0
    """
    Seconds a retried request waits for a link when none is ready.
    """
    siblings: SiblingIndex | None = None
    """
    URLs recently served per host: a URL the edge holds no version of
    names a sibling's version as its base (measured to pay: see
    docs/benchmarks.md).
    """
    history: VersionHistory | None = None
    """
    Per URL, the older distinct versions the edge keeps besides the latest
    and names as alternative bases (L{railgun.delta.history}); L{None}
    keeps the latest only.
    """
    clientEncodings: ClientEncodings | None = None
    """
    Recent bodies compressed for clients, by digest and coding: a page
    served unchanged is compressed once per version.
    """
    encodeForClient: Callable[[bytes, bytes], Deferred[bytes]] | None = None
    """
    Compresses a rebuilt body in a content coding for the client, off the
    reactor thread when it is large (see L{railgun.edge.service}); L{None}
    compresses inline.
    """
    dictionaries: Dictionaries | None = None
    """
    Compression dictionary transport to the browser (RFC 9842): versions
    offered as dictionaries, and served as C{dcz} against them.
    """
    diagnosticHeader: str = "public"
    """
    Which responses relayed over a link carry the C{Railgun} header, and
    with what (L{railgun.http.diagnostic.DIAGNOSTIC_MODES}).
    """
    failureLog: RateLimitedLogger = field(
        init=False,
        default=Factory(
            lambda self: RateLimitedLogger(log, self.clock), takes_self=True
        ),
    )
    """
    For the lines every request logs while the same thing fails (502, 503,
    504 during an outage): one per host and kind each 10 s.
    """
    accessLog: Callable[[AccessRecord], None] | None = None
    """
    Called with one L{AccessRecord} per request once it is answered or its
    client is gone (L{requestEnded}); L{None}: no access log.
    """
    stopping: bool = False
    """
    The edge is shutting down: a stream its link's drain cut off is
    answered, not retried on another link (they are all draining).
    """
    localIds: RequestIdGenerator = field(factory=RequestIdGenerator)
    """
    Request ids for requests that never get a stream (no link, the direct
    fallback), so that their log lines carry one too.
    """

    def handle(self, request: Any) -> None:
        """
        Serve one client request: called when its head has arrived (a
        request with a body, which then streams from C{request.body}) or
        when it is complete (one without).
        """
        request.railgunStarted = self.clock.seconds()
        rawHost = request.requestHeaders.getRawHeaders(b"host", [None])[0]
        if rawHost is None:
            respondPlain(request, 400, "the request has no Host header")
            return
        try:
            host = normalizeHost(rawHost)
        except BadHost:
            respondPlain(request, 400, "the request's Host header is malformed")
            return
        pool: OriginRoles | None = self.pools.lookup(host)
        if pool is None:
            self.stats.record(None, requests=1, errors=1)
            respondPlain(request, 421, f"host {host} is not served by this edge")
            return
        self.stats.record(host, requests=1)
        try:
            head = self._requestHead(request, rawHost)
        except BadMessage as e:
            self.stats.record(host, errors=1)
            respondPlain(request, 400, f"malformed request: {e}")
            return
        exchange = _Exchange(self, request, host, pool, head)
        if (
            self.cache is None
            or head.method != b"GET"
            # (A response to credentials the origin must check is never
            # encoded against a version another request left.)
            or not requestShareable(head.headers)
        ):
            exchange.start()
            return
        # The edge names the version it holds for this URL, if any.
        d = self.cache.get(exchange.cacheKey)
        d.addCallback(exchange.gotBase)
        d.addErrback(exchange.lookupFailed)

    def requestEnded(self, request: Any, finished: bool) -> None:
        """
        C{request} was answered (C{finished}) or its client went away
        first: count it (L{Stats.finished}) and write its access log line,
        once.
        """
        started = getattr(request, "railgunStarted", None)
        exchange: _Exchange | None = getattr(request, "railgunExchange", None)
        # (The exchange holds the request: the cycle is broken now rather
        # than by the cycle collector.)
        request.railgunStarted = request.railgunExchange = None
        if started is None:
            return  # never reached the proxy (refused by the HTTP server)
        status = request.code if request.startedWriting else 0
        if exchange is None:
            outcome = "refused" if 400 <= status < 500 else "error"
        else:
            outcome = exchange.outcome if finished else "error"
        totalSeconds = self.clock.seconds() - started
        host = exchange.host if exchange is not None else None
        self.stats.finished(host, outcome, status, totalSeconds)
        if self.accessLog is None:
            return
        originSeconds = None
        linkBytes = 0
        if exchange is None:
            rawHost = request.requestHeaders.getRawHeaders(b"host", [b"-"])[0]
            host = rawHost.decode("latin-1")
            rid = "-"
        else:
            host = exchange.host
            rid = exchange.requestId()
            if exchange.stream is not None:
                linkBytes = exchange.stream.counters.received
            handler = exchange.handler
            if handler is not None and b"railgun-origin-time" in handler._control:
                originSeconds = _float(handler._control[b"railgun-origin-time"])
        self.accessLog(
            AccessRecord(
                role="edge",
                rid=rid,
                host=host,
                method=request.method.decode("latin-1"),
                path=request.uri.decode("latin-1"),
                status=status,
                outcome=outcome,
                served=request.sentLength,
                linkBytes=linkBytes,
                originSeconds=originSeconds,
                totalSeconds=totalSeconds,
                client=getattr(request.getClientAddress(), "host", "-"),
            )
        )

    def _requestHead(self, request: Any, rawHost: bytes) -> RequestHead:
        """
        The head to forward: the client's end-to-end headers, lowercase,
        without link-control ones, then Content-Length, then this hop's
        forwarding headers.
        """
        requestHeaders = request.requestHeaders
        drop = _NOT_FORWARDED
        connection = requestHeaders.getRawHeaders(b"connection")
        if connection:
            drop = drop | connectionTokens(
                [(b"connection", value) for value in connection]
            )
        # One pass for what fromRawHeaders, stripHopByHop and stripControl
        # do in three.
        headers: HeaderList = []
        forwarding = False
        for name, values in requestHeaders.getAllRawHeaders():
            name = name.lower()
            if name in drop or name[:_CONTROL_PREFIX_LENGTH] == CONTROL_PREFIX:
                continue
            if name in _FORWARDING:
                forwarding = True
            for value in values:
                headers.append((name, value))
        body = request.body
        if body is not None and body.length is not None:
            headers.append((b"content-length", b"%d" % body.length))
        secure = request.isSecure()
        clientAddress = getattr(request.getClientAddress(), "host", "unknown")
        proto = "https" if secure else "http"
        if forwarding:
            headers = addForwarding(
                headers, clientAddress=clientAddress, host=rawHost, proto=proto
            )
        else:
            headers += _forwardingHeaders(clientAddress, rawHost, proto)
        return RequestHead(
            method=request.method,
            scheme=b"https" if secure else b"http",
            authority=rawHost,
            path=_originForm(request.uri),
            headers=headers,
        )


_AUTHORITY_PREFIX = re.compile(rb"[^/?#]*")


def _originForm(target: bytes) -> bytes:
    """
    The request target in origin form: an absolute-form target
    (C{GET http://host/path}, RFC 9112 3.2.2) keeps only its path and query;
    the Host header still names the site.
    """
    lowered = target[:8].lower()
    if lowered.startswith(b"http://") or lowered.startswith(b"https://"):
        rest = target.split(b"://", 1)[1]
        # The authority ends at the first "/", "?" or "#" (RFC 3986 3.2);
        # an empty path is "/"; a fragment is not sent.
        pathAndQuery = _AUTHORITY_PREFIX.sub(b"", rest, count=1).split(b"#", 1)[0]
        return pathAndQuery if pathAndQuery.startswith(b"/") else b"/" + pathAndQuery
    return target


class _Exchange:
    """
    One client request travelling to the origin role and back: opens the
    stream (again on another link if the first died before answering and
    the method is idempotent), sends the body, relays the response.
    """

    def __init__(
        self,
        proxy: EdgeProxy,
        request: Any,
        host: str,
        pool: OriginRoles,
        head: RequestHead,
    ) -> None:
        self.proxy = proxy
        self.request = request
        self.host = host
        self.pool = pool
        self.head = head
        self.flags = 0  # Flag bits, as an int
        self.body = request.body
        self.attempts = 0
        self.stream: Any = None
        self.handler: EdgeStreamHandler | None = None
        #: how it ended, for the access log: how the body crossed (set
        #: when relayed), direct, or error.
        self.outcome = "error"
        self._localId: str | None = None
        self.link: LinkProtocol | None = None
        self.timer: Any = None
        #: the lifecycle (railgun.edge.exchangestate), changed through end()
        self.state = Exchange.OPEN
        self.base: tuple[str, bytes] | None = None
        #: older versions of this URL the edge holds, named besides the base
        self.alternates: dict[str, bytes] = {}
        self.baseIsSibling = False
        self.hostKey = host.encode("utf-8")
        self.cacheKey = self.hostKey + b" " + head.path
        request.whenGone(self._clientGone)
        request.railgunExchange = self

    @property
    def done(self) -> bool:
        """
        Whether the exchange is over: answered, failed, aborted, or the
        client gone; nothing more is written to the client for it.
        """
        return self.state is not Exchange.OPEN

    def end(self, event: ExchangeInput) -> None:
        """
        End the exchange (L{EXCHANGE_TRANSITIONS}).
        """
        self.state = transition(EXCHANGE_TRANSITIONS, self.state, event)

    def gotBase(self, cached: bytes | None, sibling: bool = False) -> None:
        if self.done:
            return
        if cached is not None and isValidDigest(cached[:32]):
            self.base = (cached[:32].decode("ascii"), cached[32:])
            self.baseIsSibling = sibling
            if sibling:
                self.proxy.stats.record(self.host, siblingBases=1)
            else:
                history = self.proxy.history
                if history is not None and self.proxy.cache is not None:
                    older = history.older(self.cacheKey)
                    if older:
                        loading = loadAlternates(
                            self.proxy.cache, history, self.cacheKey, older
                        )
                        loading.addErrback(_noAlternates)
                        loading.addCallback(self._gotAlternates)
                        loading.addErrback(self.lookupFailed)
                        return
        elif not sibling and self.proxy.siblings is not None:
            other = self.proxy.siblings.pick(self.hostKey, self.head.path)
            if other is not None and self.proxy.cache is not None:
                d = self.proxy.cache.get(self.hostKey + b" " + other)
                d.addCallback(self.gotBase, sibling=True)
                d.addErrback(self.lookupFailed)
                return
        self.start()

    def lookupFailed(self, failure: Failure) -> None:
        """
        The edge's own version store failed (or choosing a base did): the
        request goes without a base rather than waiting forever.
        """
        _logLookupFailure(failure)
        if self.done or self.attempts:
            return
        self.base = None
        self.alternates = {}
        self.start()

    def _gotAlternates(self, alternates: dict[str, bytes]) -> None:
        if self.done:
            return
        self.alternates = alternates
        self.start()

    def linkHeaders(self) -> list[tuple[bytes, bytes]]:
        headers = self.head.toLinkHeaders()
        if self.base is not None:
            headers.append((b"railgun-base", self.base[0].encode("ascii")))
            if self.alternates:
                headers.append((b"railgun-bases", formatBases(list(self.alternates))))
            self.flags |= _BASE_SENT
        else:
            self.flags &= ~_BASE_SENT
        return headers

    def refetchInFull(self, why: str) -> None:
        """
        A versioned response could not be rebuilt: ask again without a
        base, so the origin role sends the body whole.
        """
        log.info(
            "request {rid} {host}: refetching in full: {why}",
            rid=self.requestId(),
            host=self.host,
            why=why,
        )
        self.proxy.stats.count(self.host, "fallbacks", why)
        self.base = None
        self.alternates = {}
        sent = self.request.body
        # A body already sent is not kept: it cannot go again.
        if self.attempts >= 3 or (sent is not None and sent.forwarded > 0):
            self.end(ExchangeInput.FAIL)
            respondPlain(
                self.request, 502, "railgun: the response could not be rebuilt"
            )
            return
        self.start(exclude=None)

    def _retry(self, exclude: LinkProtocol | None) -> None:
        if self.done or requestDisconnected(self.request):
            return
        self.start(exclude=exclude)

    def start(self, exclude: LinkProtocol | None = None) -> None:
        self.attempts += 1
        choice = self.pool.pick(exclude=exclude)
        if choice is None and (self.attempts > 1 or self.pool.isConnecting()):
            # A retry (the link that failed took others down with it, or
            # they are reconnecting), or links still being dialed (the edge
            # just started, a link was just lost): wait for one a little.
            self._waitForLink()
            return
        if choice is None:
            self._noLink("no link to the origin role is up")
            return
        link, reused = choice
        if reused:
            self.flags |= _LINK_REUSED
        handler = self.handler = EdgeStreamHandler(self)
        try:
            self.stream = link.openStream(
                handler, self.linkHeaders(), endStream=self.body is None
            )
        except LinkUnavailable:
            if self.attempts < 3:
                self.start(exclude=link)
            else:
                self._noLink("all links to the origin role are busy")
            return
        self.link = link
        self.timer = self.proxy.clock.callLater(
            self.proxy.responseTimeout, self._timedOut
        )
        if self.body is not None:
            self.body.attach(
                self.stream, self.stream.loseConnection, self._bodyProgress
            )

    def _bodyProgress(self) -> None:
        # An upload still going is no silence: the response timeout counts
        # from the last body bytes sent.
        if self.timer is not None:
            self.timer.reset(self.proxy.responseTimeout)

    def _waitForLink(self) -> None:
        waiting = self.pool.whenReady()
        timer = self.proxy.clock.callLater(self.proxy.linkWait, waiting.cancel)

        def ready(link: LinkProtocol) -> None:
            if timer.active():
                timer.cancel()
            if not self.done:
                self.attempts -= 1  # this attempt never got a link
                self.start()

        def gaveUp(failure: Failure) -> None:
            if not self.done:
                self._noLink("no link to the origin role came up in time")

        waiting.addCallbacks(ready, gaveUp)

    def _noLink(self, reason: str) -> None:
        fallback = (
            self.proxy.fallback.lookup(self.host) if self.proxy.fallback else None
        )
        if fallback is not None:
            self.proxy.stats.count(self.host, "fallbacks", "direct")
            self.outcome = "direct"
            fallback.serve(self.request, self.head, reason, self.requestId())
            return
        self.proxy.failureLog.info(
            "request {rid} {method} {host}: {reason}",
            rid=self.requestId(),
            method=self.head.method,
            host=self.host,
            reason=reason,
        )
        self.proxy.stats.record(self.host, errors=1)
        respondPlain(self.request, 503, f"railgun: {reason}", formatDirect(reason))
        self.end(ExchangeInput.FAIL)

    def requestId(self) -> str:
        """
        The request id: its stream's (the one the origin role logs too),
        else one of the edge's own (no stream was opened).
        """
        if self.stream is not None:
            return str(self.stream.requestId)
        if self._localId is None:
            self._localId = self.proxy.localIds.next()
        return self._localId

    def _timedOut(self) -> None:
        self.timer = None
        self.proxy.failureLog.info(
            "request {rid} {method} {host}: no response head from the origin role "
            "within {timeout} s",
            rid=self.requestId(),
            method=self.head.method,
            host=self.host,
            timeout=self.proxy.responseTimeout,
        )
        # Done before the reset, which calls back into streamFailed: the
        # client gets this 504, not a 502 for the reset stream.
        self.end(ExchangeInput.FAIL)
        if self.stream is not None:
            self.stream.reset(ErrorCode.CANCEL)
        self.proxy.stats.record(self.host, errors=1)
        respondPlain(
            self.request, 504, "railgun: the origin role did not answer in time"
        )

    def stopSending(self) -> None:
        """
        The exchange is over (answered, failed, or the client left): stop
        relaying the request body; if it was not all sent, end the stream
        (an origin may answer before reading a whole body, as HTTP/2 allows).
        """
        body = self.body
        if body is None:
            return
        self.body = None
        unfinished = not body.complete or body.forwarded < (body.length or 0)
        body.detach()
        if unfinished and self.stream is not None:
            self.stream.reset(ErrorCode.CANCEL)

    def cancelTimer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def _clientGone(self, failure: Failure) -> None:
        # Done first: resetting the stream calls back into streamFailed,
        # which must not answer a client that is gone (or was refused).
        self.end(ExchangeInput.CLIENT_GONE)
        self.cancelTimer()
        self.stopSending()
        if self.stream is not None:
            self.stream.reset(ErrorCode.CANCEL)

    def streamFailed(self, reason: Failure, headersSent: bool) -> None:
        """
        The stream ended without a complete response.
        """
        self.cancelTimer()
        if self.done:
            return
        if headersSent:
            # The client has a partial response: closing the connection
            # without the final chunk (or short of Content-Length) tells it.
            self.end(ExchangeInput.ABORT)
            self.stopSending()
            self.request.channel.transport.abortConnection()
            return
        if self.proxy.stopping:
            # The edge's own drain ended this stream (it timed out): every
            # link is draining, none to retry on; the client is told why.
            self.end(ExchangeInput.FAIL)
            self.stopSending()
            self.proxy.failureLog.info(
                "request {rid} {method} {host}: unanswered when the edge shut "
                "down ({why})",
                rid=self.requestId(),
                method=self.head.method,
                host=self.host,
                why=reason.getErrorMessage(),
            )
            self.proxy.stats.record(self.host, errors=1)
            respondPlain(
                self.request,
                504,
                "railgun: the edge is shutting down, and the origin role did not "
                "answer before its drain ended",
            )
            return
        body = self.body
        if (
            reason.check(StreamRefused, LinkLost)
            and self.head.method in IDEMPOTENT
            and self.attempts < 3
            # A body partly sent cannot be sent again: it is not kept.
            and (body is None or body.forwarded == 0)
        ):
            self.proxy.failureLog.info(
                "request {rid} {method} {host}: retrying on another link: {why}",
                rid=self.requestId(),
                method=self.head.method,
                host=self.host,
                why=reason.getErrorMessage(),
            )
            self.flags |= _RETRIED
            if body is not None:
                body.releaseConsumer()
            # On the next reactor turn: a fault that killed every link
            # (aborted connections) delivers each link's loss on a turn of
            # its own, and a retry now would pick a link already dead but
            # not yet seen closed, spending an attempt on it.
            self.proxy.clock.callLater(0, self._retry, self.link)
            return
        self.end(ExchangeInput.FAIL)
        self.stopSending()
        self.proxy.failureLog.info(
            "request {rid} {method} {host}: link failed ({why})",
            rid=self.requestId(),
            method=self.head.method,
            host=self.host,
            why=reason.getErrorMessage(),
        )
        self.proxy.stats.record(self.host, errors=1)
        respondPlain(
            self.request,
            502,
            f"railgun: the link to the origin role failed ({reason.getErrorMessage()})",
        )


class EdgeStreamHandler(StreamProtocol):
    """
    The edge's end of one stream: relays the response to the client, the
    client's socket being the stream's consumer (a slow client pauses its
    own stream, and through flow control the origin's, and nothing else).
    """

    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange
        # The lifecycle (railgun.edge.exchangestate), changed through _move:
        # once the head arrived (a version's is held until its body is
        # rebuilt) a later header block is trailers; ENCODING: a rebuilt body
        # is being compressed for the client in a thread, the stream may be
        # over, the response is not written yet.
        self._relay = Relay.HEAD
        self._served = 0
        self._linkBytes = 0
        self._mode = RAW
        self._held: list[bytes] = []
        self._heldBytes = 0
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._control: dict[bytes, bytes] = {}
        #: a raw body's announced length, checked as it is relayed
        self._rawLength: int | None = None
        #: the body as dcz, served when smaller than the plain coding
        self._dcz: bytes | None = None
        #: whether the response may be a version shared across users
        #: (railgun.http.privacy)
        self._shareable = False

    def headersReceived(
        self, headers: list[tuple[bytes, bytes]], endStream: bool
    ) -> None:
        if self._relay is not Relay.HEAD:
            return  # trailers are not relayed
        exchange = self._exchange
        request = exchange.request
        exchange.cancelTimer()
        if exchange.done:
            self._move(RelayInput.REFUSE)
            self.transport.reset(ErrorCode.CANCEL)
            return
        # Whatever the peer sends (an interim 1xx head, a control header
        # twice...) is a malformed head: a 502, never an exception.
        try:
            head = ResponseHead.fromLinkHeaders(headers)
            endToEnd, control = splitControl(head.headers)
        except BadMessage as e:
            self._malformed(e)
            return
        self._status = head.status
        self._headers = stripHopByHop(endToEnd)
        self._control = control
        self._shareable = exchangeShareable(exchange.head.headers, self._headers)
        mode = _VERSION_MODES.get(control.get(b"railgun-body", b"raw"))
        if mode is not None:
            # A version: held (bounded) until it is complete and checked.
            self._mode = mode
            self._move(RelayInput.HOLD)
            if endStream:
                self._serveVersion()
            return
        if responseHasBody(exchange.head.method, head.status):
            try:
                self._rawLength = announcedLength(self._headers)
            except BadMessage as e:
                self._malformed(e)
                return
        self._move(RelayInput.SEND_HEAD)
        request.setResponseCode(head.status)
        for name, value in self._headers:
            request.responseHeaders.addRawHeader(name, value)
        self._setDiagnostic(100.0)
        if endStream:
            if self._rawLength:
                self._wrongLength("shorter")  # a length announced, no body
                return
            self._finish()
            return
        request.registerProducer(self.transport, True)

    def _malformed(self, why: BadMessage) -> None:
        log.warn(
            "request {rid}: bad response head from the origin role: {e}",
            rid=self.transport.requestId,
            e=why,
        )
        self._move(RelayInput.REFUSE)
        # (Before the reset: see _Exchange._timedOut.)
        self._exchange.end(ExchangeInput.FAIL)
        self.transport.reset(ErrorCode.PROTOCOL_ERROR)
        respondPlain(
            self._exchange.request,
            502,
            "railgun: the origin role sent a malformed response",
        )

    def _setDiagnostic(self, ratio: float) -> None:
        """
        Set the C{Railgun} header, its ratio and base flags hidden unless
        the edge's mode discloses them for this exchange (a response of one
        user's, or to a request with credentials, must not tell how similar
        it is to a version another request left), or no header at all.
        """
        exchange = self._exchange
        mode = exchange.proxy.diagnosticHeader
        if mode == "off":
            return
        originFlags = _int(self._control.get(b"railgun-flags"), 16)
        flags = exchange.flags | (originFlags & _BASE_FOUND)
        originSeconds = _float(self._control.get(b"railgun-origin-time"))
        if discloses(mode, self._shareable, carriesCredentials(exchange.head.headers)):
            value = formatDiagnostic(
                self.transport.requestId, ratio, originSeconds, flags, RAILGUN_VERSION
            )
        else:
            value = formatHidden(
                self.transport.requestId, originSeconds, flags, RAILGUN_VERSION
            )
        exchange.request.responseHeaders.setRawHeaders(b"railgun", [value])

    def _serveVersion(self) -> None:
        exchange = self._exchange
        proxy = exchange.proxy
        payload = b"".join(self._held)
        self._held = []
        control = self._control
        digest = control.get(b"railgun-digest", b"")
        codecName = control.get(b"railgun-codec", b"identity").decode(
            "ascii", "replace"
        )
        base = exchange.base
        used = control.get(b"railgun-base-used")
        # Against one of the older versions the edge named: said by the
        # origin role for a delta; for 'same', the digest tells (an origin
        # role that does not know railgun-bases answers against the latest).
        usedName = (used if used is not None else digest).decode("ascii", "replace")
        if (used is not None or self._mode == SAME) and usedName in exchange.alternates:
            base = (usedName, exchange.alternates[usedName])
        try:
            if not isValidDigest(digest):
                raise DeltaError("response without a valid digest")
            codec = None
            if codecName != "identity":
                if proxy.codecs is None:
                    raise DeltaError(f"codec {codecName!r} while deltas are off")
                codec = (
                    proxy.codecs.deltaCodec(codecName)
                    if self._mode == DELTA
                    else proxy.codecs.fullCodec(codecName)
                )
            body = decodeVersion(
                self._mode,
                codec,
                payload,
                digest=digest.decode("ascii"),
                base=base,
                maxSize=proxy.deltaMaxSize,
            )
        except (VersionMismatch, DeltaError) as e:
            # The payload crossed the link for nothing; count it all the same.
            proxy.stats.record(exchange.host, bodyBytesOnLink=len(payload))
            self._move(RelayInput.FINISH)
            exchange.refetchInFull(
                "digest-mismatch" if isinstance(e, VersionMismatch) else "decode-error"
            )
            return
        ownVersion = (
            self._mode == SAME and not exchange.baseIsSibling and base is exchange.base
        )
        if (
            proxy.cache is not None
            and exchange.head.method == b"GET"
            and not ownVersion
            # One user's response is never kept for the next one (nor named
            # as a sibling's base): railgun.http.privacy.
            and self._shareable
        ):
            # (Unless 'same' against this URL's own version: the cache
            # already holds exactly it.)
            proxy.cache.set(exchange.cacheKey, digest + body)
            if proxy.history is not None:
                keepOlder(
                    proxy.cache,
                    proxy.history,
                    exchange.cacheKey,
                    None if exchange.baseIsSibling else exchange.base,
                    digest.decode("ascii"),
                )
            if proxy.siblings is not None:
                proxy.siblings.remember(exchange.hostKey, exchange.head.path)
        request = exchange.request
        if self._mode == SAME:
            exchange.flags |= _SAME
        elif self._mode == DELTA:
            exchange.flags |= _DELTA
        elif codecName != "identity":
            exchange.flags |= _COMPRESSED
        exchange.cancelTimer()
        self._move(RelayInput.SEND_HEAD)
        request.setResponseCode(self._status)
        for name, value in self._headers:
            request.responseHeaders.addRawHeader(name, value)
        coding = _clientCoding(request, self._headers)
        dictionaries = proxy.dictionaries
        if dictionaries is not None:
            # Offered as a dictionary, or served as dcz: railgun.edge.dictionaries.
            self._move(RelayInput.ENCODE)
            d = dictionaries.prepare(
                request,
                exchange.host,
                exchange.head.path,
                self._status,
                self._headers,
                body,
                digest,
                coding,
            )
            d.addCallback(
                lambda dcz: self._encodeForClient(
                    body, len(payload), digest, coding, dcz
                )
            )
            d.addErrback(self._encodeFailed)
            return
        self._encodeForClient(body, len(payload), digest, coding, None)

    def _encodeForClient(
        self,
        body: bytes,
        linkBytes: int,
        digest: bytes,
        coding: bytes | None,
        dcz: bytes | None,
    ) -> None:
        """
        Serve C{body} in C{coding} (compressing it, or taking a kept
        encoding), or as C{dcz} when that is smaller.
        """
        self._encodingEnded()
        proxy = self._exchange.proxy
        if self._exchange.done:
            return  # the client went away meanwhile
        if dcz is not None:
            self._dcz = dcz
        if coding is None:
            self._respond(body, linkBytes, None, body)
            return
        # (One user's body is not kept compressed for others either.)
        kept = proxy.clientEncodings if self._shareable else None
        cached = kept.get(digest, coding) if kept is not None else None
        if cached is not None:
            self._respond(body, linkBytes, coding, cached)
        elif proxy.encodeForClient is None:
            served = encodeBody(body, coding)
            if kept is not None:
                kept.put(digest, coding, served)
            self._respond(body, linkBytes, coding, served)
        else:
            self._move(RelayInput.ENCODE)
            d = proxy.encodeForClient(body, coding)
            d.addCallback(
                lambda served: self._encoded(body, linkBytes, digest, coding, served)
            )
            d.addErrback(self._encodeFailed)

    def _encoded(
        self, body: bytes, linkBytes: int, digest: bytes, coding: bytes, served: bytes
    ) -> None:
        self._encodingEnded()
        kept = self._exchange.proxy.clientEncodings if self._shareable else None
        if kept is not None:
            kept.put(digest, coding, served)
        if self._exchange.done:
            return  # the client went away meanwhile
        self._respond(body, linkBytes, coding, served)

    def _encodeFailed(self, failure: Failure) -> None:
        self._encodingEnded()
        log.failure(
            "request {rid}: compressing a response for the client",
            failure,
            rid=self.transport.requestId,
        )
        exchange = self._exchange
        if not exchange.done:
            self._move(RelayInput.FINISH)
            exchange.end(ExchangeInput.FAIL)
            # The origin's headers (validators, cookies, its content type)
            # were already set; they describe a body the client won't get.
            exchange.request.responseHeaders = Headers()
            respondPlain(
                exchange.request, 500, "railgun: could not compress the response"
            )

    def _respond(
        self, body: bytes, linkBytes: int, coding: bytes | None, served: bytes
    ) -> None:
        """
        Write the response of a rebuilt version: C{served} is C{body} in the
        client's content C{coding}, or C{body} itself.
        """
        exchange = self._exchange
        proxy = exchange.proxy
        request = exchange.request
        if self._dcz is not None:
            log.info(
                "request {rid} {host}: dcz {dczBytes} bytes, {coding} {plainBytes}: "
                "{chosen} sent",
                rid=self.transport.requestId,
                host=exchange.host,
                dczBytes=len(self._dcz),
                coding=(coding or b"identity").decode("ascii"),
                plainBytes=len(served),
                chosen="dcz" if len(self._dcz) < len(served) else "plain",
            )
            if len(self._dcz) < len(served):
                coding, served = DCZ, self._dcz
        if coding is not None:
            request.responseHeaders.setRawHeaders(b"content-encoding", [coding])
            # Another representation: a strong validator of the identity
            # body must not vouch for these bytes (RFC 9110 8.8.3).
            etags = request.responseHeaders.getRawHeaders(b"etag")
            if etags:
                request.responseHeaders.setRawHeaders(
                    b"etag", [e if e.startswith(b"W/") else b"W/" + e for e in etags]
                )
            vary = request.responseHeaders.getRawHeaders(b"vary", [])
            if not any(
                b"accept-encoding" in v.lower() or v.strip() == b"*" for v in vary
            ):
                request.responseHeaders.addRawHeader(b"vary", b"Accept-Encoding")
        request.responseHeaders.setRawHeaders(b"content-length", [b"%d" % len(served)])
        self._setDiagnostic(linkRatio(linkBytes, len(body)))
        proxy.stats.count(exchange.host, "bodies", self._mode)
        self._served = len(body)
        self._linkBytes = linkBytes
        request.write(served)
        self._finish()

    def dataReceived(self, data: bytes) -> None:
        if self._exchange.done:
            return
        if self._mode != RAW:
            self._held.append(data)
            self._heldBytes += len(data)
            # A payload is never larger than the body it encodes, and a
            # version's body is at most deltaMaxSize.
            if self._heldBytes > self._exchange.proxy.deltaMaxSize + 1024:
                self.transport.reset(ErrorCode.PROTOCOL_ERROR)
            return
        if self._rawLength is not None and self._served + len(data) > self._rawLength:
            # More than the head announced: the extra bytes would reach the
            # client as the start of another response.
            self._wrongLength("longer")
            return
        self._served += len(data)
        self._linkBytes += len(data)
        self._exchange.request.write(data)

    def readConnectionLost(self) -> None:
        if self._relay in _WRITING:
            return
        if self._relay is Relay.HOLDING:
            self._serveVersion()
        elif self._relay is Relay.RELAYING:
            if self._rawLength is not None and self._served < self._rawLength:
                self._wrongLength("shorter")
                return
            self._exchange.request.unregisterProducer()
            self._finish()

    def _move(self, event: RelayInput) -> None:
        self._relay = transition(RELAY_TRANSITIONS, self._relay, event)

    def _encodingEnded(self) -> None:
        # (Also reached without an encoding: served at once, or a failure
        # of the callback that follows one.)
        if self._relay is Relay.ENCODING:
            self._move(RelayInput.ENCODED)

    def _wrongLength(self, which: str) -> None:
        """
        A raw body that does not match its Content-Length: the stream is
        reset, so the client's connection is aborted (L{connectionLost}),
        rather than a body presented as complete, or a spliced response.
        """
        log.warn(
            "request {rid}: raw body from the origin role {which} than its "
            "content-length {length}",
            rid=self.transport.requestId,
            which=which,
            length=self._rawLength,
        )
        self.transport.reset(ErrorCode.PROTOCOL_ERROR)

    def _finish(self) -> None:
        exchange = self._exchange
        if self._relay is Relay.FINISHED or exchange.done:
            return
        self._move(RelayInput.FINISH)
        exchange.end(ExchangeInput.FINISH)
        exchange.outcome = _outcome(self._mode, self._control)
        exchange.stopSending()
        stats = exchange.proxy.stats
        stats.record(
            exchange.host,
            responses=1,
            bodyBytesServed=self._served,
            bodyBytesOnLink=self._linkBytes,
        )
        request = exchange.request
        if not requestDisconnected(request) and not request.finished:
            request.finish()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if self._relay not in _WRITING:
            headersSent = self._relay is Relay.RELAYING
            request = self._exchange.request
            if (
                headersSent
                and not requestDisconnected(request)
                and not request.finished
            ):
                request.unregisterProducer()
            self._exchange.streamFailed(reason, headersSent)


#: the handler's states in which the stream's end changes nothing: the
#: response is written (or handed to a refetch), or is being compressed.
_WRITING = frozenset({Relay.FINISHED, Relay.ENCODING})

#: C{railgun-error} codes of the origin role that refuse a request.
_REFUSALS = frozenset([b"unmapped-host", b"bad-request"])


def _outcome(mode: str, control: dict[bytes, bytes]) -> str:
    """
    A relayed response's outcome: how its body crossed the link, or for an
    error the origin role answered itself, C{refused} or C{error}.
    """
    error = control.get(b"railgun-error")
    if error is None:
        return mode
    return "refused" if error in _REFUSALS else "error"


def _int(value: bytes | None, base: int = 10) -> int:
    try:
        return int(value, base) if value is not None else 0
    except ValueError:
        return 0


def _clientCoding(request: Any, headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """
    The content coding to serve a rebuilt (identity) body in, from the
    client's Accept-Encoding, for text-like bodies only.
    """
    acceptEncoding = request.requestHeaders.getRawHeaders(b"accept-encoding", [None])[0]
    if acceptEncoding is None:
        return None  # identity, whatever the body (the cheap test first)
    contentType = None
    for name, value in headers:
        if name == b"content-encoding":
            return None
        if name == b"content-type":
            contentType = value
        elif name == b"cache-control" and b"no-transform" in value.lower():
            return None  # an intermediary must not recode it (RFC 9111 5.2.2.6)
    if not isDeltaEligible(b"GET", 200, contentType, None, 1):
        return None
    return chooseEncoding(acceptEncoding)


def _float(value: bytes | None) -> float:
    """
    A number a peer sent (C{railgun-origin-time}): 0.0 unless it is a
    finite number >= 0 (C{inf}, C{nan} or C{-1} would make the diagnostic
    header raise).
    """
    try:
        number = float(value) if value is not None else 0.0
    except ValueError:
        return 0.0
    return number if 0.0 <= number < math.inf else 0.0


__all__ = ["EdgeProxy", "EdgeStreamHandler"]
