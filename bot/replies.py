"""Every text the bots show users, in one place, so Discord and Slack say the same thing.

Captions are shown clipped (``shown``): a prompt of 1,000 characters and dozens of tags make
a caption no chat line should carry whole. The job keeps the whole caption.
"""

from __future__ import annotations

import math
import re
import unicodedata

from pipeline.models import AUDIO_FORMATS
from pipeline.validation import Limits
from worker.queue import Event, Take

EXAMPLE = "rainy night lo-fi genre:jazz mood:calm bpm:80 30s takes:2"
SHOWN_CAPTION_CHARS = 300

HELP = (
    "🎵 *TexTuneS* makes background music from a few words or from your text.\n"
    "• `/tune <words>` with optional `genre:` `mood:` `instruments:` (comma-separated, English or "
    "Korean), `bpm:80` or `tempo:slow|medium|fast`, a length like `20s`, `takes:1-4`, `seed:42`, "
    "`loop` (a seamless loop), `format` (mp3, flac or wav) and `melody` (an audio clip whose tune "
    "the music follows).\n"
    f"  Example: `/tune {EXAMPLE}`\n"
    "• Mention me with a paragraph of your script, story or post (or attach a .txt, or reply to a "
    "message) and I will pick the mood, genre, instruments and tempo for it.\n"
    "• Under each take: 🔁 New take, ➕ Extend (30 s more), 🔂 Loop. Reacting 🔁 or ➕ works too."
)

SLACK_HELP = (
    "🎵 *TexTuneS* makes background music from a few words or from your text.\n"
    "• `/tune <words>` with optional `genre:` `mood:` `instruments:` (comma-separated, English or "
    "Korean), `bpm:80` or `tempo:slow|medium|fast`, a length like `20s`, `takes:1-4`, `seed:42`, "
    "`loop:yes` (a seamless loop), `format:mp3|flac|wav`.\n"
    f"  Example: `/tune {EXAMPLE}`\n"
    "• Mention me with a paragraph of your script, story or post, or mention me alone in the thread "
    "of a post, and I will pick the mood, genre, instruments and tempo for it. Share an audio clip "
    "in the same message and the music follows its tune.\n"
    "• Under each take: New take, Extend (30 s more), Loop. Reacting :repeat: (🔁) or "
    ":heavy_plus_sign: (➕) works too."
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


def take_line(take: Take, number: int, *, extends: int = 0, notes: tuple[str, ...] = ()) -> str:
    """``number``: the take's number in its thread (🔁 takes continue the count); ``extends``:
    the number of the take it continues; ``notes``: lines the user must read with it."""
    parts = [f"Take {number}"]
    if extends:
        parts.append(f"extended from take {extends}")
    if take.loop:
        parts.append("loop")
    parts.append(f"seed {take.seed}")
    parts.append(clock(take.length or take.duration) if extends else f"{take.duration:.1f} s")
    return "\n".join([" · ".join(parts), *(note for note in notes if note)])


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
        f"⚠️ This track doesn't fit this channel's {_size(limit_bytes)} upload limit even at "
        "the lowest quality. Ask for a shorter duration."
    )


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MiB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KiB"


def not_a_result() -> str:
    return "🔁 works on a TexTuneS result or status message, and only for a day after it was made."


# ---- 🔁, ➕ and 🔂 on a posted take ------------------------------------------------------------
def follow_up_line(action: str, caption: str, *, source: int = 0, seconds: float = 0.0) -> str:
    """The status line of a job made from a posted one (the platform adds who asked)."""
    if action == "extend":
        return f"➕ Extending take {source} by {seconds:g} s: 🎼 {shown(caption)}"
    if action == "loop":
        return f"🔂 A loop of take {source}: 🎼 {shown(caption)}"
    return f"🔁 Another take: 🎼 {shown(caption)}"


def request_expired() -> str:
    return ("⚠️ This track is more than a day old: its request is no longer kept, so 🔁, ➕ and 🔂 can't use "
            "it. Start again with `/tune`.")


def needs_a_take(emoji: str, label: str) -> str:
    return f"{emoji} {label} works on a take (a message with its file): use it there."


def tokens_expired(number: int) -> str:
    return (f"⚠️ Take {number} can no longer be extended: what it was made from is kept for a day. "
            "🔁 makes a new take of the same request.")


def at_maximum(number: int, length: float, limits: Limits, step_s: float) -> str:
    return (f"⚠️ Take {number} is already {clock(length)} long. Extending adds {limits.min_duration:g} to "
            f"{step_s:g} seconds, and a track can be at most {clock(limits.max_duration)} ({limits.max_duration:g} s).")


def already_a_loop(number: int) -> str:
    return f"Take {number} is a loop already; 🔁 makes another one."


def melody_expired() -> str:
    return ("⚠️ The melody clip this track followed is no longer kept (clips are kept for a day). "
            "Attach it again with a new request.")


NO_MELODY_WORKER = ("⚠️ No worker here can follow a melody right now (none has a melody model running). "
                    "Try again later, or ask without the melody.")

MELODY_NEEDS_WORDS = ("Tell me what to play with your melody: mention me with a few words about the music "
                      "in the same message as the audio file.")


def melody_download_failed(filename: str) -> str:
    return f"⚠️ I couldn't download {filename}. Attach it again and retry."


def filename(caption: str, take: int, audio_format: str = "mp3", *, loop: bool = False) -> str:
    """``textunes-<slug>-<n>.mp3`` (``.flac``, ``.wav``; ``-<n>-loop.flac`` for a loop): a short
    ASCII slug of the caption and the take's number in its thread, so no two takes in a thread
    share a name (a repeated post is found by it)."""
    text = unicodedata.normalize("NFKD", caption).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    slug = "-".join(slug.split("-")[:6])[:48].strip("-") or "track"
    return f"textunes-{slug}-{take}{'-loop' if loop else ''}.{audio_format}"


def preview_name(audio_name: str) -> str:
    """The take's waveform picture: its file name with ``.png``."""
    return audio_name.rpartition(".")[0] + ".png"


def is_take_file(name: str, wanted: str) -> bool:
    """Whether an uploaded file ``name`` is the take ``wanted`` names, in whatever audio format
    it went out (a WAV over the upload limit goes out as FLAC or MP3)."""
    stem, _, extension = name.rpartition(".")
    return extension in AUDIO_FORMATS and stem == wanted.rpartition(".")[0]


def fit_note(asked: str, sent: str, bitrate_kbps: int, limit_bytes: int, *, loop: bool) -> str:
    """Why a take went out in another format (or at a lower bitrate) than it was made in."""
    limit = f"this channel's {_size(limit_bytes)} upload limit"
    if sent == asked:
        return f"ℹ️ Re-encoded at {bitrate_kbps} kbps to fit {limit}."
    what = f"an MP3 ({bitrate_kbps} kbps)" if sent == "mp3" else f"a {sent.upper()} (the same audio, lossless)"
    note = f"ℹ️ The {asked.upper()} was over {limit}, so this is {what}."
    if loop and sent == "mp3":
        note += " MP3 players may leave a short gap where the loop repeats."
    return note


def clock(seconds: float) -> str:
    """``m:ss`` (a track's length as players show it)."""
    whole = int(round(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


def _duration(seconds: float) -> str:
    seconds = max(1, math.ceil(seconds))
    if seconds < 90:
        return f"{seconds} s"
    return f"{math.ceil(seconds / 60)} min"
