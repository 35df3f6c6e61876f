"""Redis for tests: private redis-server processes on free loopback ports (one server to kill,
stall and restart, or a three-primary Redis Cluster), and key prefixes of their own on the
machine's shared Redis, which is never stopped nor flushed."""

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode
from uuid import uuid4

import redis

from tests.server import free_port
from tests.tls import Certificate
from tests.tools import require_program, require_tool

START_TIMEOUT = 15.0
CLUSTER_TIMEOUT = 30.0
SHARED_REDIS = "redis://127.0.0.1:6379/0"


def shared_redis() -> str:
    """The URL of the machine's Redis, once it answers (in CI it must)."""
    try:
        with redis.Redis.from_url(SHARED_REDIS, socket_timeout=2) as client:
            client.ping()
    except redis.RedisError as error:
        require_tool(None, f"no Redis answers at {SHARED_REDIS} ({error})")
    return SHARED_REDIS


@contextmanager
def fresh_prefix(server_url: str) -> Iterator[str]:
    """A store URL on that Redis under a new key prefix; its keys are deleted afterwards."""
    prefix = f"test-{uuid4().hex}"
    try:
        yield f"{server_url}?prefix={prefix}"
    finally:
        with redis.Redis.from_url(server_url, socket_timeout=5) as client:
            for key in client.scan_iter(match=f"{prefix}:*", count=1000):
                client.delete(key)


@dataclass(frozen=True)
class ServerTls:
    """What a Redis server speaking TLS only uses: its certificate, which it also shows as a
    client (to the test's own clients), and the authority whose clients it accepts."""

    authority: Path
    certificate: Certificate

    def url_options(self) -> str:
        """The store URL options under which a client trusts `authority` and shows the
        certificate."""
        return urlencode(
            {
                "ssl_ca_certs": self.authority,
                "ssl_certfile": self.certificate.certificate,
                "ssl_keyfile": self.certificate.key,
            }
        )


class RedisServer:
    """One redis-server process that a test may kill, stall, resume and start again."""

    def __init__(self, directory: Path, *options: str, tls: ServerTls | None = None) -> None:
        self.port = free_port()
        self.directory = directory
        self.options = options
        self.tls = tls
        self.url = f"redis://127.0.0.1:{self.port}/0"
        if tls is not None:
            self.url = f"rediss://127.0.0.1:{self.port}/0?{tls.url_options()}"
        self._process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        """Start (again, on the same port and files) and return once it answers PING."""
        program = require_program("redis-server", "redis-server")
        command = [program, "--port", str(self.port), "--bind", "127.0.0.1"]
        if self.tls is not None:
            command[1:3] = ["--port", "0", "--tls-port", str(self.port)]
            command += ["--tls-ca-cert-file", str(self.tls.authority)]
            command += ["--tls-cert-file", str(self.tls.certificate.certificate)]
            command += ["--tls-key-file", str(self.tls.certificate.key)]
        command += ["--dir", str(self.directory), "--save", "", "--daemonize", "no"]
        command += ["--logfile", str(self.directory / "redis.log"), *self.options]
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "redis.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{log}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: a crash, no chance to save or say goodbye."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)  # a stalled process dies as well
            self._process.kill()
            self._process.wait(timeout=10)

    def stall(self) -> None:
        """SIGSTOP: the server keeps its connections but answers nothing."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def client(self) -> redis.Redis:
        if self.tls is None:
            return redis.Redis(port=self.port, socket_timeout=5)
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def _answers(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False


@contextmanager
def redis_server(
    directory: Path, *options: str, tls: ServerTls | None = None
) -> Iterator[RedisServer]:
    """A started private server (speaking TLS only if `tls` is given), killed on the way out."""
    server = RedisServer(directory, *options, tls=tls)
    try:
        server.start()
        yield server
    finally:
        server.kill()


@contextmanager
def redis_cluster(
    directory: Path, *options: str, primaries: int = 3, tls: ServerTls | None = None
) -> Iterator[list[RedisServer]]:
    """A Redis Cluster of `primaries` servers without replicas, ready (cluster_state:ok);
    `options` go to every server (by default nothing is kept on disk but the node table). With
    `tls`, the nodes speak TLS only, to clients and to each other."""
    with ExitStack() as stack:
        servers = []
        for number in range(primaries):
            node_directory = directory / f"node{number}"
            node_directory.mkdir(parents=True)
            cluster_options = (
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(node_directory / "nodes.conf"),
                "--cluster-port", str(free_port()),
                *(("--tls-cluster", "yes") if tls else ()),
            )  # fmt: skip
            servers.append(
                stack.enter_context(
                    redis_server(node_directory, *cluster_options, *options, tls=tls)
                )
            )
        create = [require_program("redis-cli", "redis-tools"), "--cluster", "create"]
        create += [f"127.0.0.1:{server.port}" for server in servers]
        create += ["--cluster-replicas", "0", "--cluster-yes"]
        if tls is not None:
            create += ["--tls", "--cacert", str(tls.authority)]
            create += ["--cert", str(tls.certificate.certificate)]
            create += ["--key", str(tls.certificate.key)]
        subprocess.run(create, check=True, capture_output=True, timeout=CLUSTER_TIMEOUT)
        wait_until_cluster_ok(servers)
        yield servers


def wait_until_cluster_ok(servers: list[RedisServer]) -> None:
    deadline = time.monotonic() + CLUSTER_TIMEOUT
    for server in servers:
        with server.client() as client:
            while client.cluster("INFO").get("cluster_state") != "ok":
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the cluster was not ok after {CLUSTER_TIMEOUT} s")
                time.sleep(0.05)


def move_slot(servers: list[RedisServer], slot: int, *, pause: float) -> None:
    """Move one hash slot from its primary to the next one in `servers` the way `redis-cli
    --cluster reshard` does — target importing, source migrating, MIGRATE key by key, then every
    node told the new owner — waiting `pause` s before each key, so that the slot's keys stay
    split between the two primaries for a while."""
    with servers[0].client() as client:
        owner_port = next(
            port
            for start, end, (_, port, *_), *_ in client.cluster("SLOTS")
            if start <= slot <= end
        )
    at = next(number for number, server in enumerate(servers) if server.port == owner_port)
    source, target = servers[at], servers[(at + 1) % len(servers)]
    with source.client() as source_client, target.client() as target_client:
        source_id, target_id = (c.cluster("MYID").decode() for c in (source_client, target_client))
        target_client.cluster("SETSLOT", slot, "IMPORTING", source_id)
        source_client.cluster("SETSLOT", slot, "MIGRATING", target_id)
        while keys := source_client.cluster("GETKEYSINSLOT", slot, 1):
            time.sleep(pause)
            source_client.migrate("127.0.0.1", target.port, keys, 0, 5000)
    for server in [target, source, *(s for s in servers if s not in (target, source))]:
        with server.client() as client:
            client.cluster("SETSLOT", slot, "NODE", target_id)
