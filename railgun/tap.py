"""
The twistd plugin's options and service: C{twistd -n railgun --role edge},
C{--role origin} or C{--role both}. Every option can also be set in a TOML
file (C{--config}); command-line flags override the file. The flags, their
C{--help}, the checks and the configuration objects all come from the
settings schema (the fields of L{railgun.config.RailgunConfig} and the
classes it holds; see L{railgun.settings}); each key is documented in
C{docs/configuration.md}.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from railgun import __version__
from railgun.config import ConfigError, RailgunConfig, readToml
from railgun.daemon import Daemon, EventLog, Signals, forTwistd
from railgun.logs import AccessLog
from railgun.settings import Flag, entries, flags, load
from railgun.tls import CredentialsError

log = Logger()

#: The settings of C{twistd railgun}, and its flags.
SCHEMA = list(entries(RailgunConfig))
FLAGS = flags(SCHEMA)

SYNOPSIS = "--role edge|origin|both [options]"


class Options(usage.Options):
    """
    Options of C{twistd railgun}, generated from the settings schema.

    @ivar built: the L{RailgunConfig} read, once parsed.
    @ivar role: its role.
    @ivar credentials: the role's certificates (C{edge} and C{origin}).
    """

    synopsis = SYNOPSIS
    longdesc = (
        "Railgun: a persistent, multiplexed, mutually authenticated TLS link "
        "between a CDN edge and the origin, with delta compression of "
        "dynamic pages. Some settings exist only as keys of the --config "
        "file; docs/configuration.md lists every option and key."
    )

    optParameters = [
        ["config", "c", None, "a TOML configuration file; flags override it"]
    ] + [
        [flag.name, None, None, flag.help]
        for flag in FLAGS
        if not (flag.kind.switch or flag.kind.repeatable)
    ]
    optFlags = [[flag.name, None, flag.help] for flag in FLAGS if flag.kind.switch]

    def __init__(self) -> None:
        super().__init__()
        self._failed = False
        for flag in FLAGS:
            if flag.kind.repeatable:
                self[flag.name] = []

    def opt_version(self) -> None:
        """
        Display Railgun's version and exit.
        """
        sys.stdout.write(f"railgun {__version__}\n")
        sys.exit(0)

    def parseOptions(self, options: list[str] | None = None) -> None:
        # Kept as given: workers are started with the same command line.
        self.rawArgs = list(sys.argv[1:] if options is None else options)
        try:
            super().parseOptions(options)
        except usage.UsageError:
            self._failed = True
            raise

    def getUsage(self, width: int | None = None) -> str:
        """
        The help, or after a usage error a one-line hint: twistd prints
        this before the error, which is the line to read.
        """
        if self._failed:
            return "'twistd railgun --help' lists the options of railgun."
        return super().getUsage(width)

    def given(self) -> dict[str, Any]:
        """
        @return: the flags given, by name, their values parsed.
        @raise usage.UsageError: for a value that does not parse.
        """
        given: dict[str, Any] = {}
        for flag in FLAGS:
            value = self[flag.name]
            if flag.kind.switch:
                if value:
                    given[flag.name] = flag.entries[0].setting.switchValue
            elif flag.kind.repeatable:
                if value:
                    given[flag.name] = list(value)
            elif value is not None:
                given[flag.name] = _parse(flag, value)
        return given

    def read(self) -> RailgunConfig:
        """
        Read the configuration: the file again (C{--config}), and the flags
        given, which win over it. Called once options are parsed, and again
        to reload.

        @raise ConfigError: for a bad value, naming its flag and key.
        @raise usage.UsageError: for a flag whose value does not parse.
        """
        file = readToml(self["config"]) if self["config"] else {}
        return load(RailgunConfig, file, self.given(), os.environ)

    def postOptions(self) -> None:
        try:
            self.built: RailgunConfig = self.read()
            self.role = self.built.role
            # Read the certificates now, so a missing or wrong file is a
            # one-line usage error, not a traceback from makeService.
            self.credentials = roleCredentials(self.built)
        except CredentialsError as e:
            raise usage.UsageError(str(e)) from e
        except ConfigError as e:
            raise usage.UsageError(str(e)) from e
        except ValueError as e:
            raise usage.UsageError(f"bad option value: {e}") from e
        self.eventLog: EventLog | None = None
        parent = getattr(self, "parent", None)
        if parent is not None and not parent.get("logger"):
            # twistd starts logging with this factory's observer (unless it
            # was given a --logger of its own).
            self.eventLog = EventLog(
                parent, self.built.log.format, self.built.log.level
            )
            parent["logger"] = forTwistd(self.eventLog)


def roleCredentials(built: RailgunConfig) -> Any:
    """
    Read the certificates of the role C{built} runs (C{edge}, C{origin});
    L{None} for C{both}, which makes its own.

    @raise CredentialsError: for a missing or unreadable file.
    """
    from railgun.tls import loadCredentials

    # (--certs is required for these roles.)
    if built.role == "origin":
        certsDir = built.originConfig().certsDir
        assert certsDir is not None
        return loadCredentials(certsDir, "origin")
    if built.role == "edge":
        certsDir = built.edgeConfig().certsDir
        assert certsDir is not None
        return loadCredentials(certsDir, "edge")
    return None


def _repeatable(flag: Flag) -> Callable[[Options, str], None]:
    def append(self: Options, value: str) -> None:
        self[flag.name].append(value)

    append.__doc__ = flag.help
    return append


for _flag in FLAGS:
    if _flag.kind.repeatable:
        setattr(Options, "opt_" + _flag.name.replace("-", "_"), _repeatable(_flag))


def _parse(flag: Flag, text: str) -> Any:
    try:
        return flag.kind.parse(text)
    except ValueError as e:
        raise usage.UsageError(
            f"--{flag.name} must be {flag.kind.flagWanted}, not {text!r}"
        ) from e


def exitStatusAtExit(status: int) -> None:
    """
    Make the process end with C{status} once twistd is done with it.

    twistd offers a plugin no way to set its exit status (Twisted ticket
    #11335): once the reactor has stopped it removes its pid file, logs
    "Server Shut Down." and returns, and the interpreter ends with status
    0. An exit handler runs after all of that, and one registered now runs
    before those registered earlier: it flushes what the interpreter would
    (standard output and error, the C{logging} module's handlers) and ends
    the process with C{status}.
    """

    def end() -> None:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(status)

    atexit.register(end)


class TwistdService(MultiService):
    """
    What C{twistd railgun} runs: the role's service, and if it cannot start
    (a port in use, most often), a one-line critical message, the reactor
    stopped and exit status 1, rather than a process that runs on, serving
    nothing. Embedders run the role services themselves, whose
    C{whenListening()} fails instead: what to do is theirs to decide.

    With C{options}, it also installs the daemon's signal handlers as it
    starts (L{railgun.daemon.Signals}: SIGHUP reloads, SIGUSR1 reopens the
    logs, a second SIGINT/SIGTERM quits at once).

    @ivar role: C{edge}, C{origin} or C{both}.
    @ivar roleService: the role's service.
    @ivar daemon: the process's logs.
    """

    def __init__(
        self,
        role: str,
        roleService: IService,
        reactor: Any,
        exit: Callable[[int], None] = exitStatusAtExit,
        *,
        options: Options | None = None,
        daemon: Daemon | None = None,
    ) -> None:
        super().__init__()
        self.role = role
        self.roleService = roleService
        self._reactor = reactor
        self._exit = exit
        self._options = options
        self.daemon = daemon if daemon is not None else Daemon()
        self._running: RailgunConfig | None = (
            options.built if options is not None else None
        )
        roleService.setServiceParent(self)

    def startService(self) -> None:
        super().startService()
        if self._options is not None:
            signals = Signals(
                self._reactor, self.reload, self.reopen, quitting=self._quitting
            )
            signals.install()
        service: Any = self.roleService
        started = (
            service.whenStarted() if self.role == "both" else service.whenListening()
        )
        started.addErrback(self._cannotStart)

    def stopService(self) -> Any:
        d = super().stopService()
        d.addBoth(self._closeLogs)
        return d

    def _closeLogs(self, result: Any) -> Any:
        self.daemon.close()
        return result

    def _workers(self) -> Any:
        """
        @return: the role's L{railgun.workers.WorkersService} (C{--workers}),
            or L{None}.
        """
        service = self.roleService
        return service if hasattr(service, "signalWorkers") else None

    def reopen(self) -> None:
        """
        SIGUSR1: reopen this process's logs, and the workers' (C{--workers}).
        """
        self.daemon.reopen()
        workers = self._workers()
        if workers is not None:
            workers.signalWorkers(signal.SIGUSR1)

    def _quitting(self) -> None:
        # A second SIGTERM: the workers quit at once too.
        workers = self._workers()
        if workers is not None:
            workers.signalWorkers(signal.SIGTERM)

    def reload(self) -> Deferred[Any] | None:
        """
        Read the configuration again (the file, the files it names, the
        flags given) and apply it to the running role(s). If it cannot be
        read, say why in one line and keep the running one. With
        C{--workers}, each worker does that: SIGHUP is forwarded to them.

        @return: a Deferred firing once what the reload drains has drained,
            or L{None} if nothing was applied.
        """
        assert self._options is not None
        workers = self._workers()
        if workers is not None:
            log.info("reload: passing SIGHUP on to the workers")
            workers.signalWorkers(signal.SIGHUP)
            return None
        try:
            config = self._options.read()
            credentials = roleCredentials(config)
        except (ConfigError, CredentialsError, usage.UsageError, ValueError) as e:
            log.error(
                "reload: the configuration was not applied (the running one is "
                "kept): {why}",
                why=" ".join(str(e).split()),
            )
            return None
        running = self._running
        assert running is not None
        if config.role != running.role:
            log.error(
                "reload: --role cannot change from {running} to {role} while "
                "running: the running configuration is kept; restart to apply",
                running=running.role,
                role=config.role,
            )
            return None
        if config.log != running.log:
            log.warn(
                "reload: the log settings cannot change while running: restart to apply"
            )
        self._running = config
        service: Any = self.roleService
        if self.role == "origin":
            d = service.reload(config.originConfig(), credentials)
        elif self.role == "edge":
            d = service.reload(config.edgeConfig(), credentials)
        else:
            d = service.reload(config)
        return d

    def _cannotStart(self, failure: Failure) -> None:
        cause = " ".join(str(failure.value).split()) or type(failure.value).__name__
        if not cause.endswith("."):
            cause += "."
        log.critical(
            "railgun --role {role} cannot start: {cause} Stopping (exit status 1).",
            role=self.role,
            cause=cause,
        )
        self._exit(1)
        self._reactor.callWhenRunning(self._reactor.stop)


def makeService(options: Options) -> IService:
    """
    Build the service of the chosen role, inside a L{TwistdService} (twistd
    calls this).
    """
    from twisted.internet import reactor

    built = options.built
    accessLog = None
    # (With --workers, each worker writes its own lines to the access log.)
    if built.log.access is not None and built.workers == 1:
        accessLog = AccessLog.forPath(
            built.log.access, built.log.accessLogFormat(), sys.stdout
        )
    daemon = Daemon(getattr(options, "eventLog", None), accessLog)
    write = accessLog.write if accessLog is not None else None
    service: IService
    if built.workers > 1:
        service = _workersService(options, reactor)
    elif options.role == "origin":
        from railgun.origin.service import OriginService

        service = OriginService(
            built.originConfig(),
            reactor,
            credentials=options.credentials,
            accessLog=write,
        )
    elif options.role == "edge":
        from railgun.edge.service import EdgeService

        service = EdgeService(
            built.edgeConfig(),
            reactor,
            credentials=options.credentials,
            accessLog=write,
        )
    else:
        from railgun.both import BothService

        service = BothService(built, reactor, accessLog=write)
    top = TwistdService(options.role, service, reactor, options=options, daemon=daemon)
    # With workers, each worker serves its own admin endpoint (see
    # workerArguments); the supervisor serves none.
    if built.workers <= 1 and (
        built.adminListen is not None or built.statsURL is not None
    ):
        from railgun.admin import AdminService

        AdminService(
            service,
            reactor,
            built.adminListen,
            statsURL=built.statsURL,
            statsInterval=built.statsInterval,
        ).setServiceParent(top)
    return top


def workerArguments(options: Options, index: int, listen: str) -> list[str]:
    """
    The C{twistd} command line of worker C{index}: in the foreground, no
    pid file, its own log file if the supervisor has one, the same railgun
    options as the supervisor's but one worker, listening on the inherited
    socket.
    """
    arguments = ["--nodaemon", "--pidfile="]
    parent: Any = getattr(options, "parent", None)
    logfile = parent.get("logfile") if parent is not None else None
    if parent is not None and not logfile and not parent.get("nodaemon"):
        logfile = "twistd.log"
    if logfile and logfile != "-":
        arguments.append(f"--logfile={logfile}.worker{index}")
    admin = []
    if options.built.adminListen is not None:
        admin = [
            f"--admin-listen={workerAdminListen(options.built.adminListen, index)}"
        ]
    return [*arguments, "railgun", *options.rawArgs, "--workers=1", *admin, listen]


def workerAdminListen(listen: str, index: int) -> str:
    """
    The admin endpoint of worker C{index}: the configured TCP port plus the
    index (a UNIX socket path gets C{.INDEX} appended), so that each
    worker's counters can be scraped on their own.
    """
    import re

    tcp = re.fullmatch(r"(tcp6?:(?:port=)?)(\d+)(.*)", listen)
    if tcp is not None:
        return f"{tcp[1]}{int(tcp[2]) + index}{tcp[3]}"
    unix = re.fullmatch(r"(unix:(?:address=)?)([^:]+)(.*)", listen)
    if unix is not None:
        return f"{unix[1]}{unix[2]}.{index}{unix[3]}"
    return "none"


def _workersService(options: Options, reactor: Any) -> IService:
    from railgun._listening import withBacklog
    from railgun.workers import WorkersService

    built = options.built
    if built.role == "origin":
        origin = built.originConfig()
        listen, flag = withBacklog(origin.linkListen, origin.backlog), "link-listen"
        drain = origin.link.drainTimeout
    else:
        edge = built.edgeConfig()
        listen, flag = withBacklog(edge.httpListen, edge.backlog), "http-listen"
        drain = edge.link.drainTimeout
    return WorkersService(
        reactor,
        count=built.workers,
        listen=listen,
        listenFlag=flag,
        arguments=lambda index, listenOption: workerArguments(
            options, index, listenOption
        ),
        stopTimeout=drain + 10,
    )
