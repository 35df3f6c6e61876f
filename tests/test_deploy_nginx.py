"""deploy/nginx.conf for real: nginx with TLS in front of visit-tracker instances.

The shipped file runs as it is, with only its ports, paths and certificate moved into the test's
own directory and its IPv6 listeners left out (the tests serve on 127.0.0.1 alone). Clients
check nginx's certificate against the test's own self-signed one: never `verify=False`.
`store_kind` is parametrised over the shared stores, so a new one is one more value.
"""

import asyncio
import re
import signal
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from tests.server import free_port, running_server
from tests.test_event_streams import POLL, hit, stream
from tests.test_server import send_visits
from tests.tls import Certificate, self_signed_certificate
from tests.tools import require_program

ROOT = Path(__file__).parent.parent
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
VISITS = 5000
TLS_VISITS = 500
START_TIMEOUT = 15.0
SHARED_STORES = ["redis", "redis-cluster", "postgresql"]
NGINX = "127.0.0.1"
"""nginx's address as the instances see it: what they list in --trusted-proxies."""


@dataclass(frozen=True)
class Nginx:
    https: str
    http: str
    tls: ssl.SSLContext


def substitute(
    text: str, pattern: str, replacement: str | Callable[[re.Match[str]], str], *, count: int = 1
) -> str:
    """Replace what must be in the shipped file; fail loudly if the file no longer has it."""
    replaced, found = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert found == count, f"deploy/nginx.conf: expected {count} match(es) of {pattern!r}"
    return replaced


def render(
    config: str,
    *,
    directory: Path,
    http: int,
    https: int,
    certificate: Certificate,
    instances: list[int],
) -> str:
    """The shipped config with its ports, paths and certificate moved: nothing else changes."""
    config = substitute(config, r"^pid .*;$", f"pid {directory}/nginx.pid;")
    config = substitute(config, r"^error_log \S+", f"error_log {directory}/error.log")
    config = substitute(config, r"(\w+_temp_path) /var/lib/nginx/", rf"\1 {directory}/", count=5)
    config = substitute(config, r"^\s*listen \[::\]:\d+.*\n", "", count=2)
    config = substitute(config, r"listen 80;", f"listen 127.0.0.1:{http};")
    config = substitute(config, r"listen 443 ssl;", f"listen 127.0.0.1:{https} ssl;")
    config = substitute(
        config, r"ssl_certificate \S+;", f"ssl_certificate {certificate.certificate};"
    )
    config = substitute(
        config, r"ssl_certificate_key \S+;", f"ssl_certificate_key {certificate.key};"
    )
    ports = iter(instances)
    return substitute(
        config,
        r"server 127\.0\.0\.1:\d+ ",
        lambda _: f"server 127.0.0.1:{next(ports)} ",
        count=len(instances),
    )


