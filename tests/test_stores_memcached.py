"""
Tests for L{railgun.stores.memcached}: pure helpers and the protocol in
memory, then the store against real memcached servers on loopback.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.application.service import IService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.protocols.memcache import MemCacheProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from railgun.stores import IVersionStore, MemcachedVersionStore
from railgun.stores.memcached import (
    FLAG_CHUNK,
    FLAG_HEAD,
    MAX_KEY_LENGTH,
    ChunkHead,
    MemcacheClient,
    PoolServer,
    StoreProtocolError,
    chunkKey,
    memcachedKey,
    serverEndpoint,
)

from .memcachedserver import MemcachedServer

MiB = 1024 * 1024


def _pattern(length: int, seed: int) -> bytes:
    """
    Deterministic incompressible bytes.
    """
    return random.Random(seed).randbytes(length)


class KeyTests(SynchronousTestCase):
    """
    Tests for L{memcachedKey} and L{chunkKey}.
    """

    def test_safeKeyKept(self) -> None:
        """
        A short printable key is kept readable after the prefix.
        """
        self.assertEqual(memcachedKey(b"rg1:", b"abcdef0123"), b"rg1:k:abcdef0123")

    def test_unsafeKeysHashed(self) -> None:
        """
        Keys with spaces, control characters, non-ASCII bytes or too many
        bytes are replaced by a digest, and stay distinct.
        """
        keys = [b"a b", b"a\r\nb", b"caf\xc3\xa9", b"x" * 300, b"a\x00", b"\x7f"]
        mapped = [memcachedKey(b"rg1:", k) for k in keys]
        for m in mapped:
            self.assertTrue(m.startswith(b"rg1:h:"), m)
            self.assertEqual(len(m), len(b"rg1:h:") + 64)
        self.assertEqual(len(set(mapped)), len(keys))

    def test_longestKeptKey(self) -> None:
        """
        A safe key is kept up to exactly 250 bytes in total, hashed beyond.
        """
        fits = b"k" * (MAX_KEY_LENGTH - len(b"rg1:k:"))
        self.assertEqual(len(memcachedKey(b"rg1:", fits)), MAX_KEY_LENGTH)
        self.assertTrue(memcachedKey(b"rg1:", fits + b"k").startswith(b"rg1:h:"))

    @given(st.binary(max_size=600))
    def test_alwaysValid(self, key: bytes) -> None:
        """
        Every key maps to at most 250 bytes of printable non-space ASCII.
        """
        m = memcachedKey(b"rg1:", key)
        self.assertLessEqual(len(m), MAX_KEY_LENGTH)
        self.assertTrue(all(0x21 <= b <= 0x7E for b in m))

    def test_chunkKeysDiffer(self) -> None:
        """
        Chunk keys differ by index and by nonce, and are valid keys.
        """
        keys = {
            chunkKey(b"p:", b"p:k:x", nonce, i)
            for nonce in (b"\0" * 16, b"\1" * 16)
            for i in range(3)
        }
        self.assertEqual(len(keys), 6)
        for k in keys:
            self.assertLessEqual(len(k), MAX_KEY_LENGTH)


class ChunkHeadTests(SynchronousTestCase):
    """
    Tests for L{ChunkHead}.
    """

    def test_roundTrip(self) -> None:
        """
        A head parses back to itself and knows its chunk lengths.
        """
        head = ChunkHead(2500, 1000, b"c" * 16, b"n" * 16)
        self.assertEqual(ChunkHead.parse(head.encode()), head)
        self.assertEqual(len(head.encode()), ChunkHead.SIZE)
        self.assertEqual(head.count, 3)
        self.assertEqual([head.chunkLength(i) for i in range(3)], [1000, 1000, 500])

    def test_malformed(self) -> None:
        """
        Truncated, foreign, empty or absurd heads raise L{ValueError}.
        """
        good = ChunkHead(10, 5, b"c" * 16, b"n" * 16).encode()
        bad = [
            good[:-1],
            good + b"x",
            b"XXXX" + good[4:],
            good[:4] + b"\x02" + good[5:],
            ChunkHead(0, 5, b"c" * 16, b"n" * 16).encode(),
            ChunkHead(10, 0, b"c" * 16, b"n" * 16).encode(),
            ChunkHead(10**9, 1, b"c" * 16, b"n" * 16).encode(),
            b"",
        ]
        for data in bad:
            self.assertRaises(ValueError, ChunkHead.parse, data)


class OptionsTests(SynchronousTestCase):
    """
    Tests for the store's configuration checks.
    """

    def test_badOptions(self) -> None:
        """
        Bad server lists, prefixes, ttls and sizes raise L{ValueError}.
        """
        clock = Clock()
        bad: list[dict[str, Any]] = [
            {"servers": []},
            {"servers": ["a:1", "a:1"]},
            {"servers": ["nohost"]},
            {"servers": ["host:0"]},
            {"servers": ["host:http"]},
            {"servers": ["unix:"]},
            {"servers": ["a:1"], "keyPrefix": b"has space"},
            {"servers": ["a:1"], "keyPrefix": b"p" * 65},
            {"servers": ["a:1"], "ttl": -1},
            {"servers": ["a:1"], "ttl": 31 * 86400},
            {"servers": ["a:1"], "timeout": 0},
            {"servers": ["a:1"], "chunkSize": 0},
            {"servers": ["a:1"], "chunkSize": 10, "maxItemBytes": MiB},
        ]
        for kwargs in bad:
            self.assertRaises(ValueError, MemcachedVersionStore, clock, **kwargs)

    def test_endpoints(self) -> None:
        """
        IPv4, bracketed IPv6 and UNIX socket descriptions are understood.
        """
        clock = Clock()
        for description in ("127.0.0.1:11211", "[::1]:11211", "unix:/tmp/m.sock"):
            self.assertIsNotNone(serverEndpoint(clock, description, 1.0))

    def test_notStarted(self) -> None:
        """
        Before the store is started, reads miss and writes are refused at
        once, counted as errors.
        """
        store = MemcachedVersionStore(Clock(), ["127.0.0.1:1"])
        self.assertIsNone(self.successResultOf(store.get(b"k")))
        self.assertIs(self.successResultOf(store.set(b"k", b"v")), False)
        self.assertIsNone(self.successResultOf(store.delete(b"k")))
        self.assertEqual((store.stats.misses, store.stats.errors), (1, 3))

    def test_interfaces(self) -> None:
        """
        The store provides L{IVersionStore} and L{IService}.
        """
        store = MemcachedVersionStore(Clock(), ["127.0.0.1:1"])
        self.assertTrue(verifyObject(IVersionStore, store))
        self.assertTrue(verifyObject(IService, store))

    def test_typeErrors(self) -> None:
        """
        Keys and values that are not bytes raise L{TypeError}.
        """
        store = MemcachedVersionStore(Clock(), ["127.0.0.1:1"])
        self.assertRaises(TypeError, store.get, "k")
        self.assertRaises(TypeError, store.set, b"k", "v")
        self.assertRaises(TypeError, store.delete, None)


class ClientProtocolTests(SynchronousTestCase):
    """
    Tests for L{MemcacheClient} over an in-memory transport.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.server = PoolServer("test:1")
        self.warnings: list[tuple[str, dict[str, Any]]] = []
        self.proto = MemcacheClient(
            self.server,
            self.clock,
            0.5,
            100,
            lambda kind, fmt, **kw: self.warnings.append((kind, kw)),
        )
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)
        self.proto.markReady()

    def test_oversizeValueSkipped(self) -> None:
        """
        A value longer than the limit reads as a miss, without being kept,
        and the connection goes on working.
        """
        d = self.proto.get(b"k")
        self.proto.dataReceived(b"VALUE k 0 5000\r\n" + b"x" * 3000)
        self.proto.dataReceived(b"x" * 2000 + b"\r\nEND\r\n")
        self.assertEqual(self.successResultOf(d), (0, None))
        self.assertEqual(self.warnings[0][1]["length"], 5000)
        d2 = self.proto.get(b"k2")
        self.proto.dataReceived(b"VALUE k2 7 3\r\nabc\r\nEND\r\n")
        self.assertEqual(self.successResultOf(d2), (7, b"abc"))
        self.assertFalse(self.transport.disconnecting)

    def test_chunkLimit(self) -> None:
        """
        A multi-get applies its own per-value limit.
        """
        d = self.proto.getChunks([b"a", b"b"], 3)
        self.proto.dataReceived(b"VALUE a 1 3\r\nabc\r\nVALUE b 1 4\r\nabcd\r\nEND\r\n")
        self.assertEqual(self.successResultOf(d), {b"a": (1, b"abc"), b"b": (0, None)})

    def test_malformedReply(self) -> None:
        """
        A reply that cannot be parsed fails the pending commands, drops the
        connection and stops routing to it, without raising.
        """
        d1 = self.proto.get(b"k")
        d2 = self.proto.get(b"k2")
        self.proto.dataReceived(b"VALUE other 0 1\r\nx\r\nEND\r\n")
        self.failureResultOf(d1, StoreProtocolError)
        self.failureResultOf(d2, StoreProtocolError)
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(self.server.protocol)
        self.assertEqual(self.warnings[0][0], "protocol test:1")

    def test_unsolicitedReply(self) -> None:
        """
        A reply with no command waiting drops the connection cleanly.
        """
        self.proto.dataReceived(b"SERVER_ERROR boom\r\n")
        self.assertTrue(self.transport.disconnecting)

    def test_serverError(self) -> None:
        """
        A SERVER_ERROR reply fails only its own command.
        """
        d = self.proto.set(b"k", b"v")
        self.proto.dataReceived(b"SERVER_ERROR object too large for cache\r\n")
        self.failureResultOf(d, StoreProtocolError)
        self.assertFalse(self.transport.disconnecting)

    def test_timeoutOnInjectedClock(self) -> None:
        """
        A server that does not answer within the timeout, on the injected
        clock, fails the commands and drops the connection.
        """
        d = self.proto.get(b"k")
        self.clock.advance(0.49)
        self.assertNoResult(d)
        self.clock.advance(0.02)
        self.failureResultOf(d)
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(self.server.protocol)

    def test_lostClearsTimer(self) -> None:
        """
        Losing the connection cancels the response timer.
        """
        d = self.proto.get(b"k")
        self.proto.connectionLost(Failure(ConnectionError("gone")))
        self.failureResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class _RawClient(MemCacheProtocol):
    """
    A plain memcache client, to look at and damage what the store wrote.
    """

    def __init__(self) -> None:
        super().__init__(timeOut=5)
        self.lost: Deferred[None] = Deferred()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        super().connectionLost(reason)
        self.lost.callback(None)


