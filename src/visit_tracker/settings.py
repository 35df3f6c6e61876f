"""All configuration in one place: environment variables `VISIT_TRACKER_*` or CLI flags.

Settings are checked when read; a bad or contradictory one stops the server before it serves,
with a message naming the variable, the flag and the reason.
"""

import os
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from visit_tracker.api.proxies import parse_trusted_proxies, written
from visit_tracker.errors import ConfigError
from visit_tracker.logs import LogFormat
from visit_tracker.stores import REDIS_SCHEMES, check_store_url
from visit_tracker.stores import is_shared as store_is_shared

ENV_PREFIX = "VISIT_TRACKER_"

LogLevel = Literal["critical", "error", "warning", "info", "debug"]

BotFilter = Literal["named", "all", "off"]
"""Which routes count known bots' hits apart: those of named counters, those and POST /visit,
or none."""

TOKEN_LENGTH = 32
TOKEN_VARIETY = 12
"""A token this long with this many different characters cannot be a word or a pattern."""

MAX_RATE = 1_000_000
"""Requests a second: a bucket's arithmetic counts in microseconds."""


def _rate(routes: str) -> str:
    return f"Requests a second each client may make to {routes}; 0 turns the limit off."


def _burst(routes: str) -> str:
    return f"Requests each client may make at once to {routes}, before the rate holds it back."


def split_origins(origins: str) -> list[str]:
    """The origins of a comma-separated list, blanks around them ignored."""
    return [origin.strip() for origin in origins.split(",") if origin.strip()]


def check_origin(origin: str) -> str:
    """The origin unchanged if it is `*` or `scheme://host[:port]`, else raise ValueError."""
    if origin == "*":
        return origin
    parts = urlsplit(origin)
    if (
        parts.scheme not in {"http", "https"}
        or not parts.hostname
        or origin.rstrip("/") != (f"{parts.scheme}://{parts.netloc}")
    ):
        raise ValueError(
            f"bad origin {origin!r}: write * or scheme://host[:port], as in https://example.com"
        )
    return f"{parts.scheme}://{parts.netloc.lower()}"