@contextmanager
def running_nginx(directory: Path, *, instances: list[str]) -> Iterator[Nginx]:
    """The shipped nginx in the foreground, in front of these instances' URLs, until /readyz
    answers through it over HTTPS; stopped after."""
    nginx = require_program("nginx", "nginx")
    certificate = self_signed_certificate(directory)
    http, https = free_port(), free_port()
    config = render(
        NGINX_CONF.read_text(),
        directory=directory,
        http=http,
        https=https,
        certificate=certificate,
        instances=[int(url.rsplit(":", 1)[1]) for url in instances],
    )
    (directory / "nginx.conf").write_text(config)
    command = [nginx, "-p", str(directory), "-e", str(directory / "startup.log")]
    command += ["-c", str(directory / "nginx.conf"), "-g", "daemon off;"]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
    served = Nginx(
        https=f"https://127.0.0.1:{https}",
        http=f"http://127.0.0.1:{http}",
        tls=certificate.client_context(),
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, (directory / "startup.log").read_text()
            try:
                if httpx2.get(f"{served.https}/readyz", verify=served.tls, timeout=1).is_success:
                    break
            except httpx2.TransportError:
                pass
            assert time.monotonic() < deadline, f"nginx not serving after {START_TIMEOUT} s"
            time.sleep(0.05)
        yield served
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    assert "[error]" not in (directory / "error.log").read_text()


@pytest.mark.parametrize("store_kind", SHARED_STORES, indirect=True)
def test_two_instances_behind_nginx_count_every_visit_once(store_url: str, tmp_path: Path) -> None:
    """5,000 concurrent POST /visit over HTTPS through nginx to 2 instances x 2 workers get
    exactly 1..5000, and /stats on every instance says 5000."""
    with ExitStack() as stack:
        instances = [
            stack.enter_context(
                running_server("--workers", "2", "--store", store_url, "--trusted-proxies", NGINX)
            )
            for _ in range(2)
        ]
        nginx = stack.enter_context(
            running_nginx(tmp_path, instances=[server.url for server in instances])
        )
        values = asyncio.run(send_visits(nginx.https, VISITS, verify=nginx.tls))
        assert sorted(values) == list(range(1, VISITS + 1))
        for server in instances:
            assert httpx2.get(f"{server.url}/stats").json()["total_visits"] == VISITS


def test_https_through_nginx_on_sqlite_counts_every_visit_once(tmp_path: Path) -> None:
    """500 concurrent POST /visit over verified HTTPS get exactly 1..500, /stats through nginx
    says 500, answers carry HSTS, /metrics is not public, and plain HTTP is redirected to HTTPS
    with the method kept."""
    store = f"sqlite:///{tmp_path}/visits.db"
    with (
        running_server("--workers", "2", "--store", store, "--trusted-proxies", NGINX) as app,
        # The shipped upstream lists two instances; on SQLite one serves, listed twice.
        running_nginx(tmp_path, instances=[app.url, app.url]) as nginx,
    ):
        values = asyncio.run(send_visits(nginx.https, TLS_VISITS, verify=nginx.tls))
        assert sorted(values) == list(range(1, TLS_VISITS + 1))
        stats = httpx2.get(f"{nginx.https}/stats", verify=nginx.tls)
        assert stats.json()["total_visits"] == TLS_VISITS
        assert stats.headers["strict-transport-security"] == "max-age=63072000"
        hidden = httpx2.get(f"{nginx.https}/metrics", verify=nginx.tls)
        assert (hidden.status_code, hidden.json()) == (404, {"detail": "Not Found"})
        assert hidden.headers["content-type"] == "application/json"
        assert "visit_tracker_visits_total" in httpx2.get(f"{app.url}/metrics").text
        plain = httpx2.post(f"{nginx.http}/visit")
        # nginx forwards its `$host`, the request's host without a port.
        assert (plain.status_code, plain.headers["location"]) == (308, "https://127.0.0.1/visit")
        assert httpx2.get(f"{app.url}/stats").json()["total_visits"] == TLS_VISITS


@pytest.mark.parametrize(("trusted_proxies", "scheme"), [(NGINX, "https"), ("192.0.2.10", "http")])
def test_the_app_sees_https_through_nginx_only_when_it_trusts_nginx(
    trusted_proxies: str, scheme: str, tmp_path: Path
) -> None:
    """nginx's X-Forwarded-Proto reaches the app, which writes https in its absolute URLs
    (the redirect of /stats/ to /stats) only when nginx is one of its trusted proxies."""
    with (
        running_server("--store", "memory://", "--trusted-proxies", trusted_proxies) as app,
        running_nginx(tmp_path, instances=[app.url, app.url]) as nginx,
    ):
        response = httpx2.get(f"{nginx.https}/stats/", verify=nginx.tls)
    assert response.status_code == 307
    assert response.headers["location"] == f"{scheme}://127.0.0.1/stats"


def test_an_event_stream_passes_through_nginx_as_it_is_written(tmp_path: Path) -> None:
    """Through nginx, a stream's first event comes at once and a hit shows as the next one:
    nginx, told by the stream's X-Accel-Buffering, passes each event on unbuffered."""
    store = f"sqlite:///{tmp_path}/visits.db"
    with (
        running_server("--store", store, "--trusted-proxies", NGINX, *POLL) as app,
        running_nginx(tmp_path, instances=[app.url, app.url]) as nginx,
    ):
        hit(nginx.https, "site/home", verify=nginx.tls)
        url = f"{nginx.https}/v1/counters/site/home/events"
        with stream(url, verify=nginx.tls) as events:
            assert events.value() == 1
            hit(nginx.https, "site/home", verify=nginx.tls)
            assert events.value() == 2
