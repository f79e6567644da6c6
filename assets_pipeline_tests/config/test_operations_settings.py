"""The operations' two settings: the retention (`ASSETS_RETENTION_DAYS`) and the alert webhook
(`ALERT_WEBHOOK_URL`), a secret that reaches Dagster by name and is never quoted."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from assets_pipeline.config.settings import Settings, SettingsError
from assets_pipeline.location import build_resources

HOOK = "https://hooks.example.com/services/T0KEN-secret"


def test_unset_the_retention_is_30_days_and_no_alert_is_sent():
    settings = Settings.from_env({})
    assert settings.retention == dt.timedelta(days=30)
    assert not build_resources(settings)["alert_webhook"].configured()


def test_the_retention_is_read_in_days():
    assert Settings.from_env({"ASSETS_RETENTION_DAYS": "7.5"}).retention == dt.timedelta(hours=180)
    assert Settings.from_env({"ASSETS_RETENTION_DAYS": "36500"}).retention.days == 36_500


@pytest.mark.parametrize(
    "value, message",
    [
        ("30d", "ASSETS_RETENTION_DAYS='30d': expected a number above 0"),
        # a retention of nothing would prune every old row at once
        ("0", "ASSETS_RETENTION_DAYS='0': must be above 0"),
        # a hundred years at most: more overflows the cutoff (a crash in `prune`, issue 17)
        ("1e10", "ASSETS_RETENTION_DAYS='1e10': must be above 0 and at most 36500"),
        ("36501", "ASSETS_RETENTION_DAYS='36501': must be above 0 and at most 36500"),
        ("inf", "ASSETS_RETENTION_DAYS='inf': must be above 0 and at most 36500"),
        ("nan", "ASSETS_RETENTION_DAYS='nan': must be above 0 and at most 36500"),
    ],
)
def test_a_bad_retention_is_refused_naming_the_variable(value, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({"ASSETS_RETENTION_DAYS": value})


def test_the_webhook_reaches_dagster_by_name_and_a_bad_one_is_refused_unquoted():
    settings = Settings.from_env({"ALERT_WEBHOOK_URL": HOOK})
    resource = build_resources(settings)["alert_webhook"]
    assert isinstance(resource.url, dg.EnvVar)
    assert resource.url.env_var_name == "ALERT_WEBHOOK_URL"
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"ALERT_WEBHOOK_URL": "hooks.example.com/T0KEN-secret"})
    assert "ALERT_WEBHOOK_URL: expected an http:// or https:// URL" in str(refused.value)
    assert "T0KEN" not in str(refused.value)