class Settings(BaseSettings):
    """How the server runs. Every field is also `VISIT_TRACKER_<NAME>` and `--<name>`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8080, ge=1, le=65535, description="TCP port to listen on.")
    workers: int = Field(1, ge=1, le=64, description="Worker processes sharing the port.")
    store: str = Field(
        "sqlite:///data/visits.db",
        description="Where counts live: sqlite:///relative.db, sqlite:////absolute.db, memory://, "
        "redis://host:6379/0, redis+cluster://host:7000 (rediss:// for TLS; ?prefix=NAME), "
        "postgresql://user@host:5432/db",
    )
    store_timeout: float = Field(
        2.0, gt=0, le=60, description="Seconds a request waits on a busy store before a 503."
    )
    log_level: LogLevel = Field("info", description="Least severe log level written.")
    log_format: LogFormat = Field(
        "auto", description="Log lines as json, as console text, or auto: console on a terminal."
    )
    access_log: bool = Field(
        False, description="Log one line per request: id, method, path, status, duration."
    )
    max_body_size: int = Field(
        65536, ge=0, le=2**30, description="Largest request body accepted, in bytes; larger is 413."
    )
    request_timeout: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Seconds a client has to send a request's head, and the longest an idle "
        "keep-alive connection stays open; a slower one is disconnected.",
    )
    max_concurrency: int = Field(
        2048,
        ge=1,
        le=1_000_000,
        description="Most requests a worker handles at once (granian's backpressure).",
    )
    shutdown_timeout: int = Field(
        10, gt=0, le=300, description="Seconds to finish in-flight requests on SIGTERM."
    )
    admin_token: SecretStr | None = Field(
        None,
        description="The operator token: may set, delete and claim every counter. At least "
        f"{TOKEN_LENGTH} characters with {TOKEN_VARIETY} different ones (e.g. `openssl rand "
        "-base64 32`). Prefer the variable: a flag shows in the process list.",
    )
    trusted_proxies: str = Field(
        "",
        description="Reverse proxies (IP addresses and CIDR networks, comma-separated) whose "
        "X-Forwarded-For and X-Forwarded-Proto name the client and scheme; empty trusts none.",
    )
    rate_limit_visit: float = Field(
        0.0, ge=0, le=MAX_RATE, description=_rate("POST /visit and GET /stats")
    )
    rate_limit_visit_burst: int = Field(
        100, ge=1, le=MAX_RATE, description=_burst("POST /visit and GET /stats")
    )
    rate_limit_hits: float = Field(
        10.0, ge=0, le=MAX_RATE, description=_rate("the routes that count a hit")
    )
    rate_limit_hits_burst: int = Field(
        60, ge=1, le=MAX_RATE, description=_burst("the routes that count a hit")
    )
    rate_limit_reads: float = Field(
        50.0, ge=0, le=MAX_RATE, description=_rate("the routes that read named counters")
    )
    rate_limit_reads_burst: int = Field(
        200, ge=1, le=MAX_RATE, description=_burst("the routes that read named counters")
    )
    rate_limit_admin: float = Field(
        1.0, ge=0, le=MAX_RATE, description=_rate("the routes that create, set or delete counters")
    )
    rate_limit_admin_burst: int = Field(
        10, ge=1, le=MAX_RATE, description=_burst("the routes that create, set or delete counters")
    )
    rate_limit_store: str = Field(
        "auto",
        description="Where rate-limit buckets live: auto (the store's Redis if the store is "
        "one, else each process's memory), memory:// (each process's memory), or a "
        "redis:// or redis+cluster:// URL, shared by every instance using it.",
    )
    history_days: int = Field(
        400,
        ge=1,
        le=36500,
        description="Days of hourly hits, pages and referrers kept besides today; older ones "
        "are deleted about once an hour.",
    )
    unique_visitors: bool = Field(
        True,
        description="Count each counter's unique visitors, per hour and per UTC day, by a hash "
        "of the client's address and User-Agent keyed with a salt that changes daily; neither "
        "is ever stored.",
    )
    bot_filter: BotFilter = Field(
        "named",
        description="Which routes count the hits of known bots (by User-Agent) apart, in a "
        "counter's bot_hits instead of its value: named (the routes that count a hit on a named "
        "counter), all (POST /visit too), or off (every hit counts).",
    )
    max_streams: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Most event streams (GET /v1/counters/{namespace}/{key}/events) each worker "
        "process serves at once; past it, a 503.",
    )
    events_poll_seconds: float = Field(
        1.0,
        ge=0.1,
        le=60,
        description="Seconds between two reads of a streamed counter's value from the store, "
        "which is how a stream learns of changes made through other processes and instances.",
    )
    cors_origins: str = Field(
        "*",
        description="Origins whose pages may call the API from a browser: * for any, a "
        "comma-separated list such as https://example.com,https://www.example.com, or empty "
        "for none.",
    )

    @field_validator("store")
    @classmethod
    def _known_store(cls, url: str) -> str:
        return check_store_url(url)

    @field_validator("admin_token")
    @classmethod
    def _strong_token(cls, token: SecretStr | None) -> SecretStr | None:
        # The message never quotes the token: it is a secret even when it is a weak one.
        if token is not None:
            secret = token.get_secret_value()
            if len(secret) < TOKEN_LENGTH or len(set(secret)) < TOKEN_VARIETY:
                raise ValueError(
                    f"the operator token is too weak: use at least {TOKEN_LENGTH} characters "
                    f"with {TOKEN_VARIETY} different ones, e.g. from `openssl rand -base64 32`"
                )
        return token

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, text: str) -> str:
        return ",".join(written(network) for network in parse_trusted_proxies(text))

    @field_validator("rate_limit_store")
    @classmethod
    def _known_buckets_store(cls, url: str) -> str:
        if url in {"auto", "memory://"}:
            return url
        if urlsplit(url).scheme not in REDIS_SCHEMES:
            raise ValueError(
                f"unknown rate-limit store {url!r}: use auto, memory:// or a redis:// URL"
            )
        return check_store_url(url)

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: str) -> str:
        return ",".join(check_origin(origin) for origin in split_origins(origins))

    @field_validator("log_level", mode="before")
    @classmethod
    def _lowercase_level(cls, level: Any) -> Any:
        return level.lower() if isinstance(level, str) else level

    @model_validator(mode="after")
    def _workers_share_the_store(self) -> "Settings":
        if self.workers > 1 and not store_is_shared(self.store):
            raise ValueError(
                f"store {self.store} keeps counts inside one process, so {self.workers} workers "
                "would each count on their own; use a shared store (sqlite, redis, postgresql) "
                "or one worker"
            )
        return self

    @model_validator(mode="after")
    def _streams_leave_room_for_requests(self) -> "Settings":
        # Every open stream is a request granian counts against max_concurrency until it ends.
        if self.max_streams >= self.max_concurrency:
            raise ValueError(
                f"{ENV_PREFIX}MAX_STREAMS (--max-streams, {self.max_streams}) must be below "
                f"{ENV_PREFIX}MAX_CONCURRENCY (--max-concurrency, {self.max_concurrency}): open "
                "streams would hold every request a worker may handle at once"
            )
        return self

    def as_environment(self) -> dict[str, str]:
        """These settings as `VISIT_TRACKER_*` variables, for worker processes to read back."""
        return {
            f"{ENV_PREFIX}{name.upper()}": _as_variable(value)
            for name, value in self.model_dump().items()
            if value is not None
        }


def _as_variable(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value)


def load_settings(**overrides: Any) -> Settings:
    """Read the environment, apply explicit overrides, and raise `ConfigError` if invalid."""
    known = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    unknown = sorted({name for name in os.environ if name.startswith(ENV_PREFIX)} - known)
    if unknown:
        raise ConfigError(
            f"unknown setting {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    try:
        return Settings(**overrides)
    except ValidationError as error:
        problems = []
        for detail in error.errors(include_url=False):
            name = str(detail["loc"][0]) if detail["loc"] else ""
            where = f"{ENV_PREFIX}{name.upper()} (--{name.replace('_', '-')})" if name else ""
            message = detail["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None
