"""
What only C{twistd railgun} does, never an embedded service: its event log
(format and level, where twistd would write it), its access log, and its
signals:

  - SIGHUP reads the configuration again (the file and the files it names:
    token, certificates, host maps) and applies it to the running roles; a
    configuration that does not read is logged in one line, and the running
    one kept;
  - SIGUSR1 reopens the access log, and rotates twistd's log file as twistd
    does (after logrotate moved the files away);
  - a second SIGINT or SIGTERM while the first one's drain is under way
    quits at once, instead of twistd's C{ReactorNotRunning} traceback.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import IO, Any

from attrs import define, field
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LegacyLogObserverWrapper,
    Logger,
    LogLevelFilterPredicate,
)
from twisted.python.logfile import LogFile

from railgun.logs import AccessLog, makeEventObserver, parseLevel

log = Logger()


@define
class EventLog:
    """
    The observer factory C{twistd} calls to start logging (its C{logger}
    option), built from C{--log-format} and C{--log-level}; it writes where
    twistd's own observer would (its C{UnixAppLogger}): syslog with
    C{--syslog}, standard output with C{-n} (or C{--logfile -}), else
    C{--logfile} (C{twistd.log} by default), which L{rotate} rotates.

    @ivar serverOptions: twistd's options (C{logfile}, C{nodaemon},
        C{syslog}, C{prefix}).
    @ivar format: C{text} or C{json}.
    @ivar level: the least severe level written.
    @ivar logFile: twistd's log file, once opened (L{None} for standard
        output and syslog).
    """

    serverOptions: Any
    format: str
    level: str
    stdout: IO[str] = sys.stdout
    logFile: LogFile | None = field(default=None, init=False)

    def __call__(self) -> ILogObserver:
        options = self.serverOptions
        logfile = options.get("logfile", "") or ""
        nodaemon = options.get("nodaemon", False)
        if options.get("syslog", False):
            from twisted.python import syslog

            emit = syslog.SyslogObserver(options.get("prefix", "")).emit
            return FilteringLogObserver(
                LegacyLogObserverWrapper(emit),  # type: ignore[arg-type]
                [LogLevelFilterPredicate(defaultLogLevel=parseLevel(self.level))],
            )
        if logfile == "-":
            if not nodaemon:
                sys.exit("Daemons cannot log to stdout, exiting!")
            out: IO[str] = self.stdout
        elif nodaemon and not logfile:
            out = self.stdout
        else:
            self.logFile = LogFile.fromFullPath(logfile or "twistd.log")
            out = self.logFile  # type: ignore[assignment]
        return makeEventObserver(out, self.format, self.level)

    def rotate(self) -> None:
        """
        Rotate twistd's log file (C{twistd.log} to C{twistd.log.1}, ...), as
        twistd's own SIGUSR1 handler does; nothing when logging elsewhere.
        """
        if self.logFile is not None:
            self.logFile.rotate()


#: the event log of this twistd process (L{forTwistd}).
_eventLog: EventLog | None = None


def forTwistd(eventLog: EventLog) -> str:
    """
    Make C{eventLog} the one twistd starts logging with.

    twistd takes its observer factory (its C{logger} option) as a dotted
    name, which it imports after the plugin's options are parsed: this
    returns the name of L{twistdObserver}, which calls C{eventLog}.
    """
    global _eventLog
    _eventLog = eventLog
    return f"{__name__}.{twistdObserver.__name__}"


def twistdObserver() -> ILogObserver:
    """
    The observer factory twistd calls (see L{forTwistd}).
    """
    assert _eventLog is not None, "railgun.daemon.forTwistd was not called"
    return _eventLog()


_NAMES: dict[int, str] = {int(signal.SIGINT): "SIGINT", int(signal.SIGTERM): "SIGTERM"}


@define
class Signals:
    """
    The signal handlers of C{twistd railgun}, installed once the reactor
    runs (after its own SIGINT and SIGTERM handlers, which the first such
    signal still goes to).

    Each handler only schedules its work on the reactor thread
    (C{callFromThread}, as Twisted's own do).

    @ivar reactor: the reactor.
    @ivar reload: reads the configuration again and applies it (SIGHUP).
    @ivar reopen: reopens the logs after a rotation (SIGUSR1).
    """

    reactor: Any
    reload: Callable[[], Any]
    reopen: Callable[[], None]
    quitting: Callable[[], None] = lambda: None
    """
    Called when a second SIGINT/SIGTERM quits at once (to pass it on to
    worker processes).
    """
    _stopping: bool = False
    _previous: dict[int, Any] = field(factory=dict)

    def install(self) -> None:
        """
        Install the SIGHUP and SIGUSR1 handlers now (their default action
        would end the process: the sooner the better), and those of SIGINT
        and SIGTERM once the reactor runs, after its own.
        """
        signal.signal(signal.SIGHUP, self._hangup)
        signal.signal(signal.SIGUSR1, self._user1)
        # A stop that came another way (a role that cannot start) is a
        # drain all the same.
        self.reactor.addSystemEventTrigger("before", "shutdown", self._shuttingDown)
        self.reactor.callWhenRunning(self._installStop)

    def _installStop(self) -> None:
        for number in (signal.SIGINT, signal.SIGTERM):
            self._previous[number] = signal.getsignal(number)
            signal.signal(number, self._stop)

    def _hangup(self, number: int, frame: Any) -> None:
        if self._stopping:
            log.info("Received SIGHUP while shutting down: ignored.")
            return
        log.info("Received SIGHUP: reading the configuration again.")
        self.reactor.callFromThread(self.reload)

    def _user1(self, number: int, frame: Any) -> None:
        self.reactor.callFromThread(self.reopen)

    def _shuttingDown(self) -> None:
        self._stopping = True

    def _stop(self, number: int, frame: Any) -> None:
        name = _NAMES.get(number, str(number))
        if self._stopping:
            log.warn(
                "Received {signal} again while draining: quitting now, "
                "without waiting for open requests.",
                signal=name,
            )
            self.reactor.callFromThread(self._quitNow)
            return
        self._stopping = True
        previous = self._previous.get(number)
        if callable(previous):
            # The reactor's: logs "Received SIGTERM, shutting down." and
            # stops, remembering the signal for twistd's exit status.
            previous(number, frame)
        else:
            log.info("Received {signal}, shutting down.", signal=name)
            self.reactor.callFromThread(self.reactor.stop)

    def _quitNow(self) -> None:
        """
        End the reactor's loop now: the shutdown triggers still waiting
        (the drain) are abandoned; twistd then removes its pid file, logs
        "Server Shut Down." and exits with the first signal's status.
        """
        # Its threads would keep the process alive: the "during shutdown"
        # trigger that stops them will not run.
        pool = getattr(self.reactor, "threadpool", None)
        self.quitting()
        self.reactor.crash()
        if pool is not None:
            pool.stop()


@define
class Daemon:
    """
    The logs and signals of one C{twistd railgun} process.

    @ivar eventLog: the event log twistd started (L{None} when twistd was
        given its own C{--logger}).
    @ivar accessLog: the access log, if one is configured.
    """

    eventLog: EventLog | None = None
    accessLog: AccessLog | None = None

    def reopen(self) -> None:
        """
        After a rotation (SIGUSR1): rotate twistd's log file, reopen the
        access log by name.
        """
        if self.eventLog is not None:
            self.eventLog.rotate()
        if self.accessLog is not None:
            self.accessLog.reopen()
        log.info("Received SIGUSR1: log files reopened.")

    def close(self) -> None:
        """
        Close the access log (at shutdown).
        """
        if self.accessLog is not None:
            self.accessLog.close()


__all__ = ["Daemon", "EventLog", "Signals", "forTwistd", "twistdObserver"]
