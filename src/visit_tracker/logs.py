"""Structured logs: JSON lines for log collectors, key=value lines for people at a terminal.

Everything the server writes goes through the same processors: the access log (written by
structlog directly, because it runs once per request) and every standard-library record —
uvicorn's own messages and ours — which `stdlib_formatter` renders. Tracebacks are plain text,
without local variables, so that no secret a frame holds reaches a log.
"""

import asyncio
import sys
import time
from datetime import UTC, datetime
from typing import Any, BinaryIO, Literal, TextIO

import orjson
import structlog
from structlog.typing import Processor

LogFormat = Literal["auto", "json", "console"]

TIMESTAMP: Processor = structlog.processors.TimeStamper(fmt="iso", utc=True)


def resolve_format(log_format: LogFormat, stream: TextIO) -> Literal["json", "console"]:
    """`auto` is console lines on a terminal and JSON lines anywhere else."""
    if log_format == "auto":
        return "console" if stream.isatty() else "json"
    return log_format


def _console(stream: TextIO) -> Processor:
    return structlog.dev.ConsoleRenderer(
        colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback
    )


def _json_text(event: Any, **_: Any) -> str:
    return orjson.dumps(event, default=str).decode()


def stdlib_formatter(log_format: LogFormat) -> structlog.stdlib.ProcessorFormatter:
    """The formatter of standard-library records (uvicorn's and ours), for `dictConfig`."""
    resolved = resolve_format(log_format, sys.stderr)
    renderer: Processor
    if resolved == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_json_text)
    else:
        renderer = _console(sys.stderr)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_log_level, TIMESTAMP],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([structlog.processors.format_exc_info] if resolved == "json" else []),
            renderer,
        ],
    )


def logging_config(*, level: str, log_format: LogFormat) -> dict[str, Any]:
    """The `logging.config.dictConfig` document uvicorn applies in every process it starts."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {"()": f"{__name__}.stdlib_formatter", "log_format": log_format}
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "structured",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        # uvicorn's access log names the client's address; ours (see api/request_log.py) doesn't.
        "loggers": {"uvicorn.access": {"handlers": [], "propagate": False}},
    }


class UtcTimestamp:
    """Adds `timestamp`: UTC, ISO-8601 with microseconds and a Z, as `TimeStamper` writes it.

    The date and time up to the second are formatted once a second, not once a line.
    """

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, _: Any, __: str, event: structlog.typing.EventDict) -> Any:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        event["timestamp"] = f"{self._prefix}.{int((now - second) * 1e6):06d}Z"
        return event


class BufferedLogger:
    """A structlog logger that writes its lines in one system call once 32 KiB have gathered or
    0.2 s after the first of them, whichever comes first (nginx's `access_log ... buffer=
    flush=`). A write per line would cost more than rendering the line; `flush` at shutdown.
    Lines logged outside a running event loop are written at once.
    """

    BUFFER_BYTES = 32 * 1024
    FLUSH_AFTER = 0.2

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._lines: list[bytes] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None

    def msg(self, line: bytes) -> None:
        self._lines.append(line)
        self._size += len(line) + 1
        if self._size >= self.BUFFER_BYTES:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(self.FLUSH_AFTER, self.flush)
            except RuntimeError:
                self.flush()

    debug = info = warning = error = critical = msg

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        lines, self._lines, self._size = self._lines, [], 0
        lines.append(b"")
        self._file.write(b"\n".join(lines))
        self._file.flush()


class AccessLog:
    """Writes one line per request through structlog's processors and logger.

    It runs the processor chain itself instead of going through a bound logger, whose
    keyword-argument plumbing costs several times what rendering the line does.
    """

    def __init__(self, *, processors: list[Processor], logger: Any) -> None:
        self._processors = processors
        self._logger = logger

    def request(
        self, *, request_id: str, method: str, path: str, status: int, duration_ms: float
    ) -> None:
        event: Any = {
            "event": "request",
            "request_id": request_id,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
        }
        for processor in self._processors:
            event = processor(self._logger, "info", event)
        self._logger.msg(event)

    def flush(self) -> None:
        """Write out what is buffered."""
        flush = getattr(self._logger, "flush", None)
        if flush is not None:
            flush()


def access_log(log_format: LogFormat) -> AccessLog:
    """The access log, written to stderr in the given format."""
    processors: list[Processor] = [structlog.processors.add_log_level, UtcTimestamp()]
    if resolve_format(log_format, sys.stderr) == "json":
        processors.append(structlog.processors.JSONRenderer(serializer=orjson.dumps))
        return AccessLog(processors=processors, logger=BufferedLogger(sys.stderr.buffer))
    processors.append(_console(sys.stderr))
    return AccessLog(processors=processors, logger=structlog.WriteLogger(sys.stderr))
