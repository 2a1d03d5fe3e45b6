"""
Start, stop, pause and restart a real memcached for integration tests.

When C{RAILGUN_TEST_MEMCACHED=host:port} is set, that server is used instead
and cannot be stopped or paused (tests needing that skip).  When neither is
available, tests skip with a hint to install memcached.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

from twisted.trial.unittest import SkipTest

ENV_VAR = "RAILGUN_TEST_MEMCACHED"


def _freePort(host: str) -> int:
    # memcached cannot listen on port 0, so ask the kernel for a free port
    # and hope nobody takes it before memcached binds it (start() retries).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class MemcachedServer:
    """
    One memcached process on the loopback interface, or the external server
    named by C{RAILGUN_TEST_MEMCACHED}.

    @ivar host: address it listens on.
    @ivar port: port it listens on (kept across restarts).
    @ivar external: C{True} when it is the external server.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        memoryMegabytes: int = 64,
        maxItemSize: str = "1m",
    ) -> None:
        """
        @param host: loopback address to listen on.
        @param memoryMegabytes: memcached's C{-m}.
        @param maxItemSize: memcached's C{-I} (item size limit).
        """
        self.host = host
        self.port = 0
        self.external = False
        self._memory = memoryMegabytes
        self._maxItemSize = maxItemSize
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def address(self) -> str:
        """
        @return: C{"host:port"}, as the store takes it.
        """
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 5.0) -> None:
        """
        Start memcached (on the same port as before after a L{stop}) and
        wait until it accepts connections.

        @raise SkipTest: when there is no memcached binary and no external
            server.
        @raise RuntimeError: when memcached will not start.
        """
        external = os.environ.get(ENV_VAR)
        if external:
            host, _, port = external.rpartition(":")
            self.host, self.port, self.external = host.strip("[]"), int(port), True
            return
        binary = shutil.which("memcached")
        if binary is None:
            raise SkipTest("memcached binary not found: apt-get install memcached")
        fixedPort = self.port != 0
        attempts = 1 if fixedPort else 5
        for _ in range(attempts):
            if not fixedPort:
                self.port = _freePort(self.host)
            if self._launch(binary, timeout):
                return
        raise RuntimeError(f"memcached would not start on {self.address}")

    def _launch(self, binary: str, timeout: float) -> bool:
        command = [
            binary,
            "-l", self.host,
            "-p", str(self.port),
            "-U", "0",
            "-m", str(self._memory),
            "-I", self._maxItemSize,
            "-t", "1",
            "-c", "128",
        ]  # fmt: skip
        if os.geteuid() == 0:
            command += ["-u", "root"]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                return False
            if _accepts(self.host, self.port):
                return True
            time.sleep(0.02)
        self.stop()
        return False

    def requireLocal(self) -> None:
        """
        @raise SkipTest: when the server is external, so cannot be stopped.
        """
        if self.external:
            raise SkipTest(f"needs a memcached started by the test, not {ENV_VAR}")

    def stop(self) -> None:
        """
        Kill memcached (even when paused); its port is kept for L{start}.
        """
        process, self._process = self._process, None
        if process is None:
            return
        # SIGKILL: a crash is what the outage tests want, and memcached's
        # orderly SIGTERM shutdown takes about a second.  It also works on a
        # paused process.
        process.kill()
        process.wait()
        self._paused = False

    def pause(self) -> None:
        """
        Freeze memcached (SIGSTOP): it still accepts connections through the
        kernel but answers nothing, like a hung server.
        """
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)
            self._paused = True
            self._waitStopped(self._process.pid)

    @staticmethod
    def _waitStopped(pid: int, timeout: float = 2.0) -> None:
        # SIGSTOP is delivered asynchronously: wait until every thread shows
        # as stopped, or memcached may still answer a request or two.
        tasks = f"/proc/{pid}/task"
        if not os.path.isdir(tasks):
            time.sleep(0.1)
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = []
            for tid in os.listdir(tasks):
                try:
                    with open(f"{tasks}/{tid}/stat") as f:
                        states.append(f.read().rpartition(")")[2].split()[0])
                except OSError:
                    continue
            if states and all(state in ("T", "t") for state in states):
                return
            time.sleep(0.005)

    def resume(self) -> None:
        """
        Let a paused memcached run again.
        """
        if self._process is not None and self._paused:
            self._process.send_signal(signal.SIGCONT)
            self._paused = False
