"""Compare the CPU a request costs the application itself, driven in-process, without a server.

`compare.py` measures the whole path — granian, the kernel, wrk — on cores it shares with them,
and on a busy machine one configuration's fastest run can beat its slowest by a third. This
script hands requests to the ASGI application directly, 50 at a time as one worker of a loaded
server gets them (with its store, group commit and every layer in front of the routes), and
reads the process's CPU time: what a change to visit-tracker's own code costs or saves, with
much less noise. It says nothing of the HTTP server's share, which `compare.py` measures.

Each configuration is `label` or `label:NAME=value,...` as in `compare.py`; `PYTHONPATH=` an
older `src` compares code versions (`git archive REV src | tar -x -C DIR`). Every run is a fresh
process on a fresh SQLite file, unless the configuration sets `VISIT_TRACKER_STORE`; rounds
alternate the configurations. The loads are those of the wrk scripts:

    visit          POST /visit from one client (post.lua)
    visit-10k      POST /visit from 10,000 visitors (post_browsers.lua)
    hits-10k       a named counter's hits from them, no page
    hits-page-10k  the same naming one of 200 pages and 5 referrers in the query string
                   (hit_page_query.lua)

    .venv/bin/python scripts/inprocess.py before:PYTHONPATH=$OLD_SRC after --load hits-page-10k

With `--instructions` each run counts the instructions a request executes under valgrind's
callgrind instead (a minute or two a run): one round then suffices, as the count does not
move with the machine's load.
"""

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import uvloop
from starlette.types import Message

from visit_tracker.app import create_app

CONCURRENCY = 50
"""Requests in flight at once: a worker's share of wrk's 100 connections."""
VISITORS = 10_000
AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
)
REFERRERS = (
    "https://news.example.org/item",
    "https://www.google.com/",
    "https://duckduckgo.com/",
    "https://social.example.net/@someone",
    "https://blog.example.com/links",
)
HITS = "/v1/counters/site/home/hits"
DEFAULTS = {"VISIT_TRACKER_TRUSTED_PROXIES": "127.0.0.1", "VISIT_TRACKER_RATE_LIMIT_HITS": "0"}
"""As `compare.py`'s commands set them: the visitors are forwarded by a trusted proxy, and no
rate limit stops them."""


def visitor_headers(n: int) -> list[tuple[bytes, bytes]]:
    """The n-th request's visitor, as visitors.lua makes it."""
    v = n % VISITORS
    address = f"10.{v // 65536 % 256}.{v // 256 % 256}.{v % 256}"
    return [(b"x-forwarded-for", address.encode()), (b"user-agent", AGENTS[v % 5].encode())]


