"""Text cleaning, config and lexicon scoring of the analyser (no sentence model needed)."""

from __future__ import annotations

import pytest

from pipeline.analysis import AnalysisConfig, AnalysisError, ConfigError
from pipeline.analysis import lexicon
from pipeline.analysis.text import clean, hangul_share, sentences


def test_clean_strips_markup_mentions_and_urls() -> None:
    out = clean("<@123456> **Hello** <b>world</b> — see [my blog](https://x.example/a) &amp; www.site.example\n\n> quote", 1000)
    assert out.text == "Hello world — see my blog & \nquote"
    assert not out.truncated


def test_clean_bounds_long_text_at_a_word() -> None:
    out = clean("word " * 10_000, 1_000)
    assert out.truncated and len(out.text) <= 1_000 and out.text.endswith("word")
    assert out.original_chars == len(("word " * 10_000).strip())


@pytest.mark.parametrize("text", ["", "  ", "😀😀", "!!!", "42", "<br/>"])
def test_clean_refuses_text_without_words(text: str) -> None:
    with pytest.raises(AnalysisError):
        clean(text, 1000)


def test_sentences_split_prose_poem_lines_and_korean() -> None:
    assert sentences("One. Two! Three?") == ["One.", "Two!", "Three?"]
    assert sentences("snow falls / on the fields / softly") == ["snow falls", "on the fields", "softly"]
    assert sentences("비가 온다. 마음이 차분하다.") == ["비가 온다.", "마음이 차분하다."]


def test_hangul_share() -> None:
    assert hangul_share("hello") == 0.0
    assert hangul_share("안녕하세요") == 1.0
    assert 0.0 < hangul_share("오늘 happy") < 1.0


def test_config_from_env_defaults_and_values() -> None:
    assert AnalysisConfig.from_env({}) == AnalysisConfig()
    config = AnalysisConfig.from_env({
        "TEXTUNES_EMOTION_MODEL": " org/emotion ", "TEXTUNES_LLM_URL": "http://127.0.0.1:8000/v1",
        "TEXTUNES_LLM_TIMEOUT": "2.5", "TEXTUNES_MAX_ANALYSIS_CHARS": "5000",
    })
    assert config.emotion_model == "org/emotion" and config.llm_timeout == 2.5
    assert config.max_analysis_chars == 5000 and config.llm_timeout != AnalysisConfig().llm_timeout
    assert AnalysisConfig.from_env({"TEXTUNES_ANALYSIS_THREADS": "3"}).threads == 3
    assert AnalysisConfig.from_env({"TEXTUNES_ANALYSIS_THREADS": "0"}).threads == 0


@pytest.mark.parametrize("name,value", [("TEXTUNES_LLM_TIMEOUT", "soon"), ("TEXTUNES_MAX_ANALYSIS_CHARS", "0"),
                                        ("TEXTUNES_ANALYSIS_THREADS", "-2")])
def test_config_rejects_bad_numbers_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        AnalysisConfig.from_env({name: value})


def test_english_lexicon_handles_inflection_negation_and_intensity() -> None:
    assert lexicon.score_english("She laughed and danced").valence > 0.5
    assert lexicon.score_english("not happy").valence < 0 < lexicon.score_english("happy").valence
    assert lexicon.score_english("very happy").weight > lexicon.score_english("happy").weight
    assert lexicon.score_english("The calm lake").arousal < 0 < lexicon.score_english("The explosion").arousal


def test_korean_lexicon_finds_lemmas_and_negation() -> None:
    sad = lexicon.score_korean("너무 슬퍼서 울었다.")
    assert sad.valence < 0 and sad.hits == 2
    assert lexicon.score_korean("행복하지 않았다.").valence < 0 < lexicon.score_korean("행복했다.").valence
    assert lexicon.score_korean("아무 걱정 없이 놀았다").valence > 0
    many = lexicon.score_korean_many(["무서운 밤.", "평화로운 아침."])
    assert many[0].arousal > many[1].arousal
