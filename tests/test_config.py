"""Settings: embedded defaults, and a clear refusal naming the variable for a bad value."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_settings


@pytest.fixture
def settings(tmp_path):
    return lambda **values: load_settings({"VAR_DIR": str(tmp_path), **values}, environ={})


def test_defaults_run_everything_locally(settings, tmp_path):
    s = settings()
    assert s.DATABASE_URL == f"sqlite:///{tmp_path / 'gateway.db'}"
    assert s.REDIS_URL is None
    assert s.PUBLIC_BASE_URL == "http://127.0.0.1:5000"
    assert (s.CODE_TTL_SECONDS, s.CODE_MAX_ATTEMPTS) == (300, 5)
    assert s.PHONE_COUNTRIES == ("CN",)
    assert s.INBOUND_SMS_SECRET is None
    assert len(s.SECRET_KEY) >= 32
    assert settings().SECRET_KEY == s.SECRET_KEY  # kept across restarts
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_code_lifetime_is_configurable_but_never_over_ten_minutes(settings):
    assert settings(CODE_TTL_SECONDS="600").CODE_TTL_SECONDS == 600
    with pytest.raises(ConfigError, match="CODE_TTL_SECONDS must be between 60 and 600"):
        settings(CODE_TTL_SECONDS="601")


@pytest.mark.parametrize("name, value, message", [
    ("PORT", "http", "PORT must be a whole number"),
    ("LIMIT_DEVICE_ORDERS_PER_HOUR", "-1", "must be between 0 and 10000"),
    ("PHONE_COUNTRIES", "CN,XX", "PHONE_COUNTRIES must list ISO region codes"),
    ("SMS_LANGUAGE", "fr", "SMS_LANGUAGE must be one of zh-CN, en"),
    ("TIMEZONE", "Mars/Olympus", "TIMEZONE must be an IANA time zone"),
    ("SECRET_KEY", "short", "SECRET_KEY must be at least 16 characters"),
    ("SSE_MAX_STREAMS", "0", "SSE_MAX_STREAMS must be between 1 and 100000"),
    ("SSE_WEB_MAX_STREAMS", "many", "SSE_WEB_MAX_STREAMS must be a whole number"),
    ("TRUSTED_PROXIES", "10.0.0.0/33", "TRUSTED_PROXIES must be how many proxies are in front"),
    ("TRUSTED_PROXIES", "lb.internal", "TRUSTED_PROXIES must be how many proxies are in front"),
    ("TRUSTED_PROXIES", "11", "TRUSTED_PROXIES must be between 0 and 10"),
])
def test_bad_values_are_refused_naming_the_variable(settings, name, value, message):
    with pytest.raises(ConfigError, match=message):
        settings(**{name: value})


def test_public_base_url_loses_its_trailing_slash(settings):
    assert settings(PUBLIC_BASE_URL="https://pay.example/").PUBLIC_BASE_URL == \
        "https://pay.example"


def test_trusted_proxies_are_a_count_or_networks(settings):
    assert settings().TRUSTED_PROXIES == 0
    assert settings(TRUSTED_PROXIES="2").TRUSTED_PROXIES == 2
    networks = settings(TRUSTED_PROXIES="10.0.0.0/8, 192.0.2.7,fd00::/8").TRUSTED_PROXIES
    assert [str(n) for n in networks] == ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]
