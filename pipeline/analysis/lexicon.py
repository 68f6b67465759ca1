"""Valence/arousal from hand-written English and Korean lexicons, with negation and intensifiers.

Korean goes through kiwipiepy (morphological analysis; its model ships in the wheel), so
inflected forms (슬퍼서, 즐거운) find their lemma (슬프다, 즐겁다). The Korean table's English
glosses are there for the people who edit it; the sentence model reads Korean itself.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache

from .tables import read_table
from .text import hangul_share

_NEGATORS_EN = {"not", "no", "never", "nothing", "nobody", "without", "hardly", "cannot", "cant",
                "dont", "didnt", "doesnt", "isnt", "wasnt", "arent", "werent", "wont", "couldnt"}
_INTENSIFIERS_EN = {"very": 1.3, "so": 1.2, "really": 1.25, "extremely": 1.5, "too": 1.1,
                    "incredibly": 1.5, "totally": 1.3, "absolutely": 1.4, "deeply": 1.3, "utterly": 1.4}
_INTENSIFIERS_KO = {"정말": 1.3, "너무": 1.3, "진짜": 1.3, "아주": 1.3, "매우": 1.3, "무척": 1.3,
                    "몹시": 1.4, "완전": 1.3, "엄청": 1.4, "가장": 1.2, "정말로": 1.3, "너무나": 1.4,
                    "굉장히": 1.4, "대단히": 1.4, "되게": 1.3, "무지": 1.3, "참": 1.2, "꽤": 1.15,
                    "더욱": 1.2, "한없이": 1.3, "제일": 1.2,
                    # softeners: "조금 슬펐다" is less sad than "슬펐다"
                    "조금": 0.7, "좀": 0.7, "약간": 0.7, "살짝": 0.7, "다소": 0.7}
# Derivational suffixes after a root: 자랑+스럽 -> 자랑스럽다, 평화+롭 -> 평화롭다, 두근두근+하 -> 두근두근하다.
_DERIVING_TAGS = ("XSA", "XSV")
_SUFFIXES = ("s", "es", "ed", "d", "ing", "ly", "ness", "er", "est", "ful")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class Affect:
    valence: float
    arousal: float


@dataclass
class Score:
    """Accumulated lexicon evidence for one text."""

    valence_sum: float = 0.0
    arousal_sum: float = 0.0
    weight: float = 0.0
    hits: int = 0

    def add(self, affect: Affect, weight: float = 1.0, negated: bool = False) -> None:
        # "not happy" is unhappy; "I wasn't calm", "couldn't sleep" are restless, "no hurry" is calm.
        v = -0.6 * affect.valence if negated else affect.valence
        a = -0.5 * affect.arousal if negated else affect.arousal
        self.valence_sum += v * weight
        self.arousal_sum += a * weight
        self.weight += weight
        self.hits += 1

    def merge(self, other: "Score", weight: float = 1.0) -> None:
        self.valence_sum += weight * other.valence_sum
        self.arousal_sum += weight * other.arousal_sum
        self.weight += weight * other.weight
        self.hits += other.hits

    @property
    def share(self) -> float:
        """How much the analyser trusts this evidence: little when few lexicon words occur."""
        return self.hits / (self.hits + 2.0)

    @property
    def valence(self) -> float:
        return self.valence_sum / self.weight if self.weight else 0.0

    @property
    def arousal(self) -> float:
        return self.arousal_sum / self.weight if self.weight else 0.0


def resolve(scores: list[Score]) -> Score:
    """One text's evidence from its sentences' in order: later sentences weigh more (the last ten
    times the first), since a text's overall tone is how it resolves."""
    total = Score()
    for i, score in enumerate(scores):
        total.merge(score, 0.2 + 1.8 * i / (len(scores) - 1) if len(scores) > 1 else 1.0)
    return total


def score_sentences(sentences: list[str]) -> list[Score]:
    """Evidence per sentence: Korean through kiwipiepy (one batch), plus any Latin words in it."""
    is_korean = [hangul_share(s) > 0 for s in sentences]
    korean_scores = iter(score_korean_many([s for s, ko in zip(sentences, is_korean) if ko]))
    scores = []
    for sentence, ko in zip(sentences, is_korean):
        if ko:
            score = next(korean_scores)
            latin = " ".join(re.findall(r"[A-Za-z][A-Za-z' -]*", sentence)).strip()
            if latin:
                score.merge(score_english(latin))
        else:
            score = score_english(sentence)
        scores.append(score)
    return scores


BIAS_FILE = "lexicon_bias.tsv"


@lru_cache(maxsize=1)
def bank_bias() -> dict[str, tuple[float, float]]:
    """Per language, the lexicons' average evidence (share x valence, share x arousal) over the
    tone bank's situations, which are balanced across the four quadrants: the lexicons' lean.
    Shipped in data/lexicon_bias.tsv (``python -m pipeline.analysis.vectors`` rebuilds it)."""
    return {lang: (float(v), float(a)) for lang, v, a in read_table(BIAS_FILE)}


@lru_cache(maxsize=1)
def english_lexicon() -> dict[str, Affect]:
    return {row[0]: Affect(float(row[1]), float(row[2])) for row in read_table("lexicon_en.tsv")}


@lru_cache(maxsize=1)
def korean_lexicon() -> dict[str, Affect]:
    return {row[0]: Affect(float(row[1]), float(row[2])) for row in read_table("lexicon_ko.tsv")}


def _english_entry(word: str, lexicon: dict[str, Affect]) -> Affect | None:
    if word in lexicon:
        return lexicon[word]
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: -len(suffix)]
            for candidate in (stem, stem + "e", stem[:-1] if len(stem) > 3 and stem[-1] == stem[-2] else stem,
                              stem[:-1] + "y" if stem.endswith("i") else stem):
                if candidate in lexicon:
                    return lexicon[candidate]
    return None


