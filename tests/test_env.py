"""One reader for every setting: values from the environment, secrets never shown."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.analysis import AnalysisConfig, ConfigError
from pipeline.env import SettingError, read, redacted_url, secrets
from worker.settings import Settings


def test_every_secret_is_masked_in_both_settings_classes() -> None:
    env = {"TEXTUNES_LLM_API_KEY": "sk-live-123", "REDIS_URL": "redis://:hunter2@redis:6379/0",
           "DISCORD_TOKEN": "discord-secret", "SLACK_BOT_TOKEN": "xoxb-secret",
           "SLACK_APP_TOKEN": "xapp-secret", "SLACK_SIGNING_SECRET": "signing-secret"}
    shown = repr(AnalysisConfig.from_env(env)) + repr(Settings.from_env(env, dotenv=False))
    for value in env.values():
        assert value not in shown
    assert AnalysisConfig.from_env(env).llm_api_key == "sk-live-123"
    assert set(secrets(Settings)) == {"REDIS_URL", "DISCORD_TOKEN", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN",
                                      "SLACK_SIGNING_SECRET"}


def test_a_bad_value_names_its_variable_and_what_it_must_be() -> None:
    with pytest.raises(SettingError, match="TEXTUNES_ANALYSIS_THREADS must be at least 0"):
        AnalysisConfig.from_env({"TEXTUNES_ANALYSIS_THREADS": "-2"})
    with pytest.raises(ConfigError, match="TEXTUNES_LLM_TIMEOUT must be a number"):
        AnalysisConfig.from_env({"TEXTUNES_LLM_TIMEOUT": "soon"})
    with pytest.raises(SystemExit, match="TEXTUNES_QUEUE_CAP must be a whole number"):
        Settings.from_env({"TEXTUNES_QUEUE_CAP": "lots"}, dotenv=False)


def test_booleans_and_blank_values() -> None:
    @dataclasses.dataclass(frozen=True)
    class Flags:
        on: bool = dataclasses.field(default=False, metadata={"env": "FLAG"})

    assert read(Flags, {"FLAG": "yes"}).on is True and read(Flags, {"FLAG": " "}).on is False
    with pytest.raises(SettingError, match="FLAG must be true or false"):
        read(Flags, {"FLAG": "perhaps"})


def test_redis_urls_lose_their_password_when_shown() -> None:
    assert redacted_url("redis://:hunter2@redis:6379/0") == "redis://:***@redis:6379/0"
    assert redacted_url("rediss://bot:hunter2@r.example/1") == "rediss://bot:***@r.example/1"
    assert redacted_url("redis://localhost:6379/0") == "redis://localhost:6379/0"
