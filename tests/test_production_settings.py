"""Production refuses a development setup at start-up, naming what to change and the override."""
import pytest
from click.testing import CliRunner

from controlplane.cli import main
from controlplane.settings import Settings, SettingsError

STRONG = "x" * 48

# What a production deploy sets: strong secrets, PostgreSQL, Postal over HTTP, backups in S3.
PRODUCTION = {
    "APP_ENV": "production", "JWT_SECRET": STRONG, "API_KEY_SALT": STRONG + "y", "BACKUP_ENCRYPTION_KEY": "ab" * 32,
    "DATABASE_URL": "postgresql://app@db.internal:5432/app", "POSTAL_API_URL": "https://postal.example.com",
    "BACKUP_STORAGE": "s3", "BACKUP_S3_BUCKET": "mailgoat-backups",
}

# Each development setting: the variables that turn it on, and the name ALLOW_DEVELOPMENT_SETTINGS takes.
DEVELOPMENT = {
    "sqlite": {"DATABASE_URL": "sqlite:////data/controlplane.db"},
    "sink": {"POSTAL_TRANSPORT": "sink"},
    "local-backups": {"BACKUP_STORAGE": "local"},
    "private-webhooks": {"WEBHOOK_ALLOW_PRIVATE_TARGETS": "true"},
}


def production(tmp_path, **overrides):
    return Settings.from_env({"DATA_DIR": str(tmp_path), **PRODUCTION, **overrides})


def test_a_production_setup_starts(tmp_path):
    settings = production(tmp_path)
    assert settings.is_production and settings.allowed_development_settings == ()


@pytest.mark.parametrize("name", DEVELOPMENT)
def test_production_refuses_each_development_setting_naming_the_override(tmp_path, name):
    with pytest.raises(SettingsError, match=f"ALLOW_DEVELOPMENT_SETTINGS={name}$") as refused:
        production(tmp_path, **DEVELOPMENT[name])
    assert "\n" not in str(refused.value)
    assert str(refused.value).startswith("production refuses development settings: ")


@pytest.mark.parametrize("name", DEVELOPMENT)
def test_the_override_accepts_each_development_setting(tmp_path, name):
    settings = production(tmp_path, ALLOW_DEVELOPMENT_SETTINGS=name, **DEVELOPMENT[name])
    assert settings.allowed_development_settings == (name,)


def test_an_override_accepts_only_what_it_names(tmp_path):
    with pytest.raises(SettingsError, match="POSTAL_TRANSPORT=sink.*ALLOW_DEVELOPMENT_SETTINGS=sink$"):
        production(tmp_path, ALLOW_DEVELOPMENT_SETTINGS="sqlite", **DEVELOPMENT["sqlite"], **DEVELOPMENT["sink"])


def test_every_refused_setting_is_named_in_one_line(tmp_path):
    everything = {name: value for setting in DEVELOPMENT.values() for name, value in setting.items()}
    with pytest.raises(SettingsError) as refused:
        production(tmp_path, **everything)
    message = str(refused.value)
    assert "\n" not in message
    assert message.endswith("ALLOW_DEVELOPMENT_SETTINGS=sqlite,sink,local-backups,private-webhooks")
    for variable in ("DATABASE_URL", "POSTAL_TRANSPORT", "BACKUP_STORAGE", "WEBHOOK_ALLOW_PRIVATE_TARGETS"):
        assert variable in message
    accepted = production(tmp_path, ALLOW_DEVELOPMENT_SETTINGS="Sqlite, sink,local-backups , private-webhooks",
                          **everything)
    assert accepted.is_sqlite and accepted.postal_transport == "sink"


def test_the_default_backup_storage_is_refused_in_production(tmp_path):
    without_storage = {k: v for k, v in PRODUCTION.items() if k not in ("BACKUP_STORAGE", "BACKUP_S3_BUCKET")}
    with pytest.raises(SettingsError, match="BACKUP_STORAGE=local.*ALLOW_DEVELOPMENT_SETTINGS=local-backups$"):
        Settings.from_env({"DATA_DIR": str(tmp_path), **without_storage})


def test_an_unknown_override_is_refused(tmp_path):
    with pytest.raises(SettingsError, match="ALLOW_DEVELOPMENT_SETTINGS: unknown everything"):
        production(tmp_path, ALLOW_DEVELOPMENT_SETTINGS="everything")


@pytest.mark.parametrize("env", ["development", "staging"])
def test_other_environments_keep_their_development_settings(tmp_path, env):
    everything = {name: value for setting in DEVELOPMENT.values() for name, value in setting.items()}
    settings = production(tmp_path, APP_ENV=env, **everything)
    assert settings.env == env and settings.is_sqlite and settings.backup_storage == "local"


def test_the_cli_says_what_production_refuses_without_a_traceback(tmp_path):
    env = {"DATA_DIR": str(tmp_path), **PRODUCTION, **DEVELOPMENT["sqlite"]}
    result = CliRunner().invoke(main, ["config"], env=env)
    assert result.exit_code == 2
    assert "ALLOW_DEVELOPMENT_SETTINGS=sqlite" in result.output and "Traceback" not in result.output
