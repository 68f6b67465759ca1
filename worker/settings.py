"""TexTuneS settings, from environment variables (a ``.env`` file in the working directory works too).

Every setting has a default except the chat tokens. Read through :mod:`pipeline.env`, like the
analyser's settings: secrets are masked in the repr, so logging Settings never prints a token.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.env import SettingError, read, setting, variable
from pipeline.validation import Limits


@dataclass(frozen=True)
class Settings:
    redis_url: str = setting("REDIS_URL", "redis://localhost:6379/0", secret=True)
    prefix: str = setting("TEXTUNES_PREFIX", "textunes")
    model: str = setting("TEXTUNES_MODEL", "facebook/musicgen-small")
    device: str = setting("TEXTUNES_DEVICE", "auto")
    melody_model: str = setting("TEXTUNES_MELODY_MODEL", "")
    engine: str = setting("TEXTUNES_ENGINE", "continuous", choices=("continuous", "hf"))
    max_batch: int = setting("TEXTUNES_MAX_BATCH", 0, minimum=0)  # 0: 8 on CPU, 16 on CUDA
    cuda_graphs: bool = setting("TEXTUNES_CUDA_GRAPHS", True)
    max_duration: float = setting("TEXTUNES_MAX_DURATION", 180.0, minimum=5, maximum=300)
    audio_ttl_s: int = setting("TEXTUNES_AUDIO_TTL_S", 24 * 3600, minimum=60)
    visibility_timeout_s: float = setting("TEXTUNES_VISIBILITY_TIMEOUT_S", 300.0, minimum=1)
    max_deliveries: int = setting("TEXTUNES_MAX_DELIVERIES", 3, minimum=1)
    guidance_scale: float = setting("TEXTUNES_GUIDANCE_SCALE", 3.0, minimum=0)
    top_k: int = setting("TEXTUNES_TOP_K", 250, minimum=0)
    max_upload_bytes: int = setting("TEXTUNES_MAX_UPLOAD_BYTES", 10 * 1024 * 1024, minimum=65536)
    rate_limit_requests: int = setting("TEXTUNES_RATE_LIMIT_REQUESTS", 5, minimum=1)
    rate_limit_window_s: int = setting("TEXTUNES_RATE_LIMIT_WINDOW_S", 600, minimum=1)
    queue_cap: int = setting("TEXTUNES_QUEUE_CAP", 100, minimum=1)
    progress_interval_s: float = setting("TEXTUNES_PROGRESS_INTERVAL_S", 2.0, minimum=0)
    shutdown_grace_s: float = setting("TEXTUNES_SHUTDOWN_GRACE_S", 25.0, minimum=0)
    post_lease_s: float = setting("TEXTUNES_POST_LEASE_S", 30.0, minimum=1)
    log_level: str = setting("TEXTUNES_LOG_LEVEL", "INFO")
    metrics_port: int = setting("TEXTUNES_METRICS_PORT", 0, minimum=0)
    local_redis_port: int = setting("TEXTUNES_LOCAL_REDIS_PORT", 6379, minimum=1)
    local_redis_dir: str = setting("TEXTUNES_LOCAL_REDIS_DIR", ".textunes/redis")
    discord_token: str = setting("DISCORD_TOKEN", "", secret=True)
    discord_guild_id: str = setting("DISCORD_GUILD_ID", "")
    slack_bot_token: str = setting("SLACK_BOT_TOKEN", "", secret=True)
    slack_app_token: str = setting("SLACK_APP_TOKEN", "", secret=True)
    slack_signing_secret: str = setting("SLACK_SIGNING_SECRET", "", secret=True)
    slack_port: int = setting("TEXTUNES_SLACK_PORT", 3000, minimum=1)
    slack_api_url: str = setting("SLACK_API_URL", "https://slack.com/api/")

    @property
    def limits(self) -> Limits:
        return Limits(max_duration=self.max_duration)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, dotenv: bool = True) -> "Settings":
        """Read the environment (and ``./.env`` unless ``dotenv`` is false); a bad value exits
        with one line naming the variable."""
        if env is None and dotenv:
            _load_dotenv()
        try:
            return read(cls, env)
        except SettingError as error:
            raise SystemExit(f"error: {error}") from None


def env_name(name: str) -> str:
    """The environment variable of Settings field ``name`` (for help texts)."""
    return variable(Settings, name)


def _load_dotenv() -> None:
    try:
        from dotenv import load_dotenv
    except ImportError:  # optional convenience
        return
    load_dotenv(os.path.join(os.getcwd(), ".env"), override=False)
