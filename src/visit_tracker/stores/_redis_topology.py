"""Where each Redis key lives: on the one server, or on the cluster node that owns its slot.

The cluster's map of slots to nodes comes from redis-py's `RedisCluster`, initialised once before
anything else uses it (used concurrently before that, it ran some commands twice). Commands are
never sent through it, only through `round_trip`, on connections its nodes hand out.

While a slot moves between nodes (resharding), a node may answer a command about its keys with
MOVED or ASK (the keys are on another node) or TRYAGAIN (a script's keys are split between the
two, or some do not exist yet): it ran none of it, so `follow_slot_moves` sends it again, where
the answer says, until the move is over or the operation's deadline is near.
"""

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection
from redis.exceptions import AskError, MovedError, RedisClusterException, RedisError

from visit_tracker.errors import StoreError, StoreOutcomeUnknown, StoreUnavailable
from visit_tracker.stores._redis_wire import (
    MOVING_SLOT_ERRORS,
    NO_RETRY,
    Command,
    ConnectionSource,
    Pool,
    Reply,
    describe,
)

SLOT_MOVE_PAUSE = 0.01
"""Seconds to wait before asking again a node that said TRYAGAIN or CLUSTERDOWN, or a command
redirected more than once: moving a slot's keys takes a few milliseconds."""


class Topology(Protocol):
    """The servers a store talks to."""

    single: bool
    """One server: a Lua script may touch any keys. Else scripts stay within one slot."""

    def node_for(self, key: str) -> ConnectionSource:
        """The server holding `key`."""
        ...

    def primaries(self) -> list[ConnectionSource]:
        """Every server that holds keys."""
        ...

    async def refresh(self, deadline: float) -> None:
        """Learn the servers again if a failure hinted that they changed."""
        ...

    def suspect(self) -> None:
        """Note a failure that may mean the servers changed."""
        ...

    async def close(self) -> None: ...


class OneServer:
    """A single Redis server."""

    single = True

    def __init__(self, connection_class: type[Connection], **connection_kwargs: Any) -> None:
        self._pool = Pool(connection_class, **connection_kwargs)

    def node_for(self, key: str) -> ConnectionSource:
        return self._pool

    def primaries(self) -> list[ConnectionSource]:
        return [self._pool]

    async def refresh(self, deadline: float) -> None:
        return None

    def suspect(self) -> None:
        return None

    async def close(self) -> None:
        await self._pool.disconnect()


class Cluster:
    """A Redis Cluster: keys spread over slots, slots over primaries."""

    single = False

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._stale = False

    @classmethod
    async def discover(
        cls, url: str, *, where: str, max_connections: int, **options: Any
    ) -> "Cluster":
        """Ask the cluster at `url` (`where` for messages) for its slot map, or raise
        `StoreUnavailable`."""
        client = RedisCluster.from_url(
            url, max_connections=max_connections, retry=NO_RETRY, **options
        )
        try:
            await client.initialize()
        except BaseException as error:  # timed out or cancelled as well: close what it opened
            await client.aclose()
            if isinstance(error, RedisError | RedisClusterException | OSError):
                raise StoreUnavailable(f"Redis Cluster at {where}: {describe(error)}") from error
            raise
        return cls(client)

    def node_for(self, key: str) -> ConnectionSource:
        try:
            node: ConnectionSource | None = self._client.get_node_from_key(key)
        except RedisClusterException:  # a slot no node serves, as far as we know
            node = None
        if node is None:
            self.suspect()
            raise StoreUnavailable(f"Redis Cluster: no node serves the slot of {key}")
        return node

    def node_at(self, host: str, port: int) -> ConnectionSource | None:
        """The node at `host:port`, if the map knows it."""
        node: ConnectionSource | None = self._client.get_node(host=host, port=port)
        return node

    def primaries(self) -> list[ConnectionSource]:
        return list(self._client.get_primaries())

    async def refresh(self, deadline: float) -> None:
        if not self._stale:
            return
        try:
            async with asyncio.timeout_at(deadline):
                await self._client.nodes_manager.initialize()
        except (RedisError, RedisClusterException, OSError, TimeoutError) as error:
            raise StoreUnavailable(
                f"Redis Cluster: cannot map its slots: {describe(error)}"
            ) from error
        self._stale = False

    def suspect(self) -> None:
        self._stale = True

    async def close(self) -> None:
        await self._client.aclose()


RoundTrip = Callable[[ConnectionSource, Sequence[Command]], Awaitable[list[Reply]]]


async def follow_slot_moves(
    cluster: Cluster,
    round_trip: RoundTrip,
    *,
    sent: tuple[ConnectionSource, Sequence[Command]],
    replies: list[Reply],
    deadline: float,
) -> list[Reply]:
    """The replies to the commands `sent` to a node, with each MOVED, ASK, TRYAGAIN or
    CLUSTERDOWN among them replaced by the reply of the command sent again: at once to the node
    a MOVED or ASK names (after ASKING for an ASK), after `SLOT_MOVE_PAUSE` to the same node
    otherwise. A round trip sent again that fails becomes the reply of each of its commands.
    What is still moving when the deadline is near is left as it is.
    """
    node, commands = sent
    replies = list(replies)
    routes = [(node, False)] * len(commands)  # where each command went, and after ASKING or not
    loop = asyncio.get_running_loop()
    rounds = 0
    while moving := [i for i, reply in enumerate(replies) if isinstance(reply, MOVING_SLOT_ERRORS)]:
        if rounds or not all(isinstance(replies[i], AskError) for i in moving):
            if loop.time() + SLOT_MOVE_PAUSE >= deadline:
                return replies
            await asyncio.sleep(SLOT_MOVE_PAUSE)
        rounds += 1
        again: defaultdict[tuple[ConnectionSource, bool], list[int]] = defaultdict(list)
        for i in moving:
            reply = replies[i]
            if isinstance(reply, MovedError):
                cluster.suspect()  # the next operation learns the new map
            if isinstance(reply, AskError):
                target = cluster.node_at(reply.host, reply.port)
                if target is None:  # a node the map does not know yet
                    cluster.suspect()
                    return replies
                routes[i] = (target, not isinstance(reply, MovedError))
            again[routes[i]].append(i)
        for (target, asking), indexes in again.items():
            resent = [
                command
                for i in indexes
                for command in ((("ASKING",), commands[i]) if asking else (commands[i],))
            ]
            try:
                answers: list[Reply] = await round_trip(target, resent)
            except (StoreError, StoreOutcomeUnknown) as error:
                answers = [error] * len(resent)
            for i, answer in zip(indexes, answers[1::2] if asking else answers, strict=True):
                replies[i] = answer
    return replies
