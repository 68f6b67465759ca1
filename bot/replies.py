"""Every text the bots show users, in one place, so Discord and Slack say the same thing.

Captions are shown clipped (``shown``): a prompt of 1,000 characters and dozens of tags make
a caption no chat line should carry whole. The job keeps the whole caption.
"""

from __future__ import annotations

import math
import re
import unicodedata

from worker.queue import Event, Take

EXAMPLE = "rainy night lo-fi genre:jazz mood:calm bpm:80 30s takes:2"
SHOWN_CAPTION_CHARS = 300

HELP = (
    "🎵 *TexTuneS* makes background music from a few words or from your text.\n"
    "• `/tune <words>` with optional `genre:` `mood:` `instruments:` (comma-separated, English or "
    "Korean), `bpm:80` or `tempo:slow|medium|fast`, a length like `20s`, `takes:1-4`, `seed:42`.\n"
    f"  Example: `/tune {EXAMPLE}`\n"
    "• Mention me with a paragraph of your script, story or post (or attach a .txt, or reply to a "
    "message) and I will pick the mood, genre, instruments and tempo for it.\n"
    "• React 🔁 on a result to get a new take."
)

SLACK_HELP = (
    "🎵 *TexTuneS* makes background music from a few words or from your text.\n"
    "• `/tune <words>` with optional `genre:` `mood:` `instruments:` (comma-separated, English or "
    "Korean), `bpm:80` or `tempo:slow|medium|fast`, a length like `20s`, `takes:1-4`, `seed:42`.\n"
    f"  Example: `/tune {EXAMPLE}`\n"
    "• Mention me with a paragraph of your script, story or post, or mention me alone in the thread "
    "of a post, and I will pick the mood, genre, instruments and tempo for it.\n"
    "• React :repeat: (🔁) on a result to get a new take."
)

SLACK_NOT_IN_CHANNEL = (
    "I can't post in this conversation. In a channel, invite me first (`/invite @TexTuneS`) and try "
    "again; or use `/tune` in a DM with me."
)

SLACK_TRY_AGAIN = ("⚠️ Something went wrong on my side while taking your request. If nothing shows up in "
                   "this conversation, please try again.")

NOTHING_TO_PLAY = (
    "Tell me what to play: give a prompt, a genre, a mood or instruments. "
    "For example: `/tune prompt:rainy night by the window genre:Lofi mood:Calm`."
)


def rate_limited(retry_after_s: float, requests: int, window_s: float) -> str:
    return (
        f"You've asked for {requests} tracks in the last {_duration(window_s)}. "
        f"Try again in {_duration(retry_after_s)}."
    )


def queue_full(depth: int) -> str:
    return f"The music queue is full right now ({depth} tracks waiting). Please try again in a few minutes."


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, with an ellipsis where it was cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + "…"


def shown(caption: str) -> str:
    """A caption as chat lines show it."""
    return clip(" ".join(caption.split()), SHOWN_CAPTION_CHARS)


def status_line(caption: str, position: int) -> str:
    where = f"#{position} in line" if position > 0 else "starting"
    return f"🎼 {shown(caption)} — {where}"


def progress_line(caption: str, fraction: float) -> str:
    return f"🎼 {shown(caption)} — generating {int(round(fraction * 100))} %"


def done_line(caption: str, posted: int, total: int, job_id: str) -> str:
    """The final status once every take is posted, or settled as not postable."""
    if posted == total:
        noun = "take" if total == 1 else "takes"
        return f"✅ {shown(caption)} — {total} {noun} ready. React 🔁 for another."
    return f"⚠️ {shown(caption)} — {posted} of {total} takes could be posted (job {job_id})."


def cancelled_status(event: Event) -> str:
    reason = event.error.strip()
    if "cancel" in reason.lower():
        return f"🚫 {reason}"
    return f"🚫 Cancelled by an operator{': ' + reason if reason else '.'}"


def expired_line(number: int, job_id: str) -> str:
    return f"⚠️ Take {number} expired before it could be posted. Job id: {job_id}."


def analysing_line() -> str:
    return "🧠 Reading your text…"


def analysis_line(event: Event) -> str:
    explanation = (event.brief or {}).get("explanation", "")
    return f"🧠 {explanation}" if explanation else f"🧠 {shown(event.caption)}"


def take_line(take: Take, number: int) -> str:
    """``number``: the take's number in its thread (🔁 takes continue the count)."""
    return f"Take {number} · seed {take.seed} · {take.duration:.1f} s"


def shows_take(text: str, take: Take) -> bool:
    """Whether a posted message's text is ``take``'s line (its seed is as good as unique)."""
    return f" · seed {take.seed} · " in text


def failed_line(event: Event) -> str:
    reason = event.error or "Something went wrong while making this track."
    if event.job_id not in reason:
        reason += f" Job id: {event.job_id}."
    return f"⚠️ {reason}"


def failed_status(job_id: str) -> str:
    return f"⚠️ This track could not be made (job {job_id}); the reason is in the thread."


def too_large(limit_bytes: int) -> str:
    return (
        f"⚠️ This track doesn't fit this channel's {limit_bytes / 1024 / 1024:.0f} MiB upload limit even at "
        "the lowest quality. Ask for a shorter duration."
    )


def not_a_result() -> str:
    return "🔁 works on a TexTuneS result or status message, and only for a day after it was made."


def filename(caption: str, take: int) -> str:
    """``textunes-<slug>-<n>.mp3``: a short ASCII slug of the caption and the take's number
    in its thread, so no two takes in a thread share a name (a repeated post is found by it)."""
    text = unicodedata.normalize("NFKD", caption).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    slug = "-".join(slug.split("-")[:6])[:48].strip("-") or "track"
    return f"textunes-{slug}-{take}.mp3"


def _duration(seconds: float) -> str:
    seconds = max(1, math.ceil(seconds))
    if seconds < 90:
        return f"{seconds} s"
    return f"{math.ceil(seconds / 60)} min"
