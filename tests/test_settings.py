"""Settings come from VISIT_TRACKER_* variables or explicit values, and refuse bad ones."""

import pytest

from visit_tracker.errors import ConfigError
from visit_tracker.rate_limits.limiter import buckets_url
from visit_tracker.settings import Settings, load_settings


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
    original = load_settings(port=9100, workers=2, access_log=True, store_timeout=0.5)
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
        ({"rate_limit_hits": -1}, "VISIT_TRACKER_RATE_LIMIT_HITS (--rate-limit-hits)"),
        ({"rate_limit_admin_burst": 0}, "VISIT_TRACKER_RATE_LIMIT_ADMIN_BURST"),
        ({"rate_limit_store": "postgresql://u@h/db"}, "unknown rate-limit store"),
        ({"rate_limit_store": "redis://h:x"}, "bad Redis store URL"),
        ({"cors_origins": "https://a.example/page"}, "bad origin 'https://a.example/page'"),
        ({"cors_origins": "a.example"}, "VISIT_TRACKER_CORS_ORIGINS (--cors-origins): bad origin"),
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
