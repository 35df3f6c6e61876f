"""The `visit-tracker` command: `serve` runs the HTTP server, `bench` loads one,
`export` and `import` move counts between stores, `stats` shows a store's counters."""

import asyncio
import contextlib
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from granian import Granian
from granian.constants import HTTPModes, Interfaces, Loops
from granian.http import HTTP1Settings
from granian.log import LogLevels
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from visit_tracker import backup, summary, transfer
from visit_tracker.bench import bench
from visit_tracker.errors import (
    ConfigError,
    ImportIncomplete,
    MalformedExport,
    StoreOutcomeUnknown,
    VisitTrackerError,
)
from visit_tracker.logs import LogFormat, logging_config
from visit_tracker.settings import ENV_PREFIX, BotFilter, LogLevel, Settings, load_settings
from visit_tracker.stores import open_store
from visit_tracker.stores.base import NAME_PATTERN

METRICS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus-client's multiprocess directory (see metrics.py, not imported here: prometheus-client
reads the variable once, when it is first imported)."""

MAX_REQUEST_HEAD = 64 * 1024
"""The HTTP layer's read buffer, which bounds a request's head (request line and headers):
twice the 32 KiB nginx accepts by default, so nothing a proxy forwards is refused here. The
buffer may take one more read before the check, so heads are refused from somewhat above
this (measured: 100 KB served, 150 KB refused; granian's default buffer served 200 KB)."""

cli = typer.Typer(
    help="A self-hosted visit counter. Settings also come from VISIT_TRACKER_* variables.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@cli.callback()
def visit_tracker() -> None:
    """A self-hosted visit counter whose counts survive restarts and stay exact."""


def describe(name: str) -> str:
    """A flag's help: the setting's description, its variable and its default."""
    field = Settings.model_fields[name]
    return f"{field.description} ({ENV_PREFIX}{name.upper()}, default: {field.default})"


def fail(error: Exception | str, *, code: int = 2) -> typer.Exit:
    typer.echo(f"visit-tracker: {error}", err=True)
    return typer.Exit(code=code)


async def check_store(settings: Settings) -> None:
    """Open and close the store once, so a bad one stops the server with one clear line."""
    store = await open_store(settings.store, wait_limit=settings.store_timeout)
    await store.close()


def check_port_free(host: str, port: int) -> None:
    """Refuse a port another server listens on. granian's workers share their port through
    SO_REUSEPORT, which would otherwise let a second server start there and take half the
    requests."""
    try:
        socket.create_server((host, port)).close()
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror}") from None


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help=describe("host"))] = None,
    port: Annotated[int | None, typer.Option(help=describe("port"))] = None,
    workers: Annotated[int | None, typer.Option(help=describe("workers"))] = None,
    store: Annotated[str | None, typer.Option(help=describe("store"))] = None,
    log_level: Annotated[LogLevel | None, typer.Option(help=describe("log_level"))] = None,
    log_format: Annotated[LogFormat | None, typer.Option(help=describe("log_format"))] = None,
    access_log: Annotated[
        bool | None, typer.Option("--access-log/--no-access-log", help=describe("access_log"))
    ] = None,
    store_timeout: Annotated[float | None, typer.Option(help=describe("store_timeout"))] = None,
    max_body_size: Annotated[int | None, typer.Option(help=describe("max_body_size"))] = None,
    request_timeout: Annotated[float | None, typer.Option(help=describe("request_timeout"))] = None,
    max_concurrency: Annotated[int | None, typer.Option(help=describe("max_concurrency"))] = None,
    shutdown_timeout: Annotated[int | None, typer.Option(help=describe("shutdown_timeout"))] = None,
    admin_token: Annotated[str | None, typer.Option(help=describe("admin_token"))] = None,
    trusted_proxies: Annotated[str | None, typer.Option(help=describe("trusted_proxies"))] = None,
    rate_limit_visit: Annotated[
        float | None, typer.Option(help=describe("rate_limit_visit"))
    ] = None,
    rate_limit_visit_burst: Annotated[
        int | None, typer.Option(help=describe("rate_limit_visit_burst"))
    ] = None,
    rate_limit_hits: Annotated[float | None, typer.Option(help=describe("rate_limit_hits"))] = None,
    rate_limit_hits_burst: Annotated[
        int | None, typer.Option(help=describe("rate_limit_hits_burst"))
    ] = None,
    rate_limit_reads: Annotated[
        float | None, typer.Option(help=describe("rate_limit_reads"))
    ] = None,
    rate_limit_reads_burst: Annotated[
        int | None, typer.Option(help=describe("rate_limit_reads_burst"))
    ] = None,
    rate_limit_admin: Annotated[
        float | None, typer.Option(help=describe("rate_limit_admin"))
    ] = None,
    rate_limit_admin_burst: Annotated[
        int | None, typer.Option(help=describe("rate_limit_admin_burst"))
    ] = None,
    rate_limit_store: Annotated[str | None, typer.Option(help=describe("rate_limit_store"))] = None,
    cors_origins: Annotated[str | None, typer.Option(help=describe("cors_origins"))] = None,
    history_days: Annotated[int | None, typer.Option(help=describe("history_days"))] = None,
    unique_visitors: Annotated[
        bool | None,
        typer.Option("--unique-visitors/--no-unique-visitors", help=describe("unique_visitors")),
    ] = None,
    bot_filter: Annotated[BotFilter | None, typer.Option(help=describe("bot_filter"))] = None,
    max_streams: Annotated[int | None, typer.Option(help=describe("max_streams"))] = None,
    events_poll_seconds: Annotated[
        float | None, typer.Option(help=describe("events_poll_seconds"))
    ] = None,
) -> None:
    """Serve the API until SIGINT or SIGTERM, then finish in-flight visits and stop."""
    flags: dict[str, Any] = {
        "host": host,
        "port": port,
        "workers": workers,
        "store": store,
        "log_level": log_level,
        "log_format": log_format,
        "access_log": access_log,
        "store_timeout": store_timeout,
        "max_body_size": max_body_size,
        "request_timeout": request_timeout,
        "max_concurrency": max_concurrency,
        "shutdown_timeout": shutdown_timeout,
        "admin_token": admin_token,
        "trusted_proxies": trusted_proxies,
        "rate_limit_visit": rate_limit_visit,
        "rate_limit_visit_burst": rate_limit_visit_burst,
        "rate_limit_hits": rate_limit_hits,
        "rate_limit_hits_burst": rate_limit_hits_burst,
        "rate_limit_reads": rate_limit_reads,
        "rate_limit_reads_burst": rate_limit_reads_burst,
        "rate_limit_admin": rate_limit_admin,
        "rate_limit_admin_burst": rate_limit_admin_burst,
        "rate_limit_store": rate_limit_store,
        "cors_origins": cors_origins,
        "history_days": history_days,
        "unique_visitors": unique_visitors,
        "bot_filter": bot_filter,
        "max_streams": max_streams,
        "events_poll_seconds": events_poll_seconds,
    }
    try:
        settings = load_settings(
            **{name: value for name, value in flags.items() if value is not None}
        )
        asyncio.run(check_store(settings))
        check_port_free(settings.host, settings.port)
    except VisitTrackerError as error:
        raise fail(error) from None
    # Worker processes build their app from the environment: hand them exactly these settings.
    os.environ.update(settings.as_environment())
    # Every process writes its metrics there; each start begins from zero, as Prometheus
    # expects of a restarted target. Set before the app, and so prometheus-client, is imported.
    with tempfile.TemporaryDirectory(
        prefix="visit-tracker-metrics-", ignore_cleanup_errors=True
    ) as metrics_directory:
        os.environ[METRICS_DIRECTORY] = metrics_directory
        run(settings)


