"""Structured logs: JSON lines for log collectors, key=value lines for people at a terminal.

Everything the server writes goes through the same processors: the access log (written by
structlog directly, because it runs once per request) and every standard-library record —
granian's own messages and ours — which `stdlib_formatter` renders. Tracebacks are plain text,
without local variables, so that no secret a frame holds reaches a log.
"""

import asyncio
import sys
import time
from collections.abc import Callable
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
    """The formatter of standard-library records (granian's and ours), for `dictConfig`."""
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
    """The `logging.config.dictConfig` document granian applies in every process it starts."""
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
        # granian's access log names the client's address; ours (see api/observer.py) doesn't.
        "loggers": {"granian.access": {"handlers": [], "propagate": False}},
    }


class UtcTimestamp:
    """Turns the event's `timestamp`, Unix time in seconds, into UTC ISO-8601 with microseconds
    and a Z, as `TimeStamper` writes it. The part up to the second is formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, _: Any, __: str, event: structlog.typing.EventDict) -> Any:
        event["timestamp"] = self.format(event["timestamp"])
        return event

    def format(self, moment: float) -> str:
        second = int(moment)
        if second != self._second:
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._prefix}.{int((moment - second) * 1e6):06d}Z"


Request = tuple[float, bytes, str, str, int, float]
"""What the access log notes of a request: time, id, method, path, status, milliseconds."""

Render = Callable[[Request], bytes]


JSON_LINE = (
    b'{"event":"request","request_id":"%s","method":%s,"path":%s,"status":%d,"duration_ms":%r,'
    b'"timestamp":"%s","level":"info"}'
)
"""The JSON access line: the object structlog's JSONRenderer writes for the same event, filled
in directly. A line per request is the one rendering on the hot path, and this costs a third of
building the event and running it through the processors. Request ids are plain ASCII without
quotes (see `api/observer.py`); method and path go through orjson, which escapes them."""


def json_line(timestamp: UtcTimestamp) -> Render:
    """Renders a request as `JSON_LINE`, its time by `timestamp`."""
    dumps = orjson.dumps

    def render(request: Request) -> bytes:
        moment, request_id, method, path, status, duration_ms = request
        when = timestamp.format(moment).encode()
        return JSON_LINE % (request_id, dumps(method), dumps(path), status, duration_ms, when)

    return render


def processed_line(processors: list[Processor]) -> Render:
    """Renders a request as an event run through structlog's `processors`."""

    def render(request: Request) -> bytes:
        moment, request_id, method, path, status, duration_ms = request
        event: Any = {
            "event": "request",
            "request_id": request_id.decode(),
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "timestamp": moment,
        }
        for processor in processors:
            event = processor(None, "info", event)
        return event if isinstance(event, bytes) else event.encode()

    return render


class AccessLog:
    """One line per request, rendered by `render`, written to a binary stream.

    A request is only noted when it ends; lines are rendered and written together, in one
    system call, once 256 requests have gathered or 0.2 s after the first of them (nginx's
    `access_log ... buffer= flush=`), and at shutdown. Rendering lines in one go, away from
    serving requests, costs a fraction of rendering and writing each as its request ends.
    """

    BATCH = 256
    FLUSH_AFTER = 0.2

    def __init__(self, *, render: Render, stream: BinaryIO) -> None:
        self._render = render
        self._stream = stream
        self._pending: list[Request] = []
        self._timer: asyncio.TimerHandle | None = None

    def request(
        self, request_id: bytes, method: str, path: str, status: int, duration_ms: float
    ) -> None:
        """Note one answered request (positional: this runs for every request)."""
        self._pending.append((time.time(), request_id, method, path, status, duration_ms))
        if len(self._pending) >= self.BATCH:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(self.FLUSH_AFTER, self.flush)
            except RuntimeError:  # no event loop: nothing would flush later
                self.flush()

    def flush(self) -> None:
        """Render and write every request noted so far."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        lines = list(map(self._render, pending))
        if lines:
            lines.append(b"")
            self._stream.write(b"\n".join(lines))
            self._stream.flush()


def access_log(log_format: LogFormat) -> AccessLog:
    """The access log, written to stderr in the given format."""
    if resolve_format(log_format, sys.stderr) == "json":
        render = json_line(UtcTimestamp())
    else:
        processors: list[Processor] = [
            structlog.processors.add_log_level,
            UtcTimestamp(),
            _console(sys.stderr),
        ]
        render = processed_line(processors)
    return AccessLog(render=render, stream=sys.stderr.buffer)
