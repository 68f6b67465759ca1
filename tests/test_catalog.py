from __future__ import annotations

import json
import re

from pipeline.caption import build_caption
from pipeline.catalog import KINDS, catalog
from tests.conftest import SEED_DIR

HANGUL = re.compile("[가-힣]")


def test_every_entry_has_an_english_label_and_a_korean_label() -> None:
    for kind in KINDS:
        for entry in catalog().entries(kind):
            assert not HANGUL.search(entry.en), entry
            assert HANGUL.search(entry.ko) or entry.ko == entry.en, entry  # 808, EDM, ASMR stay as they are


def test_the_seed_files_wrong_pairs_are_fixed() -> None:
    c = catalog()
    assert c.lookup("mood", "겁내는") is None  # "scared" was paired with "Funky"
    assert c.lookup("mood", "펑키한").en == "Funky"
    assert c.lookup("mood", "Funny").ko == "웃긴"
    assert c.lookup("mood", "Uplifting").ko == "희망을 주는"  # Korean text stood where English belongs
    assert c.lookup("instrument", "성가").en == "Chant"
    assert c.lookup("genre", "Country").ko == "컨트리"  # was 국가, "nation"
    assert c.lookup("genre", "Children").en == "Children"  # was "Children`"
    assert c.lookup("instrument", "Mellotron") is not None


def test_lookup_ignores_case_spaces_and_hyphens_in_both_languages() -> None:
    c = catalog()
    assert c.lookup("genre", "hip-hop").en == "Hip hop"
    assert c.lookup("genre", " HIPHOP ").en == "Hip hop"
    assert c.lookup("mood", "꿈꾸는듯한").en == "Dreamy"
    assert c.lookup("instrument", "어쿠스틱기타").en == "Acoustic Guitar"


def test_no_duplicate_names_within_a_kind() -> None:
    for kind in KINDS:
        names = [e.en.lower() for e in catalog().entries(kind)]
        assert len(names) == len(set(names))


def test_catalog_covers_the_seed_taxonomy() -> None:
    path = SEED_DIR / "categories_ko_en.json"
    if not path.exists():
        import pytest
        pytest.skip(f"seed taxonomy not found at {path}")
    seed = json.loads(path.read_text())
    for kind, key in (("genre", "genres"), ("mood", "moods"), ("instrument", "instruments")):
        popular = seed[key]["popular"]
        for ko, en in popular.items():
            assert catalog().lookup(kind, en) is not None, en


def test_autocomplete_puts_popular_entries_first_and_matches_korean() -> None:
    hits = catalog().complete("instrument", "gui")
    assert hits[0].popular and "Guitar" in hits[0].en
    assert catalog().complete("instrument", "피아")[0].en == "Piano"


def test_caption_is_natural_and_deterministic() -> None:
    caption = build_caption(moods=["Calm", "Dreamy"], genres=["Lofi"], instruments=["Piano", "Drum"], bpm=80)
    assert caption == "calm, dreamy lo-fi hip hop with piano and drums, 80 bpm"
    assert build_caption(genres=["Jazz"], free_words="rainy  night", tempo="slow") == "jazz, rainy night, slow tempo, around 70 bpm"
    assert build_caption(instruments=["Cello"], mode="minor") == "music with cello, in a minor key"
    assert build_caption(moods=["Sad"]) == "sad music"
