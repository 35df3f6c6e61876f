"""What idle event streams cost a server: worker CPU and memory with N streams open, each on a
counter of its own, while no counter changes — the polling of the store, and nothing else.

Serves `visit-tracker serve` (one worker, rate limits off) on a free loopback port; measures its
worker's CPU without streams, then with N open; then opens and closes N streams a few rounds,
printing the worker's memory after each, which keeps growing if streams leak.

    .venv/bin/python scripts/streams.py --streams 990 --seconds 20
    .venv/bin/python scripts/streams.py --store redis://127.0.0.1:6379/0?prefix=streams
"""

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

NAMESPACE = "streams-cost"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def serving(store: str) -> Iterator[tuple[int, psutil.Process]]:
    """The server on a free port once /readyz answers, and its worker process."""
    port = free_port()
    command = [sys.executable, "-m", "visit_tracker", "serve", "--port", str(port)]
    command += ["--store", store, "--rate-limit-reads", "0", "--rate-limit-hits", "0"]
    env = {**os.environ, "VISIT_TRACKER_LOG_LEVEL": "warning"}
    process = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.1)
        (worker,) = psutil.Process(process.pid).children()
        yield port, worker
    finally:
        process.terminate()
        process.wait(timeout=30)


def cpu(worker: psutil.Process) -> float:
    times = worker.cpu_times()
    return times.user + times.system


def share_of_a_core(worker: psutil.Process, seconds: float) -> float:
    """The worker's CPU over the next `seconds`, in percent of one core."""
    before = cpu(worker)
    time.sleep(seconds)
    return (cpu(worker) - before) / seconds * 100


def mib(worker: psutil.Process) -> float:
    return worker.memory_info().rss / 2**20


async def open_streams(port: int, count: int) -> list[asyncio.StreamWriter]:
    """`count` streams, one per counter, each open once its first event came."""

    async def one(key: int) -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        path = f"/v1/counters/{NAMESPACE}/k{key}/events"
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"a stream was refused: {head.decode(errors='replace')}")
        await reader.readuntil(b"\n\n")
        return writer

    return [await one(key) for key in range(count)]


async def close_streams(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()
    await asyncio.sleep(2)  # the server notices each disconnection


def create_counters(port: int, count: int) -> None:
    for key in range(count):
        url = f"http://127.0.0.1:{port}/v1/counters/{NAMESPACE}/k{key}/hits"
        urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=10)


async def measure(
    port: int, worker: psutil.Process, *, streams: int, seconds: float, rounds: int
) -> None:
    before = mib(worker)
    writers = await open_streams(port, streams)
    watched = await asyncio.to_thread(share_of_a_core, worker, seconds)
    print(f"worker CPU with {streams} streams: {watched:.2f} % of a core")
    print(f"worker memory: {before:.1f} MiB without streams, {mib(worker):.1f} MiB with them")
    await close_streams(writers)
    for round_ in range(1, rounds + 1):
        await close_streams(await open_streams(port, streams))
        print(
            f"worker memory after round {round_} of {streams} streams opened and closed: "
            f"{mib(worker):.1f} MiB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="store URL (default: a new SQLite file)")
    parser.add_argument("--streams", type=int, default=990, help="streams to open (990)")
    parser.add_argument("--seconds", type=float, default=20, help="seconds per CPU figure (20)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of opening and closing (3)")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        store = arguments.store or f"sqlite:///{directory}/visits.db"
        with serving(store) as (port, worker):
            create_counters(port, arguments.streams)
            idle = share_of_a_core(worker, arguments.seconds)
            print(f"worker CPU without streams: {idle:.2f} % of a core")
            asyncio.run(
                measure(
                    port,
                    worker,
                    streams=arguments.streams,
                    seconds=arguments.seconds,
                    rounds=arguments.rounds,
                )
            )


if __name__ == "__main__":
    main()
