"""deploy/nginx.conf for real: nginx in front of two visit-tracker instances sharing one store.

The shipped file runs as it is, with only its ports and paths moved into the test's own
directory; `store_url` is parametrised over the shared stores, so a new one is one more value.
"""

import asyncio
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx2
import pytest

from tests.server import free_port, running_server
from tests.test_server import send_visits
from tests.tools import require_program

ROOT = Path(__file__).parent.parent
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
VISITS = 5000
START_TIMEOUT = 15.0
SHARED_STORES = ["redis", "redis-cluster", "postgresql"]


def substitute(
    text: str, pattern: str, replacement: str | Callable[[re.Match[str]], str], *, count: int = 1
) -> str:
    """Replace what must be in the shipped file; fail loudly if the file no longer has it."""
    replaced, found = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert found == count, f"deploy/nginx.conf: expected {count} match(es) of {pattern!r}"
    return replaced


def render(config: str, *, directory: Path, listen: int, instances: list[int]) -> str:
    """The shipped config with its ports and paths moved: nothing else changes."""
    config = substitute(config, r"^pid .*;$", f"pid {directory}/nginx.pid;")
    config = substitute(config, r"^error_log \S+", f"error_log {directory}/error.log")
    config = substitute(config, r"(\w+_temp_path) /var/lib/nginx/", rf"\1 {directory}/", count=5)
    config = substitute(config, r"listen 127\.0\.0\.1:8080;", f"listen 127.0.0.1:{listen};")
    ports = iter(instances)
    return substitute(
        config,
        r"server 127\.0\.0\.1:\d+ ",
        lambda _: f"server 127.0.0.1:{next(ports)} ",
        count=len(instances),
    )


@contextmanager
def running_nginx(config: str, directory: Path, port: int) -> Iterator[str]:
    """nginx in the foreground on that config until /readyz answers through it; stopped after."""
    nginx = require_program("nginx", "nginx")
    (directory / "nginx.conf").write_text(config)
    command = [nginx, "-p", str(directory), "-e", str(directory / "startup.log")]
    command += ["-c", str(directory / "nginx.conf"), "-g", "daemon off;"]
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, (directory / "startup.log").read_text()
            try:
                if httpx2.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert time.monotonic() < deadline, f"nginx not serving after {START_TIMEOUT} s"
            time.sleep(0.05)
        yield url
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.parametrize("store_url", SHARED_STORES, indirect=True)
def test_two_instances_behind_nginx_count_every_visit_once(store_url: str, tmp_path: Path) -> None:
    """5,000 concurrent POST /visit through nginx to 2 instances x 2 workers get exactly
    1..5000, and /stats on every instance says 5000."""
    port = free_port()
    with ExitStack() as stack:
        instances = [
            stack.enter_context(running_server("--workers", "2", "--store", store_url))
            for _ in range(2)
        ]
        config = render(
            NGINX_CONF.read_text(),
            directory=tmp_path,
            listen=port,
            instances=[int(server.url.rsplit(":", 1)[1]) for server in instances],
        )
        url = stack.enter_context(running_nginx(config, tmp_path, port))
        values = asyncio.run(send_visits(url, VISITS))
        assert sorted(values) == list(range(1, VISITS + 1))
        for server in instances:
            assert httpx2.get(f"{server.url}/stats").json()["total_visits"] == VISITS
        assert "[error]" not in (tmp_path / "error.log").read_text()
