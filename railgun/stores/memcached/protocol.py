"""
The memcached store's client protocol: Twisted's memcache client made safe
against its server (L{MemcacheClient}), and the slot of one server of the
pool it reports to (L{PoolServer}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define
from twisted.application.internet import ClientService
from twisted.internet.defer import Deferred, TimeoutError, fail
from twisted.internet.interfaces import IReactorTime
from twisted.protocols.memcache import Command, MemCacheProtocol
from twisted.python.failure import Failure

from railgun._compat import memcache as _memcache


class StoreProtocolError(Exception):
    """
    A memcached server sent something this client cannot make sense of.
    """


class MemcacheClient(MemCacheProtocol):
    """
    Twisted's memcache client, made safe against its server and wired to
    one L{PoolServer}: values over a size limit are skipped (read as misses)
    rather than buffered, anything unparsable closes the connection rather
    than raising, and timeouts use the injected reactor and abort the
    connection (a plain close would wait forever on a server that stopped
    reading).
    """

    def __init__(
        self,
        server: PoolServer,
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
        _memcache.failPendingCommands(
            self, TimeoutError("memcached did not answer in time")
        )

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
            _memcache.failPendingCommands(self, StoreProtocolError(repr(e)))

    def cmd_VALUE(self, line: bytes) -> None:
        """
        Start reading a value, or skipping it if it is over the limit.
        """
        parts = line.split()
        if len(parts) < 3 or not parts[2].isdigit():
            raise StoreProtocolError(f"bad VALUE line {line[:80]!r}")
        length = int(parts[2])
        cmd = _memcache.pendingCommands(self)[0]
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
        pending = _memcache.pendingCommands(self)
        if not pending:
            raise StoreProtocolError(f"unexpected error reply: {error!r}")
        pending.popleft().fail(error)

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
        if _memcache.isDisconnected(self):
            return fail(RuntimeError("not connected"))
        self.sendLine(b"get " + b" ".join(keys))
        values = {key: (0, b"", None) for key in keys}
        cmd = Command(b"get", keys=keys, values=values, multiple=True, maxEach=maxEach)
        _memcache.pendingCommands(self).append(cmd)
        return _memcache.commandResult(cmd)


@define(eq=False)
class PoolServer:
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
    protocol: MemcacheClient | None = None
    inFlight: int = 0


__all__ = ["MemcacheClient", "PoolServer", "StoreProtocolError"]
