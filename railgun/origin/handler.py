"""
One stream on the origin role: the request an edge sent, fetched from the
origin server its Host maps to, and the response streamed back.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from attrs import Factory, define, field
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import PotentialDataLoss, ResponseDone
from twisted.web.iweb import UNKNOWN_LENGTH, IResponse
from zope.interface import implementer

from railgun._lograte import RateLimitedLogger
from railgun._lru import SizedLRU
from railgun._producers import WatchedProducer
from railgun.delta.codec import CodecRegistry
from railgun.delta.content import (
    ContentDecodingError,
    decodeContentEncoding,
    isDeltaEligible,
)
from railgun.delta.digest import isValidDigest, versionDigest
from railgun.delta.history import chooseBase, parseBases, storedBases
from railgun.delta.reuse import DeltaReuse
from railgun.http.diagnostic import Flag
from railgun.http.messages import (
    BadMessage,
    RequestHead,
    ResponseHead,
    announcedLength,
    responseHasBody,
    splitControl,
)
from railgun.http.privacy import exchangeShareable
from railgun.http.routing import BadHost, HostMap, normalizeHost
from railgun.link.errors import ErrorCode
from railgun.link.protocol import StreamProtocol
from railgun.logs import AccessRecord
from railgun.origin.body import StreamBodyProducer
from railgun.origin.streamstate import (
    LINK_TRANSITIONS,
    RESPONSE_TRANSITIONS,
    TIMER_TRANSITIONS,
    Link,
    LinkInput,
    Response,
    ResponseInput,
    Timer,
    TimerInput,
    transition,
)
from railgun.stats import Stats
from railgun.stores.interfaces import IVersionStore
from railgun.upstream.client import (
    DiscardBody,
    FetchError,
    classifyFetchFailure,
    fetchFromOrigin,
    originRequestHeaders,
    responseHeaderList,
)
from railgun.versions import DELTA, FULL, RAW, SAME, EncodedVersion, encodeVersion

log = Logger()


@define
class FullEncodings:
    """
    The latest C{full} encodings the origin role sent, by body digest and
    codec, bounded in count and bytes.

    Compressing a 10 KB page costs more than everything else the origin role
    does for it; a page sent again unchanged (to an edge without deltas, or
    without the base) reuses its encoding. A version's digest names its
    body, so the encoding is the same.

    @ivar maxItems: encodings kept at most.
    @ivar maxBytes: payload bytes kept at most; a larger payload is not kept.
    """

    maxItems: int = 64
    maxBytes: int = 4 * 1024 * 1024
    _kept: SizedLRU[tuple[str, str], EncodedVersion] = field(init=False)

    def __attrs_post_init__(self) -> None:
        self._kept = SizedLRU(self.maxItems, self.maxBytes, _payloadSize)

    def get(self, digest: str, codec: str) -> EncodedVersion | None:
        """
        @return: the kept C{full} encoding of the body named C{digest} made
            with the whole-body codec C{codec}, or L{None}.
        """
        return self._kept.get((digest, codec))

    def put(self, encoded: EncodedVersion, codec: str) -> None:
        """
        Keep C{encoded} (a C{full} encoding made with no base, the
        whole-body codec offered being C{codec}), dropping the least
        recently used ones past the bounds.
        """
        if encoded.mode == FULL and not encoded.baseFound:
            self._kept.put((encoded.digest, codec), encoded)


def _payloadSize(encoded: EncodedVersion) -> int:
    return len(encoded.payload)


@define
class RecentlyStored:
    """
    When the origin role last wrote each version to its store, so that a
    page served unchanged again and again is not written again at every
    request: with memcached that is the whole body over the network each
    time. The write is repeated after C{refresh} seconds, well within a
    memcached TTL, so a version in steady use stays stored.

    @ivar refresh: seconds after which a version is written again.
    @ivar maxItems: versions remembered at most (oldest forgotten first;
        forgetting one only costs a write).
    """

    refresh: float = 60.0
    maxItems: int = 4096
    _written: OrderedDict[str, float] = field(factory=OrderedDict, init=False)

    def due(self, digest: str, now: float) -> bool:
        """
        @return: whether the version C{digest} should be written at C{now}.
        """
        last = self._written.get(digest)
        return last is None or now - last >= self.refresh

    def wrote(self, digest: str, now: float) -> None:
        """
        Remember that C{digest} was written at C{now}.
        """
        self._written.pop(digest, None)
        self._written[digest] = now
        while len(self._written) > self.maxItems:
            self._written.popitem(last=False)

    def failed(self, digest: str) -> None:
        """
        The write of C{digest} did not store it (too large, store down):
        the next request for it writes again.
        """
        self._written.pop(digest, None)


@define
class OriginContext:
    """
    What every stream handler of one origin role shares.

    @ivar origins: Host -> L{railgun.http.routing.OriginTarget}.
    @ivar client: the treq client (persistent pool) origins are fetched with.
    @ivar responseTimeout: seconds for an origin's response head, and the
        longest pause allowed inside its body.
    """

    origins: HostMap
    client: HTTPClient
    clock: IReactorTime
    responseTimeout: float
    stats: Stats = field(factory=Stats)
    store: IVersionStore | None = None
    """
    Where versions are kept by digest; L{None} when deltas are off.
    """
    codecs: CodecRegistry | None = None
    deltaMaxSize: int = 1024 * 1024
    encode: Any = None
    """
    C{encode(body, **kw) -> Deferred[EncodedVersion]}: runs
    L{encodeVersion}, in a thread pool for large bodies; L{None} runs it
    inline.
    """
    heldBudget: int = 256 * 1024 * 1024
    """
    Bytes of origin bodies held at once, over all streams: while they are
    collected as versions (flow control does not bound them: they are not
    on the link yet), and once written to a stream whose peer does not take
    them (from the moment the stream pauses its producer until it resumes
    it or ends: a peer announcing a window of 0 must not make the origin
    role hold a payload per stream); a body that would go past it streams
    raw instead, its origin read paused while the peer does not read.
    """
    held: int = 0
    fullEncodings: FullEncodings = field(factory=lambda: FullEncodings())
    """
    The latest whole-body encodings, reused for a body sent again unchanged.
    """
    deltas: DeltaReuse | None = None
    """
    Recent encoded deltas by (base, target), made again at the best level
    in a thread (L{railgun.delta.reuse}); L{None} encodes every time.
    """
    recentlyStored: RecentlyStored = field(factory=lambda: RecentlyStored())
    """
    When each version was last written to the store.
    """
    failureLog: RateLimitedLogger = field(
        init=False,
        default=Factory(
            lambda self: RateLimitedLogger(log, self.clock), takes_self=True
        ),
    )
    """
    For the lines every stream logs while the same thing fails (an origin
    server down): one per host and error code each 10 s.
    """
    _chosen: dict[tuple[str, ...], tuple[Any, Any]] = field(factory=dict, init=False)
    accessLog: Callable[[AccessRecord], None] | None = None
    """
    Called with one L{AccessRecord} per stream once it is closed; L{None}:
    no access log.
    """

    def codecsFor(self, peerCodecs: tuple[str, ...]) -> tuple[Any, Any]:
        """
        The delta and whole-body codecs to use with a peer that announced
        C{peerCodecs}: chosen once per announcement (every link announces
        the same few), not at every response.

        @return: C{(deltaCodec, fullCodec)}, either L{None} when no codec is
            shared.
        """
        chosen = self._chosen.get(peerCodecs)
        if chosen is None:
            assert self.codecs is not None
            if len(self._chosen) >= 64:  # bounded, whatever peers announce
                self._chosen.clear()
            chosen = self._chosen[peerCodecs] = (
                self.codecs.chooseDelta(peerCodecs),
                self.codecs.chooseFull(peerCodecs),
            )
        return chosen


#: the railgun-flags values the origin role sends (written once, not per
#: response).
_NO_FLAGS = b"%x" % Flag(0)
_BASE_FOUND = b"%x" % Flag.BASE_FOUND


def errorResponseHeaders(
    status: int, code: str, body: bytes
) -> list[tuple[bytes, bytes]]:
    """
    The link header block of an error the origin role answers itself.
    """
    return ResponseHead(
        status,
        [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"cache-control", b"no-store"),
            (b"railgun-error", code.encode("ascii")),
        ],
    ).toLinkHeaders()


class OriginStreamHandler(StreamProtocol):
    """
    Serve one stream: parse the request head, refuse hosts that are not
    mapped (never connecting anywhere for them), fetch through treq, and
    stream the response back with back-pressure from the link to the origin
    socket.
    """

    def __init__(self, context: OriginContext) -> None:
        self._context = context
        self._head: RequestHead | None = None
        self._host: str | None = None
        self._body: StreamBodyProducer | None = None
        self._fetch: Deferred[IResponse] | None = None
        self._timer: Any = None
        # The lifecycle (railgun.origin.streamstate), changed only through
        # _move, _moveTimer and connectionLost.
        self._response = Response.FETCHING
        self._timerState = Timer.IDLE
        self._link = Link.OPEN
        self._responseTransport: Any = None
        self._started = 0.0
        self._base: str | None = None
        self._alternates: list[str] = []
        self._collected: list[bytes] = []
        self._collectedBytes = 0
        self._pendingHeaders: list[tuple[bytes, bytes]] = []
        self._status = 0
        self._originSeconds = 0.0
        self._lengthHint: int | None = None
        # For the access log: when the stream opened, the status and
        # outcome of the head sent, body bytes from the origin server.
        self._opened = context.clock.seconds()
        self._sent = (0, "error")
        self._fromOrigin = 0
        # Bytes written to the stream while it was paused (the peer not
        # taking them): they count against the held budget until the stream
        # resumes or ends.
        self._queuedHeld = 0
        self._streamPaused = False
        # Whether the response may be a version shared across users
        # (railgun.http.privacy): when not, it is neither stored nor
        # encoded against the edge's base.
        self._shareable = False

    # Link callbacks

    def headersReceived(
        self, headers: list[tuple[bytes, bytes]], endStream: bool
    ) -> None:
        if self._head is not None:
            # Request trailers: not forwarded (the Agent cannot send them).
            return
        # Whatever the peer sends (a control header twice, say) is a
        # malformed request: a 400, never an exception.
        try:
            head = RequestHead.fromLinkHeaders(headers)
            host = normalizeHost(head.authority)
            length = announcedLength(head.headers)
            endToEnd, control = splitControl(head.headers)
        except (BadMessage, BadHost) as e:
            self._head = RequestHead(b"GET", b"https", b"invalid", b"/", [])
            self._respondError(400, "bad-request", f"malformed request: {e}")
            return
        self._head = head
        self._host = None
        target = self._context.origins.lookup(host)
        if target is None:
            self._context.stats.record(None, requests=1)
            self._context.failureLog.warn(
                "refusing request {rid} for unmapped host {host!r}",
                rid=self.transport.requestId,
                host=host,
            )
            self._respondError(
                421, "unmapped-host", f"host {host} is not served by this origin role"
            )
            return
        self._host = host
        self._context.stats.record(host, requests=1)
        base = control.get(b"railgun-base")
        self._base = (
            base.decode("ascii") if base is not None and isValidDigest(base) else None
        )
        if self._base is not None:
            # Older versions the edge also holds (railgun.delta.history).
            self._alternates = [
                d for d in parseBases(control.get(b"railgun-bases")) if d != self._base
            ]
        if not endStream:
            self._body = StreamBodyProducer(
                self.transport, length, onProgress=self._bodyProgress
            )
        self._started = self._context.clock.seconds()
        self._moveTimer(TimerInput.START)
        self._timer = self._context.clock.callLater(
            self._context.responseTimeout, self._responseTimedOut
        )
        d = self._fetch = fetchFromOrigin(
            self._context.client,
            self._context.clock,
            target,
            head.method,
            head.path,
            _withHost(originRequestHeaders(endToEnd), head.authority),
            self._body,
            timeout=0,  # our own timer covers the head and the body
        )
        d.addCallbacks(self._gotResponse, self._fetchFailed)
        d.addErrback(self._internalError)

    def dataReceived(self, data: bytes) -> None:
        if self._body is not None:
            self._body.dataReceived(data)
        elif self._head is not None and self._host is None:
            pass  # refused request: its body is dropped
        else:
            self.transport.reset(ErrorCode.PROTOCOL_ERROR)

    def readConnectionLost(self) -> None:
        if self._body is not None:
            self._body.bodyEnded()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        status, outcome = self._ended(reason)
        self._context.stats.finished(
            self._host, outcome, status, self._context.clock.seconds() - self._opened
        )
        if self._context.accessLog is not None:
            self._context.accessLog(self._accessRecord(reason))
        self._link = transition(LINK_TRANSITIONS, self._link, LinkInput.LOST)
        self._cancelTimer()
        self._dropCollected()
        self._releaseQueued()
        if self._fetch is not None:
            # Not "not called": a Deferred waiting on an inner one counts as
            # called, and cancel() forwards to the inner one (the request).
            self._fetch.cancel()
        if self._responseTransport is not None:
            self._responseTransport.stopProducing()
            self._responseTransport = None

    def _ended(self, reason: Failure) -> tuple[int, str]:
        """
        The status and outcome of this stream, now closed (C{reason}: how).
        """
        status, outcome = self._sent
        if not reason.check(ConnectionDone):
            outcome = "error"  # reset: the edge got no complete response
        return status, outcome

    def _accessRecord(self, reason: Failure) -> AccessRecord:
        """
        The access log's line for this stream, now closed (C{reason}: how).
        """
        head = self._head
        status, outcome = self._ended(reason)
        return AccessRecord(
            role="origin",
            rid=str(self.transport.requestId),
            host=self._host or (head.authority.decode("latin-1") if head else "-"),
            method=head.method.decode("latin-1") if head else "-",
            path=head.path.decode("latin-1") if head else "-",
            status=status,
            outcome=outcome,
            served=self._fromOrigin,
            linkBytes=self.transport.counters.sent,
            originSeconds=(
                self._originSeconds if self._response is not Response.FETCHING else None
            ),
            totalSeconds=self._context.clock.seconds() - self._opened,
            client=getattr(self.transport.link, "edgeIdentity", "-"),
        )

    # Fetch results

    def _gotResponse(self, response: IResponse) -> None:
        self._fetch = None
        if self._link is Link.GONE:
            response.deliverBody(DiscardBody())
            return
        assert self._head is not None
        self._originSeconds = self._context.clock.seconds() - self._started
        self._move(ResponseInput.RECEIVE)
        self._context.stats.originSeconds.observe(self._originSeconds)
        headers = responseHeaderList(response)
        hasBody = responseHasBody(self._head.method, response.code)
        self._context.stats.record(self._host, responses=1)
        if not hasBody:
            self._cancelTimer()
            self._move(ResponseInput.RELAY)
            self._sendHead(response.code, headers, RAW, endStream=True)
            response.deliverBody(DiscardBody())
            return
        # The length crosses as the response's own (Twisted's client checked
        # the body against it), or as the decoded version's.
        headers = [(n, v) for n, v in headers if n != b"content-length"]
        length = None if response.length is UNKNOWN_LENGTH else response.length
        context = self._context
        if context.codecs is not None and isDeltaEligible(
            self._head.method,
            response.code,
            _header(headers, b"content-type"),
            length,
            context.deltaMaxSize,
        ):
            # Hold the body (bounded) to send it as a version.
            self._move(ResponseInput.COLLECT)
            self._shareable = exchangeShareable(self._head.headers, headers)
            self._status = response.code
            self._pendingHeaders = headers
            self._lengthHint = length
        else:
            if length is not None:
                headers.append((b"content-length", b"%d" % length))
            self._move(ResponseInput.RELAY)
            if not self._sendHead(response.code, headers, RAW):
                response.deliverBody(DiscardBody())
                return
        response.deliverBody(_BodyForwarder(self))

    def _sendHead(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        mode: str,
        *,
        endStream: bool = False,
        extra: Sequence[tuple[bytes, bytes]] = (),
    ) -> bool:
        """
        Send the response head, or a 502 in its place when it cannot cross
        the link (Twisted's client accepts header values the link refuses,
        and any number of headers).

        @return: whether the head was sent.
        """
        control = [
            (b"railgun-body", mode.encode("ascii")),
            (b"railgun-origin-time", f"{self._originSeconds:.6f}".encode("ascii")),
        ]
        try:
            self.transport.sendHeaders(
                ResponseHead(status, headers + control + list(extra)).toLinkHeaders(),
                endStream=endStream,
            )
        except (BadMessage, ValueError) as e:
            log.info(
                "origin response for {rid} cannot cross the link: {why}",
                rid=self.transport.requestId,
                why=e,
            )
            self._move(ResponseInput.DISCARD)
            self._context.stats.record(self._host, errors=1)
            self._respondError(
                502,
                "origin-failed",
                f"the origin server sent a head that cannot be relayed: {e}",
            )
            return False
        self._context.stats.count(self._host, "bodies", mode)
        self._sent = (status, mode)
        return True

    def _stopCollecting(self) -> None:
        """
        The body turned out larger than a version may be: stream it raw,
        starting with what was held.
        """
        self._move(ResponseInput.RELAY)
        headers = self._pendingHeaders
        if self._lengthHint is not None:
            headers = headers + [(b"content-length", b"%d" % self._lengthHint)]
        held = self._collected
        self._dropCollected()
        if not self._sendHead(self._status, headers, RAW):
            if self._responseTransport is not None:
                self._responseTransport.stopProducing()
            return
        self._context.stats.record(self._host, bodyBytesOnLink=sum(map(len, held)))
        self.transport.writeSequence(held)
        if self._streamPaused:
            self._holdQueued(sum(map(len, held)))

    def _versionSent(self, result: Any) -> Any:
        # The body counted against the shared budget until it was encoded
        # and written (or given up), awaits included.
        self._dropCollected()
        return result

    async def _sendVersion(self) -> None:
        context = self._context
        body = b"".join(self._collected)
        self._collected = []
        headers = self._pendingHeaders
        codings = _header(headers, b"content-encoding")
        if codings and codings.strip().lower() != b"identity":
            try:
                body = decodeContentEncoding(body, codings, context.deltaMaxSize)
            except ContentDecodingError as e:
                log.info(
                    "request {rid}: cannot decode {codings!r} from origin: {e}; "
                    "sending raw",
                    rid=self.transport.requestId,
                    codings=codings,
                    e=e,
                )
                self._context.stats.count(self._host, "fallbacks", "origin-encoding")
                if self._sendHead(
                    self._status,
                    headers + [(b"content-length", b"%d" % len(body))],
                    RAW,
                ):
                    self._writeAndEnd(body)
                return
            headers = [(n, v) for n, v in headers if n != b"content-encoding"]
        digest = versionDigest(body)
        baseBody = None
        store = context.store
        if not self._shareable:
            # One user's response: no base of another user's is used for it
            # (not even to say 'same'), it is not stored, and its encoding
            # is not kept. (Nor any older version the edge named.)
            self._base = None
            self._alternates = []
            store = None
        baseDigest = self._base
        if self._base is not None and store is not None and digest in self._alternates:
            # 'same' against an older version the edge holds. (Only where a
            # base may be used at all: whatever clears self._base or the
            # store for this response clears the older versions too.)
            baseDigest = digest
        elif self._base is not None and self._base != digest and store is not None:
            stored = await store.get(self._base.encode("ascii"))
            if stored is not None and versionDigest(stored) == self._base:
                baseBody = stored
                context.stats.record(self._host, storeHits=1)
            else:
                context.stats.record(self._host, storeMisses=1)
                context.stats.count(self._host, "fallbacks", "base-missing-at-origin")
            if self._alternates and baseBody is None:
                # The latest is gone: an older version the edge holds beats
                # a whole body.
                chosen = chooseBase(
                    body, await storedBases(store, self._alternates), self._base
                )
                if chosen is not None:
                    baseDigest, baseBody = chosen
        if store is not None:
            now = context.clock.seconds()
            recent = context.recentlyStored
            if recent.due(digest, now):
                recent.wrote(digest, now)
                writing = store.set(digest.encode("ascii"), body)
                writing.addCallback(_forgetUnless, recent, digest)
        deltaCodec, fullCodec = context.codecsFor(self.transport.link.peerCodecs)
        kwargs: dict[str, Any] = dict(
            baseDigest=baseDigest,
            baseBody=baseBody,
            deltaCodec=deltaCodec if store is not None else None,
            fullCodec=fullCodec,
            digest=digest,
        )
        # Without a base, the encoding depends on the body and the codec
        # alone: a page served unchanged is compressed once.
        memo = (
            context.fullEncodings
            if baseBody is None and fullCodec is not None and self._shareable
            else None
        )
        encoded: EncodedVersion | None = None
        if memo is not None and baseDigest != digest:
            encoded = memo.get(digest, fullCodec.name)
        reuse = context.deltas if store is not None else None
        if (
            encoded is None
            and reuse is not None
            and baseBody is not None
            and baseDigest is not None
            and deltaCodec is not None
        ):
            kept = await reuse.get(deltaCodec.name, baseDigest, digest)
            if kept is not None:
                encoded = EncodedVersion(
                    DELTA, deltaCodec.name, kept, digest, len(body), True
                )
                reuse.reused(deltaCodec, baseDigest, baseBody, digest, body, kept)
        if encoded is None:
            if context.encode is not None:
                encoded = await context.encode(body, **kwargs)
            else:
                encoded = encodeVersion(body, **kwargs)
            assert encoded is not None
            if memo is not None and encoded.mode == FULL:
                memo.put(encoded, fullCodec.name)
            if reuse is not None and encoded.mode == DELTA:
                assert baseDigest is not None and baseBody is not None
                reuse.encoded(
                    deltaCodec,
                    baseDigest,
                    baseBody,
                    digest,
                    body,
                    encoded.payload,
                    encoded.level,
                )
        if self._link is Link.GONE:
            return
        extra = [
            (b"railgun-codec", encoded.codec.encode("ascii")),
            (b"railgun-digest", encoded.digest.encode("ascii")),
            (b"railgun-length", b"%d" % encoded.length),
            (b"railgun-flags", _BASE_FOUND if encoded.baseFound else _NO_FLAGS),
        ]
        if baseDigest != self._base and encoded.mode != FULL:
            assert baseDigest is not None
            extra.append((b"railgun-base-used", baseDigest.encode("ascii")))
        if not self._sendHead(
            self._status,
            headers,
            encoded.mode,
            extra=extra,
            endStream=encoded.mode == SAME,
        ):
            return
        context.stats.record(self._host, bodyBytesOnLink=len(encoded.payload))
        if encoded.mode != SAME:
            self._writeAndEnd(encoded.payload)

    def _dropCollected(self) -> None:
        # The collected bytes are let go of, and no longer count against
        # the shared budget.
        self._collected = []
        self._context.held -= self._collectedBytes
        self._collectedBytes = 0

    def _writeAndEnd(self, payload: bytes) -> None:
        if payload:
            # The payload is held by the stream until the peer takes it: a
            # watcher tells whether the stream holds it back, so that it
            # counts against the budget meanwhile.
            self._streamPaused = False
            self.transport.registerProducer(_QueueWatcher(self), True)
            self.transport.write(payload)
            if self._streamPaused:
                self._holdQueued(len(payload))
        self.transport.loseConnection()

    def _holdQueued(self, size: int) -> None:
        self._queuedHeld += size
        self._context.held += size

    def _releaseQueued(self) -> None:
        # The stream took its queue down to its low-water mark, or ended.
        self._context.held -= self._queuedHeld
        self._queuedHeld = 0

    def _fetchFailed(self, failure: Failure) -> None:
        self._fetch = None
        if self._link is Link.GONE:
            return
        error: FetchError = classifyFetchFailure(
            failure, self._timerState is Timer.EXPIRED
        )
        self._context.failureLog.info(
            "origin fetch for {rid} {host} failed: {code} ({why})",
            rid=self.transport.requestId,
            host=self._host,
            code=error.code,
            why=failure.getErrorMessage(),
        )
        self._context.stats.record(self._host, errors=1)
        self._respondError(error.status, error.code, error.message)

    def _internalError(self, failure: Failure) -> None:
        log.failure(
            "request {rid}: internal error serving a stream",
            failure,
            rid=self.transport.requestId,
        )
        if self._link is not Link.GONE:
            self.transport.reset(ErrorCode.INTERNAL_ERROR)

    def _respondError(self, status: int, code: str, message: str) -> None:
        self._sent = (status, "refused" if code in _REFUSALS else "error")
        self._cancelTimer()
        body = message.encode("utf-8") + b"\n"
        self.transport.sendHeaders(errorResponseHeaders(status, code, body))
        self.transport.write(body)
        self.transport.loseConnection()

    # Lifecycle

    def _move(self, event: ResponseInput) -> None:
        self._response = transition(RESPONSE_TRANSITIONS, self._response, event)

    def _moveTimer(self, event: TimerInput) -> None:
        self._timerState = transition(TIMER_TRANSITIONS, self._timerState, event)

    # Timeouts

    def _responseTimedOut(self) -> None:
        self._timer = None
        self._moveTimer(TimerInput.EXPIRE)
        if self._fetch is not None:
            self._fetch.cancel()  # -> _fetchFailed -> 504
        elif self._responseTransport is not None:
            # The head was sent; all we can do is end the stream in error.
            log.info("origin body for {rid} stalled", rid=self.transport.requestId)
            self._responseTransport.stopProducing()

    def _cancelTimer(self) -> None:
        self._moveTimer(TimerInput.CANCEL)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _bodyProgress(self) -> None:
        # Bytes moved either way: the timer measures silence.
        if self._timer is not None:
            self._timer.reset(self._context.responseTimeout)

    def _pausedByStream(self) -> None:
        # The edge (its client) is not taking the body: the origin is not
        # the one stalling, so its timer waits (the edge times out a client
        # that reads nothing).
        self._cancelTimer()
        self._moveTimer(TimerInput.PAUSE)
        self._streamPaused = True

    def _resumedByStream(self) -> None:
        self._streamPaused = False
        self._releaseQueued()
        if self._timerState is Timer.SUSPENDED and self._responseTransport is not None:
            self._moveTimer(TimerInput.RESUME)
            self._timer = self._context.clock.callLater(
                self._context.responseTimeout, self._responseTimedOut
            )

    # Body forwarding (called by _BodyForwarder)

    def _bodyStarted(self, transport: Any) -> None:
        # (makeOriginClient's agent tunes each origin connection's buffers
        # once, when it is made.)
        self._responseTransport = transport
        # While a version is collected, nothing is written to the stream, so
        # the stream cannot pause the origin: the collection is bounded by
        # deltaMaxSize instead.
        self.transport.registerProducer(
            WatchedProducer(transport, self._pausedByStream, self._resumedByStream),
            True,
        )

    def _bodyChunk(self, data: bytes) -> None:
        if self._response is Response.DISCARDING:
            return  # a 502 went instead of the response (its head)
        if self._link is Link.GONE:
            # Read before the origin read was stopped: nobody will take it,
            # and collecting it would hold budget that nothing releases.
            return
        self._bodyProgress()
        self._fromOrigin += len(data)
        self._context.stats.record(self._host, bodyBytesFromOrigin=len(data))
        if self._response is Response.COLLECTING:
            self._collected.append(data)
            self._collectedBytes += len(data)
            self._context.held += len(data)
            if (
                self._collectedBytes > self._context.deltaMaxSize
                or self._context.held > self._context.heldBudget
            ):
                self._stopCollecting()
            return
        self._context.stats.record(self._host, bodyBytesOnLink=len(data))
        self.transport.write(data)
        if self._streamPaused:
            # (The origin read is paused: this is what was already read.)
            self._holdQueued(len(data))

    def _bodyDone(self, reason: Failure) -> None:
        self._cancelTimer()
        self._responseTransport = None
        if self._link is Link.GONE:
            return
        self.transport.unregisterProducer()
        if self._response is Response.DISCARDING:
            return
        # A body with no length ends when the origin closes: cleanly
        # (PotentialDataLoss) it is complete, unless our own timer stopped
        # it; a reset or broken close fails it (ResponseFailed, see
        # railgun._compat.httpclient).
        if (
            reason.check(ResponseDone, PotentialDataLoss)
            and self._timerState is not Timer.EXPIRED
        ):
            if self._response is Response.COLLECTING and reason.check(
                PotentialDataLoss
            ):
                # A clean close may still be a truncation the origin meant:
                # relayed, never kept as a version (nor a base at the edge).
                self._context.stats.count(self._host, "fallbacks", "origin-unframed")
                self._lengthHint = self._collectedBytes
                self._stopCollecting()
                if self._response is not Response.DISCARDING:
                    self.transport.loseConnection()
            elif self._response is Response.COLLECTING:
                self._move(ResponseInput.ENCODE)
                d = Deferred.fromCoroutine(self._sendVersion())
                d.addBoth(self._versionSent)
                d.addErrback(self._internalError)
            else:
                self.transport.loseConnection()
            return
        why = (
            "stalled" if self._timerState is Timer.EXPIRED else reason.getErrorMessage()
        )
        log.info(
            "origin body for {rid} failed: {why}", rid=self.transport.requestId, why=why
        )
        self._context.stats.record(self._host, errors=1)
        if self._response is Response.COLLECTING:
            # Nothing of the response was sent yet: the client can still
            # get a proper error instead of a broken stream.
            self._move(ResponseInput.FAIL)
            self._dropCollected()
            if self._timerState is Timer.EXPIRED:
                self._respondError(
                    504, "origin-timeout", "the origin server stopped sending the body"
                )
            else:
                self._respondError(
                    502, "origin-failed", "the origin server broke off the body"
                )
        else:
            self.transport.reset(ErrorCode.INTERNAL_ERROR)


#: error codes the origin role answers that refuse a request.
_REFUSALS = frozenset(["unmapped-host", "bad-request"])


def _forgetUnless(stored: bool, recent: RecentlyStored, digest: str) -> None:
    if not stored:
        recent.failed(digest)


def _withHost(headers: Any, authority: bytes) -> Any:
    # The client's Host travels as :authority; the origin server gets it
    # unchanged (the map only decides where to connect).
    headers.setRawHeaders(b"host", [authority])
    return headers


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for n, value in headers:
        if n == name:
            return value
    return None


@implementer(IPushProducer)
class _QueueWatcher:
    """
    The producer of a stream whose payload is written whole: it produces
    nothing, it only hears when the stream holds its queue back (the peer
    does not take it) and when it lets it go.
    """

    def __init__(self, handler: OriginStreamHandler) -> None:
        self._handler = handler

    def pauseProducing(self) -> None:
        self._handler._streamPaused = True

    def resumeProducing(self) -> None:
        self._handler._streamPaused = False
        self._handler._releaseQueued()

    def stopProducing(self) -> None:
        pass


class _BodyForwarder(Protocol):
    """
    Receives an origin response body (C{IResponse.deliverBody}) and writes it
    to the stream; the origin connection is the stream's producer, so the
    link's flow control pauses the origin socket.
    """

    def __init__(self, handler: OriginStreamHandler) -> None:
        self._handler = handler

    def connectionMade(self) -> None:
        self._handler._bodyStarted(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self._handler._bodyChunk(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._handler._bodyDone(reason)
