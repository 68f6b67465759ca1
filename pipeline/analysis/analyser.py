"""Text -> musical brief: the embedded analyser (offline, CPU) plus optional stronger models."""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from pipeline.brief import request_bpm
from pipeline.caption import build_caption, caption_word
from pipeline.catalog import Kind, catalog
from pipeline.models import Brief, TuneRequest

from . import lexicon, music, text as textmod
from .config import AnalysisConfig
from .embedder import Embedder
from .extras import OptionalModels
from .profiles import Profile, of_kind
from .tone import BankRow, ToneHead, bank, example_ids, examples

log = logging.getLogger(__name__)

THEME_MAX_WORDS = 25

# The plain feelings of each valence/arousal quadrant, keyed (valence > 0, arousal > 0): the first
# mood is one of them, so a text's brief always opens with a feeling its quadrant can carry.
_CORE_MOODS = {
    (True, True): frozenset({"Happy", "Cheerful", "Energetic", "Exciting", "Upbeat", "Fun", "Celebratory", "Uplifting"}),
    (True, False): frozenset({"Peaceful", "Calm", "Relaxing", "Gentle", "Soothing", "Serene", "Mellow", "Chill", "Sweet"}),
    (False, True): frozenset({"Suspenseful", "Intense", "Dramatic", "Dark", "Edgy"}),
    (False, False): frozenset({"Sad", "Melancholic", "Somber", "Lonely", "Reflective", "Wistful"}),
}

# Moods that name a topic or a scene more than a feeling: chosen only on strong evidence.
_TOPICAL_MOODS = frozenset({
    "Aerobics", "Arousing", "Bizarre", "Comedy", "Confused", "Crime", "Dancy", "Driving", "Fashion",
    "Funky", "Futuristic", "Groovy", "Hypnotic", "Lifestyle", "Military", "Modern", "Party",
    "Religious", "Sci-Fi", "Sexy", "Sports", "Spy", "Strange", "Stylish", "Sultry", "Wedding", "Workout",
})


@dataclass
class Reading:
    """What the text says, before musical choices."""

    valence: float
    arousal: float
    lexicon_hits: int
    doc: np.ndarray  # unit vector: the sentence model's reading of the text
    theme: str
    korean_share: float  # share of the letters that are Hangul
    truncated: bool
    analysed_chars: int
    original_chars: int
    text: str = ""  # the cleaned, bounded text that was read
    mentions: list[tuple[Kind, str]] | None = None  # catalog names the text names literally


def _clip(x: float) -> float:
    return float(max(-1.0, min(1.0, x)))


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-6)