def _fastRetry(attempt: int) -> float:
    return 0.05


class MemcachedIntegrationTests(TestCase):
    """
    The store against real memcached servers on loopback.
    """

    timeout = 20

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor = reactor
        self.prefix = b"t%s:" % (os.urandom(6).hex().encode(),)
        self.server = self.startServer()

    def startServer(self) -> MemcachedServer:
        server = MemcachedServer()
        server.start()
        self.addCleanup(server.stop)
        return server

    async def makeStore(
        self, servers: list[MemcachedServer] | None = None, **kwargs: Any
    ) -> MemcachedVersionStore:
        kwargs.setdefault("timeout", 0.3)
        kwargs.setdefault("keyPrefix", self.prefix)
        kwargs.setdefault("retryPolicy", _fastRetry)
        store = MemcachedVersionStore(
            self.reactor, [s.address for s in servers or [self.server]], **kwargs
        )
        store.startService()
        self.addCleanup(store.stopService)
        await store.whenConnected()
        return store

    async def rawClient(self, server: MemcachedServer) -> _RawClient:
        proto = await connectProtocol(
            TCP4ClientEndpoint(self.reactor, server.host, server.port), _RawClient()
        )

        async def close() -> None:
            proto.transport.loseConnection()
            await proto.lost

        self.addCleanup(lambda: Deferred.fromCoroutine(close()))
        return proto

    async def eventually(
        self, check: Callable[[], Awaitable[bool]], within: float
    ) -> float:
        """
        Poll C{check} until it is true; fail after C{within} seconds.

        @return: the seconds it took.
        """
        start = time.monotonic()
        while not await check():
            if time.monotonic() - start > within:
                self.fail(f"not true within {within}s")
            await deferLater(self.reactor, 0.05, lambda: None)
        return time.monotonic() - start

    async def chunkKeysOf(
        self, raw: _RawClient, key: bytes
    ) -> tuple[ChunkHead, list[bytes]]:
        headKey = memcachedKey(self.prefix, key)
        flags, value = await raw.get(headKey)
        self.assertEqual(flags, FLAG_HEAD)
        head = ChunkHead.parse(value)
        return head, [
            chunkKey(self.prefix, headKey, head.nonce, i) for i in range(head.count)
        ]

    async def test_setGetDelete(self) -> None:
        """
        A value set can be read back, deleted, and then misses.
        """
        store = await self.makeStore()
        self.assertIsNone(await store.get(b"k"))
        self.assertIs(await store.set(b"k", b"value"), True)
        self.assertEqual(await store.get(b"k"), b"value")
        await store.delete(b"k")
        self.assertIsNone(await store.get(b"k"))
        self.assertEqual(
            (store.stats.hits, store.stats.misses, store.stats.sets), (1, 2, 1)
        )
        self.assertEqual(store.stats.errors, 0)

    async def test_awkwardKeysAndValues(self) -> None:
        """
        Keys with spaces, newlines, binary or 1000 bytes, and values with
        CRLF or nothing in them, round-trip.
        """
        store = await self.makeStore()
        pairs = {
            b"a b": b"1\r\n2",
            b"a\r\nb": b"",
            b"\x00\xff" * 3: b"\r\nEND\r\n",
            b"L" * 1000: b"long key",
            b"0123456789abcdef0123456789abcdef": b"digest key",
        }
        for key, value in pairs.items():
            self.assertIs(await store.set(key, value), True)
        for key, value in pairs.items():
            self.assertEqual(await store.get(key), value)

    async def test_chunked(self) -> None:
        """
        A 3 MiB value, which a 1 MiB memcached item cannot hold, is stored
        as chunks and read back exactly; so are values at the chunk size
        boundary.
        """
        store = await self.makeStore(maxItemBytes=4 * MiB)
        raw = await self.rawClient(self.server)
        value = _pattern(3 * MiB, 1)
        self.assertIs(await store.set(b"big", value), True)
        self.assertEqual(await store.get(b"big"), value)
        head, keys = await self.chunkKeysOf(raw, b"big")
        self.assertEqual((head.total, head.count), (3 * MiB, 4))
        for key in keys:
            flags, chunk = await raw.get(key)
            self.assertEqual(flags, FLAG_CHUNK)
            self.assertLessEqual(len(chunk), head.chunkSize)

        small = await self.makeStore(chunkSize=1000, maxItemBytes=10_000)
        for length in (999, 1000, 1001, 2000, 10_000):
            value = _pattern(length, length)
            self.assertIs(await small.set(b"edge", value), True)
            self.assertEqual(await small.get(b"edge"), value)

    async def test_missingChunk(self) -> None:
        """
        A chunked value with a chunk gone (evicted, expired) reads as a miss.
        """
        store = await self.makeStore(maxItemBytes=4 * MiB)
        raw = await self.rawClient(self.server)
        await store.set(b"big", _pattern(3 * MiB, 2))
        _, keys = await self.chunkKeysOf(raw, b"big")
        self.assertIs(await raw.delete(keys[2]), True)
        self.assertIsNone(await store.get(b"big"))
        self.assertEqual(store.stats.errors, 0)

    async def test_corruptChunk(self) -> None:
        """
        A chunk with different bytes of the same length, or of another
        length, makes the value a miss, never wrong bytes.
        """
        store = await self.makeStore(maxItemBytes=4 * MiB)
        raw = await self.rawClient(self.server)
        value = _pattern(3 * MiB, 3)
        await store.set(b"big", value)
        _, keys = await self.chunkKeysOf(raw, b"big")
        _, chunk = await raw.get(keys[1])
        damaged = chunk[:100] + bytes([chunk[100] ^ 1]) + chunk[101:]
        await raw.set(keys[1], damaged, flags=FLAG_CHUNK)
        self.assertIsNone(await store.get(b"big"))
        await raw.set(keys[1], chunk[:-1], flags=FLAG_CHUNK)
        self.assertIsNone(await store.get(b"big"))
        await raw.set(keys[1], chunk, flags=FLAG_CHUNK)
        self.assertEqual(await store.get(b"big"), value)

    async def test_mixedChunks(self) -> None:
        """
        Two writes of one key never mix: each write has its own chunks, and
        a chunk of the other write in place reads as a miss.
        """
        store = await self.makeStore(maxItemBytes=4 * MiB)
        raw = await self.rawClient(self.server)
        first, second = _pattern(2 * MiB, 4), _pattern(2 * MiB, 5)
        await store.set(b"k", first)
        _, firstKeys = await self.chunkKeysOf(raw, b"k")
        await store.set(b"k", second)
        _, secondKeys = await self.chunkKeysOf(raw, b"k")
        self.assertFalse(set(firstKeys) & set(secondKeys))
        self.assertEqual(await store.get(b"k"), second)
        _, oldChunk = await raw.get(firstKeys[0])
        await raw.set(secondKeys[0], oldChunk, flags=FLAG_CHUNK)
        self.assertIsNone(await store.get(b"k"))

    async def test_foreignItems(self) -> None:
        """
        A damaged head, or an item with flags the store did not write,
        reads as a miss.
        """
        store = await self.makeStore()
        raw = await self.rawClient(self.server)
        headKey = memcachedKey(self.prefix, b"k")
        await raw.set(headKey, b"not a head", flags=FLAG_HEAD)
        self.assertIsNone(await store.get(b"k"))
        await raw.set(headKey, b"plain", flags=7)
        self.assertIsNone(await store.get(b"k"))
        self.assertEqual(store.stats.errors, 0)

    async def test_oversize(self) -> None:
        """
        A value over C{maxItemBytes} is refused with C{False}, and the key's
        older value is removed.
        """
        store = await self.makeStore(maxItemBytes=1000)
        await store.set(b"k", b"old")
        with capturedLogs() as events:
            self.assertIs(await store.set(b"k", b"x" * 1001), False)
            self.assertIsNone(await store.get(b"k"))
        self.assertEqual(store.stats.rejected, 1)
        self.assertEqual([e["length"] for e in events if "length" in e], [1001])

    async def test_oversizeFromServer(self) -> None:
        """
        A value larger than the reader accepts, written by a store with a
        larger limit, reads as a miss and the connection keeps working.
        """
        writer = await self.makeStore()
        reader = await self.makeStore(maxItemBytes=1000, chunkSize=1000)
        await writer.set(b"k", b"x" * 5000)
        await writer.set(b"small", b"y")
        self.assertIsNone(await reader.get(b"k"))
        self.assertEqual(await reader.get(b"small"), b"y")
        self.assertEqual(reader.stats.errors, 0)

    async def test_twoInstancesShare(self) -> None:
        """
        Two stores on the same server (as two origin-role processes) see
        each other's values, chunked or not, and deletions.
        """
        one = await self.makeStore(maxItemBytes=4 * MiB)
        two = await self.makeStore(maxItemBytes=4 * MiB)
        big = _pattern(3 * MiB, 6)
        await one.set(b"small", b"shared")
        await one.set(b"big", big)
        self.assertEqual(await two.get(b"small"), b"shared")
        self.assertEqual(await two.get(b"big"), big)
        await two.delete(b"small")
        self.assertIsNone(await one.get(b"small"))

    async def test_serverStopped(self) -> None:
        """
        With memcached stopped, reads miss and writes are refused quickly,
        without failures; when it is back the store uses it again.
        """
        self.server.requireLocal()
        store = await self.makeStore()
        await store.set(b"k", b"v")
        self.server.stop()
        with capturedLogs() as events:
            start = time.monotonic()
            reads = [await store.get(b"k") for _ in range(20)]
            writes = [await store.set(b"k", b"v2") for _ in range(20)]
            await store.delete(b"k")
            elapsed = time.monotonic() - start
        self.assertEqual(reads, [None] * 20)
        self.assertEqual(writes, [False] * 20)
        # Far less than one timeout (0.3 s) for all 41 operations: nothing
        # waits for a server known to be gone.
        self.assertLess(elapsed, 0.3)
        self.assertGreaterEqual(store.stats.errors, 41)
        warnings = [e for e in events if e.get("problem")]
        self.assertLessEqual(len(warnings), 2)
        self.server.start()

        async def works() -> bool:
            return bool(await store.set(b"k", b"v3"))

        await self.eventually(works, within=5)
        self.assertEqual(await store.get(b"k"), b"v3")

    async def test_serverHung(self) -> None:
        """
        A memcached that accepts but does not answer costs one timeout, then
        reads miss at once until it answers again.
        """
        self.server.requireLocal()
        store = await self.makeStore(timeout=0.5)
        await store.set(b"k", b"v")
        self.server.pause()
        start = time.monotonic()
        self.assertIsNone(await store.get(b"k"))
        firstElapsed = time.monotonic() - start
        self.assertGreaterEqual(firstElapsed, 0.45)
        self.assertLess(firstElapsed, 0.5 + 1.0)
        # The connection was dropped and new ones are used only once they
        # answer, so these do not wait for another timeout.
        start = time.monotonic()
        self.assertIs(await store.set(b"k", b"x"), False)
        self.assertIsNone(await store.get(b"k"))
        self.assertLess(time.monotonic() - start, 0.25)
        self.server.resume()

        async def works() -> bool:
            return await store.get(b"k") == b"v"

        await self.eventually(works, within=5)

    async def test_severalServers(self) -> None:
        """
        Keys spread over several servers the same way in every process
        whatever the order of the server list; a stopped server costs only
        its own keys.
        """
        self.server.requireLocal()
        servers = [self.server, self.startServer(), self.startServer()]
        store = await self.makeStore(servers)
        reordered = await self.makeStore(servers[::-1])
        keys = [b"key-%d" % (i,) for i in range(90)]
        for key in keys:
            self.assertIs(await store.set(key, key * 2), True)
        placement = {key: store.serverFor(key) for key in keys}
        self.assertEqual(placement, {key: reordered.serverFor(key) for key in keys})
        for key in keys:
            self.assertEqual(await reordered.get(key), key * 2)

        byServer = {s.address: s for s in servers}
        for address, server in byServer.items():
            raw = await self.rawClient(server)
            mine = [k for k in keys if placement[k] == address]
            self.assertGreater(len(mine), 5, address)
            for key in keys:
                _, value = await raw.get(memcachedKey(self.prefix, key))
                self.assertEqual(value is not None, key in mine, (address, key))

        self.server.stop()
        down = self.server.address
        for key in keys:
            expected = None if placement[key] == down else key * 2
            self.assertEqual(await store.get(key), expected)

    async def test_serverStats(self) -> None:
        """
        The servers' item and byte counts can be copied into the stats.
        """
        self.server.requireLocal()
        store = await self.makeStore()
        for i in range(5):
            await store.set(b"%d" % (i,), b"v" * 100)
        stats = await store.refreshServerStats()
        self.assertEqual(stats.items, 5)
        self.assertGreater(stats.bytes, 500)
