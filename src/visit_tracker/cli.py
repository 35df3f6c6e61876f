"""The `visit-tracker` command: `serve` runs the HTTP server."""

import asyncio
import os
import tempfile
from typing import Annotated, Any

import typer
import uvicorn

from visit_tracker.errors import VisitTrackerError
from visit_tracker.logs import LogFormat, logging_config
from visit_tracker.settings import ENV_PREFIX, LogLevel, Settings, load_settings
from visit_tracker.stores import open_store

METRICS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus-client's multiprocess directory (see metrics.py, not imported here: prometheus-client
reads the variable once, when it is first imported)."""

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


def fail(error: VisitTrackerError) -> typer.Exit:
    typer.echo(f"visit-tracker: {error}", err=True)
    return typer.Exit(code=2)


async def check_store(settings: Settings) -> None:
    """Open and close the store once, so a bad one stops the server with one clear line."""
    store = await open_store(settings.store, wait_limit=settings.store_timeout)
    await store.close()


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
    keep_alive_timeout: Annotated[
        int | None, typer.Option(help=describe("keep_alive_timeout"))
    ] = None,
    max_concurrency: Annotated[int | None, typer.Option(help=describe("max_concurrency"))] = None,
    shutdown_timeout: Annotated[int | None, typer.Option(help=describe("shutdown_timeout"))] = None,
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
        "keep_alive_timeout": keep_alive_timeout,
        "max_concurrency": max_concurrency,
        "shutdown_timeout": shutdown_timeout,
    }
    try:
        settings = load_settings(
            **{name: value for name, value in flags.items() if value is not None}
        )
        asyncio.run(check_store(settings))
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
    uvicorn.run(
        "visit_tracker.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=logging_config(level=settings.log_level, log_format=settings.log_format),
        log_level=settings.log_level,
        access_log=False,  # the application logs requests itself, without client addresses
        timeout_graceful_shutdown=settings.shutdown_timeout,
        timeout_keep_alive=settings.keep_alive_timeout,
        limit_concurrency=settings.max_concurrency,
        # uvicorn's httptools protocol, plus a deadline for each request to arrive.
        http="visit_tracker.http_protocol:DeadlineHttpToolsProtocol",
        lifespan="on",
        proxy_headers=False,
        server_header=False,
    )


def main() -> None:
    cli()
