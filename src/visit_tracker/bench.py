"""`visit-tracker bench`: a load generator to point at any deployment, and the demo's own test.

The default mode keeps C keep-alive HTTP/1.1 connections busy from one event loop with a
minimal client of its own. General-purpose async clients cost too much CPU per request to load a
fast server: about 70-120 µs for aiohttp and over 1.5 ms for httpx, while this client needs about
16 µs, so one core drives some 60,000 req/s. `--classic` replays the original demo's stress test
(requests + 100 threads), which measures mostly itself.

For `POST /visit` both modes read `total_visits` from `GET /stats` before and after the load and
check that it moved by exactly the number of successful responses.
"""

import asyncio
import contextlib
import json
import math
import ssl
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import urlsplit

import requests
import typer
import uvloop
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from visit_tracker import __version__

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_CONCURRENCY = 100
DEFAULT_REQUESTS = 10_000
CLASSIC_REQUESTS = 1_000
"""The demo sent 1,000 visits over 100 threads."""

PROGRESS_INTERVAL = 0.1
"""Seconds between progress bar updates: the bar is fed by a ticker, not by every request."""

# -- What to send where -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where the deployment answers: scheme, host, port and an optional path prefix."""

    scheme: str
    host: str
    port: int
    netloc: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> "Target":
        """Read a base URL such as `http://127.0.0.1:8080` or `https://example.org/counter`."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
        if parts.query or parts.fragment:
            raise ValueError(f"{url!r}: give the base URL only, without ?query or #fragment")
        default_port = 443 if parts.scheme == "https" else 80
        return cls(
            scheme=parts.scheme,
            host=parts.hostname,
            port=parts.port or default_port,
            netloc=parts.netloc.rpartition("@")[2],
            prefix=parts.path.rstrip("/"),
        )

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.netloc}{self.prefix}{path}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One request line: a method and a path below the target's prefix."""

    method: str
    path: str

    @classmethod
    def parse(cls, text: str) -> "Endpoint":
        """Read `POST /visit` or `GET /stats` (the method may be left out: GET)."""
        words = text.split()
        if len(words) == 1:
            words = ["GET", *words]
        if len(words) != 2 or not words[0].isalpha() or not words[1].startswith("/"):
            raise ValueError(f"{text!r} is not a method and a path, such as 'GET /stats'")
        return cls(words[0].upper(), words[1])

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


VISIT = Endpoint("POST", "/visit")
STATS = Endpoint("GET", "/stats")


def request_bytes(target: Target, endpoint: Endpoint) -> bytes:
    """The whole HTTP/1.1 request, built once and sent as is on every keep-alive round."""
    lines = [
        f"{endpoint.method} {target.prefix}{endpoint.path} HTTP/1.1",
        f"Host: {target.netloc}",
        f"User-Agent: visit-tracker-bench/{__version__}",
        "Accept: */*",
    ]
    if endpoint.method in ("POST", "PUT", "PATCH"):
        lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


