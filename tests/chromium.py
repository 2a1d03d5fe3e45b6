"""
A headless Chromium driven over the DevTools protocol, for tests that need a
real browser: a blocking websocket client of a few dozen lines (no websocket
package is a dependency), run in a thread by the tests.

Every operation has a deadline, and the browser is killed at the end.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from typing import Any

#: where Debian's package puts it; .ci/run installs it.
CHROMIUM = "/usr/bin/chromium"


def available() -> bool:
    """
    Whether a Chromium binary is installed here.
    """
    return os.access(CHROMIUM, os.X_OK)


class _WebSocket:
    """
    The client side of RFC 6455, text messages only, enough for DevTools.
    """

    def __init__(self, url: str, timeout: float) -> None:
        if not url.startswith("ws://"):
            raise ValueError(url)
        hostport, path = url[5:].split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self._socket = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        self._socket.sendall(
            (
                f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode("ascii")
        )
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += self._recv()
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise OSError(f"websocket refused: {head[:100]!r}")

    def _recv(self) -> bytes:
        chunk = self._socket.recv(65536)
        if not chunk:
            raise OSError("DevTools closed the connection")
        return chunk

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._buffer += self._recv()
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def send(self, text: str) -> None:
        data = text.encode("utf-8")
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            head = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x81, 0xFE, n)
        else:
            head = struct.pack("!BBQ", 0x81, 0xFF, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self._socket.sendall(head + mask + masked)

    def receive(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            n = second & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            payload = self._read(n)
            opcode = first & 0x0F
            if opcode == 0x8:
                raise OSError("DevTools closed the websocket")
            if opcode in (0x0, 0x1, 0x2):
                message += payload
                if first & 0x80:
                    return message.decode("utf-8")

    def close(self) -> None:
        self._socket.close()


class Browser:
    """
    One headless Chromium with a fresh profile and one page.

    @ivar events: DevTools events received and not yet consumed.
    """

    def __init__(self, timeout: float = 30.0, flags: tuple[str, ...] = ()) -> None:
        self._timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="railgun-chromium-")
        self._process = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={self._profile}",
                *flags,
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._ws: _WebSocket | None = None
        self._id = 0
        self.events: list[dict[str, Any]] = []
        try:
            self._connect()
        except BaseException:
            self.close()
            raise

    def _connect(self) -> None:
        deadline = time.monotonic() + self._timeout
        portFile = os.path.join(self._profile, "DevToolsActivePort")
        port = None
        while port is None:
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise TimeoutError("Chromium did not open its DevTools port")
            try:
                with open(portFile) as f:
                    port = int(f.read().split()[0])
            except (OSError, IndexError, ValueError):
                time.sleep(0.05)
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/json", timeout=self._timeout
        ) as response:
            targets = json.load(response)
        page = next(t for t in targets if t["type"] == "page")
        self._ws = _WebSocket(page["webSocketDebuggerUrl"], self._timeout)
        self.call("Page.enable")
        self.call("Network.enable")

    def call(self, method: str, **params: Any) -> Any:
        """
        Send a DevTools command and wait for its result.
        """
        assert self._ws is not None
        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            message = json.loads(self._ws.receive())
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result")
            self.events.append(message)
        raise TimeoutError(method)

    def waitFor(self, method: str) -> dict[str, Any]:
        """
        Wait for (and consume) the next event named C{method}.
        """
        assert self._ws is not None
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            self.events.append(json.loads(self._ws.receive()))
        raise TimeoutError(method)

    def load(self, url: str) -> dict[str, Any]:
        """
        Navigate to C{url} and wait until it has loaded.

        @return: the document's C{status}, response C{headers} (lower-case
            names), C{encodedBytes} (what crossed the network for it,
            headers included) and the C{text} Chromium rendered.
        """
        self.events = []
        self.call("Page.navigate", url=url)
        self.waitFor("Page.loadEventFired")
        document = None
        for event in self.events:
            if (
                event.get("method") == "Network.responseReceived"
                and event["params"]["type"] == "Document"
            ):
                document = event["params"]
        if document is None:
            raise RuntimeError(f"no document response for {url}")
        requestId = document["requestId"]
        finished = None
        while finished is None:
            event = self.waitFor("Network.loadingFinished")
            if event["params"]["requestId"] == requestId:
                finished = event["params"]
        text = self.call("Runtime.evaluate", expression="document.body.innerText")[
            "result"
        ]["value"]
        response = document["response"]
        return {
            "status": response["status"],
            "headers": {k.lower(): v for k, v in response["headers"].items()},
            "encodedBytes": finished["encodedDataLength"],
            "text": text,
        }

    def close(self) -> None:
        """
        Kill the browser and remove its profile.
        """
        if self._ws is not None:
            self._ws.close()
        self._process.kill()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        shutil.rmtree(self._profile, ignore_errors=True)
