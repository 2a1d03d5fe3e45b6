"""
Tests for L{railgun.delta.preparer} (bases prepared one at a time, newest
first, bounded) and L{railgun._threads} (a daemon thread of lower
priority).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from railgun._threads import (
    BACKGROUND_NICENESS,
    inDaemonThread,
    lowerThreadPriority,
)
from railgun.delta.preparer import BackgroundPreparer


class _Reactor:
    """
    Collects what threads hand to the reactor thread.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Any, tuple[Any, ...]]] = []
        self.arrived = threading.Event()

    def callFromThread(self, f: Any, *a: Any) -> None:
        self.calls.append((f, a))
        self.arrived.set()

    def runCalls(self) -> None:
        calls, self.calls = self.calls, []
        for f, a in calls:
            f(*a)


class _Spawner:
    """
    Holds each piece of work until the test finishes it.
    """

    def __init__(self) -> None:
        self.started: list[tuple[Any, Deferred[Any]]] = []

    def __call__(self, reactor: Any, work: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.started.append((work, d))
        return d

    def finish(self) -> None:
        work, d = self.started.pop(0)
        try:
            result = work()
        except BaseException:
            d.errback()
        else:
            d.callback(result)


class BackgroundPreparerTests(SynchronousTestCase):
    """
    Tests for L{BackgroundPreparer}.
    """

    def setUp(self) -> None:
        self.spawner = _Spawner()
        self.done: list[bytes] = []
        self.preparer = BackgroundPreparer(_Reactor(), self.spawner, maxPending=2)

    def prepare(self, body: bytes) -> bool:
        self.done.append(body)
        return True

    def test_oneAtATimeNewestFirst(self) -> None:
        """
        One base is prepared at a time; of those waiting, the newest next.
        """
        self.preparer.submit(self.prepare, b"a")
        self.preparer.submit(self.prepare, b"b")
        self.preparer.submit(self.prepare, b"c")
        self.assertEqual(len(self.spawner.started), 1)
        self.spawner.finish()
        self.assertEqual(len(self.spawner.started), 1)
        self.spawner.finish()
        self.spawner.finish()
        self.assertEqual(self.done, [b"a", b"c", b"b"])
        self.assertEqual(self.preparer.prepared, 3)
        self.assertFalse(self.preparer.busy)

    def test_boundedOldestDropped(self) -> None:
        """
        Past C{maxPending} waiting, the oldest waiting is dropped.
        """
        for body in (b"a", b"b", b"c", b"d"):
            self.preparer.submit(self.prepare, body)
        while self.spawner.started:
            self.spawner.finish()
        self.assertEqual(self.done, [b"a", b"d", b"c"])
        self.assertEqual(self.preparer.dropped, 1)

    def test_whenIdle(self) -> None:
        """
        L{BackgroundPreparer.whenIdle} fires once nothing runs or waits.
        """
        self.successResultOf(self.preparer.whenIdle())
        self.preparer.submit(self.prepare, b"a")
        self.preparer.submit(self.prepare, b"b")
        idle = self.preparer.whenIdle()
        self.spawner.finish()
        self.assertNoResult(idle)
        self.spawner.finish()
        self.successResultOf(idle)

    def test_failureLoggedAndNextRuns(self) -> None:
        """
        A preparation that fails is logged, and the next one still runs.
        """

        def broken(body: bytes) -> bool:
            raise MemoryError("no room")

        self.preparer.submit(broken, b"a")
        self.preparer.submit(self.prepare, b"b")
        self.spawner.finish()
        self.assertEqual(len(self.flushLoggedErrors(MemoryError)), 1)
        self.spawner.finish()
        self.assertEqual(self.done, [b"b"])

    def test_stopDropsWaiting(self) -> None:
        """
        After C{stop}, what waits is dropped and nothing new starts; the
        running one finishes.
        """
        self.preparer.submit(self.prepare, b"a")
        self.preparer.submit(self.prepare, b"b")
        idle = self.preparer.whenIdle()
        self.preparer.stop()
        self.preparer.submit(self.prepare, b"c")
        self.assertNoResult(idle)
        self.spawner.finish()
        self.successResultOf(idle)
        self.assertEqual(self.done, [b"a"])
        self.assertEqual(self.spawner.started, [])

    def test_startAgain(self) -> None:
        """
        After C{start}, a stopped preparer takes bases again, its counts
        kept.
        """
        self.preparer.submit(self.prepare, b"a")
        self.spawner.finish()
        self.preparer.stop()
        self.preparer.start()
        self.preparer.submit(self.prepare, b"b")
        self.spawner.finish()
        self.assertEqual((self.done, self.preparer.prepared), ([b"a", b"b"], 2))

    def test_noThread(self) -> None:
        """
        When no thread can be started, what waits is dropped and logged,
        C{submit} does not raise, and the next one is tried again.
        """

        def refuse(reactor: Any, work: Any) -> Deferred[Any]:
            raise RuntimeError("can't start new thread")

        preparer = BackgroundPreparer(_Reactor(), refuse)
        idle = preparer.whenIdle()
        preparer.submit(self.prepare, b"a")
        self.successResultOf(idle)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual((preparer.dropped, preparer.busy), (1, False))
        preparer.submit(self.prepare, b"b")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_notPreparedNotCounted(self) -> None:
        """
        A preparation that did nothing (already prepared) is not counted.
        """
        self.preparer.submit(lambda body: False, b"a")
        self.spawner.finish()
        self.assertEqual(self.preparer.prepared, 0)


class DaemonThreadTests(SynchronousTestCase):
    """
    Tests for L{inDaemonThread} and L{lowerThreadPriority}, with real
    threads.
    """

    def runThread(self, work: Any) -> Deferred[Any]:
        reactor = _Reactor()
        d = inDaemonThread(reactor, work)
        self.assertTrue(reactor.arrived.wait(30))
        reactor.runCalls()
        return d

    def test_result(self) -> None:
        """
        The work's result arrives through the reactor thread, from a daemon
        thread.
        """

        def work() -> tuple[bool, bool]:
            return threading.current_thread().daemon, threading.current_thread() is (
                threading.main_thread()
            )

        self.assertEqual(self.successResultOf(self.runThread(work)), (True, False))

    def test_failure(self) -> None:
        """
        The work's exception arrives as a failure.
        """
        self.failureResultOf(self.runThread(lambda: 1 / 0), ZeroDivisionError)

    def test_lowerPriority(self) -> None:
        """
        On Linux the work runs at a lower CPU priority than the thread that
        started it, which keeps its own.
        """
        if not sys.platform.startswith("linux"):
            raise self.skipTest("per-thread priority is Linux's")
        mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        def work() -> int:
            return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        theirs = self.successResultOf(self.runThread(work))
        self.assertEqual(theirs, max(mine, BACKGROUND_NICENESS))
        self.assertEqual(
            os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), mine
        )

    def test_lowerPriorityHere(self) -> None:
        """
        L{lowerThreadPriority} says whether it lowered the calling thread's.
        """

        def work() -> bool:
            return lowerThreadPriority()

        self.assertEqual(
            self.successResultOf(self.runThread(work)),
            sys.platform.startswith("linux"),
        )
