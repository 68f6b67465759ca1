"""Cleaning and splitting of user text: markup stripped, length bounded, sentences found."""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass


class AnalysisError(ValueError):
    """Text the analyser cannot use; ``str(error)`` is the message to show the user."""


_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]{0,500}>", re.IGNORECASE | re.DOTALL)
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_URL = re.compile(r"https?://\S+|www\.\S+")
_MD_MARKS = re.compile(r"(^|\n)\s{0,3}(#{1,6}|>+|[-*+]|\d+[.)])\s+")
_CODE_FENCE = re.compile(r"```[^\n]*\n?|`")
_EMPHASIS = re.compile(r"(\*\*|__|\*|~~)(?=\S)|(?<=\S)(\*\*|__|\*|~~)")
_MENTION = re.compile(r"<[@#!&][^>]*>")  # Discord/Slack mentions and channel links
_SENTENCE = re.compile(r"(?<=[.!?。！？…])\s+|\n+|\s+/\s+")
_WORDLIKE = re.compile(r"[^\W\d_]", re.UNICODE)


@dataclass(frozen=True)
class CleanText:
    text: str
    original_chars: int
    truncated: bool


def clean(raw: str, max_chars: int) -> CleanText:
    """Strip HTML, Markdown, URLs and chat mentions; bound the length; refuse text with no words."""
    if not raw or not raw.strip():
        raise AnalysisError("There is no text to analyse: send a sentence or a paragraph.")
    text = unicodedata.normalize("NFC", raw)
    text = _MENTION.sub(" ", text)
    text = _TAG.sub(" ", text)
    text = html.unescape(text)
    text = _MD_LINK.sub(r"\1", text)
    text = _URL.sub(" ", text)
    text = _CODE_FENCE.sub(" ", text)
    text = _MD_MARKS.sub(r"\1", text)
    text = _EMPHASIS.sub("", text)
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r"\n\s*\n+", "\n", text).strip()
    if not _WORDLIKE.search(text):
        raise AnalysisError(
            "I found no words to analyse (only emoji, numbers or punctuation). "
            "Describe the scene in a sentence, or use tags such as `calm piano`."
        )
    original = len(text)
    truncated = original > max_chars
    if truncated:
        cut = text[:max_chars]
        space = max(cut.rfind(" "), cut.rfind("\n"))
        text = cut[:space] if space > max_chars * 0.8 else cut
    return CleanText(text=text, original_chars=original, truncated=truncated)


def sentences(text: str) -> list[str]:
    """Sentences (or poem lines) with at least one letter."""
    parts = (p.strip(" \t-–—*\"'“”") for p in _SENTENCE.split(text) if p)
    return [p for p in parts if p and _WORDLIKE.search(p)]


def is_hangul(ch: str) -> bool:
    return "\uac00" <= ch <= "\ud7a3" or "\u3131" <= ch <= "\u318e"


_LETTER = re.compile(r"[^\W\d_]")
_HANGUL = re.compile(r"[\uac00-\ud7a3\u3131-\u318e]")
_LATIN = re.compile(r"[A-Za-z]")


def hangul_share(text: str) -> float:
    """Share of letters that are Hangul (0 for English, ~1 for Korean)."""
    letters = len(_LETTER.findall(text))
    return len(_HANGUL.findall(text)) / letters if letters else 0.0


def readable_share(text: str) -> float:
    """Share of letters in the scripts the analyser is measured on (Latin and Hangul)."""
    letters = len(_LETTER.findall(text))
    return (len(_LATIN.findall(text)) + len(_HANGUL.findall(text))) / letters if letters else 0.0
