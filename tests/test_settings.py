"""Settings come from VISIT_TRACKER_* variables or explicit values, and refuse bad ones."""

import pytest

from visit_tracker.errors import ConfigError
from visit_tracker.rate_limits.limiter import buckets_url
from visit_tracker.settings import Settings, load_settings

STRONG_TOKEN = "Xq3v-9Lp2_Rt7Zk8Mw4Yb6Nc1Hd5Gf0Js"


def test_defaults_serve_port_8080_on_the_sqlite_store() -> None:
    """Without configuration the server listens on :8080 and stores counts in data/visits.db."""
    settings = Settings()
    assert settings.port == 8080
    assert settings.workers == 1
    assert settings.store == "sqlite:///data/visits.db"


def test_environment_variables_configure_every_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """VISIT_TRACKER_<NAME> sets the field of that name, case-insensitive levels included."""
    monkeypatch.setenv("VISIT_TRACKER_PORT", "9000")
    monkeypatch.setenv("VISIT_TRACKER_WORKERS", "3")
    monkeypatch.setenv("VISIT_TRACKER_STORE", "sqlite:////var/lib/visits.db")
    monkeypatch.setenv("VISIT_TRACKER_LOG_LEVEL", "WARNING")
    settings = load_settings()
    assert (settings.port, settings.workers) == (9000, 3)
    assert settings.store == "sqlite:////var/lib/visits.db"
    assert settings.log_level == "warning"


def test_explicit_values_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value given explicitly (a CLI flag) overrides the environment variable."""
    monkeypatch.setenv("VISIT_TRACKER_PORT", "9000")
    assert load_settings(port=9100).port == 9100


def test_settings_survive_the_trip_through_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Settings exported for worker processes read back as the same settings."""
    original = load_settings(
        port=9100,
        workers=2,
        access_log=True,
        store_timeout=0.5,
        trusted_proxies="10.0.0.0/8, 192.0.2.10,fd00::/64",
        admin_token=STRONG_TOKEN,
    )
    for name, value in original.as_environment().items():
        monkeypatch.setenv(name, value)
    assert load_settings() == original


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"port": 0}, "VISIT_TRACKER_PORT (--port): Input should be greater than or equal to 1"),
        ({"store": "mysql://db"}, "unknown store 'mysql://db'"),
        ({"store": "sqlite://relative.db"}, "bad SQLite store URL"),
        ({"store": "postgresql://u@h/db?bogus=1"}, "bad PostgreSQL store URL: invalid URI query"),
        ({"store_timeout": 0}, "VISIT_TRACKER_STORE_TIMEOUT (--store-timeout)"),
        ({"log_level": "loud"}, "VISIT_TRACKER_LOG_LEVEL (--log-level): Input should be"),
        ({"store": "memory://", "workers": 4}, "4 workers would each count on their own"),
        (
            {"trusted_proxies": "10.0.0.1,nginx"},
            "VISIT_TRACKER_TRUSTED_PROXIES (--trusted-proxies): 'nginx' is neither an IP address",
        ),
        ({"trusted_proxies": "10.0.0.1/8"}, "'10.0.0.1/8' has host bits set: write the network"),
        ({"trusted_proxies": "*"}, "'*' is neither an IP address nor a CIDR network"),
        ({"trusted_proxies": "10.0.0.1,"}, "an entry is empty"),
        ({"rate_limit_hits": -1}, "VISIT_TRACKER_RATE_LIMIT_HITS (--rate-limit-hits)"),
        ({"rate_limit_admin_burst": 0}, "VISIT_TRACKER_RATE_LIMIT_ADMIN_BURST"),
        ({"rate_limit_store": "postgresql://u@h/db"}, "unknown rate-limit store"),
        ({"rate_limit_store": "redis://h:x"}, "bad Redis store URL"),
        ({"cors_origins": "https://a.example/page"}, "bad origin 'https://a.example/page'"),
        ({"cors_origins": "a.example"}, "VISIT_TRACKER_CORS_ORIGINS (--cors-origins): bad origin"),
        (
            {"max_streams": 2048},
            "VISIT_TRACKER_MAX_STREAMS (--max-streams, 2048) must be below "
            "VISIT_TRACKER_MAX_CONCURRENCY (--max-concurrency, 2048)",
        ),
        ({"events_poll_seconds": 0.01}, "VISIT_TRACKER_EVENTS_POLL_SECONDS"),
    ],
)
def test_bad_settings_are_refused_with_the_setting_named(
    overrides: dict[str, object], message: str
) -> None:
    """An invalid or contradictory value raises ConfigError naming the variable and flag."""
    with pytest.raises(ConfigError, match="invalid settings") as raised:
        load_settings(**overrides)
    assert message in str(raised.value)


def test_a_misspelt_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown VISIT_TRACKER_* variable (a typo) stops the start instead of being ignored."""
    monkeypatch.setenv("VISIT_TRACKER_PROT", "9000")
    with pytest.raises(ConfigError, match="unknown setting VISIT_TRACKER_PROT; known: "):
        load_settings()


@pytest.mark.parametrize(
    "token",
    [
        "changethis",
        "a" * 64,
        "abcabcabcabcabcabcabcabcabcabcabcabc",
        "Xq3v-9Lp2_Rt7Zk8Mw4Yb6Nc1Hd5Gf0J"[:31],
    ],
)
def test_a_weak_operator_token_is_refused_without_being_quoted(token: str) -> None:
    """An operator token that is short or made of few characters stops the start; the message
    says why but never shows the token."""
    with pytest.raises(ConfigError, match="the operator token is too weak") as raised:
        load_settings(admin_token=token)
    assert "VISIT_TRACKER_ADMIN_TOKEN" in str(raised.value)
    assert token not in str(raised.value)


def test_the_operator_token_never_shows_in_the_settings_repr() -> None:
    """Printing or logging the settings shows the operator token masked."""
    assert STRONG_TOKEN not in repr(load_settings(admin_token=STRONG_TOKEN))


def test_trusted_proxies_are_read_as_addresses_and_networks() -> None:
    """The proxy list is kept in one form: no spaces, a lone address without its prefix."""
    given = " 10.0.0.0/8, 192.0.2.10/32 ,2001:DB8::/32,::1"
    assert load_settings(trusted_proxies=given).trusted_proxies == (
        "10.0.0.0/8,192.0.2.10,2001:db8::/32,::1"
    )
    assert load_settings().trusted_proxies == ""


def test_origins_are_read_as_browsers_send_them() -> None:
    """Blanks, a trailing slash and capitals in the origin list do not stop a page matching."""
    settings = load_settings(cors_origins=" https://Blog.Example/ ,https://www.blog.example:8443")
    assert settings.cors_origins == "https://blog.example,https://www.blog.example:8443"


@pytest.mark.parametrize(
    ("store", "rate_limit_store", "buckets"),
    [
        ("sqlite:///data/v.db", "auto", "memory://"),
        ("redis://db:6379/0?prefix=site", "auto", "redis://db:6379/0?prefix=site"),
        ("redis://db:6379/0", "memory://", "memory://"),
        ("postgresql://u@db/visits", "redis://cache:6379/1", "redis://cache:6379/1"),
    ],
)
def test_rate_limit_buckets_follow_a_redis_store_unless_told(
    store: str, rate_limit_store: str, buckets: str
) -> None:
    """`auto` keeps buckets in the store's Redis if it is one, else in each process."""
    settings = load_settings(store=store, rate_limit_store=rate_limit_store)
    assert buckets_url(settings) == buckets
