"""Settings from environment variables (a ``.env`` file in the working directory works too).

Every setting has a default except the chat tokens. Secrets are held in fields whose repr
is masked, so logging a Settings object never prints a token.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Mapping

from pipeline.validation import Limits


def _secret() -> str:
    return field(default="", repr=False)  # type: ignore[return-value]


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://localhost:6379/0"
    prefix: str = "textunes"
    model: str = "facebook/musicgen-small"
    device: str = "auto"
    batch_size: int = 8
    batch_window_ms: int = 50
    max_duration: float = 30.0
    audio_ttl_s: int = 24 * 3600
    visibility_timeout_s: float = 300.0
    max_deliveries: int = 3
    guidance_scale: float = 3.0
    top_k: int = 250
    max_upload_bytes: int = 10 * 1024 * 1024
    rate_limit_requests: int = 5
    rate_limit_window_s: int = 600
    queue_cap: int = 100
    progress_interval_s: float = 2.0
    log_level: str = "INFO"
    discord_token: str = _secret()
    discord_guild_id: str = ""
    slack_bot_token: str = _secret()
    slack_app_token: str = _secret()
    slack_signing_secret: str = _secret()
    slack_port: int = 3000

    @property
    def limits(self) -> Limits:
        return Limits(max_duration=self.max_duration)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, dotenv: bool = True) -> "Settings":
        if env is None:
            if dotenv:
                _load_dotenv()
            env = os.environ
        values: dict[str, object] = {}
        for f in fields(cls):
            name = ENV_NAMES[f.name]
            if name in env and env[name] != "":
                kind = type(f.default)
                try:
                    values[f.name] = kind(env[name])
                except ValueError as error:
                    raise SystemExit(f"{name}={env[name]!r} is not a valid {kind.__name__}") from error
        return cls(**values)  # type: ignore[arg-type]


ENV_NAMES = {
    "redis_url": "REDIS_URL",
    "discord_token": "DISCORD_TOKEN",
    "discord_guild_id": "DISCORD_GUILD_ID",
    "slack_bot_token": "SLACK_BOT_TOKEN",
    "slack_app_token": "SLACK_APP_TOKEN",
    "slack_signing_secret": "SLACK_SIGNING_SECRET",
    **{name: f"TEXTUNES_{name.upper()}" for name in (
        "prefix", "model", "device", "batch_size", "batch_window_ms", "max_duration", "audio_ttl_s",
        "visibility_timeout_s", "max_deliveries", "guidance_scale", "top_k", "max_upload_bytes",
        "rate_limit_requests", "rate_limit_window_s", "queue_cap", "progress_interval_s",
        "log_level", "slack_port",
    )},
}


def _load_dotenv() -> None:
    try:
        from dotenv import load_dotenv
    except ImportError:  # optional convenience
        return
    load_dotenv(os.path.join(os.getcwd(), ".env"), override=False)
