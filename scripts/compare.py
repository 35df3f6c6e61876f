"""Compare the throughput of `visit-tracker serve` under several configurations, fairly.

Each configuration is `label` or `label:NAME=value,NAME=value` (extra environment variables, e.g.
`on:VISIT_TRACKER_ACCESS_LOG=true`), served by its own server (a free loopback port, a fresh
SQLite file unless the configuration sets `VISIT_TRACKER_STORE`), all started at once and idle
but for their turn. Rounds alternate the configurations, so load from other work on the machine
falls on all of them alike. Prints every run, then the median, min and max per configuration.

    .venv/bin/python scripts/compare.py off on:VISIT_TRACKER_ACCESS_LOG=true --rounds 5
    .venv/bin/python scripts/compare.py sqlite pg:VISIT_TRACKER_STORE=postgresql://db/visits

Each `--load PATH[=SCRIPT]` (default `/visit=scripts/post.lua`) is run on every configuration in
every round: several loads compare routes on the same servers, in the same run.
"""

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POST_SCRIPT = Path(__file__).with_name("post.lua")
RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
COUNT = re.compile(r"^\s+(\d+) requests in", re.MULTILINE)
TICK = os.sysconf("SC_CLK_TCK")
P99 = re.compile(r"^\s+99%\s+(\S+)", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def parse_configuration(text: str) -> tuple[str, dict[str, str]]:
    label, _, assignments = text.partition(":")
    env = dict(pair.split("=", 1) for pair in assignments.split(",") if pair)
    return label, env


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by the server: its process and its workers."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    ticks = 0
    for process in [pid, *map(int, children)]:
        fields = Path(f"/proc/{process}/stat").read_text().rpartition(")")[2].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / TICK


def wait_until_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the server exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit("the server was not ready after 30 s")


@contextmanager
def serving(env: dict[str, str], *, workers: int, directory: Path) -> Iterator[tuple[str, int]]:
    """A fresh server on a free loopback port, by default with its own SQLite file; stopped on
    exit."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = [sys.executable, "-m", "visit_tracker", "serve", "--host", "127.0.0.1"]
    serve += ["--port", str(port), "--workers", str(workers)]
    if "VISIT_TRACKER_STORE" not in env:
        serve += ["--store", f"sqlite:///{directory}/visits.db"]
    with open(directory / "server.log", "wb") as log:  # its logs, written as in production
        # A process group, not a session: see `serving` in bench.py.
        process = subprocess.Popen(serve, env={**os.environ, **env}, stderr=log, process_group=0)
        try:
            wait_until_ready(url, process)
            yield url, process.pid
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def measure(
    url: str, pid: int, *, duration: int, wrk: str, script: Path = POST_SCRIPT
) -> tuple[float, str, float]:
    """Requests per second, p99 latency and server CPU µs per request of one wrk run.

    CPU time per request is what other work on the machine disturbs least: contention lowers
    a run's throughput but changes much less how much CPU each request takes.
    """
    load = [wrk, "-t2", "-c100", f"-d{duration}s", "--latency", "-s", str(script), url]
    cpu_before = cpu_seconds(pid)
    result = subprocess.run(load, capture_output=True, text=True, check=True)
    cpu = cpu_seconds(pid) - cpu_before
    rate = RATE.search(result.stdout)
    p99 = P99.search(result.stdout)
    count = COUNT.search(result.stdout)
    if rate is None or p99 is None or count is None:
        sys.exit(f"cannot read wrk's output:\n{result.stdout}")
    return float(rate.group(1)), p99.group(1), cpu * 1e6 / int(count.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configurations", nargs="+", help="label[:NAME=value,...]")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--load", action="append", help="PATH[=SCRIPT]: a route and its wrk script")
    arguments = parser.parse_args()
    loads = [parse_load(text) for text in arguments.load or ["/visit"]]
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is not installed (Debian package wrk)")
    configurations = [parse_configuration(text) for text in arguments.configurations]
    with contextlib.ExitStack() as stack:
        servers = {}
        for label, env in configurations:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            servers[label] = stack.enter_context(
                serving(env, workers=arguments.workers, directory=directory)
            )
        for url, pid in servers.values():  # warm-up
            for path, script in loads:
                measure(f"{url}{path}", pid, duration=2, wrk=wrk, script=script)
        compare(servers, loads, arguments.rounds, duration=arguments.duration, wrk=wrk)


def parse_load(text: str) -> tuple[str, Path]:
    path, _, script = text.partition("=")
    return path, Path(script) if script else POST_SCRIPT


def compare(
    servers: dict[str, tuple[str, int]],
    loads: list[tuple[str, Path]],
    rounds: int,
    *,
    duration: int,
    wrk: str,
) -> None:
    """Run each load on each server in turn, `rounds` times; print each run, then a summary."""
    runs = [
        (f"{label} {path} {script.stem}" if len(loads) > 1 else label, url, pid, path, script)
        for label, (url, pid) in servers.items()
        for path, script in loads
    ]
    rates: dict[str, list[float]] = {label: [] for label, *_ in runs}
    costs: dict[str, list[float]] = {label: [] for label, *_ in runs}
    for round_number in range(1, rounds + 1):
        for label, url, pid, path, script in runs:
            rate, p99, cost = measure(
                f"{url}{path}", pid, duration=duration, wrk=wrk, script=script
            )
            rates[label].append(rate)
            costs[label].append(cost)
            print(
                f"round {round_number} {label:>12}: {rate:9.0f} req/s  p99 {p99:>8}  "
                f"server CPU {cost:5.1f} µs/request",
                flush=True,
            )
    for label, values in rates.items():
        print(
            f"{label:>12}: median {statistics.median(values):9.0f}  "
            f"min {min(values):9.0f}  max {max(values):9.0f} req/s;  CPU µs/request median "
            f"{statistics.median(costs[label]):5.1f}  min {min(costs[label]):5.1f}  "
            f"max {max(costs[label]):5.1f}  ({len(values)} runs)"
        )


if __name__ == "__main__":
    main()
