"""The ``/tune`` slash command: its options, their autocomplete, and the TuneRequest they make.

No ``from __future__ import annotations`` here: discord.py reads the command's parameter
annotations at definition time to build the option list.
"""

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Optional, Union

import discord
from discord import app_commands
from discord.app_commands import locale_str

from pipeline.inline import parse_duration, split_list
from pipeline.catalog import Kind, catalog
from pipeline.models import AUDIO_FORMATS, TuneRequest
from pipeline.validation import Limits, parse_tempo

DURATION_STEPS = (5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 300)
DEFAULT_DURATION = 10.0
MAX_CHOICE = 100  # Discord's limit on a choice's name and value

# Each option's Korean name and description (Discord shows them to users whose client is in
# Korean; the names match the inline syntax's Korean option names where it has them).
KOREAN = {
    "prompt": ("설명", "용도나 원하는 소리, 예: 창가의 비 오는 밤"),
    "genre": ("장르", "장르 (쉼표로 구분, 한국어 또는 영어), 예: 로파이, 재즈"),
    "mood": ("분위기", "분위기 (쉼표로 구분), 예: 차분한, 꿈꾸는 듯한"),
    "instruments": ("악기", "악기 (쉼표로 구분), 예: 피아노, 첼로"),
    "tempo": ("템포", "느린, 보통, 빠른 또는 80 같은 bpm"),
    "duration": ("길이", "각 트랙의 길이"),
    "takes": ("테이크", "서로 다른 버전의 수 (1-4)"),
    "seed": ("시드", "같은 결과를 다시 얻기 위한 숫자"),
    "loop": ("루프", "끊김 없이 반복 재생되는 루프로 만들기"),
    "format": ("형식", "파일 형식: mp3, flac(무손실) 또는 wav"),
    "melody": ("멜로디", "음악이 따라갈 멜로디 오디오 (WAV, FLAC, OGG, MP3, 10MB까지)"),
}


class KoreanOptions(app_commands.Translator):
    """Gives Discord the Korean names and descriptions of ``/tune``'s options (``KOREAN``)."""

    async def translate(self, string: locale_str, locale: discord.Locale,
                        context: app_commands.TranslationContextTypes) -> Optional[str]:
        if locale is not discord.Locale.korean:
            return None
        return string.extras.get("ko")


def _named(option: str) -> locale_str:
    return locale_str(option, ko=KOREAN[option][0])


def _described(option: str, english: str) -> locale_str:
    return locale_str(english, ko=KOREAN[option][1])


@dataclass
class TuneOptions:
    """What the user filled in on ``/tune`` (all optional)."""

    prompt: Optional[str] = None
    genre: Optional[str] = None
    mood: Optional[str] = None
    instruments: Optional[str] = None
    tempo: Optional[str] = None
    duration: Optional[Union[float, str]] = None  # as Discord sent it; checked in request_from_options
    takes: Optional[int] = None
    seed: Optional[int] = None
    loop: Optional[bool] = None
    format: Optional[str] = None
    melody: Optional[discord.Attachment] = None  # a clip whose tune the music follows

    def says_what_to_play(self) -> bool:
        return any((v or "").strip() for v in (self.prompt, self.genre, self.mood, self.instruments))


def request_from_options(options: TuneOptions, limits: Limits) -> TuneRequest:
    """The request the options describe (not validated yet; raises InvalidRequest for a bad tempo)."""
    duration = min(DEFAULT_DURATION, limits.max_duration)
    if options.duration is not None:
        duration = parse_duration(str(options.duration), limits)
    request = TuneRequest(prompt=(options.prompt or "").strip(), duration=duration)
    request.genres = split_list(options.genre or "")
    request.moods = split_list(options.mood or "")
    request.instruments = split_list(options.instruments or "")
    if options.tempo and options.tempo.strip():
        request.tempo, request.bpm = parse_tempo(options.tempo, limits)
    if options.takes is not None:
        request.takes = options.takes
    if options.seed is not None:
        request.seed = options.seed
    request.loop = bool(options.loop)
    request.format = (options.format or "").strip().casefold()
    return request


def duration_choices(max_duration: float) -> list[app_commands.Choice[int]]:
    steps = [s for s in DURATION_STEPS if s <= max_duration]
    top = int(math.floor(max_duration))
    if top not in steps and top >= 5:
        steps.append(top)
    return [app_commands.Choice(name=_seconds(s), value=s) for s in steps]