# -- A minimal HTTP/1.1 keep-alive client ---------------------------------------------------


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.x as this client understands it."""


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """What the client needs from a status line and headers to find the end of the body."""

    status: int
    content_length: int | None
    chunked: bool
    close: bool


def parse_head(head: bytes) -> ResponseHead:
    """Read the status line and the headers that frame the body (up to the blank line)."""
    status_line, *header_lines = head.rstrip(b"\r\n").split(b"\r\n")
    version, _, rest = status_line.partition(b" ")
    if not version.startswith(b"HTTP/1.") or not rest[:3].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    content_length, chunked, close = None, False, version == b"HTTP/1.0"
    for line in header_lines:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            if not value.isdigit():
                raise ProtocolError(f"bad Content-Length: {value[:40]!r}")
            content_length = int(value)
        elif name == b"transfer-encoding":
            chunked = value.endswith(b"chunked")
        elif name == b"connection":
            close = b"close" in value or (close and b"keep-alive" not in value)
    return ResponseHead(int(rest[:3]), content_length, chunked, close)


class Connection:
    """One keep-alive connection; (re)connects on demand, one request at a time."""

    def __init__(self, target: Target, tls: ssl.SSLContext | None) -> None:
        self._target = target
        self._tls = tls
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(
                self._target.host, self._target.port, ssl=self._tls
            )
        return self._streams

    async def send(self, request: bytes, *, head_only: bool = False) -> tuple[int, bytes]:
        """Send one request and read its whole answer; return the status and the body."""
        reader, writer = await self.connect()
        writer.write(request)
        head = parse_head(await reader.readuntil(b"\r\n\r\n"))
        if head_only or head.status < 200 or head.status in (204, 304):
            body = b""
        elif head.chunked:
            body = await self._read_chunks(reader)
        elif head.content_length is not None:
            body = await reader.readexactly(head.content_length)
        else:  # the body ends where the connection does
            body = await reader.read()
            self.close()
        if head.close:
            self.close()
        return head.status, body

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None

    @staticmethod
    async def _read_chunks(reader: asyncio.StreamReader) -> bytes:
        chunks: list[bytes] = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";")[0], 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size line: {size_line[:40]!r}") from None
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                return b"".join(chunks)
            chunks.append((await reader.readexactly(size + 2))[:-2])


TRANSPORT_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ProtocolError)
"""What one request may fail with; TimeoutError is an OSError."""


def error_name(error: BaseException) -> str:
    """A short, stable name to tally failures by: `timeout`, `ConnectionResetError`, …"""
    return "timeout" if isinstance(error, TimeoutError) else type(error).__name__


def tls_for(target: Target) -> ssl.SSLContext | None:
    return ssl.create_default_context() if target.scheme == "https" else None


# -- Results ----------------------------------------------------------------------------------


@dataclass
class Tally:
    """What a load run observed; requests whose answer was not 2xx count as failed."""

    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    """Seconds from send to the end of the answer, for every request that got an answer."""
    elapsed: float = 0.0

    def record(self, status: int, latency: float) -> None:
        self.latencies.append(latency)
        if 200 <= status < 300:
            self.ok += 1
        else:
            self.errors[f"HTTP {status}"] += 1

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def total(self) -> int:
        return self.ok + self.failed


def percentile(ordered: Sequence[float], percent: float) -> float:
    """The nearest-rank percentile of ascending values: the smallest value that at least
    `percent` % of the values are less than or equal to."""
    if not ordered:
        raise ValueError("no values")
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], not {percent}")
    rank = math.ceil(percent / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


@dataclass(frozen=True, slots=True)
class Latencies:
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> "Latencies | None":
        if not values:
            return None
        ordered = sorted(values)
        p50, p90, p99 = (percentile(ordered, p) for p in (50, 90, 99))
        return cls(p50=p50, p90=p90, p99=p99, max=ordered[-1])


@dataclass(frozen=True, slots=True)
class CountCheck:
    """`total_visits` before and after a run of `POST /visit`, against the successes seen."""

    before: int
    after: int
    successes: int

    @property
    def moved(self) -> int:
        return self.after - self.before

    @property
    def exact(self) -> bool:
        return self.moved == self.successes

    def describe(self) -> str:
        numbers = f"total_visits {self.before:,} -> {self.after:,} ({self.moved:+,})"
        if self.exact:
            return f"exact: {numbers}"
        return f"MISMATCH: {numbers}, but {self.successes:,} visits succeeded"


@dataclass(frozen=True, slots=True)
class Summary:
    """Everything the report shows."""

    title: str
    total: int
    ok: int
    failed: int
    elapsed: float
    errors: dict[str, int]
    latency: Latencies | None = None
    count: CountCheck | None = None
    count_problem: str | None = None
    """Why the count could not be checked, when it should have been."""

    @property
    def rate(self) -> float:
        return self.total / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def passed(self) -> bool:
        count_ok = self.count is None or self.count.exact
        return self.failed == 0 and count_ok and self.count_problem is None


def exit_code(summary: Summary) -> int:
    """0 when every request succeeded and the count (if checked) is exact, else 1."""
    return 0 if summary.passed else 1


def summary_rows(summary: Summary, endpoint: Endpoint) -> list[tuple[str, str]]:
    """The report as (metric, value) rows: the demo's five, then latency, errors and count."""
    rows = [
        ("Total requests", f"{summary.total:,}"),
        ("Successful responses", f"{summary.ok:,}"),
        ("Failed responses", f"{summary.failed:,}"),
        ("Total time", f"{summary.elapsed:.2f} s"),
        ("Average req/s", f"{summary.rate:,.1f}"),
    ]
    if summary.latency is not None:
        for name in ("p50", "p90", "p99", "max"):
            rows.append((f"Latency {name}", f"{getattr(summary.latency, name) * 1000:.2f} ms"))
    if summary.errors:
        rows.append(("Errors", ", ".join(f"{n} x {k}" for k, n in summary.errors.items())))
    if summary.count is not None:
        rows.append(("Server count", summary.count.describe()))
    elif summary.count_problem is not None:
        rows.append(("Server count", f"NOT CHECKED: {summary.count_problem}"))
    else:
        rows.append(("Server count", f"not checked: {endpoint} does not count visits"))
    return rows


