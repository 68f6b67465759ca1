"""``textunes discord`` as a real process, talking to a fake Discord (for the crash tests).

    python -m tests.bot_process http://127.0.0.1:PORT [textunes discord options]

discord.py has no setting for Discord's address: this points its REST base and gateway at the
fake, then runs the ``textunes`` command line unchanged. (The Slack app needs no such help:
``SLACK_API_URL`` is a setting.)
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    import discord.gateway
    import discord.http
    import yarl

    from worker.cli import main as textunes

    base = argv[0].rstrip("/")
    discord.http.Route.BASE = f"{base}/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://{base.removeprefix('http://')}/gateway")
    return textunes(["discord", *argv[1:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
