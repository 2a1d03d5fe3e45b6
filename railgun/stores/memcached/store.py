"""
A version store in a pool of memcached servers, shared by every process that
points at the same servers.

Each server gets one connection, a L{MemcacheClient} kept up by a
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
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

from attrs import define, field
from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    gatherResults,
    succeed,
)
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from uhashring import HashRing
from zope.interface import implementer

from .._common import checkBytes, refuseOversize
from .._ratelimit import RateLimitedLog
from ..interfaces import IVersionStore, StoreStats
from .format import (
    DEFAULT_CHUNK_SIZE,
    FLAG_CHUNK,
    FLAG_HEAD,
    FLAG_PLAIN,
    MAX_CHUNKS,
    SAFE_KEY,
    ChunkHead,
    chunkKey,
    memcachedKey,
    parseServer,
    valueChecksum,
)
from .protocol import MemcacheClient, PoolServer

_T = TypeVar("_T")

MiB = 1024 * 1024

_KEYS_PER_GET = 32


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


def _positive(instance: object, attribute: Any, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0: {value!r}")


def _checkPrefix(instance: object, attribute: Any, value: bytes) -> None:
    if not isinstance(value, bytes) or not SAFE_KEY.fullmatch(value):
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
    _byName: dict[str, PoolServer] = field(factory=dict, init=False)
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
            server = PoolServer(name)
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

    def _makeProtocolFactory(self, server: PoolServer) -> Callable[[], MemcacheClient]:
        # Values we would take whole: a plain item up to maxItemBytes, a head.
        maxValueLength = max(self._maxItemBytes, ChunkHead.SIZE)

        def build() -> MemcacheClient:
            return MemcacheClient(
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

    def _serverForMemKey(self, mkey: bytes) -> PoolServer:
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
        server: PoolServer,
        op: Callable[[MemcacheClient, bytes], Coroutine[Any, Any, _T]],
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

    def _failed(self, server: PoolServer, kind: str, problem: str) -> None:
        self.stats.errors += 1
        self._warnings.warn(
            f"{kind} {server.name}",
            "memcached {server} {problem}: reading misses, not storing; "
            "{suppressed} similar since the last warning",
            server=server.name,
            problem=problem,
        )

    async def _getOp(self, proto: MemcacheClient, mkey: bytes) -> bytes | None:
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

    async def _setOp(self, proto: MemcacheClient, mkey: bytes, value: bytes) -> bool:
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

    async def _deleteOp(self, proto: MemcacheClient, mkey: bytes) -> None:
        await proto.delete(mkey)

    async def _statsOp(
        self, proto: MemcacheClient, mkey: bytes
    ) -> dict[bytes, bytes] | None:
        return cast(dict[bytes, bytes], await proto.stats())


__all__ = ["MemcachedVersionStore", "serverEndpoint"]
