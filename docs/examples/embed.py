"""
Embedding Railgun in your own Twisted program: an origin server, an origin
role and an edge in one reactor, then one request through the edge.

Run it: python docs/examples/embed.py
"""

import treq
from twisted.internet import defer, task
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from railgun import EdgeConfig, EdgeService, OriginConfig, OriginService
from railgun.certs import generateDeployment
from railgun.config import parseLinkMap, parseOriginMap
from railgun.tls import credentialsFromDeployment


async def main(reactor):
    # Your origin server (any HTTP server will do).
    root = Resource()
    root.putChild(b"", Data(b"<h1>hello from the origin</h1>\n", "text/html"))
    originPort = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
    origin_url = f"http://127.0.0.1:{originPort.getHost().port}"

    # Certificates: in production, `railgun certs DIR` and certsDir=DIR.
    deployment = generateDeployment("localhost")
    token = b"a long random secret shared by both roles"

    origin = OriginService(
        OriginConfig(
            origins=parseOriginMap([f"www.example.com={origin_url}"]),
            token=token,
            linkListen="tcp:0:interface=127.0.0.1",
        ),
        reactor,
        credentials=credentialsFromDeployment(deployment, "origin"),
    )
    origin.startService()
    linkPort = (await origin.whenListening()).getHost().port

    edge = EdgeService(
        EdgeConfig(
            links=parseLinkMap([f"www.example.com=127.0.0.1:{linkPort}"]),
            token=token,
            httpListen="tcp:0:interface=127.0.0.1",
            tlsName="localhost",
        ),
        reactor,
        credentials=credentialsFromDeployment(deployment, "edge"),
    )
    edge.startService()
    httpPort = (await edge.whenListening()).getHost().port
    await edge.whenLinked()

    response = await treq.get(
        f"http://127.0.0.1:{httpPort}/",
        headers={"Host": "www.example.com"},
        reactor=reactor,
        persistent=False,
    )
    body = await treq.content(response)
    print(response.code, response.headers.getRawHeaders(b"railgun")[0].decode())
    print(body.decode(), end="")

    await edge.stopService()
    await origin.stopService()
    await originPort.stopListening()
    return body


if __name__ == "__main__":
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor)))
