"""`make bench`: serve each configuration, load it with wrk, write docs/benchmarks.md and .png.

Each configuration is started on a free port of 127.0.0.1, loaded on POST /visit and then
GET /stats with `wrk -t2 -c100 -d10s`, and stopped. While wrk runs, the resident memory of the
worker processes is sampled; around the POST run, total_visits must move by wrk's successful
requests plus at most the requests still in flight when wrk stopped (one per connection).
The baseline is the original demo rebuilt (scripts/demo_baseline.py) under the same load.
"""

import argparse
import json
import os
import platform
import re
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import psutil
import requests
from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
THREADS, CONNECTIONS = 2, 100
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
RSS_SAMPLE_INTERVAL = 0.5
SETTLE_INTERVAL, SETTLE_TIMEOUT = 0.25, 10.0
MIB = 1024 * 1024

ENDPOINTS = (("POST", "/visit"), ("GET", "/stats"))

WRK_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT {\\"requests\\": %d, \\"duration_us\\": %d, \\"connect\\": %d, \\"read\\": %d, "
      .. "\\"write\\": %d, \\"status\\": %d, \\"timeout\\": %d, \\"p50_us\\": %.1f, "
      .. "\\"p99_us\\": %.1f}\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""
"""wrk's `done` hook prints its own numbers as one JSON line, so nothing parses its prose."""


@dataclass(frozen=True)
class Configuration:
    """A server to measure: its name in the table and its command, with {port} and {dir}."""

    name: str
    command: tuple[str, ...]
    services: tuple[str, ...] = ()
    """Names of the processes of the store's own server, whose CPU is part of the run."""


SERVICES = {"redis": ("redis-server",), "postgresql": ("postgres",)}
"""The server processes behind each kind of store that runs as a service."""


def visit_tracker(store: str, workers: int) -> Configuration:
    """visit-tracker itself on a store URL ({dir} is a fresh directory for each server)."""
    kind = store.partition(":")[0]
    name = f"visit-tracker, {kind}, {workers} worker{'s' if workers > 1 else ''}"
    command = ("visit-tracker", "serve", "--host", HOST, "--port", "{port}")
    options = ("--workers", str(workers), "--store", store, "--log-level", "warning")
    return Configuration(name, (*command, *options), SERVICES.get(kind, ()))


DEMO = Configuration(
    "the demo rebuilt (sync def + Lock), 1 worker",
    (
        *("uvicorn", "demo_baseline:app", "--app-dir", "scripts"),
        *("--host", HOST, "--port", "{port}"),
        *("--workers", "1", "--log-level", "warning", "--no-access-log"),
    ),
)

CONFIGURATIONS = [
    visit_tracker("sqlite:///{dir}/visits.db", 1),
    visit_tracker("sqlite:///{dir}/visits.db", 2),
    visit_tracker("memory://", 1),
    visit_tracker("redis://127.0.0.1:6379/0?prefix=bench-{port}", 2),
    visit_tracker("postgresql://postgres@127.0.0.1:5432/test", 2),
    DEMO,
]
"""What `make bench` measures, in table order; a new store is one more `visit_tracker(...)`."""


@dataclass(frozen=True)
class Measurement:
    configuration: str
    endpoint: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    non_2xx: int
    rss_mib: list[float]
    count_moved: int
    other_cores: float
    """Cores used during the run by processes other than the server, its store, wrk and us."""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx

    @property
    def in_flight(self) -> int:
        """Visits counted beyond wrk's successes: answered after wrk stopped listening."""
        return self.count_moved - (self.requests - self.non_2xx)

    @property
    def exact(self) -> bool:
        if self.endpoint.startswith("POST"):
            return 0 <= self.in_flight <= CONNECTIONS
        return self.count_moved == 0

    def exactness(self) -> str:
        if self.endpoint.startswith("POST"):
            verdict = "yes" if self.exact else "**NO**"
            return f"{verdict}: +{self.count_moved:,} ({self.in_flight} in flight)"
        return "n/a (count unchanged)" if self.exact else f"**NO**: moved {self.count_moved:+,}"


# -- Running servers and wrk --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def executable(name: str) -> str:
    """A console script of this virtual environment (visit-tracker, uvicorn for the demo)."""
    return str(Path(sys.executable).with_name(name))


@contextmanager
def serving(
    configuration: Configuration, directory: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start the configuration's server, yield its URL and process once it answers; stop it."""
    port = free_port()
    command = [part.format(port=port, dir=directory) for part in configuration.command]
    command[0] = executable(command[0])
    log = directory / "server.log"
    with log.open("wb") as output:
        # A process group of its own, so that stopping it reaches every worker; not a session
        # of its own: Linux's autogroup scheduling shares the CPU equally between sessions, and
        # would give wrk (in ours) as much of it as the server however little wrk needs.
        server = subprocess.Popen(
            command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, process_group=0
        )
    url = f"http://{HOST}:{port}"
    try:
        wait_until_answering(url, server, log)
        yield url, server
    finally:
        stop(server)


def wait_until_answering(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited with {server.returncode}:\n{log.read_text()}")
        try:
            if SESSION.get(f"{url}/stats", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {START_TIMEOUT:g} s")


def stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=STOP_TIMEOUT)


SESSION = requests.Session()
SESSION.trust_env = False  # never send loopback traffic through a proxy from the environment


def total_visits(url: str) -> int:
    response = SESSION.get(f"{url}/stats", timeout=10)
    response.raise_for_status()
    total: int = response.json()["total_visits"]
    return total


def settled_total_visits(url: str) -> int:
    """total_visits once it stops moving: requests that were in flight when wrk stopped
    are still answered (and counted) by the server after wrk has returned."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    total = total_visits(url)
    while time.monotonic() < deadline:
        time.sleep(SETTLE_INTERVAL)
        total, previous = total_visits(url), total
        if total == previous:
            return total
    raise RuntimeError(f"total_visits at {url} still moving after {SETTLE_TIMEOUT:g} s")


def worker_processes(server: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The processes that serve requests: the server's worker processes, or the server itself
    when it serves in its own process (multiprocessing's resource tracker serves nothing)."""
    parent = psutil.Process(server.pid)
    children = parent.children()
    workers = [child for child in children if "resource_tracker" not in " ".join(child.cmdline())]
    return workers or [parent]


@dataclass(frozen=True)
class CpuClock:
    """CPU seconds used so far by the whole machine and by the processes of this benchmark."""

    wall: float
    machine: float
    ours: float

    @classmethod
    def read(cls, server: psutil.Process, services: tuple[str, ...]) -> "CpuClock":
        times = psutil.cpu_times()
        machine = sum(getattr(times, name, 0.0) for name in BUSY_FIELDS)
        store = [p for p in psutil.process_iter(["name"]) if p.info["name"] in services]
        server_cpu = 0.0
        for process in [server, *server.children(recursive=True), *store]:
            with suppress(psutil.NoSuchProcess):
                process_times = process.cpu_times()
                server_cpu += process_times.user + process_times.system
        finished = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once it has exited
        wrk_cpu = finished.ru_utime + finished.ru_stime
        return cls(time.monotonic(), machine, server_cpu + wrk_cpu + time.process_time())

    def others_since(self, start: "CpuClock") -> float:
        """Cores used by anything else between `start` and now."""
        other = (self.machine - start.machine) - (self.ours - start.ours)
        return max(other, 0.0) / (self.wall - start.wall)


BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq", "steal")
"""The /proc/stat times in which a core did work (steal: another virtual machine's work)."""


class RssSampler(threading.Thread):
    """Records the largest resident set of each worker while a load runs."""

    def __init__(self, processes: list[psutil.Process]) -> None:
        super().__init__(daemon=True)
        self._processes = processes
        self.peak = {process.pid: 0 for process in processes}
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(RSS_SAMPLE_INTERVAL):
            for process in self._processes:
                rss = process.memory_info().rss
                self.peak[process.pid] = max(self.peak[process.pid], rss)

    def stop(self) -> list[float]:
        self._stopped.set()
        self.join()
        return sorted(rss / MIB for rss in self.peak.values())


def wrk_command(url: str, script: Path, duration: int) -> list[str]:
    return [
        "wrk",
        f"-t{THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{duration}s",
        "-s",
        str(script),
        url,
    ]


def run_wrk(url: str, method: str, duration: int, directory: Path) -> dict[str, float]:
    script = directory / f"{method.lower()}.lua"
    script.write_text((f'wrk.method = "{method}"\n' if method != "GET" else "") + WRK_REPORT)
    result = subprocess.run(
        wrk_command(url, script, duration),
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=True,
    )
    line = next(line for line in result.stdout.splitlines() if line.startswith("WRK_RESULT "))
    numbers: dict[str, float] = json.loads(line.removeprefix("WRK_RESULT "))
    return numbers


def measure(configuration: Configuration, duration: int) -> list[Measurement]:
    measurements = []
    with tempfile.TemporaryDirectory(prefix="visit-tracker-bench-") as temporary:
        directory = Path(temporary)
        with serving(configuration, directory) as (base, server):
            workers = worker_processes(server)
            server_process = psutil.Process(server.pid)
            for method, path in ENDPOINTS:
                print(f"  {method} {path} ...", flush=True)
                before = settled_total_visits(base)
                sampler = RssSampler(workers)
                sampler.start()
                cpu_before = CpuClock.read(server_process, configuration.services)
                try:
                    wrk = run_wrk(base + path, method, duration, directory)
                finally:
                    rss = sampler.stop()
                cpu_after = CpuClock.read(server_process, configuration.services)
                other_cores = cpu_after.others_since(cpu_before)
                after = settled_total_visits(base)
                socket_errors = sum(int(wrk[k]) for k in ("connect", "read", "write", "timeout"))
                measurements.append(
                    Measurement(
                        configuration=configuration.name,
                        endpoint=f"{method} {path}",
                        requests=int(wrk["requests"]),
                        seconds=wrk["duration_us"] / 1e6,
                        p50_ms=wrk["p50_us"] / 1000,
                        p99_ms=wrk["p99_us"] / 1000,
                        socket_errors=socket_errors,
                        non_2xx=int(wrk["status"]),
                        rss_mib=rss,
                        count_moved=after - before,
                        other_cores=other_cores,
                    )
                )
    return measurements


# -- The report ---------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    with Path("/proc/cpuinfo").open() as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    os_release = Path("/etc/os-release").read_text()
    match = re.search(r'^PRETTY_NAME="?([^"\n]*)', os_release, re.MULTILINE)
    system = f"{match[1] if match else platform.system()}, kernel {platform.release()}"
    return {
        "CPU": cpu,
        "cores": f"{os.cpu_count()} logical ({psutil.cpu_count(logical=False)} physical)",
        "memory": f"{psutil.virtual_memory().total / 1024**3:.1f} GiB",
        "OS": system,
    }


def versions() -> dict[str, str]:
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return {
        "Python": platform.python_version(),
        "granian": version("granian"),
        "uvicorn (the demo)": version("uvicorn"),
        "FastAPI": version("fastapi"),
        "SQLite": sqlite3.sqlite_version,
        "wrk": (wrk.stdout or wrk.stderr).split()[1],
        "visit-tracker": version("visit-tracker"),
    }


def git(*arguments: str) -> str:
    result = subprocess.run(
        ["git", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip()


def git_revision() -> str:
    """The commit measured, and whether files outside docs/ differed from it."""
    revision = f"`{git('rev-parse', '--short', 'HEAD') or 'unknown'}`"
    if git("status", "--porcelain", "--", ".", ":!docs"):
        revision += " with uncommitted changes"
    return revision


def rss_text(rss: list[float]) -> str:
    return " / ".join(f"{mib:.0f} MiB" for mib in rss)


def errors_text(measurement: Measurement) -> str:
    if not measurement.errors:
        return "0"
    parts = []
    if measurement.socket_errors:
        parts.append(f"{measurement.socket_errors:,} socket")
    if measurement.non_2xx:
        parts.append(f"{measurement.non_2xx:,} non-2xx")
    return ", ".join(parts)


def results_table(measurements: list[Measurement]) -> list[str]:
    baseline = {m.endpoint: m.rate for m in measurements if m.configuration == DEMO.name}
    lines = [
        "| configuration | endpoint | req/s | vs demo | p50 | p99 | errors | RSS per worker "
        "| exact? | other load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for m in measurements:
        ratio = f"{m.rate / baseline[m.endpoint]:.2f}x" if m.endpoint in baseline else "-"
        lines.append(
            f"| {m.configuration} | `{m.endpoint}` | {m.rate:,.0f} | {ratio} "
            f"| {m.p50_ms:.2f} ms | {m.p99_ms:.2f} ms | {errors_text(m)} "
            f"| {rss_text(m.rss_mib)} | {m.exactness()} | {m.other_cores:.2f} cores |"
        )
    return lines


def commands(duration: int) -> list[str]:
    lines = ["Servers (each on a free port, one at a time, a fresh store directory each):", ""]
    lines += ["```sh"]
    for configuration in CONFIGURATIONS:
        command = " ".join(configuration.command).format(port="$PORT", dir="$DIR")
        lines.append(command)
    lines += ["```", "", "Load, for each server and endpoint, one after the other:", "", "```sh"]
    for method, path in ENDPOINTS:
        script = f"{method.lower()}.lua"
        lines.append(" ".join(wrk_command(f"http://{HOST}:$PORT{path}", Path(script), duration)))
    lines += ["```", ""]
    lines += [
        '`post.lua` is `wrk.method = "POST"`; both scripts end with a `done` hook that prints',
        "wrk's own totals and percentiles as JSON for the script to read:",
        "",
        "```lua",
        WRK_REPORT.strip(),
        "```",
    ]
    return lines


def write_report(
    measurements: list[Measurement], docs: Path, duration: int, load: tuple[float, float]
) -> None:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    about = {**machine(), "load average (1 min) before / after": f"{load[0]:.2f} / {load[1]:.2f}"}
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`scripts/bench.py`) on {when}, at revision {git_revision()}.",
        "Run `make bench` to measure your own machine; it rewrites this file and the chart.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in about.items()),
        "",
        "wrk, the server and this script share these cores: the numbers are for one machine",
        "serving and loading itself, not a server's ceiling.",
        "",
        "## Versions",
        "",
        ", ".join(f"{name} {number}" for name, number in versions().items()),
        "",
        "## Results",
        "",
        f"`wrk -t{THREADS} -c{CONNECTIONS} -d{duration}s` against `{HOST}`, one run each.",
        "",
        *results_table(measurements),
        "",
        "- **req/s**: wrk's completed requests divided by its run time; **vs demo**: relative to",
        "  the demo rebuilt on the same endpoint.",
        "- **p50, p99**: wrk's latency percentiles. **errors**: wrk's socket errors (connect,",
        "  read, write, timeout) and answers other than 2xx/3xx.",
        "- **RSS per worker**: the largest resident set of each worker process seen during the",
        f"  run (sampled every {RSS_SAMPLE_INTERVAL:g} s).",
        "- **exact?**: for `POST /visit`, `total_visits` (from `GET /stats`) after the run minus",
        "  before must equal wrk's successful requests plus those still in flight when wrk",
        f"  stopped (at most one per connection, {CONNECTIONS}); for `GET /stats` the count must",
        "  not move.",
        "- **other load**: CPU that processes other than the server (and its Redis or",
        "  PostgreSQL server), wrk and this script used during the run, in cores (busy time from",
        "  /proc/stat, less theirs). Anything well above zero competed with the measurement:",
        "  rerun on a quiet machine.",
        "",
        "![Requests per second by configuration and endpoint](benchmarks.png)",
        "",
        "## Commands",
        "",
        *commands(duration),
        "",
    ]
    (docs / "benchmarks.md").write_text("\n".join(lines))


def write_chart(measurements: list[Measurement], path: Path, duration: int) -> None:
    names = [c.name for c in CONFIGURATIONS]
    figure = Figure(figsize=(10, 1.2 + 0.9 * len(names)), dpi=100)
    axes = figure.subplots()
    height = 0.8 / len(ENDPOINTS)
    for index, (method, path_) in enumerate(ENDPOINTS):
        endpoint = f"{method} {path_}"
        rates = {m.configuration: m.rate for m in measurements if m.endpoint == endpoint}
        positions = [row + (index - (len(ENDPOINTS) - 1) / 2) * height for row in range(len(names))]
        values = [rates.get(name, 0.0) for name in names]
        bars = axes.barh(positions, values, height=height, label=endpoint)
        axes.bar_label(bars, labels=[f"{v:,.0f}" for v in values], padding=3, fontsize=9)
    axes.set_yticks(range(len(names)), labels=names)
    axes.invert_yaxis()
    axes.set_xlabel("requests per second (more is better)")
    axes.set_title(
        f"wrk -t{THREADS} -c{CONNECTIONS} -d{duration}s on {HOST}, "
        f"{os.cpu_count()} cores shared by server and wrk"
    )
    axes.margins(x=0.15)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs", help="where to write")
    arguments = parser.parse_args()
    arguments.docs.mkdir(parents=True, exist_ok=True)

    load_before = os.getloadavg()[0]
    measurements = []
    for configuration in CONFIGURATIONS:
        print(configuration.name, flush=True)
        measurements += measure(configuration, arguments.duration)
    load_after = os.getloadavg()[0]

    write_report(measurements, arguments.docs, arguments.duration, (load_before, load_after))
    write_chart(measurements, arguments.docs / "benchmarks.png", arguments.duration)
    print("\n".join(results_table(measurements)))
    print(f"wrote {arguments.docs / 'benchmarks.md'} and {arguments.docs / 'benchmarks.png'}")
    if not all(m.exact and not m.errors for m in measurements):
        sys.exit("some runs had errors or an inexact count: see the table")


if __name__ == "__main__":
    main()
