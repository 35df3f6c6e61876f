"""deploy/Caddyfile for real: caddy validates it, and serves HTTPS with it in front of the app.

Offline there is no public certificate authority, so the test serves the shipped file with
Caddy's own internal one (`local_certs`) for 127.0.0.1, on free ports, without its admin
endpoint, and without adding its root to the system's trust store; everything else is the
shipped file. Clients verify the certificate against that root.
"""

import asyncio
import os
import re
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2

from tests.server import free_port, running_server
from tests.test_event_streams import POLL, hit, stream
from tests.test_server import send_visits
from tests.tools import require_program

ROOT = Path(__file__).parent.parent
CADDYFILE = ROOT / "deploy" / "Caddyfile"
VISITS = 500
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Caddy:
    https: str
    http: str
    tls: ssl.SSLContext


def caddy_environment(directory: Path) -> dict[str, str]:
    """Caddy keeps its certificates and autosaved config under `directory`, not the home."""
    return {**os.environ, "XDG_DATA_HOME": str(directory), "XDG_CONFIG_HOME": str(directory)}


def substitute(text: str, pattern: str, replacement: str) -> str:
    """Replace what must be in the shipped file once; fail loudly if it no longer is."""
    replaced, found = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert found == 1, f"deploy/Caddyfile: expected one match of {pattern!r}"
    return replaced


def render(caddyfile: str, *, http: int, https: int, upstreams: list[str]) -> str:
    """The shipped Caddyfile on loopback with Caddy's internal certificate authority."""
    options = ["admin off", "local_certs", "skip_install_trust"]
    options += [f"http_port {http}", f"https_port {https}"]
    caddyfile = substitute(caddyfile, r"^\{\n", "{\n" + "".join(f"\t{o}\n" for o in options))
    caddyfile = substitute(caddyfile, r"^counter\.example\.com \{$", "127.0.0.1 {")
    return substitute(
        caddyfile,
        r"^\treverse_proxy 127\.0\.0\.1:8081 \{",
        f"\treverse_proxy {' '.join(upstreams)} {{",
    )


@contextmanager
def running_caddy(directory: Path, *, upstreams: list[str]) -> Iterator[Caddy]:
    """The shipped Caddyfile served by caddy until /readyz answers through it over verified
    HTTPS; stopped gracefully after."""
    caddy = require_program("caddy", "caddy")
    http, https = free_port(), free_port()
    config = directory / "Caddyfile"
    config.write_text(render(CADDYFILE.read_text(), http=http, https=https, upstreams=upstreams))
    log = (directory / "caddy.log").open("wb")
    process = subprocess.Popen(
        [caddy, "run", "--adapter", "caddyfile", "--config", str(config)],
        env=caddy_environment(directory),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    root = directory / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    url = f"https://127.0.0.1:{https}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, (directory / "caddy.log").read_text()
            try:
                if root.exists():
                    tls = ssl.create_default_context(cafile=root)
                    if httpx2.get(f"{url}/readyz", verify=tls, timeout=1).is_success:
                        break
            except (httpx2.TransportError, ssl.SSLError):
                pass
            assert time.monotonic() < deadline, f"caddy not serving after {START_TIMEOUT} s"
            time.sleep(0.1)
        yield Caddy(https=url, http=f"http://127.0.0.1:{http}", tls=tls)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def test_the_caddyfile_is_valid_and_formatted(tmp_path: Path) -> None:
    """`caddy validate` accepts deploy/Caddyfile as shipped, without a formatting warning."""
    caddy = require_program("caddy", "caddy")
    result = subprocess.run(
        [caddy, "validate", "--adapter", "caddyfile", "--config", str(CADDYFILE)],
        env=caddy_environment(tmp_path),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout
    assert "not formatted" not in result.stderr


def test_https_through_caddy_counts_every_visit_once_past_a_dead_instance(
    tmp_path: Path,
) -> None:
    """500 concurrent POST /visit over verified HTTPS through Caddy, whose /readyz health check
    finds a second, dead upstream, get exactly 1..500; the app sees https; /metrics is not
    public; plain HTTP is redirected."""
    dead = f"127.0.0.1:{free_port()}"
    store = f"sqlite:///{tmp_path}/visits.db"
    with (
        running_server("--workers", "2", "--store", store, "--trusted-proxies", "127.0.0.1") as app,
        running_caddy(tmp_path, upstreams=[app.url.removeprefix("http://"), dead]) as caddy,
    ):
        values = asyncio.run(send_visits(caddy.https, VISITS, verify=caddy.tls))
        assert sorted(values) == list(range(1, VISITS + 1))
        stats = httpx2.get(f"{caddy.https}/stats", verify=caddy.tls)
        assert stats.json()["total_visits"] == VISITS
        assert stats.headers["strict-transport-security"] == "max-age=63072000"
        # Caddy's X-Forwarded-Proto reaches the app, which trusts Caddy's address.
        redirect = httpx2.get(f"{caddy.https}/stats/", verify=caddy.tls)
        assert (redirect.status_code, redirect.headers["location"]) == (
            307,
            f"{caddy.https}/stats",
        )
        hidden = httpx2.get(f"{caddy.https}/metrics", verify=caddy.tls)
        assert (hidden.status_code, hidden.json()) == (404, {"detail": "Not Found"})
        assert hidden.headers["content-type"] == "application/json"
        assert "visit_tracker_visits_total" in httpx2.get(f"{app.url}/metrics").text
        plain = httpx2.post(f"{caddy.http}/visit")
        assert (plain.status_code, plain.headers["location"]) == (308, "https://127.0.0.1/visit")
    assert f"http://{dead}/readyz" in (tmp_path / "caddy.log").read_text()


def test_an_event_stream_passes_through_caddy_as_it_is_written(tmp_path: Path) -> None:
    """Through Caddy, a stream's first event comes at once and a hit shows as the next one:
    Caddy passes each event of a text/event-stream on as it comes."""
    store = f"sqlite:///{tmp_path}/visits.db"
    with (
        running_server("--store", store, "--trusted-proxies", "127.0.0.1", *POLL) as app,
        running_caddy(tmp_path, upstreams=[app.url.removeprefix("http://")]) as caddy,
    ):
        hit(caddy.https, "site/home", verify=caddy.tls)
        url = f"{caddy.https}/v1/counters/site/home/events"
        with stream(url, verify=caddy.tls) as events:
            assert events.value() == 1
            hit(caddy.https, "site/home", verify=caddy.tls)
            assert events.value() == 2