def score_english(text: str) -> Score:
    lexicon = english_lexicon()
    words = [w.replace("'", "") for w in _WORD.findall(text.lower())]
    score = Score()
    for i, word in enumerate(words):
        affect = _english_entry(word, lexicon)
        if affect is None:
            continue
        before = words[max(0, i - 3): i]
        negated = _negated_english(before, word)
        weight = 1.0
        for w in before[-1:]:
            weight *= _INTENSIFIERS_EN.get(w, 1.0)
        score.add(affect, weight, negated)
    return score


_NEGATED_AUX_EN = {"do", "does", "did", "is", "was", "are", "were", "could", "would", "should"}
# Words that end a negation's reach: "can't stop smiling", "can't wait", "couldn't help laughing",
# "can't believe how happy", "not sad but relieved" are not negated feelings.
_SCOPE_BREAKERS_EN = {"stop", "stopped", "wait", "help", "believe", "but"}


def _negated_english(before: list[str], word: str) -> bool:
    """Whether a negator among the (up to three) words before ``word`` reaches it."""
    for j in range(len(before) - 1, -1, -1):
        w = before[j]
        if w in _SCOPE_BREAKERS_EN:
            return False
        if w in _NEGATORS_EN or w.endswith("nt") and w[:-2] in _NEGATED_AUX_EN:
            # "never been so happy", "never felt better": never before a degree is praise, not negation
            between = before[j + 1:]
            return not (w == "never" and ({"so", "more", "this"} & set(between) or word.endswith(("er", "est"))))
    return False


_kiwi = None
_kiwi_lock = threading.Lock()


def kiwi():  # type: ignore[no-untyped-def]
    """The shared kiwipiepy analyser (its model loads in about a second, once)."""
    global _kiwi
    with _kiwi_lock:
        if _kiwi is None:
            from kiwipiepy import Kiwi

            _kiwi = Kiwi()
        return _kiwi


_PREDICATE_TAGS = ("VV", "VA", "VX", "VCN")
_CONTENT_TAGS = ("NNG", "NNP", "XR", "MAG", "VV", "VA")


def _lemma(form: str, tag: str) -> str:
    base = tag.split("-")[0]
    return form + "다" if base in ("VV", "VA") else form


def score_korean_many(sentences: list[str]) -> list[Score]:
    """``score_korean`` for many sentences in one kiwipiepy call (much faster than one by one)."""
    if not sentences:
        return []
    return [_score_tokens(tokens) for tokens in kiwi().tokenize(sentences)]


def score_korean(sentence: str) -> Score:
    """Lexicon evidence for one Korean sentence."""
    return _score_tokens(kiwi().tokenize(sentence))


def _score_tokens(tokens) -> Score:  # type: ignore[no-untyped-def]
    lexicon = korean_lexicon()
    score = Score()
    for i, token in enumerate(tokens):
        tag = token.tag.split("-")[0]
        if tag not in _CONTENT_TAGS or tag == "MAG" and token.form in _INTENSIFIERS_KO:
            continue  # intensifiers weigh the next word; they are not evidence themselves
        affect = _lookup(tokens, i, lexicon)
        if affect is None:
            continue
        after = [(t.form, t.tag) for t in tokens[i + 1: i + 6]]
        before = [(t.form, t.tag) for t in tokens[max(0, i - 2): i]]
        negated = (
            _negated_after(after)
            or any(f in ("안", "못") and t == "MAG" for f, t in before)
            or (tag in ("NNG", "XR") and any(f == "없" and t.startswith("VA") or f == "없이" for f, t in after[:2]))
        )
        weight = 1.0
        if before and before[-1][1] == "MAG" and before[-1][0] in _INTENSIFIERS_KO:
            weight *= _INTENSIFIERS_KO[before[-1][0]]
        score.add(affect, weight, negated)
    return score


def _lookup(tokens, i: int, lexicon: dict[str, Affect]) -> Affect | None:  # type: ignore[no-untyped-def]
    """The lexicon entry for token ``i``: its lemma, or a root plus the suffix that follows it."""
    token = tokens[i]
    tag = token.tag.split("-")[0]
    lemma = _lemma(token.form, token.tag)
    entry = lexicon.get(lemma)
    if entry is not None or tag not in ("NNG", "XR", "MAG"):
        return entry
    nxt = tokens[i + 1] if i + 1 < len(tokens) else None
    if nxt is not None and nxt.tag.split("-")[0] in _DERIVING_TAGS:
        entry = lexicon.get(token.form + nxt.form + "다")  # 자랑스럽다, 평화롭다, 설레하다
        if entry is not None:
            return entry
    return lexicon.get(token.form + "하다")


_NEGATING_AUX = ("않", "못", "못하", "말")  # -지 않다, -지 못하다, -지 말다 (auxiliary verbs)
_CLAUSE_END = ("NNG", "NNP", "NP", "VV", "VA", "MAG", "SF", "SP", "EF")


def _negated_after(after: list[tuple[str, str]]) -> bool:
    """Whether the endings after a predicate negate it: 행복하지 않다, 슬퍼하지 마, 두려워하지 못했다.

    Scans the endings and auxiliaries that follow (지, 어, 하/VX, …) and stops at the next content
    word, so a negation further on in the sentence does not reach back.
    """
    for j, (form, tag) in enumerate(after):
        base = tag.split("-")[0]
        if base == "VX" and form in _NEGATING_AUX:
            return True
        if form == "지" and base == "EC" and j + 1 < len(after) and after[j + 1][0] in ("못", "못하"):
            return True  # kiwipiepy splits -지 못하다 into 지/EC 못/MAG 하/VV
        if base in _CLAUSE_END:
            return False
    return False
