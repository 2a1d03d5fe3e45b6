"""
Worker processes: one listening socket, N processes accepting from it.

With C{--workers N} the twistd process becomes a supervisor: it binds the
role's listening socket itself, never accepts on it, and starts N copies of
the role (L{railgun.worker}) that inherit it as systemd socket activation
does (file descriptor 3 and on, C{LISTEN_FDS}), so each worker listens with
the ordinary endpoint string C{systemd:domain=INET:index=0}. All of them
accept from one queue: a worker that dies loses no queued connection.

The supervisor restarts a worker that exits while it runs (after a delay
that grows while workers keep dying young), forwards SIGHUP and SIGUSR1,
and on stop sends SIGTERM to every worker (each drains as a single process
does) and waits for them, killing those still alive after C{stopTimeout}.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from railgun._listening import ListeningPort

log = Logger()

#: The first inherited descriptor (systemd's SD_LISTEN_FDS_START).
FIRST_FD = 3

#: A worker that ran less than this many seconds died young: the next
#: restart waits longer.
YOUNG = 10.0


class _Worker(ProcessProtocol):
    """
    One worker process, as the supervisor sees it.
    """

    def __init__(self, supervisor: WorkerSupervisor, index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.started = supervisor.clock.seconds()
        self.ended: Deferred[None] = Deferred()
        self.pid: int | None = None

    def makeConnection(self, transport: Any) -> None:
        # Kept: the transport forgets the pid once the process has ended.
        self.pid = transport.pid
        super().makeConnection(transport)

    def processEnded(self, reason: Failure) -> None:
        self.supervisor._ended(self, reason)
        self.ended.callback(None)


class WorkerSupervisor(Service):
    """
    Keep C{count} worker processes running.

    @ivar workers: the running workers by index.
    """

    def __init__(
        self,
        reactor: Any,
        count: int,
        arguments: Sequence[str] | Callable[[int], Sequence[str]],
        fds: Sequence[int],
        *,
        executable: str = sys.executable,
        module: str = "railgun.worker",
        stopTimeout: float = 60.0,
        environ: dict[str, str] | None = None,
        describe: Callable[[int], str] = lambda index: f"worker {index}",
    ) -> None:
        """
        @param count: how many workers.
        @param arguments: the command line each worker's C{twistd} gets, or
            a function of the worker's index giving it.
        @param fds: listening sockets' descriptors, inherited as 3, 4, ...
        @param module: run as C{executable -m module arguments...}.
        @param stopTimeout: seconds workers get to drain after SIGTERM
            before SIGKILL.
        """
        self._reactor = reactor
        self.clock = reactor
        self._count = count
        self._arguments = (
            arguments if callable(arguments) else (lambda index: list(arguments))
        )
        self._fds = list(fds)
        self._executable = executable
        self._module = module
        self._stopTimeout = stopTimeout
        self._environ = dict(os.environ if environ is None else environ)
        self._describe = describe
        self._delay = 1.0
        self._stopping = False
        self.workers: dict[int, _Worker] = {}
        self.restarts = 0

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        for index in range(self._count):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        if self._stopping or index in self.workers:
            return
        worker = _Worker(self, index)
        environ = dict(self._environ)
        environ["LISTEN_FDS"] = str(len(self._fds))
        # Twisted, as systemd 227 and later, wants a name per descriptor.
        environ["LISTEN_FDNAMES"] = ":".join(f"fd{n}" for n in range(len(self._fds)))
        environ["RAILGUN_WORKER"] = str(index)
        childFDs: dict[int, Any] = {0: "w", 1: 1, 2: 2}
        for offset, fd in enumerate(self._fds):
            childFDs[FIRST_FD + offset] = fd
        self._reactor.spawnProcess(
            worker,
            self._executable,
            [self._executable, "-m", self._module, *self._arguments(index)],
            env=environ,
            childFDs=childFDs,
        )
        self.workers[index] = worker
        log.info(
            "{worker} started (pid {pid})",
            worker=self._describe(index),
            pid=worker.pid,
        )

    def _ended(self, worker: _Worker, reason: Failure) -> None:
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        status = getattr(reason.value, "exitCode", None)
        signal_ = getattr(reason.value, "signal", None)
        how = f"signal {signal_}" if signal_ else f"status {status}"
        if self._stopping:
            log.info(
                "{worker} (pid {pid}) stopped ({how})",
                worker=self._describe(worker.index),
                pid=worker.pid,
                how=how,
            )
            return
        lived = self.clock.seconds() - worker.started
        self._delay = min(self._delay * 2, 30.0) if lived < YOUNG else 1.0
        self.restarts += 1
        log.warn(
            "{worker} (pid {pid}) exited ({how}) after {lived:.1f} s;"
            " starting another in {delay:g} s",
            worker=self._describe(worker.index),
            pid=worker.pid,
            how=how,
            lived=lived,
            delay=self._delay,
        )
        self.clock.callLater(self._delay, self._spawn, worker.index)

    def signalAll(self, signum: int) -> None:
        """
        Send C{signum} to every running worker (SIGHUP: reload; SIGUSR1:
        reopen logs).
        """
        for worker in list(self.workers.values()):
            if worker.transport is not None:
                try:
                    worker.transport.signalProcess(signum)
                except Exception:  # already gone: processEnded follows
                    pass

    def stopService(self) -> Deferred[Any]:
        """
        SIGTERM to every worker, then wait until all have exited (SIGKILL to
        those alive after C{stopTimeout}).
        """
        super().stopService()
        self._stopping = True
        waiting = [worker.ended for worker in self.workers.values()]
        self.signalAll(signal.SIGTERM)
        killer = self.clock.callLater(self._stopTimeout, self.signalAll, signal.SIGKILL)
        done = DeferredList(waiting, consumeErrors=True)

        def stopped(result: Any) -> Any:
            if killer.active():
                killer.cancel()
            return result

        return done.addBoth(stopped)


class WorkersService(MultiService):
    """
    What C{twistd railgun --workers N} runs: the role's listening socket,
    bound here and never accepted on, and a L{WorkerSupervisor} of N
    workers that inherit it.

    @ivar supervisor: the supervisor, once the socket is bound.
    """

    def __init__(
        self,
        reactor: Any,
        *,
        count: int,
        listen: str,
        listenFlag: str,
        arguments: Callable[[int, str], list[str]],
        stopTimeout: float,
    ) -> None:
        """
        @param listen: the role's endpoint string (with its backlog).
        @param listenFlag: the option that tells a worker where to listen
            (C{http-listen} or C{link-listen}).
        @param arguments: C{(index, listen option)} -> a worker's C{twistd}
            command line.
        """
        super().__init__()
        self._reactor = reactor
        self._count = count
        self._listenText = listen
        self._listenFlag = listenFlag
        self._arguments = arguments
        self._stopTimeout = stopTimeout
        self._listening = ListeningPort(f"workers sharing {listenFlag}")
        self.supervisor: WorkerSupervisor | None = None

    def startService(self) -> None:
        super().startService()
        listening = serverFromString(self._reactor, self._listenText).listen(
            Factory.forProtocol(Protocol)
        )
        listening.addCallback(self._bound)
        self._listening.listen(listening)

    def _bound(self, port: Any) -> Any:
        # The supervisor only holds the socket for its workers.
        port.stopReading()
        domain = "INET6" if port.getHost().type == "TCP6" else "INET"
        endpoint = f"systemd:domain={domain}:index=0"
        self.supervisor = WorkerSupervisor(
            self._reactor,
            self._count,
            lambda index: self._arguments(index, f"--{self._listenFlag}={endpoint}"),
            [port.fileno()],
            stopTimeout=self._stopTimeout,
        )
        self.supervisor.setServiceParent(self)
        return port

    def whenListening(self) -> Deferred[IListeningPort]:
        """
        @return: a Deferred firing with the shared port once bound.
        """
        return self._listening.whenListening()

    def signalWorkers(self, signum: int) -> None:
        """
        Forward C{signum} (SIGHUP, SIGUSR1) to every worker.
        """
        if self.supervisor is not None:
            self.supervisor.signalAll(signum)

    def stopService(self) -> Deferred[Any]:
        """
        Stop the workers (each drains), then close the socket.
        """
        d: Deferred[Any] = DeferredList(
            [maybeDeferred(MultiService.stopService, self)], consumeErrors=True
        )
        d.addCallback(lambda _: self._listening.stop())
        return d