def view_query(n: int) -> bytes:
    """The n-th request's page and referrer, as visitors.lua's `current_view` picks them."""
    page, referrer = f"/blog/post-{n % 200}", REFERRERS[n // 200 % 5]
    return f"page={quote(page, safe='')}&referrer={quote(referrer, safe='')}".encode()


LOADS: dict[str, Callable[[int], tuple[str, bytes, list[tuple[bytes, bytes]]]]] = {
    "visit": lambda n: ("/visit", b"", []),
    "visit-10k": lambda n: ("/visit", b"", visitor_headers(n)),
    "hits-10k": lambda n: (HITS, b"", visitor_headers(n)),
    "hits-page-10k": lambda n: (HITS, view_query(n), visitor_headers(n)),
}
"""Per load, the n-th request's path, query string and headers (besides Host)."""


def scope_of(path: str, query: bytes, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8080"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
    }


async def cpu_per_request(load: str, requests: int) -> float:
    """CPU µs a request of `load` costs, over `requests` requests after as many to warm up."""
    app = create_app()
    state: dict[str, Any] = {}
    to_app: asyncio.Queue[Message] = asyncio.Queue()
    from_app: asyncio.Queue[Message] = asyncio.Queue()
    lifespan_scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
    lifespan = asyncio.ensure_future(app(lifespan_scope, to_app.get, from_app.put))
    await to_app.put({"type": "lifespan.startup"})
    started = await from_app.get()
    if started["type"] != "lifespan.startup.complete":
        sys.exit(f"the application did not start: {started}")
    scopes = [scope_of(*LOADS[load](n)) for n in range(VISITORS)]

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def one(n: int) -> None:
        statuses = []

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app({**scopes[n % VISITORS], "state": dict(state)}, receive, send)
        if statuses != [200]:
            sys.exit(f"{load}: a request was answered {statuses}")

    async def client(first: int) -> None:
        for n in range(first, requests, CONCURRENCY):
            await one(n)

    await asyncio.gather(*(client(first) for first in range(CONCURRENCY)))  # warm-up
    before = time.process_time()
    await asyncio.gather(*(client(first) for first in range(CONCURRENCY)))
    cost = (time.process_time() - before) / requests * 1e6
    await to_app.put({"type": "lifespan.shutdown"})
    await lifespan
    return cost


def cpu_time(label: str, env: dict[str, str], load: str, requests: int) -> float:
    """CPU µs a request of `load` costs, measured in a fresh process with `env`, on a fresh
    SQLite file by default."""
    return float(child_process(label, env, load, requests, wrapper=[]))


def instructions(label: str, env: dict[str, str], load: str, requests: int) -> float:
    """Instructions a request of `load` executes, as callgrind counts them over two runs, of
    `requests` and of a fifth as many: the difference leaves out starting up and warming up.
    The count does not vary with a busy machine's noise, as CPU time does; it weighs every
    instruction alike, a cache miss or a system call's wait as nothing."""
    if shutil.which("valgrind") is None:
        sys.exit("--instructions runs valgrind, which is not installed: apt-get install valgrind")
    totals = []
    for count in (requests // 5, requests):
        with tempfile.TemporaryDirectory() as directory:
            out = f"{directory}/callgrind.out"
            wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
            child_process(label, {"PYTHONHASHSEED": "0", **env}, load, count, wrapper=wrapper)
            lines = Path(out).read_text().splitlines()
            summary = next(line for line in lines if line.startswith(("summary:", "totals:")))
            totals.append(int(summary.split()[1]))
    return (totals[1] - totals[0]) / (2 * (requests - requests // 5))  # each warmed up as many


def child_process(
    label: str, env: dict[str, str], load: str, requests: int, *, wrapper: list[str]
) -> str:
    """Run `--child` in a fresh process with `env` under `wrapper`; what it printed."""
    with tempfile.TemporaryDirectory() as directory:
        environment = {**os.environ, **DEFAULTS, **env}
        environment.setdefault("VISIT_TRACKER_STORE", f"sqlite:///{directory}/visits.db")
        child = [*wrapper, sys.executable, __file__, "--child", load, "--requests", str(requests)]
        result = subprocess.run(child, env=environment, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{label} {load} failed (exit status {result.returncode}):\n{result.stderr}")
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configurations", nargs="*", help="label[:NAME=value,...]")
    parser.add_argument("--load", action="append", choices=sorted(LOADS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=60_000, help="timed requests per run")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions with valgrind's callgrind instead of timing (try --requests 2500)",
    )
    parser.add_argument("--child", choices=sorted(LOADS), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        print(uvloop.run(cpu_per_request(arguments.child, arguments.requests)))
        return
    if not arguments.configurations:
        parser.error("name at least one configuration")
    configurations = [
        (label, dict(pair.split("=", 1) for pair in assignments.split(",") if pair))
        for label, _, assignments in (text.partition(":") for text in arguments.configurations)
    ]
    loads = arguments.load or ["visit"]
    measure, form, unit = (
        (instructions, "9,.0f", "instructions/request")
        if arguments.instructions
        else (cpu_time, "5.1f", "µs/request")
    )
    costs: dict[str, list[float]] = {}
    for round_number in range(1, arguments.rounds + 1):
        for label, env in configurations:
            for load in loads:
                cost = measure(label, env, load, arguments.requests)
                costs.setdefault(f"{label} {load}", []).append(cost)
                print(f"round {round_number} {label} {load}: {cost:{form}} {unit}", flush=True)
    for name, values in costs.items():
        print(
            f"{name}: median {statistics.median(values):{form}}  min {min(values):{form}}  "
            f"max {max(values):{form}} {unit} ({len(values)} runs)"
        )


if __name__ == "__main__":
    main()