def complete_list(kind: Kind, current: str) -> list[app_commands.Choice[str]]:
    """Autocomplete the last item of a comma-separated list, English or Korean.

    ``"piano, 첼"`` offers ``"piano, Cello"``; a choice shows both labels."""
    head, _, last = current.rpartition(",")
    chosen = split_list(head)
    taken = {name.casefold() for name in chosen}
    prefix = ", ".join(chosen)
    choices: list[app_commands.Choice[str]] = []
    for entry in catalog().complete(kind, last.strip()):
        if entry.en.casefold() in taken:
            continue
        value = f"{prefix}, {entry.en}" if prefix else entry.en
        if len(value) > MAX_CHOICE:
            continue
        label = f"{entry.en} · {entry.ko}" if entry.ko and entry.ko != entry.en else entry.en
        name = f"{prefix}, {label}" if prefix else label
        choices.append(app_commands.Choice(name=_clip(name), value=value))
    return choices[:25]


def complete_tempo(current: str) -> list[app_commands.Choice[str]]:
    text = current.strip().lower().removesuffix("bpm").strip()
    if text.isdigit():
        return [app_commands.Choice(name=f"{text} bpm", value=text)]
    choices = [
        app_commands.Choice(name=f"{t.en.lower()} · {t.ko} (about {t.bpm} bpm)", value=t.en.lower())
        for t in catalog().tempos
        if not text or text in t.en.lower() or text in t.ko
    ]
    return choices or [app_commands.Choice(name="a bpm, e.g. 80", value="80")]


TuneHandler = Callable[[discord.Interaction, TuneOptions], Awaitable[None]]


def make_tune_command(handler: TuneHandler, max_duration: float) -> app_commands.Command:
    """The ``/tune`` command; ``handler`` gets the interaction and the options."""

    @app_commands.command(name="tune", description="Make background music from a few words, tags or a tempo")
    @app_commands.rename(**{option: _named(option) for option in KOREAN})
    @app_commands.describe(**{option: _described(option, english) for option, english in (
        ("prompt", "what it's for or what it should sound like, e.g. rainy night by the window"),
        ("genre", "genre(s), comma-separated (English or Korean), e.g. Lofi, Jazz"),
        ("mood", "mood(s), comma-separated, e.g. Calm, Dreamy"),
        ("instruments", "instrument(s), comma-separated, e.g. Piano, Cello"),
        ("tempo", "slow, medium, fast or a bpm like 80"),
        ("duration", "length of each track"),
        ("takes", "how many different versions (1-4)"),
        ("seed", "a number to get the same result again"),
        ("loop", "make a seamless loop: whole bars, its end joined to its start (FLAC unless you pick a format)"),
        ("format", "file format: mp3 (default), flac (lossless) or wav"),
        ("melody", "an audio clip (WAV, FLAC, OGG, MP3, up to 10 MB) whose tune the music follows"),
    )})
    # Choices make a menu, but Discord keeps whatever was registered last: after the maximum
    # is lowered and the commands aren't synced again, a user may still pick 300. The plain
    # ``int`` annotation lets any value through to validation, which names the allowed range.
    @app_commands.choices(duration=duration_choices(max_duration),
                          format=[app_commands.Choice(name=f.upper(), value=f) for f in AUDIO_FORMATS])
    async def tune(
        interaction: discord.Interaction,
        prompt: Optional[app_commands.Range[str, 1, 1000]] = None,
        genre: Optional[str] = None,
        mood: Optional[str] = None,
        instruments: Optional[str] = None,
        tempo: Optional[str] = None,
        duration: Optional[int] = None,  # any number: a stale registration may offer others
        takes: Optional[app_commands.Range[int, 1, 4]] = None,
        seed: Optional[app_commands.Range[int, 0, 4294967295]] = None,
        loop: Optional[bool] = None,
        format: Optional[str] = None,  # noqa: A002 (the option's name)
        melody: Optional[discord.Attachment] = None,
    ) -> None:
        await handler(interaction, TuneOptions(
            prompt=prompt, genre=genre, mood=mood, instruments=instruments, tempo=tempo,
            duration=duration, takes=takes, seed=seed, loop=loop, format=format, melody=melody,
        ))

    for name, kind in (("genre", "genre"), ("mood", "mood"), ("instruments", "instrument")):
        tune.autocomplete(name)(_list_autocomplete(kind))  # type: ignore[arg-type]

    @tune.autocomplete("tempo")
    async def _tempo(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return complete_tempo(current)

    return tune


def _list_autocomplete(kind: Kind):  # type: ignore[no-untyped-def]
    async def autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return complete_list(kind, current)
    return autocomplete


def _seconds(seconds: int) -> str:
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60}:{seconds % 60:02d} min"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_CHOICE else text[: MAX_CHOICE - 1] + "…"
