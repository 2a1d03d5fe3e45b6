"""
The listening port of a role's service, kept for callers that wait for it
(C{whenListening}) and for stopping.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

#: The listen backlog of the edge's HTTP port and the origin role's link
#: port (C{--backlog}): how many connections the kernel completes and queues
#: while the reactor has not yet accepted them. Twisted's default, 50,
#: overflows in a burst (1,500 rapid connects: 23 had their SYN dropped and
#: waited for its retransmission, ~1 s); 1024 holds a burst of that size
#: from every client at once, and costs nothing until used. The kernel caps
#: it, silently, at C{net.core.somaxconn} (4096 since Linux 5.4, 128
#: before).
DEFAULT_BACKLOG = 1024

#: Endpoint types whose server endpoint string takes C{backlog=}.
_TAKES_BACKLOG = frozenset({"tcp", "tcp6", "ssl", "unix"})


def withBacklog(description: str, backlog: int) -> str:
    """
    A server endpoint string that listens with C{backlog}.

    A C{backlog=} already in the string wins (it is the more specific
    setting: one listener's whole description); an endpoint type that
    takes no backlog (a plugin's, C{systemd:}...) is left as it is.

    @param description: a server endpoint string (C{tcp:8080:interface=...}).
    @param backlog: the backlog to ask for.
    @return: the string with C{:backlog=N} appended where it applies.
    """
    # Arguments are separated by colons not escaped with a backslash.
    arguments = re.split(r"(?<!\\):", description)
    if arguments[0].strip().lower() not in _TAKES_BACKLOG:
        return description
    if any(argument.startswith("backlog=") for argument in arguments[1:]):
        return description
    return f"{description}:backlog={backlog}"


class ListeningPort:
    """
    One service's listening port, once its C{listen} has succeeded.

    @ivar port: the port, or L{None} before it is bound and after stop.
    @ivar failure: why C{listen} failed, or L{None}.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self.port: IListeningPort | None = None
        self.failure: Failure | None = None
        self._waiting: list[Deferred[IListeningPort]] = []

    def listen(self, listening: Deferred[IListeningPort]) -> None:
        """
        Watch an endpoint's C{listen()} result.
        """
        self.failure = None
        listening.addCallbacks(self._listened, self._failed)

    def _listened(self, port: IListeningPort) -> None:
        self.port = port
        log.info("{what} on {address}", what=self._what, address=port.getHost())
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(port)

    def _failed(self, failure: Failure) -> None:
        self.failure = failure
        if failure.check(CannotListenError):
            # An expected error (a port in use, an address not here): its
            # message says it all, a traceback would only bury it.
            log.critical("{what}: {error}", what=self._what, error=failure.value)
        else:
            log.failure("{what}: cannot listen", failure, what=self._what)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(failure)

    def whenListening(self) -> Deferred[IListeningPort]:
        """
        @return: a Deferred firing with the port once bound, or failing
            with the reason C{listen} failed (also when asked after it
            failed: a TCP endpoint fails at once, inside C{startService}).
        """
        if self.port is not None:
            return succeed(self.port)
        if self.failure is not None:
            return fail(self.failure)
        d: Deferred[IListeningPort] = Deferred()
        self._waiting.append(d)
        return d

    def stop(self) -> Deferred[Any]:
        """
        Stop listening (connections already accepted stay open).
        """
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        return Deferred.fromCoroutine(_stop(port))


async def _stop(port: IListeningPort) -> None:
    result = port.stopListening()
    if result is not None:
        await result
