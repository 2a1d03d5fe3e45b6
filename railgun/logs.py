"""
The daemon's logs: the event log as text or JSON lines filtered by level,
and the access log (one line per request at the edge, one per stream at the
origin role).

Nothing here installs itself: L{railgun.tap} builds the observers from the
options and twistd starts logging to them; an embedding program may use them
with C{globalLogBeginner.beginLoggingTo} or leave logging to itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import IO, Any

from attrs import asdict, define, field, frozen
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    textFileLogObserver,
)
from zope.interface import implementer

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")


def parseLevel(name: str) -> LogLevel:
    """
    @param name: one of L{LOG_LEVELS}.
    @raise ValueError: for another name.
    """
    if name not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}")
    return LogLevel.levelWithName(name)


def _isoTime(seconds: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{whole}.{int(seconds * 1000) % 1000:03d}Z"


def _plain(value: Any) -> Any:
    """
    A value JSON can carry as it is, or its text.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


@implementer(ILogObserver)
@define
class JSONLinesObserver:
    """
    Write each event as one JSON object per line: C{time}, C{level},
    C{namespace}, C{message} (the formatted text), the event's own fields
    (request id, host, address...) and, for a failure, C{traceback}.
    Twisted's C{log_*} bookkeeping keys are left out.
    """

    _out: IO[str]

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level")
        record: dict[str, Any] = {
            "time": _isoTime(event.get("log_time", time.time())),
            "level": level.name if level is not None else "info",
            "namespace": event.get("log_namespace", ""),
            "message": formatEvent(event),
        }
        for key, value in event.items():
            if not key.startswith("log_") and key not in record:
                record[key] = _plain(value)
        failure = event.get("log_failure")
        if failure is not None:
            record["traceback"] = failure.getTraceback()
        self._out.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._out.flush()


def makeEventObserver(out: IO[str], fmt: str, level: str) -> ILogObserver:
    """
    The observer for the daemon's event log.

    @param out: where lines go (standard output, or twistd's log file).
    @param fmt: C{text} (twistd's usual lines) or C{json} (one object a line).
    @param level: the least severe level written; C{debug} lines are off
        unless asked for.
    """
    observer: ILogObserver = (
        JSONLinesObserver(out) if fmt == "json" else textFileLogObserver(out)
    )
    predicate = LogLevelFilterPredicate(defaultLogLevel=parseLevel(level))
    return FilteringLogObserver(observer, [predicate])


@frozen
class AccessRecord:
    """
    What the access log says of one request (edge) or stream (origin role).

    @ivar role: C{edge} or C{origin}.
    @ivar rid: the request id (the same at both roles, and in the C{Railgun}
        response header).
    @ivar host: the request's Host.
    @ivar method: the request method.
    @ivar path: the request target as received.
    @ivar status: the status answered (0 when the connection was aborted
        before a head was sent).
    @ivar outcome: C{same}, C{delta}, C{full}, C{raw}, C{direct},
        C{refused} or C{error}.
    @ivar served: body bytes served (edge: sent to the client; origin
        role: received from the origin server).
    @ivar linkBytes: body bytes that crossed the link for this request.
    @ivar originSeconds: the origin server's time, or L{None} if not
        fetched.
    @ivar totalSeconds: from the request head to the end of the response.
    @ivar client: the client's address (edge) or the subject of the edge's
        certificate (origin role).
    """

    role: str
    rid: str
    host: str
    method: str
    path: str
    status: int
    outcome: str
    served: int
    linkBytes: int
    originSeconds: float | None
    totalSeconds: float
    client: str = "-"


def formatAccessText(record: AccessRecord, now: float) -> str:
    """
    One access log line as text: time, then C{key=value} pairs whose values
    never contain a space (the path is quoted with the method).
    """
    origin = "-" if record.originSeconds is None else f"{record.originSeconds:.6f}"
    target = json.dumps(f"{record.method} {record.path}")
    return (
        f"{_isoTime(now)} {record.role} rid={record.rid} host={record.host}"
        f" {target} {record.status} outcome={record.outcome}"
        f" served={record.served} link={record.linkBytes} origin={origin}"
        f" total={record.totalSeconds:.6f} client={_word(record.client)}"
    )


def _word(text: str) -> str:
    """
    C{text} as one word of a text access line: quoted (JSON) if it holds a
    space or a quote (a certificate subject, say).
    """
    if not text or any(c.isspace() or c == '"' for c in text):
        return json.dumps(text)
    return text


def formatAccessJSON(record: AccessRecord, now: float) -> str:
    """
    One access log line as a JSON object.
    """
    return json.dumps({"time": _isoTime(now), **asdict(record)}, separators=(",", ":"))


@define
class AccessLog:
    """
    Append access lines to a file (or standard output for C{-}).

    @ivar _open: opens the destination (append mode); called again by
        L{reopen}, so a log rotated by moving the file (logrotate's
        C{create}) continues in a new file after SIGUSR1.
    """

    _open: Callable[[], IO[str]]
    _format: Callable[[AccessRecord, float], str]
    _clock: Callable[[], float] = time.time
    _out: IO[str] | None = field(default=None, init=False)
    _ownsFile: bool = field(default=True)

    @classmethod
    def forPath(cls, path: str, fmt: str, stdout: IO[str]) -> AccessLog:
        """
        @param path: a file name, or C{-} for C{stdout}.
        @param fmt: C{text} or C{json}.
        """
        formatter = formatAccessJSON if fmt == "json" else formatAccessText
        if path == "-":
            return cls(lambda: stdout, formatter, ownsFile=False)
        return cls(lambda: open(path, "a", encoding="utf-8"), formatter)

    def write(self, record: AccessRecord) -> None:
        """
        Log one request.
        """
        if self._out is None:
            self._out = self._open()
        self._out.write(self._format(record, self._clock()) + "\n")
        self._out.flush()

    def reopen(self) -> None:
        """
        Close the file and open it again by name (after a rotation).
        """
        self.close()

    def close(self) -> None:
        """
        Close the file, if this log opened one.
        """
        out, self._out = self._out, None
        if out is not None and self._ownsFile:
            out.close()
