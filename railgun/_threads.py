"""
Threads of our own: work that must not hold up the reactor, at a lower CPU
priority than the reactor thread and the encodes requests wait for.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorFromThreads

#: The nice value of our background threads: they give way to the reactor
#: and to the encodes requests wait for.
BACKGROUND_NICENESS = 10


def lowerThreadPriority(niceness: int = BACKGROUND_NICENESS) -> bool:
    """
    Lower the CPU priority of the calling thread only (Linux: a thread is
    its own scheduling entity, and C{setpriority} on its id leaves the
    other threads alone).

    @return: whether it was lowered (not on other systems).
    """
    setpriority = getattr(os, "setpriority", None)
    nativeId = getattr(threading, "get_native_id", None)
    if setpriority is None or nativeId is None or not sys.platform.startswith("linux"):
        return False
    try:
        current = os.getpriority(os.PRIO_PROCESS, nativeId())
        setpriority(os.PRIO_PROCESS, nativeId(), max(current, niceness))
    except OSError:
        return False
    return True


def inDaemonThread(
    reactor: IReactorFromThreads, work: Callable[[], Any]
) -> Deferred[Any]:
    """
    Run C{work()} in a new daemon thread of low CPU priority.

    A thread per piece of work rather than a pool: starting one costs
    ~0.1 ms against the 10-130 ms of hashing a base ahead
    (L{railgun.delta.preparer}), and a daemon thread never holds up the
    process's exit, whoever embeds the service and however it stops.

    @return: a L{Deferred} firing on the reactor thread with C{work}'s
        result or failure.
    """
    d: Deferred[Any] = Deferred()

    def run() -> None:
        lowerThreadPriority()
        try:
            result = work()
        except BaseException:
            failure = Failure()
            reactor.callFromThread(d.errback, failure)
        else:
            reactor.callFromThread(d.callback, result)

    threading.Thread(target=run, name="railgun-background", daemon=True).start()
    return d