class Analyser:
    """Loads models once; ``analyse`` is then pure CPU work on one request."""

    mood_va_weight = 2.0
    topical_penalty = 1.0
    sign_penalty = 1.0
    niche_penalty = 1.5
    # How the reading mixes its evidence (tuned on the development sets: tone_dev.jsonl,
    # tone_dev_long.jsonl, the first round's tone_unseen.jsonl and the older sets): the tone head
    # over the sentence vectors, plus the lexicons' word evidence, plus exclamation marks and
    # capitals for arousal.
    lexicon_valence_weight = 0.6
    lexicon_arousal_weight = 0.6
    punctuation_weight = 0.5
    gain = 1.6  # tanh(gain * z): spreads the head's outputs over -1..+1
    max_lexicon_sentences = 32  # a longer text's lexicon reading uses this many spread sentences
    ending_weight = 0.4  # share of the head's reading taken from the passage's last sentences, read again
    # Optional models: share of the emotion model in valence/arousal; pull of the NLI re-ranking.
    emotion_weight = 0.5
    nli_weight = 2.0

    def __init__(self, config: AnalysisConfig, embedder: Embedder, extras: OptionalModels | None = None,
                 captioner=None) -> None:  # type: ignore[no-untyped-def]
        self.config = config
        self.embedder = embedder
        self.extras = extras
        self.captioner = captioner
        self._profiles: dict[Kind, list[Profile]] = {k: of_kind(k) for k in ("mood", "genre", "instrument")}
        self._profile_vecs = {k: embedder.encode_known([p.description for p in ps]) for k, ps in self._profiles.items()}
        self._profile_va = {k: np.array([[p.valence, p.arousal] for p in ps]) for k, ps in self._profiles.items()}
        rows = bank()
        bank_vecs = embedder.encode_known([r.text for r in rows])
        # The head learns from the bank's situations and from the labelled development texts
        # (data/examples.tsv: whole creator texts, read as the sentence model reads them).
        self._bank_vecs = bank_vecs
        self._tone = self.fit_tone(examples())
        # Some descriptions sit close to every text of a language (to Korean text especially, as
        # the descriptions are English): their mean similarity to the bank's texts of that
        # language is taken off, so a text's own content picks the profile.
        langs = np.array([r.lang for r in rows])
        self._profile_bias = {k: {lang: (vecs @ bank_vecs[langs == lang].T).mean(1) for lang in ("en", "ko")}
                              for k, vecs in self._profile_vecs.items()}
        self._mentions = _mention_patterns()
        self._lexicon_bias = lexicon.bank_bias()

    def without_examples(self, ids: set[str]) -> "Analyser":
        """This analyser with a tone head fitted without the examples made from the labelled texts
        ``ids`` (to measure a development set as if it had never been seen)."""
        held = copy.copy(self)
        held._tone = self.fit_tone([row for row, id_ in zip(examples(), example_ids()) if id_ not in ids])
        return held

    def fit_tone(self, shown: Sequence[BankRow]) -> ToneHead:
        """The tone head fitted on the bank and on ``shown`` (the examples; the tests hold a set out)."""
        vectors = np.vstack([self._bank_vecs, self.embedder.encode_known([r.text for r in shown])])
        targets = np.array([[r.valence, r.arousal] for r in list(bank()) + list(shown)])
        return ToneHead.fit(vectors, targets)

    @classmethod
    def load(cls, config: AnalysisConfig = AnalysisConfig()) -> "Analyser":
        from .llm import LLMCaptioner

        extras = OptionalModels.load(config)  # first, so a misconfigured model fails fast
        captioner = LLMCaptioner.from_config(config)
        embedder = Embedder.load(threads=config.threads)
        lexicon.kiwi()  # load the Korean analyser now rather than on the first Korean text
        return cls(config, embedder, extras, captioner)

    # ----------------------------------------------------------------- public
    def analyse_text(self, text: str) -> Brief:
        return self.analyse(TuneRequest(text=text))

    def analyse(self, request: TuneRequest) -> Brief:
        if not request.text.strip():
            raise textmod.AnalysisError("There is no text to analyse: send a sentence or a paragraph.")
        reading = self.read(request.text)
        if self.extras is not None:
            reading = self._refine(reading, self.extras)
        moods = self._choose_moods(reading)
        genres = self._choose_genres(reading, moods)
        instruments = self._choose_instruments(reading, moods, genres)
        v, a = reading.valence, reading.arousal
        mode = music.key_mode(v, a)
        bpm = music.bpm_for(a, genres)
        moods = list(request.moods) or moods
        genres = list(request.genres) or genres
        instruments = list(request.instruments) or instruments
        bpm = request_bpm(request) or bpm
        caption = build_caption(moods=moods, genres=genres, instruments=instruments, bpm=bpm,
                                free_words=request.prompt, mode=mode)
        confidence = self._confidence(reading)
        explanation = self._explain(reading, moods, genres, instruments, bpm, mode)
        brief = Brief(valence=round(v, 2), arousal=round(a, 2), moods=moods, genres=genres,
                      instruments=instruments, bpm=bpm, mode=mode, theme=reading.theme,  # type: ignore[arg-type]
                      confidence=round(confidence, 2), caption=caption, explanation=explanation)
        user_tags = request.moods or request.genres or request.instruments or request.bpm or request.tempo
        if self.captioner is not None and not user_tags:  # the user's own tags already fix the caption
            llm_caption = self.captioner.caption(brief, reading.text, fallback=caption)
            if llm_caption != caption and request.prompt and request.prompt.casefold() not in llm_caption.casefold():
                llm_caption = f"{llm_caption}, {' '.join(request.prompt.split())}"
            brief = replace(brief, caption=llm_caption)
        return brief

    # --------------------------------------------------------------- reading
    def read(self, raw: str) -> Reading:
        cleaned = textmod.clean(raw, self.config.max_analysis_chars)
        sentences = textmod.sentences(cleaned.text) or [cleaned.text]
        scores = self._sampled_lexicon_scores(sentences)
        total = lexicon.resolve(scores)
        korean_share = textmod.hangul_share(cleaned.text)
        bias_valence, bias_arousal = self._lexicon_bias["ko" if korean_share > 0.3 else "en"]

        passage_text, chosen = self._passage(sentences)
        doc = self.embedder.encode([passage_text])[0]
        head_valence, head_arousal = self._tone.predict(doc[None, :])[0]
        ending, _ = passage([sentences[i] for i in chosen], self.embedder, self.config.max_tokens // 2)
        if ending != passage_text:
            # How a long text resolves counts more than the mean of its passage (a happy summer that ends
            # with a phone call): its last sentences, read again on their own, pull the reading.
            end_valence, end_arousal = self._tone.predict(self.embedder.encode([ending]))[0]
            head_valence += self.ending_weight * (end_valence - head_valence)
            head_arousal += self.ending_weight * (end_arousal - head_arousal)
        # The lexicons add the words' own evidence (it shrinks when few of their words occur), less
        # their average evidence over the bank's balanced situations: they know more happy words
        # than sad ones, and that lean should not tilt every text.
        z_valence = head_valence + self.lexicon_valence_weight * (total.share * total.valence - bias_valence)
        word_arousal = total.share * total.arousal - bias_arousal
        if z_valence < 0:
            # In a dark or sad reading, soft words (a lullaby, "quietly", "slowly") are how dread is
            # told, not a sign of calm music: they don't lower the arousal; the situation decides.
            word_arousal = max(0.0, word_arousal)
        z_arousal = (head_arousal + self.lexicon_arousal_weight * word_arousal
                     + self.punctuation_weight * _punctuation_energy(cleaned.text, len(sentences)))
        theme = _theme(sentences[max(chosen, key=lambda i: (scores[i].hits, -i))])
        return Reading(valence=_clip(np.tanh(self.gain * z_valence)), arousal=_clip(np.tanh(self.gain * z_arousal)),
                       lexicon_hits=total.hits, doc=doc, theme=theme,
                       korean_share=korean_share, truncated=cleaned.truncated,
                       analysed_chars=len(cleaned.text), original_chars=cleaned.original_chars,
                       text=cleaned.text)

    def _sampled_lexicon_scores(self, sentences: list[str]) -> list[lexicon.Score]:
        """Lexicon evidence per sentence; a long text is read through evenly spread sentences
        (Korean morphological analysis is the costliest step), the others count as empty."""
        n, most = len(sentences), self.max_lexicon_sentences
        picked = range(n) if n <= most else sorted({round(k * (n - 1) / (most - 1)) for k in range(most)})
        scores = [lexicon.Score() for _ in sentences]
        for i, score in zip(picked, lexicon.score_sentences([sentences[i] for i in picked])):
            scores[i] = score
        return scores

    def _passage(self, sentences: list[str]) -> tuple[str, list[int]]:
        """What the sentence model reads (see ``passage``)."""
        return passage(sentences, self.embedder, self.config.max_tokens)

    def _refine(self, reading: Reading, extras: OptionalModels) -> Reading:
        """Mix in what the optional models say (each returns plain numbers or text)."""
        if extras.emotion is not None:
            v, a, weight = extras.emotion.valence_arousal(reading.text)
            w = self.emotion_weight * weight
            reading = replace(reading, valence=(1 - w) * reading.valence + w * v,
                              arousal=(1 - w) * reading.arousal + w * a)
        if extras.summariser is not None:
            summary = extras.summariser.summarise(reading.text, THEME_MAX_WORDS)
            if re.search(r"[^\W\d_]{2,}", summary):
                reading = replace(reading, theme=summary)
        return reading

    # --------------------------------------------------------------- choices
    def _scores(self, kind: Kind, reading: Reading, query: np.ndarray, va_weight: float) -> np.ndarray:
        sims = self._profile_vecs[kind] @ query - self._profile_bias[kind]["ko" if reading.korean_share > 0.3 else "en"]
        dist = np.linalg.norm(self._profile_va[kind] - np.array([reading.valence, reading.arousal]), axis=1)
        return _zscore(sims) - va_weight * dist

    def _mentioned(self, kind: Kind, reading: Reading) -> list[str]:
        if reading.mentions is None:
            reading.mentions = self._mentions.find(reading.text)
        return [name for k, name in reading.mentions if k == kind]

    def _choose_moods(self, reading: Reading) -> list[str]:
        profiles = self._profiles["mood"]
        score = self._scores("mood", reading, reading.doc, va_weight=self.mood_va_weight)
        score -= self.topical_penalty * np.array([p.name in _TOPICAL_MOODS for p in profiles])
        # A mood whose valence has the other sign from the text's is a contradiction.
        mood_v = self._profile_va["mood"][:, 0]
        score -= self.sign_penalty * np.maximum(0.0, -reading.valence * mood_v) / 0.25
        if self.extras is not None and self.extras.nli is not None:
            top = np.argsort(-score)[: self.extras.nli.candidates]
            probs = self.extras.nli.probabilities(reading.text, [profiles[i].name for i in top])
            score[top] += self.nli_weight * (probs * len(top) - 1.0) / len(top)
        order = list(np.argsort(-score))
        # The first mood names the plain feeling of the text's quadrant (happy, calm, tense, sad:
        # what a listener hears first); the others, often more specific (angry, nostalgic,
        # adventure), colour it when they score close to it.
        core = _CORE_MOODS[(reading.valence > 0, reading.arousal > 0)]
        lead = next(i for i in order if profiles[i].name in core)
        va = self._profile_va["mood"]
        # A colour does not contradict a clear reading: on an axis where the text is clearly on one side,
        # its point is on that side too, or near the middle.
        fits = np.ones(len(profiles), dtype=bool)
        for axis, value in enumerate((reading.valence, reading.arousal)):
            if abs(value) >= 0.25:
                fits &= ((va[:, axis] > 0) == (value > 0)) | (np.abs(va[:, axis]) <= 0.2)
        colours = [i for i in order if i != lead and fits[i] and score[i] > score[lead] - 0.6]
        return [profiles[i].name for i in [lead] + colours[:2]]

    def _choose_genres(self, reading: Reading, moods: list[str]) -> list[str]:
        profiles = self._profiles["genre"]
        names = [p.name for p in profiles]
        query = reading.doc + 0.5 * self._mood_vector(moods)
        score = self._scores("genre", reading, query / np.linalg.norm(query), va_weight=1.5)
        score -= self.niche_penalty * np.array([n in _NICHE_GENRES for n in names])
        mentioned = [n for n in self._mentioned("genre", reading) if n in names]
        for name in mentioned:
            score[names.index(name)] += 3.0
        order = [names[i] for i in np.argsort(-score)]
        # One genre reads best in a caption; a second only when the text names it.
        return order[:1] + [n for n in mentioned if n != order[0]][:1]

    def _choose_instruments(self, reading: Reading, moods: list[str], genres: list[str]) -> list[str]:
        profiles = self._profiles["instrument"]
        names = [p.name for p in profiles]
        query = reading.doc + 0.5 * self._mood_vector(moods)
        fit = dict(zip(names, self._scores("instrument", reading, query / np.linalg.norm(query), va_weight=1.5)))
        kit = list(dict.fromkeys(i for g in genres for i in music.GENRE_KITS.get(g, ())))
        # The genre's own kit, its typical instrument first, the rest by fit to the text.
        ranked = kit[:1] + sorted(kit[1:], key=lambda n: -fit.get(n, -1.0))
        if not ranked:
            ranked = sorted(names, key=lambda n: -fit[n])
        mentioned = self._mentioned("instrument", reading)
        picked = list(dict.fromkeys(mentioned + ranked))
        return picked[:3]

    def _mood_vector(self, moods: list[str]) -> np.ndarray:
        names = [p.name for p in self._profiles["mood"]]
        rows = [self._profile_vecs["mood"][names.index(m)] for m in moods if m in names]
        return np.mean(rows, 0) if rows else np.zeros(self.embedder.dimension)

    # ----------------------------------------------------------- reporting
    @staticmethod
    def _confidence(reading: Reading) -> float:
        evidence = reading.lexicon_hits / (reading.lexicon_hits + 3.0)
        strength = min(1.0, (abs(reading.valence) + abs(reading.arousal)) / 1.2)
        conf = 0.25 + 0.45 * evidence + 0.3 * strength
        conf *= textmod.readable_share(reading.text)  # other scripts are read, but never measured
        return float(max(0.05, min(1.0, conf)))

    @staticmethod
    def _explain(reading: Reading, moods: list[str], genres: list[str], instruments: list[str], bpm: int, mode: str) -> str:
        def signed(x: float) -> str:
            return f"{x:+.1f}".replace("-", "\u2212").replace("+0.0", "0.0").replace("\u22120.0", "0.0")

        feeling = ", ".join(caption_word(m) for m in moods[:2]) or "neutral"
        music_words = " ".join(caption_word(g) for g in genres[:1])
        inst = " and ".join(caption_word(i) for i in instruments[:2])
        what = " ".join(w for w in (music.tempo_word(bpm), music_words) if w)
        if inst:
            what += f" with {inst}"
        line = (f"{feeling} (valence {signed(reading.valence)}, arousal {signed(reading.arousal)}) "
                f"\u2192 {what}, {bpm} bpm, {mode}")
        if reading.truncated:
            line += f" (read the first {reading.analysed_chars:,} of {reading.original_chars:,} characters)"
        return line


def passage(sentences: list[str], embedder: Embedder, budget: int) -> tuple[str, list[int]]:
    """What the sentence model reads: the whole text when it fits ``budget`` tokens, else the longest
    run of final sentences that fits (a text's overall tone is how it resolves: stress and then
    joy is a joyful text). Returns the passage and the indices of its sentences."""
    n = len(sentences)
    whole = " ".join(sentences)
    if len(whole) <= 12 * budget and embedder.token_count(whole) <= budget:
        return whole, list(range(n))
    overhead = embedder.token_count("")
    chosen: list[int] = []
    used = overhead
    for i in range(n - 1, -1, -1):
        cost = embedder.token_count(sentences[i]) - overhead
        if used + cost > budget and chosen:
            break
        chosen.insert(0, i)
        used += cost
    text = " ".join(sentences[i] for i in chosen)
    # Joined sentences can tokenise a little longer than their sum: drop the earliest ones, and
    # keep the end of a single sentence that is still too long.
    while (count := embedder.token_count(text)) > budget:
        if len(chosen) > 1:
            chosen.pop(0)
            text = " ".join(sentences[i] for i in chosen)
        else:
            keep = max(1, int(len(text) * (budget - overhead) / (count - overhead + 1)))
            text = text[-keep:]
    return text, chosen


def _punctuation_energy(text: str, n_sentences: int) -> float:
    bangs = text.count("!") + text.count("！")
    shouting = len(re.findall(r"\b[A-Z]{3,}\b", text))
    calm = text.count("…") + text.count("...")
    return 0.25 * min(1.0, (bangs + shouting) / max(1, n_sentences)) - 0.1 * min(1.0, calm / max(1, n_sentences))


def _theme(sentence: str) -> str:
    words = sentence.split()
    theme = " ".join(words[:THEME_MAX_WORDS])
    return theme + ("…" if len(words) > THEME_MAX_WORDS else "")


# Genres with a narrow use (a holiday, a region, a scene): chosen when the text is clearly about it.
_NICHE_GENRES = frozenset({
    "Blues", "Country", "Reggae", "Funk", "Disco", "Latin", "Christmas", "Halloween", "Metal",
    "Korean traditional music", "Trap", "Techno", "House", "Soul", "R&B", "Smooth Jazz", "Trip Hop",
    "Lullaby", "Music for children", "Battle", "Horror", "Trailer", "Motivational",
})

_KO_STOP = {"기타", "공", "락", "팝", "벨", "드론", "중국", "게임", "뉴스", "유럽", "국제적인", "인디", "전투", "액션", "에픽"}


@dataclass(frozen=True)
class _Mentions:
    """Catalog genres/instruments a text names literally ('a violin', 'jazz bar', '재즈')."""

    latin: dict[tuple[str, ...], tuple[Kind, str]]  # word sequence -> (kind, catalog name)
    hangul: dict[str, tuple[Kind, str]]

    def find(self, text: str) -> list[tuple[Kind, str]]:
        words = re.findall(r"[a-z0-9&]+", text.casefold())
        found: list[tuple[Kind, str]] = []
        for n in (3, 2, 1):
            for i in range(len(words) - n + 1):
                key = tuple(words[i: i + n])
                hit = self.latin.get(key)
                if hit is None and key[-1].endswith("s"):
                    hit = self.latin.get(key[:-1] + (key[-1][:-1],))
                if hit and hit not in found:
                    found.append(hit)
        if any(textmod.is_hangul(c) for c in text):
            found += [hit for word, hit in self.hangul.items() if word in text and hit not in found]
        return found


def _mention_patterns() -> _Mentions:
    cat = catalog()
    usable = {k: {p.name for p in of_kind(k)} for k in ("genre", "instrument")}
    usable["instrument"] |= {i for kit in music.GENRE_KITS.values() for i in kit}
    latin: dict[tuple[str, ...], tuple[Kind, str]] = {}
    hangul: dict[str, tuple[Kind, str]] = {}
    for kind in ("genre", "instrument"):
        for entry in cat.entries(kind):  # type: ignore[arg-type]
            if entry.name not in usable[kind]:
                continue
            for label in (entry.en, caption_word(entry.en)):
                words = tuple(re.findall(r"[a-z0-9&]+", label.casefold()))
                if words and len(words) <= 3 and len("".join(words)) >= 3:
                    latin.setdefault(words, (kind, entry.name))  # type: ignore[arg-type]
            if len(entry.ko) >= 2 and entry.ko not in _KO_STOP and not entry.ko.isascii():
                hangul.setdefault(entry.ko, (kind, entry.name))  # type: ignore[arg-type]
    return _Mentions(latin, hangul)
