"""Round trips to Redis on raw connections, each failure classified by what Redis may have done.

redis-py's clients retry a command after a timeout or a dropped connection, which for a counter
means counting a visit twice. Here nothing is ever retried: the commands of a round trip are
written once, in one write, and a failure becomes

- `StoreUnavailable` when nothing was written (no connection, refused, timed out connecting):
  nothing was applied;
- `StoreOutcomeUnknown` when the commands were written but their replies did not all arrive
  (connection dropped, timed out): Redis may or may not have run them.

A pooled connection that the server closed while idle (it died or restarted) is noticed before
anything is written, and replaced: the kernel knows at once, even when the event loop has not
yet run to notice it.
"""

import asyncio
import select
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from redis.asyncio.connection import Connection, SSLConnection
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    ClusterDownError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.retry import Retry
from redis.typing import EncodableT

from visit_tracker.errors import StoreError, StoreOutcomeUnknown, StoreUnavailable

Command = tuple[EncodableT, ...]
Reply = Any
"""What Redis answered to one command: bytes, int, a list, None, or a `ResponseError`; or the
`StoreError` or `StoreOutcomeUnknown` of a round trip that carried it again and failed."""

NO_RETRY = Retry(NoBackoff(), retries=0)
"""redis-py's own retries would run a command twice when only its reply was lost."""

MOVING_SLOT_ERRORS = (AskError, ClusterDownError, TryAgainError)
"""Cluster answers (MOVED, ASK, CLUSTERDOWN, TRYAGAIN) meaning: not run here, ask again later."""


class ConnectionSource(Protocol):
    """Hands out connections to one Redis server: `Pool`, or redis-py's `ClusterNode`."""

    @property
    def name(self) -> str:
        """The server as `host:port`, for messages."""
        ...

    def acquire_connection(self) -> Connection: ...

    def release(self, connection: Connection) -> None: ...


class Pool:
    """Reusable connections to one Redis server; callers bound how many are in use at once."""

    def __init__(self, connection_class: type[Connection], **connection_kwargs: Any) -> None:
        self.name = f"{connection_kwargs['host']}:{connection_kwargs['port']}"
        self._connection_class = connection_class
        self._connection_kwargs = {**connection_kwargs, "retry": NO_RETRY}
        self._free: deque[Connection] = deque()
        self._every: list[Connection] = []

    def acquire_connection(self) -> Connection:
        if self._free:
            return self._free.pop()
        connection = self._connection_class(**self._connection_kwargs)
        if isinstance(connection, SSLConnection) and self._every:
            # One TLS context for all: each new one reads every system authority, tens of
            # milliseconds on the event loop, seconds for a burst of new connections.
            connection.ssl_context = self._every[0].ssl_context  # type: ignore[attr-defined]
        self._every.append(connection)
        return connection

    def release(self, connection: Connection) -> None:
        self._free.append(connection)

    async def disconnect(self) -> None:
        for connection in self._every:
            await connection.disconnect()


def _connect(connection: Connection) -> Awaitable[None]:
    """Connect and handshake, unless connected already (redis-py leaves this one untyped)."""
    connect: Callable[[], Awaitable[None]] = connection.connect
    return connect()


def _readable_while_idle(connection: Connection) -> bool:
    """Whether the kernel holds an end of stream or unasked-for bytes on an idle connection."""
    writer = connection._writer  # redis-py keeps its stream private; the socket is what we poll
    if writer is None:
        return False
    # poll(), not select(): a worker holding many connections (event streams) numbers its
    # descriptors past 1023, which select() refuses.
    watch = select.poll()
    watch.register(writer.get_extra_info("socket").fileno(), select.POLLIN)
    return bool(watch.poll(0))


def describe(error: BaseException) -> str:
    """A one-line reason for a failure; timeouts carry no message of their own."""
    text = str(error)
    return text if text else f"no answer in time ({type(error).__name__})"


async def round_trip(
    source: ConnectionSource,
    commands: Sequence[Command],
    *,
    deadline: float,
    writes: bool,
) -> list[Reply]:
    """Write the commands at once, read one reply each; error replies come back as exceptions.

    Everything happens before `deadline` (event-loop time). `writes` says whether the commands
    change data, i.e. whether a reply lost after writing leaves the outcome unknown.
    """
    connection = source.acquire_connection()
    written = False
    try:
        async with asyncio.timeout_at(deadline):
            if connection.is_connected and (
                await connection.can_read() or _readable_while_idle(connection)
            ):
                await connection.disconnect()  # closed by the server, or stale data
            await _connect(connection)
            written = True
            await connection.send_packed_command(
                connection.pack_commands(commands), check_health=False
            )
            replies: list[Reply] = []
            for _ in commands:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as error:
                    replies.append(error)
            return replies
    except (RedisError, OSError, TimeoutError) as error:
        await connection.disconnect(nowait=True)
        if written and writes:
            raise StoreOutcomeUnknown(
                f"Redis {source.name} took the request but its reply was lost: {describe(error)}"
            ) from error
        raise StoreUnavailable(f"Redis {source.name} is unavailable: {describe(error)}") from error
    except BaseException:  # cancelled: whatever was half done must not reach the next user
        await connection.disconnect(nowait=True)
        raise
    finally:
        source.release(connection)


def check(reply: Reply, *, source: ConnectionSource) -> Reply:
    """The reply itself, or the error it means: the `StoreError` of an error reply (Redis ran
    nothing of it), or the failure of the round trip that carried it."""
    if isinstance(reply, StoreError | StoreOutcomeUnknown):
        raise reply
    if isinstance(reply, MOVING_SLOT_ERRORS):
        raise StoreUnavailable(
            f"Redis {source.name} cannot serve that slot now: {type(reply).__name__} {reply}"
        )
    if isinstance(reply, ResponseError):
        raise StoreError(f"Redis {source.name} refused the command: {reply}")
    return reply
