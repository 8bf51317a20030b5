import pytest

from controlplane.settings import Settings, SettingsError

STRONG = "x" * 48
BACKUP_KEY = "ab" * 32


# Production also refuses development storage (tests/test_production_settings.py).
PRODUCTION_STORAGE = {"DATABASE_URL": "postgresql://app@db.internal/app", "BACKUP_STORAGE": "s3", "BACKUP_S3_BUCKET": "b"}


def settings(tmp_path, **env):
    app_env = env.get("APP_ENV") or env.get("NODE_ENV") or "development"
    backup_key = {"BACKUP_ENCRYPTION_KEY": BACKUP_KEY} if app_env != "development" else {}
    storage = PRODUCTION_STORAGE if app_env == "production" else {}
    return Settings.from_env({"DATA_DIR": str(tmp_path), **backup_key, **storage, **env})


def test_production_refuses_missing_jwt_secret_naming_it(tmp_path):
    with pytest.raises(SettingsError, match="JWT_SECRET must be set in production"):
        settings(tmp_path, APP_ENV="production", API_KEY_SALT=STRONG)


def test_production_refuses_weak_api_key_salt_naming_it(tmp_path):
    with pytest.raises(SettingsError, match="API_KEY_SALT is too weak for production"):
        settings(tmp_path, APP_ENV="production", JWT_SECRET=STRONG, API_KEY_SALT="changeme")


def test_staging_refuses_short_jwt_secret(tmp_path):
    with pytest.raises(SettingsError, match="JWT_SECRET is too weak for staging"):
        settings(tmp_path, APP_ENV="staging", JWT_SECRET="short", API_KEY_SALT=STRONG)


def test_production_accepts_strong_secrets(tmp_path):
    s = settings(tmp_path, APP_ENV="production", JWT_SECRET=STRONG, API_KEY_SALT=STRONG + "y")
    assert s.is_production and s.jwt_secret == STRONG and s.generated_secrets == ()


def test_development_generates_secrets_and_keeps_them_across_restarts(tmp_path):
    first = settings(tmp_path)
    second = settings(tmp_path)
    assert set(first.generated_secrets) == {"JWT_SECRET", "API_KEY_SALT", "BACKUP_ENCRYPTION_KEY"}
    assert len(first.backup_encryption_key) == 32 and first.backup_encryption_key == second.backup_encryption_key
    assert len(first.jwt_secret) >= 32
    assert (first.jwt_secret, first.api_key_salt) == (second.jwt_secret, second.api_key_salt)
    assert first.jwt_secret != first.api_key_salt


def test_secret_file_variant_is_read(tmp_path):
    secret_file = tmp_path / "jwt"
    secret_file.write_text(STRONG + "\n")
    s = settings(tmp_path, APP_ENV="production", JWT_SECRET_FILE=str(secret_file), API_KEY_SALT=STRONG)
    assert s.jwt_secret == STRONG


def test_unreadable_secret_file_names_the_variable(tmp_path):
    with pytest.raises(SettingsError, match="JWT_SECRET_FILE: cannot read"):
        settings(tmp_path, JWT_SECRET_FILE=str(tmp_path / "missing"))


@pytest.mark.parametrize("name,value,expected", [
    ("DB_POOL_SIZE", "ten", "DB_POOL_SIZE must be a whole number"),
    ("DB_POOL_SIZE", "0", "DB_POOL_SIZE must be at least 1"),
    ("HEALTH_CACHE_SECONDS", "soon", "HEALTH_CACHE_SECONDS must be a number"),
    ("APP_ENV", "prod", "APP_ENV must be one of development, staging, production"),
    ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be one of"),
    ("POSTAL_API_URL", "postal.local", "POSTAL_API_URL must be an http"),
    ("DATABASE_URL", "mysql://x", "DATABASE_URL must start with postgresql:// or sqlite://"),
])
def test_invalid_values_fail_naming_the_variable(tmp_path, name, value, expected):
    with pytest.raises(SettingsError, match=expected):
        settings(tmp_path, **{name: value})


def test_node_env_is_accepted_as_alias(tmp_path):
    assert settings(tmp_path, NODE_ENV="staging", JWT_SECRET=STRONG, API_KEY_SALT=STRONG).env == "staging"
    assert settings(tmp_path, APP_ENV="development", NODE_ENV="production").env == "development"


def test_postgres_urls_from_fly_are_normalised(tmp_path):
    s = settings(tmp_path, DATABASE_URL="postgres://u:p@db.internal:5432/app")
    assert s.database_url == "postgresql://u:p@db.internal:5432/app"
    assert s.describe()["database_url"] == "postgresql://***@db.internal:5432/app"


@pytest.mark.parametrize("env,level", [("development", "DEBUG"), ("staging", "INFO"), ("production", "WARNING")])
def test_log_level_follows_the_environment(tmp_path, env, level):
    assert settings(tmp_path, APP_ENV=env, JWT_SECRET=STRONG, API_KEY_SALT=STRONG).log_level == level


def test_describe_never_prints_secrets(tmp_path):
    described = settings(tmp_path, JWT_SECRET=STRONG, POSTAL_API_KEY="k" * 24).describe()
    assert described["jwt_secret"] == "set" and described["postal_api_key"] == "set"
    assert STRONG not in str(described)


def test_cli_reports_bad_configuration_without_traceback(tmp_path):
    from click.testing import CliRunner

    from controlplane.cli import main

    result = CliRunner().invoke(main, ["config"], env={"DATA_DIR": str(tmp_path), "DB_POOL_SIZE": "many"})
    assert result.exit_code == 2
    assert "DB_POOL_SIZE must be a whole number" in result.output
    assert "Traceback" not in result.output


def test_production_needs_a_backup_key_and_reads_previous_ones(tmp_path):
    with pytest.raises(SettingsError, match="BACKUP_ENCRYPTION_KEY must be set in production"):
        Settings.from_env({"DATA_DIR": str(tmp_path), "APP_ENV": "production", "JWT_SECRET": STRONG,
                           "API_KEY_SALT": STRONG})
    s = settings(tmp_path, APP_ENV="production", JWT_SECRET=STRONG, API_KEY_SALT=STRONG,
                 BACKUP_ENCRYPTION_KEYS_PREVIOUS=f"{'cd' * 32}, {'ef' * 32}")
    assert s.backup_encryption_key == bytes.fromhex(BACKUP_KEY)
    assert s.backup_encryption_keys_previous == (bytes.fromhex("cd" * 32), bytes.fromhex("ef" * 32))
    assert BACKUP_KEY not in str(s.describe())
