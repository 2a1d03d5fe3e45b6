"""
Bases prepared in the background: when the origin role stores a new
version of a page, the next request for that page will most likely name it
as its base, so it is hashed at the best level now
(L{railgun.delta.codec.ZstdPatchCodec.prepare}), in a thread of low CPU
priority (L{railgun._threads.inDaemonThread}), while nothing waits for it. The request then pays only for its
own target (C{docs/benchmarks.md}, "Prepared bases").

Bounded: one base at a time; at most C{maxPending} waiting, the oldest
dropped first (a page that changed again since is better prepared in its
newest version), and the prepared bases themselves by the codec's memory
bound.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrs import define, field
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorFromThreads

log = Logger()


@define
class BackgroundPreparer:
    """
    Runs C{prepare(body)} for new versions, one at a time, each in a
    thread of low priority.

    @ivar spawn: runs a function in another thread, giving a L{Deferred}
        of its result on the reactor thread (the origin role gives
        L{railgun._threads.inDaemonThread}).
    @ivar prepared: bases prepared so far (for tests and statistics).
    @ivar dropped: bases dropped unprepared because newer ones were waiting.
    """

    reactor: IReactorFromThreads
    spawn: Callable[[IReactorFromThreads, Callable[[], Any]], Deferred[Any]]
    maxPending: int = 16
    prepared: int = 0
    dropped: int = 0
    _pending: OrderedDict[int, tuple[Callable[[bytes], Any], bytes]] = field(
        factory=OrderedDict, init=False
    )
    _running: Deferred[Any] | None = field(default=None, init=False)
    _stopped: bool = field(default=False, init=False)
    _idle: list[Deferred[None]] = field(factory=list, init=False)

    def submit(self, prepare: Callable[[bytes], Any], body: bytes) -> None:
        """
        Prepare C{body} with C{prepare} when the thread is free. Call on the
        reactor thread.
        """
        if self._stopped:
            return
        key = id(body)
        self._pending.pop(key, None)
        self._pending[key] = (prepare, body)
        while len(self._pending) > self.maxPending:
            self._pending.popitem(last=False)
            self.dropped += 1
        self._next()

    @property
    def busy(self) -> bool:
        """
        Whether a base is being prepared or waits to be.
        """
        return self._running is not None or bool(self._pending)

    def whenIdle(self) -> Deferred[None]:
        """
        @return: a L{Deferred} firing once nothing is prepared or waiting
            (for benchmarks and tests).
        """
        if not self.busy:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle.append(d)
        return d

    def start(self) -> None:
        """
        Take bases again after L{stop} (a service started again).
        """
        self._stopped = False

    def stop(self) -> None:
        """
        Drop what waits; start nothing more (the base being prepared, if
        any, finishes in its thread and is kept). Call on the reactor
        thread.
        """
        self._stopped = True
        self._pending.clear()
        if self._running is None:
            self._fireIdle()

    def _next(self) -> None:
        if self._running is not None:
            return
        if not self._pending or self._stopped:
            self._fireIdle()
            return
        # The newest first: it is the one the next request will name.
        _, (prepare, body) = self._pending.popitem(last=True)
        try:
            self._running = self.spawn(self.reactor, lambda: prepare(body))
        except Exception:
            # No thread to be had (the process is at its limit): background
            # work is dropped, the request that handed it over goes on.
            log.failure("starting a thread to prepare a base")
            self._running = None
            self.dropped += 1 + len(self._pending)
            self._pending.clear()
            self._fireIdle()
            return
        self._running.addCallbacks(self._done, self._failed)

    def _done(self, did: Any) -> None:
        if did:
            self.prepared += 1
        self._running = None
        self._next()

    def _failed(self, failure: Failure) -> None:
        log.failure("preparing a base at the best level", failure)
        self._running = None
        self._next()

    def _fireIdle(self) -> None:
        waiting, self._idle = self._idle, []
        for d in waiting:
            d.callback(None)
