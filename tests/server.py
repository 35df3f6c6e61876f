"""Start the real `visit-tracker serve` as a child process, the way users run it."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import httpx2
import psutil

START_TIMEOUT = 30.0

AS_BROWSER = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
}
"""Headers that make a hit a person's: an HTTP library's own User-Agent is a known bot's, whose
hits on named counters count apart (see `visitors.is_bot`)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str

    def signal(self, signum: signal.Signals) -> None:
        """Send a signal to the server's parent process only (as a supervisor would)."""
        self.process.send_signal(signum)

    def kill_all(self) -> None:
        """SIGKILL the parent and every worker at once: a crash, no chance to clean up."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def wait(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout=timeout)

    def workers(self) -> list[psutil.Process]:
        """The worker processes that serve requests (not multiprocessing's resource tracker)."""
        children = psutil.Process(self.process.pid).children()
        return [child for child in children if "resource_tracker" not in " ".join(child.cmdline())]


def command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "visit_tracker", *arguments]


@contextmanager
def running_server(
    *arguments: str, env: Mapping[str, str] | None = None, stderr: IO[bytes] | None = None
) -> Iterator[Server]:
    """Serve on a free loopback port until ready; kill whatever is left on exit.

    The server's log goes to `stderr` when given, else to the test's own stderr. Its temporary
    files (its metrics directory) go to a directory of its own, removed afterwards even when the
    server was killed and could not remove them itself.
    """
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="visit-tracker-test-") as server_tmp:
        env = {
            **os.environ,
            "VISIT_TRACKER_LOG_LEVEL": "warning",
            "TMPDIR": server_tmp,
            **(env or {}),
        }
        arguments = ("--host", "127.0.0.1", "--port", str(port), *arguments)
        with serving(command("serve", *arguments), env=env, port=port, stderr=stderr) as server:
            yield server


@contextmanager
def serving(
    arguments: list[str], *, env: Mapping[str, str], port: int, stderr: IO[bytes] | None = None
) -> Iterator[Server]:
    """Run a server command until /readyz answers on the port; kill whatever is left after."""
    process = subprocess.Popen(
        arguments,
        env=env,
        stderr=stderr,
        start_new_session=True,  # its own process group, so kill_all reaches the workers
    )
    server = Server(process, f"http://127.0.0.1:{port}")
    try:
        wait_until_ready(server)
        yield server
    finally:
        if process.poll() is None:
            server.kill_all()


def wait_until_ready(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode} before ready")
        try:
            if httpx2.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"server at {server.url} not ready after {START_TIMEOUT} s")
