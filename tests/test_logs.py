"""
L{railgun.logs}: the event log as text or JSON lines filtered by level, and
the access log's lines and reopening.
"""

from __future__ import annotations

import io
import json
import os

from twisted.logger import Logger, LogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from railgun.logs import (
    AccessLog,
    AccessRecord,
    formatAccessJSON,
    formatAccessText,
    makeEventObserver,
    parseLevel,
)

RECORD = AccessRecord(
    role="edge",
    rid="4fd1682b12",
    host="www.example.com",
    method="GET",
    path="/a b?q=1",
    status=200,
    outcome="delta",
    served=92516,
    linkBytes=266,
    originSeconds=0.0505,
    totalSeconds=0.0612,
    client="127.0.0.1",
)


def _logTo(fmt: str, level: str) -> tuple[Logger, io.StringIO]:
    out = io.StringIO()
    publisher = LogPublisher(makeEventObserver(out, fmt, level))
    return Logger(namespace="railgun.test", observer=publisher), out


class EventLogTests(SynchronousTestCase):
    def test_levelFilter(self):
        """
        Lines below the level are dropped: debug is off at info.
        """
        log, out = _logTo("text", "info")
        log.debug("hidden {x}", x=1)
        log.info("shown {x}", x=2)
        self.assertNotIn("hidden", out.getvalue())
        self.assertIn("shown 2", out.getvalue())
        log, out = _logTo("text", "warn")
        log.info("an info line")
        self.assertEqual(out.getvalue(), "")

    def test_json(self):
        """
        JSON lines carry the message, the level, the namespace and the
        event's own fields, one object a line.
        """
        log, out = _logTo("json", "debug")
        log.warn("link to {address} failed", address="o:2408", rid="abc")
        line = json.loads(out.getvalue().splitlines()[0])
        self.assertEqual(line["message"], "link to o:2408 failed")
        self.assertEqual(line["level"], "warn")
        self.assertEqual(line["namespace"], "railgun.test")
        self.assertEqual((line["address"], line["rid"]), ("o:2408", "abc"))
        self.assertFalse([k for k in line if k.startswith("log_")])

    def test_jsonFailure(self):
        """
        A failure logged as JSON carries its traceback.
        """
        log, out = _logTo("json", "info")
        log.failure("it broke", Failure(ValueError("boom")))
        line = json.loads(out.getvalue())
        self.assertIn("ValueError: boom", line["traceback"])

    def test_badLevel(self):
        """
        An unknown level name is refused, naming the choices.
        """
        self.assertRaises(ValueError, parseLevel, "loud")


class AccessLogTests(SynchronousTestCase):
    def test_text(self):
        """
        A text line: time, role, key=value pairs, the quoted request line.
        """
        line = formatAccessText(RECORD, 0.0)
        self.assertEqual(
            line,
            "1970-01-01T00:00:00.000Z edge rid=4fd1682b12 host=www.example.com"
            ' "GET /a b?q=1" 200 outcome=delta served=92516 link=266'
            " origin=0.050500 total=0.061200 client=127.0.0.1",
        )

    def test_json(self):
        """
        A JSON line has every field of the record.
        """
        line = json.loads(formatAccessJSON(RECORD, 0.0))
        self.assertEqual(line["rid"], "4fd1682b12")
        self.assertEqual(line["linkBytes"], 266)
        self.assertEqual(line["time"], "1970-01-01T00:00:00.000Z")

    def test_reopen(self):
        """
        After the file was moved away (a rotation), reopen() continues in a
        new file of the same name.
        """
        path = self.mktemp()
        log = AccessLog.forPath(path, "text", io.StringIO())
        log.write(RECORD)
        os.rename(path, path + ".1")
        log.write(RECORD)
        log.reopen()
        log.write(RECORD)
        log.close()
        with open(path + ".1") as f:
            self.assertEqual(len(f.readlines()), 2)
        with open(path) as f:
            self.assertEqual(len(f.readlines()), 1)

    def test_stdout(self):
        """
        C{-} writes to the given standard output, which close() leaves open.
        """
        out = io.StringIO()
        log = AccessLog.forPath("-", "json", out)
        log.write(RECORD)
        log.close()
        self.assertEqual(json.loads(out.getvalue())["status"], 200)
        self.assertFalse(out.closed)