def run(settings: Settings) -> None:
    Granian(
        "visit_tracker.app:create_app",
        factory=True,
        interface=Interfaces.ASGI,
        address=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop=Loops.uvloop,
        http=HTTPModes.http1,  # the request timeout below is HTTP/1's
        websockets=False,
        backpressure=settings.max_concurrency,
        # A client must send a request's head within the request timeout (slow loris), and
        # a head that does not fit the buffer is refused with 431.
        http1_settings=HTTP1Settings(
            header_read_timeout=int(settings.request_timeout * 1000),
            max_buffer_size=MAX_REQUEST_HEAD,
        ),
        log_level=LogLevels(settings.log_level),
        log_dictconfig=logging_config(level=settings.log_level, log_format=settings.log_format),
        log_access=False,  # the application logs requests itself, without client addresses
        workers_kill_timeout=settings.shutdown_timeout,
    ).serve()


cli.command()(bench)


STORE_OPTION = typer.Option(help=describe("store"))

PROGRESS = Console(stderr=True)
"""Where progress is drawn: standard error, and only when it is a terminal."""


def progress(*columns: str | ProgressColumn) -> Progress:
    return Progress(*columns, console=PROGRESS, transient=True, disable=not PROGRESS.is_terminal)


@contextlib.contextmanager
def writer(output: Path | None) -> Iterator[Callable[[str], object]]:
    """Write to standard output, or to `output` only once the whole export is written."""
    if output is None:
        yield sys.stdout.write
        return
    partial = output.with_name(f".{output.name}.partial")
    try:
        with partial.open("w", encoding="utf-8") as file:
            yield file.write
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)


