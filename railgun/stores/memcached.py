"""
A version store in a pool of memcached servers, shared by every process that
points at the same servers.

Each server gets one connection, a L{MemCacheProtocol} kept up by a
L{ClientService}; keys are spread over the servers by consistent hashing
(L{uhashring.HashRing}) of the server descriptions, so every process that
lists the same servers puts a key on the same server.  Values larger than
one memcached item are split into chunks (see L{ChunkHead}).  Whatever goes
wrong (a server down, slow or misbehaving) reads as a miss or an unstored
value within C{timeout}; it never fails a L{Deferred}.
"""

from __future__ import annotations

import math
import os
import re
import struct
from collections.abc import Callable, Coroutine
from hashlib import blake2b
from typing import Any, TypeVar, cast

from attrs import define, field, frozen
from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    TimeoutError,
    fail,
    gatherResults,
    succeed,
)
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.memcache import Command, MemCacheProtocol
from twisted.python.failure import Failure
from uhashring import HashRing
from zope.interface import implementer

from ._common import checkBytes, refuseOversize
from ._ratelimit import RateLimitedLog
from .interfaces import IVersionStore, StoreStats

_T = TypeVar("_T")

MiB = 1024 * 1024

#: memcached's limit on the length of a key.
MAX_KEY_LENGTH = 250

#: Default size of one chunk: memcached's default item limit is 1 MiB for
#: the value, the key (up to 250 bytes) and the item header together, so a
#: chunk stays comfortably below it.
DEFAULT_CHUNK_SIZE = 1_000_000 - 1024

#: Most chunks a value may be split into, to bound work for bad headers.
MAX_CHUNKS = 4096

#: How many chunk keys go in one C{get} line.
_KEYS_PER_GET = 32

#: memcached item flags, to tell our three kinds of items apart (and from
#: anything else found under our prefix).  "RG" in the high half.
FLAG_PLAIN = 0x52470000
FLAG_HEAD = 0x52470001
FLAG_CHUNK = 0x52470002

_SAFE_KEY = re.compile(rb"[\x21-\x7e]*")


class StoreProtocolError(Exception):
    """
    A memcached server sent something this client cannot make sense of.
    """


def memcachedKey(prefix: bytes, key: bytes) -> bytes:
    """
    Map a store key to the memcached key it is stored under.

    Keys that are short enough and made only of printable ASCII other than
    space are kept readable (C{prefix + b"k:" + key}); any other key is
    replaced by its 256-bit BLAKE2b digest (C{prefix + b"h:" + hex}).  The
    two forms cannot collide.

    @param prefix: the store's key prefix, itself safe.
    @param key: any bytes.
    @return: a key of at most L{MAX_KEY_LENGTH} safe bytes.
    """
    if len(prefix) + 2 + len(key) <= MAX_KEY_LENGTH and _SAFE_KEY.fullmatch(key):
        return prefix + b"k:" + key
    return prefix + b"h:" + blake2b(key, digest_size=32).hexdigest().encode("ascii")


def chunkKey(prefix: bytes, headKey: bytes, nonce: bytes, index: int) -> bytes:
    """
    Name the memcached key of one chunk of a chunked value.

    The name depends on the head's key and on the random nonce of the write,
    so two writes of one key never share chunks.

    @param prefix: the store's key prefix.
    @param headKey: the memcached key of the value's head.
    @param nonce: the nonce from the value's L{ChunkHead}.
    @param index: the chunk's position, from 0.
    @return: a safe memcached key.
    """
    h = blake2b(digest_size=20)
    h.update(headKey)
    h.update(b"\0")
    h.update(nonce)
    h.update(index.to_bytes(4, "big"))
    return prefix + b"c:" + h.hexdigest().encode("ascii")


def valueChecksum(value: bytes) -> bytes:
    """
    Checksum a whole value, so that a chunked value with a missing, stale or
    damaged chunk is detected.

    @param value: the value.
    @return: its 128-bit BLAKE2b digest.
    """
    return blake2b(value, digest_size=16).digest()


