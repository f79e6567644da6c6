"""One settings path: every variable is read by `Settings.from_env()`, checked there, and reaches
the code location and the CLI the same way; secrets reach Dagster as `dg.EnvVar`."""

from __future__ import annotations

import dagster as dg
import pytest

from assets_pipeline.config.settings import Settings, SettingsError
from assets_pipeline.location import build_resources
from assets_pipeline_tests.conftest import REPO


def test_unset_every_setting_has_a_default_that_works_on_a_fresh_machine(tmp_path):
    settings = Settings.from_env({"ASSETS_PIPELINE_HOME": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'trading.sqlite'}"
    assert (settings.rate_limit_calls, settings.rate_limit_window_seconds) == (5, 60.0)
    assert (settings.snapshot_mode, settings.budget_store) == ("batch", "auto")
    assert settings.redis_url == settings.polygon_base_url == ""


def test_the_embedded_home_follows_dagster_home_when_it_is_not_set_itself(tmp_path):
    settings = Settings.from_env({"DAGSTER_HOME": str(tmp_path)})
    assert settings.home == (tmp_path / "assets_pipeline").resolve()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        # a typo in a number names the variable and the value
        ({"POLYGON_RATE_LIMIT_CALLS": "five"}, "POLYGON_RATE_LIMIT_CALLS='five': expected a whole"),
        # a budget of nothing would make every call wait for ever
        ({"POLYGON_RATE_LIMIT_WINDOW_SECONDS": "0"}, "POLYGON_RATE_LIMIT_WINDOW_SECONDS='0'"),
        # an unknown mode is refused with the ones there are
        ({"POLYGON_SNAPSHOT_MODE": "bulk"}, "expected one of batch, per_ticker"),
        ({"POLYGON_BUDGET_STORE": "memcached"}, "expected one of auto, redis, database"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(environ, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)


def test_secrets_reach_dagster_by_name_and_the_cli_by_value():
    settings = Settings.from_env(
        {
            "POLYGON_API_KEY": "sk-secret",
            "TRADING_DATABASE_URL": "postgresql://u:pw@db/trading",
            "REDIS_URL": "redis://:pw@cache:6379/0",
            "POLYGON_RATE_LIMIT_CALLS": "100",
        }
    )
    ui = build_resources(settings)
    assert isinstance(ui["polygon"].api.api_key, dg.EnvVar)
    assert ui["polygon"].api.api_key.env_var_name == "POLYGON_API_KEY"
    assert isinstance(ui["database"].url, dg.EnvVar) and isinstance(ui["redis"].url, dg.EnvVar)
    assert ui["polygon"].budget.calls == 100  # not a secret: the value itself
    cli = build_resources(settings, secrets_as_env_vars=False)
    assert cli["database"].url == "postgresql://u:pw@db/trading"
    assert cli["redis"].url == "redis://:pw@cache:6379/0"


def test_no_module_but_settings_reads_the_environment():
    package = REPO / "assets_pipeline"
    readers = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "simulator" not in path.parts
        and any(s in path.read_text() for s in ("os.environ", "os.getenv", "getenv("))
    )
    assert readers == ["config/settings.py"]


def test_the_list_of_variables_is_exactly_what_settings_read():
    # benches and tests clear these from the caller's shell: a variable missing from the list
    # would leak in unnoticed
    from assets_pipeline.config.settings import VARIABLES

    class Recording(dict):
        read: set = set()

        def get(self, key, default=None):
            self.read.add(key)
            return super().get(key, default)

    environ = Recording()
    Settings.from_env(environ)
    assert environ.read == set(VARIABLES)


def test_the_process_settings_follow_the_environment(monkeypatch, tmp_path):
    """Read when the definitions load (or a command starts): each read sees the environment
    and working directory (a relative home resolves against it) of that moment."""
    monkeypatch.setenv("POLYGON_RATE_LIMIT_CALLS", "7")
    assert Settings.from_env().rate_limit_calls == 7
    monkeypatch.setenv("POLYGON_RATE_LIMIT_CALLS", "8")
    assert Settings.from_env().rate_limit_calls == 8
    monkeypatch.setenv("ASSETS_PIPELINE_HOME", "relative-home")
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env().home == tmp_path.resolve() / "relative-home"
    monkeypatch.setenv("POLYGON_RATE_LIMIT_CALLS", "many")
    for _ in range(2):  # a bad value is refused every time, never remembered as good
        with pytest.raises(SettingsError, match="POLYGON_RATE_LIMIT_CALLS"):
            Settings.from_env()
