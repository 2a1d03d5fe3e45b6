"""
The entry point of one worker process (see L{railgun.workers}):
C{python -m railgun.worker TWISTD_ARGUMENTS...}.

It marks the inherited listening sockets as its own, as systemd does
(C{LISTEN_PID} must name the process that uses them, which the supervisor
cannot know before the process exists), and then runs C{twistd}. The
marking must happen before Twisted reads the environment, which it does
when C{twisted.internet.endpoints} is first imported.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> None:
    if "LISTEN_FDS" in os.environ:
        os.environ["LISTEN_PID"] = str(os.getpid())
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", *argv]
    run()


if __name__ == "__main__":
    main(sys.argv[1:])
