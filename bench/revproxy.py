"""
The "ordinary Twisted reverse proxy" alternative: one process whose whole
site is C{twisted.web.proxy.ReverseProxyResource} in front of an origin.

    python -m bench.revproxy --port PORT --to-port ORIGIN_PORT

A command-line entry point for the benchmarks (it writes one line to stdout).
"""

from __future__ import annotations

import argparse
import sys

from twisted.web.proxy import ReverseProxyResource
from twisted.web.server import Site


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.revproxy")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--to-port", type=int, required=True)
    args = parser.parse_args(argv)

    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint

    site = Site(ReverseProxyResource("127.0.0.1", args.to_port, b""))
    TCP4ServerEndpoint(reactor, args.port, backlog=4096, interface="127.0.0.1").listen(
        site
    )
    sys.stdout.write(f"reverse proxy on {args.port} to {args.to_port}\n")
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
