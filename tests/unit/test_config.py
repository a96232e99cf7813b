from pathlib import Path

import pytest

from callcenter.config import ConfigError, Settings


def test_defaults_put_everything_under_the_data_dir():
    s = Settings.from_env({"CALLCENTER_DATA_DIR": "/srv/cc"})
    assert s.data_dir == Path("/srv/cc")
    assert s.database_url == "sqlite:////srv/cc/callcenter.db"
    assert s.models_dir == Path("/srv/cc/models")
    assert s.is_production


def test_postgres_url_gets_the_psycopg_driver():
    s = Settings.from_env({"CALLCENTER_DATABASE_URL": "postgresql://u@db/cc"})
    assert s.database_url == "postgresql+psycopg://u@db/cc"


@pytest.mark.parametrize(
    "key,value,fragment",
    [
        ("CALLCENTER_DATABASE_URL", "mysql://x", "expected sqlite"),
        ("CALLCENTER_REDIS_URL", "localhost:6379", "expected redis://"),
        ("CALLCENTER_ENV", "prod", "expected one of"),
        ("CALLCENTER_CYCLE_MONTHS_MID", "three", "whole number"),
        ("CALLCENTER_CYCLE_MONTHS_MID", "0", "between 1 and 24"),
        ("CALLCENTER_TIMEZONE", "Mars/Base", "time zone"),
        ("CALLCENTER_SECRET_KEY", "short", "16 characters"),
        ("CALLCENTER_DATABSE_URL", "sqlite:///x", "unknown setting CALLCENTER_DATABSE_URL"),
    ],
)
def test_junk_is_rejected_with_the_variable_named(key, value, fragment):
    with pytest.raises(ConfigError) as err:
        Settings.from_env({key: value})
    assert fragment in str(err.value)
    assert key in str(err.value)


def test_test_suite_variables_are_not_settings():
    Settings.from_env({"CALLCENTER_TEST_POSTGRES_URL": "whatever"})