def render(summary: Summary, endpoint: Endpoint) -> Table:
    table = Table(title=summary.title, title_justify="left")
    table.add_column("Metric")
    table.add_column("Value", justify="right")
    for metric, value in summary_rows(summary, endpoint):
        style = "bold red" if value.startswith(("MISMATCH", "NOT CHECKED")) else None
        table.add_row(metric, value, style=style)
    return table


# -- Driving the load -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """How much load: a number of requests, or as many as fit in a duration."""

    concurrency: int
    requests: int | None = None
    duration: float | None = None
    timeout: float = 10.0

    @property
    def connections(self) -> int:
        """No more connections than requests."""
        return min(self.concurrency, self.requests or self.concurrency)


Tick = Callable[[int, float], None]
"""Told how many requests are done after how many seconds, to move the progress bar."""


async def read_total(target: Target, plan: Plan) -> int:
    """`total_visits` from `GET /stats`, over a connection of its own."""
    connection = Connection(target, tls_for(target))
    try:
        async with asyncio.timeout(plan.timeout):
            status, body = await connection.send(request_bytes(target, STATS))
    finally:
        connection.close()
    if status != 200:
        raise ProtocolError(f"GET {target.url(STATS.path)} answered HTTP {status}")
    try:
        total = json.loads(body)["total_visits"]
    except (ValueError, KeyError, TypeError):
        raise ProtocolError(f"GET {target.url(STATS.path)} has no total_visits") from None
    if not isinstance(total, int):
        raise ProtocolError(f"GET {target.url(STATS.path)}: total_visits is not a number")
    return total


async def drive(target: Target, endpoint: Endpoint, plan: Plan, on_tick: Tick) -> Tally:
    """Send the plan's load over `plan.connections` connections; call `on_tick(done, seconds)`
    every PROGRESS_INTERVAL."""
    tally = Tally()
    request = request_bytes(target, endpoint)
    head_only = endpoint.method == "HEAD"
    tls = tls_for(target)
    connections = [Connection(target, tls) for _ in range(plan.connections)]
    # Connect before the clock starts; a connection that fails here retries on its first send.
    await asyncio.gather(*(c.connect() for c in connections), return_exceptions=True)

    remaining = plan.requests or 0
    started = time.perf_counter()
    deadline = started + (plan.duration or math.inf)

    def another() -> bool:
        nonlocal remaining
        if plan.requests is None:
            return time.perf_counter() < deadline
        remaining -= 1
        return remaining >= 0

    async def worker(connection: Connection) -> None:
        while another():
            sent = time.perf_counter()
            try:
                async with asyncio.timeout(plan.timeout):
                    status, _ = await connection.send(request, head_only=head_only)
            except TRANSPORT_ERRORS as error:
                tally.errors[error_name(error)] += 1
                connection.close()
                continue
            tally.record(status, time.perf_counter() - sent)

    async def ticker() -> None:
        while True:
            on_tick(tally.total, time.perf_counter() - started)
            await asyncio.sleep(PROGRESS_INTERVAL)

    ticking = asyncio.create_task(ticker())
    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        tally.elapsed = time.perf_counter() - started
        ticking.cancel()
        for connection in connections:
            connection.close()
    with contextlib.suppress(asyncio.CancelledError):
        await ticking
    on_tick(tally.total, tally.elapsed)
    return tally


async def run_load(target: Target, endpoint: Endpoint, plan: Plan, on_tick: Tick) -> Summary:
    """Drive the load; around a run of `POST /visit`, check the server's count."""
    checks = endpoint == VISIT
    before = await read_total(target, plan) if checks else None
    tally = await drive(target, endpoint, plan, on_tick)
    count, problem = await _count_after(target, plan, before, tally.ok)
    amount = f"{plan.requests:,} requests" if plan.requests else f"{plan.duration:g} s"
    return Summary(
        title=f"{endpoint.method} {target.url(endpoint.path)}: {amount}, "
        f"{plan.connections} connections",
        total=tally.total,
        ok=tally.ok,
        failed=tally.failed,
        elapsed=tally.elapsed,
        errors=dict(tally.errors.most_common()),
        latency=Latencies.of(tally.latencies),
        count=count,
        count_problem=problem,
    )


async def _count_after(
    target: Target, plan: Plan, before: int | None, successes: int
) -> tuple[CountCheck | None, str | None]:
    if before is None:
        return None, None
    try:
        after = await read_total(target, plan)
    except TRANSPORT_ERRORS as error:
        return None, f"GET /stats after the run failed: {error_name(error)} {error}"
    return CountCheck(before, after, successes), None


