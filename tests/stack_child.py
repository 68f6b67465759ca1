"""A stand-in child for ``textunes up`` tests: a process that starts in milliseconds.

``python tests/stack_child.py NAME RECORD_DIR [--ignore-term]``: appends its pid to the
Redis list ``stack:NAME`` (at REDIS_URL, so the test sees which Redis it was given) with the
metrics port it was given, prints a line, then waits. On SIGTERM it writes
``RECORD_DIR/NAME-PID.term`` and exits 0, unless ``--ignore-term``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import redis


def main() -> None:
    name, record = sys.argv[1], Path(sys.argv[2])
    ignore_term = "--ignore-term" in sys.argv[3:]

    def on_term(signum: int, frame: object) -> None:
        (record / f"{name}-{os.getpid()}.term").write_text("SIGTERM")
        if not ignore_term:
            sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.rpush(f"stack:{name}", json.dumps({"pid": os.getpid(),
                                              "metrics_port": os.environ.get("TEXTUNES_METRICS_PORT", "")}))
    client.close()
    print(f"{name} ready", flush=True)
    while True:
        time.sleep(0.05)


if __name__ == "__main__":
    main()
