"""Settings from environment variables: one reader for every part of TexTuneS.

A settings class is a frozen dataclass whose fields are made with :func:`setting`, which
names the field's variable. :func:`read` fills such a class from an environment. Fields
marked ``secret`` are left out of the repr, so logging a settings object never prints a
token or an API key. Empty variables count as unset.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")

_KINDS = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingError(ValueError):
    """An environment variable holds a value that can't be used; the message names it."""


def setting(variable: str, default: Any, *, secret: bool = False, minimum: float | None = None,
            maximum: float | None = None, choices: tuple[str, ...] = ()) -> Any:
    """A dataclass field read from ``variable``; numbers may be bounded, text limited to ``choices``."""
    return dataclasses.field(default=default, repr=not secret, metadata={
        "env": variable, "secret": secret, "minimum": minimum, "maximum": maximum, "choices": choices})


def variable(cls: type, name: str) -> str:
    """The environment variable behind field ``name`` of settings class ``cls``."""
    return next(f.metadata["env"] for f in dataclasses.fields(cls) if f.name == name)


def secrets(cls: type) -> list[str]:
    """The variables of ``cls`` whose values must never be shown."""
    return [f.metadata["env"] for f in dataclasses.fields(cls) if f.metadata.get("secret")]


def read(cls: type[T], env: Mapping[str, str] | None = None) -> T:
    """Build ``cls`` from ``env`` (default: ``os.environ``); raises SettingError naming the variable."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = field.metadata.get("env")
        raw = env.get(name, "").strip() if name else ""
        if raw:
            values[field.name] = _convert(name, raw, type(field.default), field.metadata)
    return cls(**values)


def redacted_url(url: str) -> str:
    """``redis://user:secret@host/0`` -> ``redis://user:***@host/0``: safe for help texts and logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    user = f"{parts.username}:***" if parts.username else ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{parts.hostname}{f':{parts.port}' if parts.port else ''}"))


def _convert(name: str, raw: str, kind: type, limits: Mapping[str, Any]) -> Any:
    shown = "…" if len(raw) > 40 else raw
    if kind is bool:
        if raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        raise SettingError(f"{name} must be true or false (got '{shown}').")
    try:
        value = kind(raw)
    except ValueError:
        raise SettingError(f"{name} must be {_KINDS.get(kind, kind.__name__)} (got '{shown}').") from None
    minimum, maximum, choices = limits.get("minimum"), limits.get("maximum"), limits.get("choices")
    if minimum is not None and value < minimum:
        raise SettingError(f"{name} must be at least {minimum:g} (got '{shown}').")
    if maximum is not None and value > maximum:
        raise SettingError(f"{name} must be at most {maximum:g} (got '{shown}').")
    if choices and value not in choices:
        raise SettingError(f"{name} must be one of {', '.join(choices)} (got '{shown}').")
    return value