def run_classic(target: Target, plan: Plan, on_tick: Tick) -> Summary:
    """The original demo's stress test: `plan.requests` calls of `requests.post(…/visit)` from a
    ThreadPoolExecutor of `plan.concurrency` threads, a new connection for each request."""
    url = target.url(VISIT.path)
    requests_count = plan.requests or CLASSIC_REQUESTS

    def post(_: int) -> str | None:
        """Send one visit; return None on success, else why it failed."""
        try:
            response = requests.post(url, timeout=plan.timeout)
        except requests.RequestException as error:
            return type(error).__name__
        return None if response.ok else f"HTTP {response.status_code}"

    before = asyncio.run(read_total(target, plan))
    errors: Counter[str] = Counter()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=plan.concurrency) as pool:
        futures = [pool.submit(post, i) for i in range(requests_count)]
        for done, future in enumerate(as_completed(futures), start=1):
            if (problem := future.result()) is not None:
                errors[problem] += 1
            on_tick(done, time.perf_counter() - started)
    elapsed = time.perf_counter() - started
    failed = sum(errors.values())
    count, count_problem = asyncio.run(_count_after(target, plan, before, requests_count - failed))
    return Summary(
        title=f"classic: {requests_count:,} x POST {url} from {plan.concurrency} threads",
        total=requests_count,
        ok=requests_count - failed,
        failed=failed,
        elapsed=elapsed,
        errors=dict(errors.most_common()),
        count=count,
        count_problem=count_problem,
    )


# -- The command ------------------------------------------------------------------------------


def _run(main: Coroutine[None, None, Summary]) -> Summary:
    """Run on uvloop (a dependency of visit-tracker): it halves the client's CPU per request."""
    return uvloop.run(main)


@contextmanager
def progress_bar(console: Console, plan: Plan, description: str) -> Iterator[Tick]:
    """A progress bar over the plan's requests or seconds, drawn only on a terminal (in a pipe
    or a log it would leave its last state behind); yields the function that moves it."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[done]:>9,} requests  {task.fields[rate]:>9,.0f} req/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(
        *columns, console=console, refresh_per_second=8, disable=not console.is_terminal
    ) as progress:
        task = progress.add_task(description, total=plan.requests or plan.duration, done=0, rate=0)

        def tick(done: int, seconds: float) -> None:
            completed = done if plan.duration is None else min(seconds, plan.duration)
            rate = done / seconds if seconds > 0 else 0.0
            progress.update(task, completed=completed, done=done, rate=rate)

        yield tick


def bench(
    *,
    url: Annotated[str, typer.Option(help="Base URL of the deployment.")] = DEFAULT_URL,
    requests_count: Annotated[
        int | None,
        typer.Option(
            "--requests",
            min=1,
            help=f"Requests to send (default {DEFAULT_REQUESTS:,}; "
            f"{CLASSIC_REQUESTS:,} with --classic).",
            show_default=False,
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(min=0.1, help="Send for this many seconds instead of --requests."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Connections (with --classic: threads) in parallel.")
    ] = DEFAULT_CONCURRENCY,
    endpoint: Annotated[
        str, typer.Option(help="Method and path to load, e.g. 'GET /stats'.")
    ] = str(VISIT),
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds one request may take.")] = 10.0,
    classic: Annotated[
        bool,
        typer.Option(help="The original demo's test: requests.post from a thread pool."),
    ] = False,
) -> None:
    """Load a deployment; report throughput, latency and whether the count is exact.

    For POST /visit, total_visits must move by exactly the successes: other traffic shows.

    Exit code 1: a request failed or the count is off; 2: the count could not be read.
    """
    try:
        target = Target.parse(url)
        load = Endpoint.parse(endpoint)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if requests_count is not None and duration is not None:
        raise typer.BadParameter("give --requests or --duration, not both")
    if classic and (duration is not None or load != VISIT):
        raise typer.BadParameter("--classic sends a number of POST /visit, as the demo did")
    if requests_count is None and duration is None:
        requests_count = CLASSIC_REQUESTS if classic else DEFAULT_REQUESTS
    plan = Plan(concurrency, requests=requests_count, duration=duration, timeout=timeout)

    stderr = Console(stderr=True)
    try:
        with progress_bar(stderr, plan, "classic" if classic else str(load)) as tick:
            if classic:
                summary = run_classic(target, plan, tick)
            else:
                summary = _run(run_load(target, load, plan, tick))
    except TRANSPORT_ERRORS as error:
        stderr.print(
            f"visit-tracker bench: cannot read total_visits from {target.url(STATS.path)}: "
            f"{error_name(error)}: {error}"
        )
        raise typer.Exit(code=2) from None
    stdout = Console()
    if not stdout.is_terminal:  # keep every row on one line for whoever reads the output
        stdout.width = 200
    stdout.print(render(summary, load))
    raise typer.Exit(code=exit_code(summary))