def advancing(lines: Iterable[bytes], bar: Progress, task: TaskID) -> Iterator[bytes]:
    for line in lines:
        bar.advance(task, len(line))
        yield line


@cli.command("export")
def export_command(
    store: Annotated[str | None, STORE_OPTION] = None,
    output: Annotated[
        Path | None, typer.Option(help="File to write (standard output if not given).")
    ] = None,
) -> None:
    """Write every counter as JSON Lines: a header line, then one counter per line."""
    try:
        url = load_settings(**({"store": store} if store else {})).store
        with (
            progress(
                SpinnerColumn(),
                TextColumn("exported {task.completed:,.0f} counters"),
                TimeElapsedColumn(),
            ) as bar,
            writer(output) as write,
        ):
            task = bar.add_task("export", total=None)
            count = asyncio.run(
                transfer.export_counters(url, write=write, counted=lambda: bar.advance(task))
            )
    except (VisitTrackerError, OSError) as error:
        raise fail(error, code=1) from None
    typer.echo(f"visit-tracker: exported {count} counters", err=True)


@cli.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="An export written by `visit-tracker export`.")],
    store: Annotated[str | None, STORE_OPTION] = None,
) -> None:
    """Make every counter of an export exactly as exported, with its history: all at once or
    not at all, but on Redis a chunk of counters at a time (after a failure, import again).

    The whole file is checked first: one bad line and nothing is imported.
    """
    try:
        url = load_settings(**({"store": store} if store else {})).store
        with (
            progress(
                TextColumn("reading"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn()
            ) as bar,
            file.open("rb") as lines,
        ):
            task = bar.add_task("read", total=file.stat().st_size)
            contents = backup.check(advancing(lines, bar, task))
        with PROGRESS.status(f"importing {contents.counters} counters"), file.open("rb") as lines:
            converted = asyncio.run(
                transfer.import_counters(
                    url, backup.entries(lines), replace_history=contents.history
                )
            )
    except MalformedExport as error:
        raise fail(f"nothing imported: {file}: {error}", code=1) from None
    except StoreOutcomeUnknown as error:
        raise fail(f"the import may or may not have been applied: {error}", code=1) from None
    except ImportIncomplete as error:
        raise fail(
            f"the import stopped part way ({error}): import the file again to finish it", code=1
        ) from None
    except (VisitTrackerError, OSError) as error:
        raise fail(f"nothing imported: {error}", code=1) from None
    if converted:
        typer.echo(
            f"visit-tracker: warning: {converted} visitor sketches came from another kind of "
            "store; their unique visitors are approximate (see README, Backup)",
            err=True,
        )
    typer.echo(f"visit-tracker: imported {contents.counters} counters", err=True)


def namespace_name(name: str | None) -> str | None:
    if name is not None and not NAME_PATTERN.fullmatch(name):
        raise typer.BadParameter("a namespace is 1 to 64 of A-Z a-z 0-9 _ . -")
    return name


@cli.command("stats")
def stats_command(
    store: Annotated[str | None, STORE_OPTION] = None,
    namespace: Annotated[
        str | None,
        typer.Option(help="Only the counters of this namespace.", callback=namespace_name),
    ] = None,
    top: Annotated[
        int, typer.Option(min=0, help="How many counters to show, highest values first; 0: all.")
    ] = 20,
) -> None:
    """Print a store's counters with the highest values as a table, read from the store."""
    try:
        url = load_settings(**({"store": store} if store else {})).store
        with progress(
            SpinnerColumn(), TextColumn("read {task.completed:,.0f} counters"), TimeElapsedColumn()
        ) as bar:
            task = bar.add_task("stats", total=None)
            found = asyncio.run(
                summary.summarize(
                    url, namespace=namespace, limit=top or None, counted=lambda: bar.advance(task)
                )
            )
    except (VisitTrackerError, OSError) as error:
        raise fail(error, code=1) from None
    output = Console()
    if not output.is_terminal:  # whole rows for whoever reads the output: no name cut short
        output.width = 200
    if found.counters == 0:
        output.print("No counters" + (f" in namespace {namespace}." if namespace else "."))
        return
    output.print(summary.table(found))


def main() -> None:
    cli()