@frozen
class ChunkHead:
    """
    The item stored under a value's key when the value is split into chunks.

    The chunks are stored first, each under L{chunkKey}, and the head last.
    A reader that finds a head fetches the chunks it names; any chunk
    missing, of the wrong length, or a whole whose checksum differs, makes
    the value a miss.

    Encoded as 49 bytes: magic C{b"RGCH"}, format version (1 byte), total
    length (8 bytes), chunk size (4 bytes), checksum (16 bytes), nonce (16
    bytes), integers big-endian.

    @ivar total: length of the whole value.
    @ivar chunkSize: length of every chunk but the last.
    @ivar checksum: L{valueChecksum} of the whole value.
    @ivar nonce: 16 random bytes chosen for this write.
    """

    total: int
    chunkSize: int
    checksum: bytes
    nonce: bytes

    _format = struct.Struct(">4sBQI16s16s")
    MAGIC = b"RGCH"
    VERSION = 1
    SIZE = _format.size

    @property
    def count(self) -> int:
        """
        @return: how many chunks the value is split into.
        """
        return -(-self.total // self.chunkSize)

    def chunkLength(self, index: int) -> int:
        """
        @param index: a chunk's position, from 0.
        @return: the length that chunk must have.
        """
        return min(self.chunkSize, self.total - index * self.chunkSize)

    def encode(self) -> bytes:
        """
        @return: the head as stored in memcached.
        """
        return self._format.pack(
            self.MAGIC,
            self.VERSION,
            self.total,
            self.chunkSize,
            self.checksum,
            self.nonce,
        )

    @classmethod
    def parse(cls, data: bytes) -> ChunkHead:
        """
        Decode and check a head.

        @param data: the head as stored in memcached.
        @return: the head.
        @raise ValueError: if C{data} is not a valid head.
        """
        if len(data) != cls.SIZE:
            raise ValueError(f"chunk head has {len(data)} bytes, not {cls.SIZE}")
        magic, version, total, chunkSize, checksum, nonce = cls._format.unpack(data)
        if magic != cls.MAGIC or version != cls.VERSION:
            raise ValueError("not a chunk head of a known version")
        if total < 1 or chunkSize < 1:
            raise ValueError("chunk head with an empty value or chunk")
        head = cls(total, chunkSize, checksum, nonce)
        if head.count > MAX_CHUNKS:
            raise ValueError(f"chunk head names {head.count} chunks")
        return head


def parseServer(description: str) -> tuple[str, int] | str:
    """
    Read the address of one memcached server.

    @param description: C{"host:port"}, C{"[ipv6]:port"}, or
        C{"unix:/path/to/socket"}.
    @return: C{(host, port)}, or the socket path.
    @raise ValueError: if C{description} has none of these forms.
    """
    if description.startswith("unix:"):
        path = description[len("unix:") :]
        if not path:
            raise ValueError(f"memcached server {description!r}: empty socket path")
        return path
    host, sep, portText = description.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not portText.isdigit() or not 0 < int(portText) < 65536:
        raise ValueError(
            f"memcached server {description!r} is not host:port or unix:/path"
        )
    return host, int(portText)


def serverEndpoint(
    reactor: Any, description: str, connectTimeout: float
) -> IStreamClientEndpoint:
    """
    Make the endpoint that reaches one memcached server.

    @param reactor: the reactor (L{IReactorTCP}, L{IReactorTime}, and
        L{IReactorUNIX} for a UNIX socket).
    @param description: see L{parseServer}.
    @param connectTimeout: seconds allowed to connect.
    @return: the endpoint.
    @raise ValueError: if C{description} is not a server address.
    """
    address = parseServer(description)
    if isinstance(address, str):
        return UNIXClientEndpoint(reactor, address, timeout=connectTimeout)
    host, port = address
    return HostnameEndpoint(reactor, host, port, timeout=connectTimeout)


class _MemcacheClient(MemCacheProtocol):
    """
    Twisted's memcache client, made safe against its server and wired to
    one L{_Server}: values over a size limit are skipped (read as misses)
    rather than buffered, anything unparsable closes the connection rather
    than raising, and timeouts use the injected reactor and abort the
    connection (a plain close would wait forever on a server that stopped
    reading).
    """

    def __init__(
        self,
        server: _Server,
        reactor: IReactorTime,
        timeout: float,
        maxValueLength: int,
        warn: Callable[..., object],
    ) -> None:
        super().__init__(timeOut=timeout)  # type: ignore[arg-type]
        self._server = server
        self._reactor = reactor
        self._maxValueLength = maxValueLength
        self._warn = warn
        self._discarding = 0
        self._broken = False

    def callLater(self, period: float, func: Callable[[], object]) -> Any:
        """
        Schedule the response timeout on our reactor, not the global one.
        """
        return self._reactor.callLater(period, func)

    def markReady(self) -> None:
        """
        The server answered: route operations to this connection.
        """
        self._server.protocol = self

    def abort(self) -> None:
        """
        Stop using this connection at once and drop it.
        """
        self._broken = True
        if self._server.protocol is self:
            self._server.protocol = None
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        """
        Stop routing to this connection and fail what is still pending.
        """
        if self._server.protocol is self:
            self._server.protocol = None
        self.setTimeout(None)
        super().connectionLost(reason)

    def timeoutConnection(self) -> None:
        """
        The server stopped answering: fail pending commands, drop the link.
        """
        self.abort()
        self._cancelCommands(TimeoutError("memcached did not answer in time"))

    def dataReceived(self, data: bytes) -> None:
        """
        Parse replies; close the connection on anything malformed.
        """
        if self._broken:
            return
        try:
            super().dataReceived(data)
        except Exception as e:
            self._warn(
                f"protocol {self._server.name}",
                "memcached {server} sent a malformed reply, closing the "
                "connection: {error}; {suppressed} similar since the last warning",
                server=self._server.name,
                error=repr(e),
            )
            self.abort()
            self._cancelCommands(StoreProtocolError(repr(e)))

    def cmd_VALUE(self, line: bytes) -> None:
        """
        Start reading a value, or skipping it if it is over the limit.
        """
        parts = line.split()
        if len(parts) < 3 or not parts[2].isdigit():
            raise StoreProtocolError(f"bad VALUE line {line[:80]!r}")
        length = int(parts[2])
        cmd = self._current[0]
        limit = getattr(cmd, "maxEach", self._maxValueLength)
        if length <= limit:
            super().cmd_VALUE(line)
            return
        expected = cmd.keys if cmd.multiple else [cmd.key]
        if parts[0] not in expected:
            raise StoreProtocolError(f"VALUE for unrequested key {parts[0][:80]!r}")
        self._warn(
            f"oversize {self._server.name}",
            "memcached {server} returned a value of {length} bytes where at "
            "most {limit} were expected; skipped it (a miss); {suppressed} "
            "similar since the last warning",
            server=self._server.name,
            length=length,
            limit=limit,
        )
        self._discarding = length + 2
        self.setRawMode()

    def rawDataReceived(self, data: bytes) -> None:
        """
        Collect a value, or skip the bytes of one being skipped.
        """
        if not self._discarding:
            super().rawDataReceived(data)
            return
        self.resetTimeout()
        taken = min(len(data), self._discarding)
        self._discarding -= taken
        if not self._discarding:
            self.setLineMode(data[taken:])

    def _failCurrent(self, error: Exception) -> None:
        if not self._current:
            raise StoreProtocolError(f"unexpected error reply: {error!r}")
        self._current.popleft().fail(error)

    # Replace the parent's handlers, which log through twisted.python.log on
    # every occurrence; the store logs failures itself, rate-limited.
    def cmd_ERROR(self) -> None:
        """
        The server did not know a command.
        """
        self._failCurrent(StoreProtocolError("ERROR"))

    def cmd_CLIENT_ERROR(self, errText: bytes) -> None:
        """
        The server refused a command.
        """
        self._failCurrent(StoreProtocolError(f"CLIENT_ERROR {errText[:200]!r}"))

    def cmd_SERVER_ERROR(self, errText: bytes) -> None:
        """
        The server failed a command (e.g. out of memory, item too large).
        """
        self._failCurrent(StoreProtocolError(f"SERVER_ERROR {errText[:200]!r}"))

    def getChunks(self, keys: list[bytes], maxEach: int) -> Deferred[dict[bytes, Any]]:
        """
        Get several keys in one command, skipping any value longer than
        C{maxEach}.

        @param keys: keys, each already safe and at most 250 bytes.
        @param maxEach: longest value accepted for each key.
        @return: a L{Deferred} firing with C{{key: (flags, value or None)}}.
        """
        if self._disconnected:
            return fail(RuntimeError("not connected"))
        self.sendLine(b"get " + b" ".join(keys))
        values = {key: (0, b"", None) for key in keys}
        cmd = Command(b"get", keys=keys, values=values, multiple=True, maxEach=maxEach)
        self._current.append(cmd)
        return cmd._deferred


@define(eq=False)
class _Server:
    """
    One memcached server of the pool.

    @ivar name: its description, as configured (also its name on the ring).
    @ivar service: the L{ClientService} keeping its connection up.
    @ivar protocol: the connection to use, or L{None} while there is none
        that has answered.
    @ivar inFlight: store operations now waiting on it.
    """

    name: str
    service: ClientService | None = None
    protocol: _MemcacheClient | None = None
    inFlight: int = 0


def _positive(instance: object, attribute: Any, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0: {value!r}")


def _checkPrefix(instance: object, attribute: Any, value: bytes) -> None:
    if not isinstance(value, bytes) or not _SAFE_KEY.fullmatch(value):
        raise ValueError(f"keyPrefix must be printable ASCII bytes: {value!r}")
    if len(value) > 64:
        raise ValueError(f"keyPrefix is longer than 64 bytes: {value!r}")


def _checkTtl(instance: object, attribute: Any, value: int) -> None:
    # memcached reads an expiry over 30 days as an absolute Unix time.
    if not isinstance(value, int) or not 0 <= value <= 30 * 24 * 3600:
        raise ValueError(f"ttl must be an int from 0 to 2592000 seconds: {value!r}")


def _checkServers(instance: object, attribute: Any, value: list[str]) -> None:
    if not value:
        raise ValueError("at least one memcached server is needed")
    if len(set(value)) != len(value):
        raise ValueError(f"memcached servers listed twice: {value!r}")


@implementer(IVersionStore)
@define(slots=False, eq=False)
class MemcachedVersionStore(MultiService):
    """
    An L{IVersionStore} in a pool of memcached servers.

    The store is an L{IService}: it connects when started (or when its
    parent service starts) and disconnects when stopped.  Until a server's
    connection is up and has answered a C{version} probe, keys that hash to
    it read as misses and are not stored.

    @ivar _reactor: the reactor: time, TCP (and UNIX for socket paths).
    @ivar _servers: memcached servers, C{"host:port"}, C{"[ipv6]:port"} or
        C{"unix:/path"}.  Processes that share versions must list the same
        strings (the order does not matter): they name the hash ring.
    @ivar _timeout: seconds one store operation may take before it counts
        as a miss or an unstored value and its connection is dropped; also
        how long a connection may wait for a reply.
    @ivar _ttl: seconds an item lives in memcached (0: until evicted).
    @ivar _maxItemBytes: largest value accepted; larger ones are refused
        with a rate-limited log line and a C{False} result.
    @ivar _chunkSize: values longer than this are split into chunks of this
        size; keep it under the servers' item size limit (C{memcached -I}).
    @ivar _keyPrefix: prepended to every memcached key, to share servers
        with other users or to separate incompatible deployments.
    @ivar _retryPolicy: delay before the Nth reconnection attempt, as for
        L{ClientService}; by default exponential from 0.5 s to 10 s.
    @ivar _connectTimeout: seconds allowed to connect to a server.
    @ivar _maxInFlight: operations that may wait on one server; more read
        as misses, so that a slow server cannot make us queue without bound.
    @ivar stats: the store's L{StoreStats}; C{evictions}, C{bytes} and
        C{items} are the servers' and only change on
        L{refreshServerStats}.
    """

    _reactor: Any
    _servers: list[str] = field(validator=_checkServers)
    _timeout: float = field(default=0.5, validator=_positive)
    _ttl: int = field(default=600, validator=_checkTtl)
    _maxItemBytes: int = field(default=MiB + 64, validator=_positive)
    _chunkSize: int = field(default=DEFAULT_CHUNK_SIZE, validator=_positive)
    _keyPrefix: bytes = field(default=b"rg1:", validator=_checkPrefix)
    _retryPolicy: Callable[[int], float] | None = None
    _connectTimeout: float = field(default=5.0, validator=_positive)
    _maxInFlight: int = field(default=100, validator=_positive)
    stats: StoreStats = field(factory=StoreStats, init=False)
    _ring: HashRing = field(init=False)
    _byName: dict[str, _Server] = field(factory=dict, init=False)
    _warnings: RateLimitedLog = field(init=False)

    _log = Logger()

    def __attrs_post_init__(self) -> None:
        MultiService.__init__(self)
        if math.ceil(self._maxItemBytes / self._chunkSize) > MAX_CHUNKS:
            raise ValueError(
                f"maxItemBytes / chunkSize is over {MAX_CHUNKS} chunks per value"
            )
        self._warnings = RateLimitedLog(self._log, self._reactor)
        retryPolicy = self._retryPolicy or backoffPolicy(
            initialDelay=0.5, maxDelay=10.0
        )
        for name in self._servers:
            server = _Server(name)
            endpoint = serverEndpoint(self._reactor, name, self._connectTimeout)
            factory = Factory.forProtocol(self._makeProtocolFactory(server))
            factory.noisy = False
            server.service = ClientService(
                endpoint,
                factory,
                retryPolicy=retryPolicy,
                clock=self._reactor,
                prepareConnection=self._prepare,
            )
            server.service.setServiceParent(self)
            self._byName[name] = server
        self._ring = HashRing(nodes=list(self._servers))

    def _makeProtocolFactory(self, server: _Server) -> Callable[[], _MemcacheClient]:
        # Values we would take whole: a plain item up to maxItemBytes, a head.
        maxValueLength = max(self._maxItemBytes, ChunkHead.SIZE)

        def build() -> _MemcacheClient:
            return _MemcacheClient(
                server,
                self._reactor,
                self._timeout,
                maxValueLength,
                self._warnings.warn,
            )

        return build

    def _prepare(self, proxy: Any) -> Deferred[None]:
        """
        Use a new connection only once the server has answered on it, so
        that a hung server (which still accepts connections) is not used.
        """
        d = proxy.version()

        def ready(version: bytes) -> None:
            proxy.markReady()
            self._log.info(
                "memcached {server} connected (version {version})",
                server=proxy._server.name,
                version=version.decode("ascii", "replace"),
            )

        def failed(reason: Failure) -> Failure:
            proxy.abort()
            return reason

        return d.addCallbacks(ready, failed)

    def stopService(self) -> Deferred[None]:
        """
        Drop every connection at once (pending operations become misses and
        unstored values) and stop reconnecting.

        @return: a L{Deferred} that fires when the connections are closed.
        """
        for server in self._byName.values():
            if server.protocol is not None:
                server.protocol.abort()
        return cast(Deferred[None], MultiService.stopService(self))

    def whenConnected(self) -> Deferred[None]:
        """
        Wait for every server to be connected and answering; mostly for
        tests and start-up checks.

        @return: a L{Deferred} that fires with L{None} when every server is
            usable (and fails with L{CancelledError} if the store is stopped
            first).
        """
        waits = [
            s.service.whenConnected()
            for s in self._byName.values()
            if s.service is not None
        ]
        return gatherResults(waits, consumeErrors=True).addCallback(lambda _: None)

    def connectedServers(self) -> list[str]:
        """
        @return: the servers that now have a usable connection.
        """
        return [s.name for s in self._byName.values() if s.protocol is not None]

    def serverFor(self, key: bytes) -> str:
        """
        @param key: a store key.
        @return: the server that holds C{key}.
        """
        checkBytes("key", key)
        return self._serverForMemKey(memcachedKey(self._keyPrefix, key)).name

    def _serverForMemKey(self, mkey: bytes) -> _Server:
        return self._byName[self._ring.get_node(mkey.decode("ascii"))]

    def get(self, key: bytes) -> Deferred[bytes | None]:
        """
        Look up C{key}; see L{IVersionStore.get}.
        """
        checkBytes("key", key)
        mkey = memcachedKey(self._keyPrefix, key)
        d = self._run(self._serverForMemKey(mkey), self._getOp, mkey, None)
        return d.addCallback(self._countGet)

    def _countGet(self, value: bytes | None) -> bytes | None:
        if value is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return value

    def set(self, key: bytes, value: bytes) -> Deferred[bool]:
        """
        Store C{value} under C{key}, in chunks if it is longer than
        C{chunkSize}; see L{IVersionStore.set}.  A refused value also
        removes the key's previous value.
        """
        checkBytes("key", key)
        checkBytes("value", value)
        if len(value) > self._maxItemBytes:
            refuseOversize(self.stats, self._warnings, len(value), self._maxItemBytes)
            self.delete(key)
            return succeed(False)
        mkey = memcachedKey(self._keyPrefix, key)
        d = self._run(
            self._serverForMemKey(mkey),
            lambda proto, k: self._setOp(proto, k, value),
            mkey,
            False,
        )
        return d.addCallback(self._countSet)

    def _countSet(self, stored: bool) -> bool:
        if stored:
            self.stats.sets += 1
        return stored

    def delete(self, key: bytes) -> Deferred[None]:
        """
        Forget C{key}; see L{IVersionStore.delete}.  Only the head of a
        chunked value is deleted: its chunks cannot be found without it and
        memcached reclaims them.
        """
        checkBytes("key", key)
        mkey = memcachedKey(self._keyPrefix, key)
        return self._run(self._serverForMemKey(mkey), self._deleteOp, mkey, None)

    def refreshServerStats(self) -> Deferred[StoreStats]:
        """
        Copy the servers' item, byte and eviction counts into C{stats}.

        A chunked value counts as several items there.  Servers that do not
        answer within C{timeout} are left out.

        @return: a L{Deferred} firing with C{stats}, never failing.
        """
        ds = [
            self._run(server, self._statsOp, b"", None)
            for server in self._byName.values()
        ]

        def add(results: list[dict[bytes, bytes] | None]) -> StoreStats:
            answered = [r for r in results if r is not None]

            def total(name: bytes) -> int:
                return sum(int(r[name]) for r in answered if r.get(name, b"").isdigit())

            if answered:
                self.stats.items = total(b"curr_items")
                self.stats.bytes = total(b"bytes")
                self.stats.evictions = total(b"evictions")
            return self.stats

        return gatherResults(ds).addCallback(add)

    def _run(
        self,
        server: _Server,
        op: Callable[[_MemcacheClient, bytes], Coroutine[Any, Any, _T]],
        mkey: bytes,
        default: _T,
    ) -> Deferred[_T]:
        """
        Run one store operation on C{server} within C{timeout}, turning any
        failure into C{default}.
        """
        proto = server.protocol
        if proto is None:
            self._failed(server, "unavailable", "has no connection")
            return succeed(default)
        if server.inFlight >= self._maxInFlight:
            self._failed(server, "overloaded", "has too many operations waiting")
            return succeed(default)
        server.inFlight += 1
        timedOut = False
        d = Deferred.fromCoroutine(op(proto, mkey))

        def onTimeout() -> None:
            nonlocal timedOut
            timedOut = True
            # The reply may still come, after later ones were expected; a
            # fresh connection is simpler and safer than resynchronising.
            proto.abort()
            d.cancel()

        delayed = self._reactor.callLater(self._timeout, onTimeout)

        def finished(result: _T | Failure) -> _T:
            server.inFlight -= 1
            if delayed.active():
                delayed.cancel()
            if isinstance(result, Failure):
                if timedOut:
                    self._failed(
                        server, "timeout", f"did not answer in {self._timeout}s"
                    )
                else:
                    self._failed(server, "error", repr(result.value))
                return default
            return result

        return d.addBoth(finished)

    def _failed(self, server: _Server, kind: str, problem: str) -> None:
        self.stats.errors += 1
        self._warnings.warn(
            f"{kind} {server.name}",
            "memcached {server} {problem}: reading misses, not storing; "
            "{suppressed} similar since the last warning",
            server=server.name,
            problem=problem,
        )

    async def _getOp(self, proto: _MemcacheClient, mkey: bytes) -> bytes | None:
        flags, value = await proto.get(mkey)
        if value is None:
            return None
        if flags == FLAG_PLAIN:
            return cast(bytes, value)
        if flags != FLAG_HEAD:
            return None
        try:
            head = ChunkHead.parse(value)
        except ValueError:
            return None
        if head.total > self._maxItemBytes:
            return None
        keys = [
            chunkKey(self._keyPrefix, mkey, head.nonce, i) for i in range(head.count)
        ]
        maxEach = min(head.chunkSize, head.total)
        batches = await gatherResults(
            [
                proto.getChunks(keys[i : i + _KEYS_PER_GET], maxEach)
                for i in range(0, len(keys), _KEYS_PER_GET)
            ],
            consumeErrors=True,
        )
        found: dict[bytes, Any] = {}
        for batch in batches:
            found.update(batch)
        parts = []
        for index, key in enumerate(keys):
            chunkFlags, chunk = found.get(key, (0, None))
            if (
                chunk is None
                or chunkFlags != FLAG_CHUNK
                or len(chunk) != head.chunkLength(index)
            ):
                return None
            parts.append(chunk)
        whole = b"".join(parts)
        if valueChecksum(whole) != head.checksum:
            return None
        return whole

    async def _setOp(self, proto: _MemcacheClient, mkey: bytes, value: bytes) -> bool:
        if len(value) <= self._chunkSize:
            return bool(await proto.set(mkey, value, FLAG_PLAIN, self._ttl))
        head = ChunkHead(
            total=len(value),
            chunkSize=self._chunkSize,
            checksum=valueChecksum(value),
            nonce=os.urandom(16),
        )
        size = head.chunkSize
        # One pipeline, head last: memcached runs one connection's commands
        # in order, so a reader never sees the head before its chunks.
        pending = [
            proto.set(
                chunkKey(self._keyPrefix, mkey, head.nonce, i),
                value[i * size : (i + 1) * size],
                FLAG_CHUNK,
                self._ttl,
            )
            for i in range(head.count)
        ]
        pending.append(proto.set(mkey, head.encode(), FLAG_HEAD, self._ttl))
        results = await DeferredList(pending, consumeErrors=True)
        for ok, result in results:
            if not ok:
                cast(Failure, result).raiseException()
        return all(result for _, result in results)

    async def _deleteOp(self, proto: _MemcacheClient, mkey: bytes) -> None:
        await proto.delete(mkey)

    async def _statsOp(
        self, proto: _MemcacheClient, mkey: bytes
    ) -> dict[bytes, bytes] | None:
        return cast(dict[bytes, bytes], await proto.stats())


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "FLAG_CHUNK",
    "FLAG_HEAD",
    "FLAG_PLAIN",
    "MAX_CHUNKS",
    "MAX_KEY_LENGTH",
    "ChunkHead",
    "MemcachedVersionStore",
    "StoreProtocolError",
    "chunkKey",
    "memcachedKey",
    "parseServer",
    "serverEndpoint",
    "valueChecksum",
]
