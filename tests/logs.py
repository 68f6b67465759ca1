"""Collects log records at WARNING and above.

discord.py and slack-bolt log exceptions raised in handlers instead of raising them; the
platform tests fail on any such record, so a broken handler can't pass silently."""

from __future__ import annotations

import logging


class CollectedWarnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
