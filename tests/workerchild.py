"""
A stand-in worker for L{tests.test_workers}: serves its own pid over HTTP
on the inherited socket (C{systemd:domain=INET:index=0}), as a railgun
worker listens, and stops on SIGTERM.
"""

from __future__ import annotations

import os

if "LISTEN_FDS" in os.environ:
    os.environ["LISTEN_PID"] = str(os.getpid())

from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.web.resource import Resource
from twisted.web.server import Site


class Pid(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"connection", b"close")
        return b"%d %s" % (os.getpid(), os.environ["RAILGUN_WORKER"].encode())


serverFromString(reactor, "systemd:domain=INET:index=0").listen(Site(Pid()))
reactor.run()
